//! SQL primitives: `l2_normalize`, `cosine`, `cosine_features`. Thin glue: convert, call the
//! pure core in `embedstack_math::vector`, map errors. All `IMMUTABLE STRICT PARALLEL SAFE`.

use embedstack_math::vector::{cosine_f32, cosine_f64, normalize_f32, normalize_f64};
use pgrx::prelude::*;

use crate::datatype::float_array::non_null_slice;
use crate::datatype::vector::{VectorInput, VectorOutput};
use crate::datatype::vector_array::{Float8ArrayOut, VectorArray};
use crate::errors::OrRaise;

#[pg_extern(immutable, strict, parallel_safe, name = "l2_normalize")]
fn l2_normalize_vector(x: VectorInput<'_>) -> VectorOutput {
    let src = x.as_slice();
    let mut out = VectorOutput::zeroed(src.len());
    normalize_f32(src, out.as_mut_slice()).or_raise();
    out
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_normalize")]
fn l2_normalize_real(x: Array<'_, f32>) -> Vec<f32> {
    let src = non_null_slice(&x, "array");
    let mut out = vec![0.0f32; src.len()];
    normalize_f32(src, &mut out).or_raise();
    out
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_normalize")]
fn l2_normalize_float8(x: Array<'_, f64>) -> Vec<f64> {
    let src = non_null_slice(&x, "array");
    let mut out = vec![0.0f64; src.len()];
    normalize_f64(src, &mut out).or_raise();
    out
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine")]
fn cosine_vector(a: VectorInput<'_>, b: VectorInput<'_>) -> Option<f64> {
    cosine_f32(a.as_slice(), b.as_slice()).or_raise()
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine")]
fn cosine_real(a: Array<'_, f32>, b: Array<'_, f32>) -> Option<f64> {
    cosine_f32(non_null_slice(&a, "first array"), non_null_slice(&b, "second array")).or_raise()
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine")]
fn cosine_float8(a: Array<'_, f64>, b: Array<'_, f64>) -> Option<f64> {
    cosine_f64(non_null_slice(&a, "first array"), non_null_slice(&b, "second array")).or_raise()
}

/// One cosine per model: element i is the cosine of `a[i]` and `b[i]`. A NULL vector or a
/// zero vector on either side gives a NULL element (a fit then skips and counts that pair).
#[pg_extern(immutable, strict, parallel_safe)]
fn cosine_features(a: VectorArray<'_>, b: VectorArray<'_>) -> Float8ArrayOut {
    if a.len() != b.len() {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("different numbers of models {} and {}", a.len(), b.len()),
            "both arrays must hold one vector per model, in the same order"
        );
    }
    let features: Vec<Option<f64>> = a
        .iter()
        .zip(b.iter())
        .enumerate()
        .map(|(i, pair)| match pair {
            (Some(x), Some(y)) => match cosine_f32(x.as_slice(), y.as_slice()) {
                Ok(c) => c,
                Err(e) => crate::errors::raise(e, &format!("model {}: ", i + 1)),
            },
            _ => None,
        })
        .collect();
    Float8ArrayOut::build(&features)
}
