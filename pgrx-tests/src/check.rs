//! Comparisons of what the server computed with what a test computed.

/// `got` equals `want` to a relative `rel`, or to 1e-12 absolutely (for values near 0).
pub fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs() || (got - want).abs() <= 1e-12
}

/// Asserts `got` (f32, as served) equals `want` (f64, computed here) element-wise within `tol`.
pub fn assert_close_vec(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol, "{what}: element {i}: got {g}, want {w}");
    }
}
