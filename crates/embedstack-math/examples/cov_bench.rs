//! Throughput and accuracy of the covariance accumulation ([`CovStats::accumulate_f32`] and
//! its blocked flush) at the model set this was tuned for, D = 5,632 = 3,072 + 1,536 + 1,024:
//!
//! ```text
//! cargo run --release -p embedstack-math --example cov_bench -- [rows] [reps] [threads]
//!     [--save PATH] [--compare PATH] [--fit R]
//! ```
//!
//! Defaults: 10,000 rows, 3 repetitions (the machine may be shared: the median is reported),
//! 1 thread (more: [`CovStats::set_threads`] with a guard that sets nothing up, which is fine
//! outside PostgreSQL). CPU times are reported too: on a shared machine they are less disturbed
//! than wall times. `--save PATH` writes the serialised state of the last repetition (raw
//! little-endian f64, `CovStats::to_vec`); `--compare PATH` reads such a state (e.g. saved by
//! the f64 implementation this replaced) and reports the error of this build's state against it,
//! on the raw sums `S = Σ u uᵀ` and on the covariance `C = S/n − m mᵀ`; with `--fit R`, also
//! on what the covariance is for: the projection to R dimensions ([`fit`], equal weights) fitted
//! from either state.
//!
//! The rows are synthetic and deterministic: per model, a fixed offset (so the mean is far from
//! 0 and the centring cancels, as with real embeddings), a shared 64-dimensional latent factor
//! and isotropic noise.

use std::time::Instant;

use embedstack_math::covariance::{CovStats, HEADER_LEN};
use embedstack_math::projection::fit;
use embedstack_math::subspace::{gaussian_matrix, SubspaceOptions};

const DIMS: [usize; 3] = [3072, 1536, 1024];

fn rows(dims: &[usize], n: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
    let d: usize = dims.iter().sum();
    let latent = 64;
    let mix = gaussian_matrix(d, latent, seed) / (latent as f64).sqrt();
    let offset = gaussian_matrix(d, 1, seed + 1);
    let z = gaussian_matrix(latent, n, seed + 2);
    let mut x = &mix * &z;
    x += gaussian_matrix(d, n, seed + 3);
    (0..n)
        .map(|r| {
            let col = x.column(r);
            let mut at = 0;
            dims.iter()
                .map(|&dk| {
                    let v = (at..at + dk).map(|i| (col[i] + 1.5 * offset[i]) as f32).collect();
                    at += dk;
                    v
                })
                .collect()
        })
        .collect()
}

/// CPU seconds (user + system) of this process so far, from /proc (Linux; 0 elsewhere). The
/// machine may be shared: CPU time is less disturbed by other processes than wall time.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of the calling thread, in nanoseconds from the scheduler (Linux; 0 elsewhere).
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `(n, Σu, packed upper triangle of S)` of a serialised state.
fn parts(v: &[f64]) -> (f64, &[f64], &[f64]) {
    let k = v[2] as usize;
    let d: usize = v[HEADER_LEN..HEADER_LEN + k].iter().map(|&x| x as usize).sum();
    let s0 = HEADER_LEN + 2 * k;
    (v[3], &v[s0..s0 + d], &v[s0 + d..])
}

struct Errors {
    /// max |Δ| / max |ref|
    normwise: f64,
    /// max |Δ_ij| / √(ref_ii ref_jj)
    scaled: f64,
    /// max |Δ_ii| / ref_ii
    diagonal: f64,
    /// ‖Δ‖_F / ‖ref‖_F over the upper triangle
    frobenius: f64,
}

fn errors(d: usize, got: impl Fn(usize, usize) -> f64, want: impl Fn(usize, usize) -> f64) -> Errors {
    let diag: Vec<f64> = (0..d).map(|i| want(i, i)).collect();
    let (mut max_ref, mut max_err, mut scaled, mut diagonal, mut e2, mut r2) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for i in 0..d {
        for j in i..d {
            let (g, w) = (got(i, j), want(i, j));
            let e = (g - w).abs();
            max_ref = max_ref.max(w.abs());
            max_err = max_err.max(e);
            scaled = scaled.max(e / (diag[i] * diag[j]).sqrt());
            if i == j {
                diagonal = diagonal.max(e / w.abs());
            }
            e2 += e * e;
            r2 += w * w;
        }
    }
    Errors { normwise: max_err / max_ref, scaled, diagonal, frobenius: (e2 / r2).sqrt() }
}

fn report(what: &str, e: &Errors) {
    println!(
        "{what}: max|Δ|/max|ref| {:.2e}, max|Δij|/√(ref_ii ref_jj) {:.2e}, max diagonal rel {:.2e}, Frobenius rel {:.2e}",
        e.normwise, e.scaled, e.diagonal, e.frobenius
    );
}

fn compare(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "states of different layouts");
    assert_eq!(got[..HEADER_LEN], want[..HEADER_LEN], "headers differ");
    let (n, sum_g, pg) = parts(got);
    let (_, sum_w, pw) = parts(want);
    let d = sum_g.len();
    let row = |i: usize| i * d - i * i.saturating_sub(1) / 2;
    let at = |p: &[f64], i: usize, j: usize| p[row(i) + (j - i)];
    let sum_err = sum_g.iter().zip(sum_w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("Σu: max |Δ| = {sum_err:.2e}");
    report("S = Σuuᵀ", &errors(d, |i, j| at(pg, i, j), |i, j| at(pw, i, j)));
    let c_g = |i: usize, j: usize| at(pg, i, j) / n - (sum_g[i] / n) * (sum_g[j] / n);
    let c_w = |i: usize, j: usize| at(pw, i, j) / n - (sum_w[i] / n) * (sum_w[j] / n);
    report("C = S/n − m mᵀ", &errors(d, c_g, c_w));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut nums, mut save, mut cmp, mut fit_r) = (Vec::new(), None, None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--save" => save = args.next(),
            "--compare" => cmp = args.next(),
            "--fit" => fit_r = args.next().map(|r| r.parse::<usize>().expect("a rank")),
            _ => nums.push(a.parse::<usize>().expect("a number")),
        }
    }
    let n = nums.first().copied().unwrap_or(10_000);
    let reps = nums.get(1).copied().unwrap_or(3);
    let threads = nums.get(2).copied().unwrap_or(1);
    let d: usize = DIMS.iter().sum();

    let t = Instant::now();
    let data = rows(&DIMS, n, 7);
    println!("D = {d}, {n} rows generated in {:.1} s", t.elapsed().as_secs_f64());

    let (mut times, mut cpus, mut mains) = (Vec::new(), Vec::new(), Vec::new());
    let mut st = CovStats::new(&DIMS).unwrap();
    for rep in 0..reps {
        st = CovStats::new(&DIMS).unwrap();
        st.set_threads(threads, |spawn| spawn());
        let (t, cpu, main) = (Instant::now(), cpu_seconds(), thread_cpu_seconds());
        for row in &data {
            let r: Vec<Option<&[f32]>> = row.iter().map(|v| Some(v.as_slice())).collect();
            st.accumulate_f32(&r).unwrap();
        }
        st.flush();
        let (secs, cpu, main) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu, thread_cpu_seconds() - main);
        println!(
            "  rep {}: {secs:.3} s = {:.0} rows/s (CPU {cpu:.2} s, calling thread {main:.3} s)",
            rep + 1,
            n as f64 / secs
        );
        times.push(secs);
        cpus.push(cpu);
        mains.push(main);
    }
    let (med, cpu, main) = (median(times), median(cpus), median(mains));
    println!(
        "D = {d}, threads {threads}: accumulate {n} rows, median of {reps}: {med:.3} s = {:.0} rows/s \
         (CPU {cpu:.2} s, calling thread {main:.3} s)",
        n as f64 / med
    );

    let v = st.to_vec();
    if let Some(path) = save {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        println!("state saved to {path}");
    }
    if let Some(path) = cmp {
        let bytes = std::fs::read(&path).unwrap();
        let want: Vec<f64> =
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        println!("against {path}:");
        compare(&v, &want);
        if let Some(r) = fit_r {
            compare_fits(&mut st, &mut CovStats::from_slice(&want).unwrap(), r);
        }
    }
}

/// The projections to `r` dimensions fitted from two states: eigenvalues, variance kept, and
/// the largest principal angle between the two subspaces of leading directions.
fn compare_fits(got: &mut CovStats, want: &mut CovStats, r: usize) {
    let weights = vec![1.0; got.dims().len()];
    let opts = SubspaceOptions::default();
    let t = Instant::now();
    let (a, b) = (fit(got, &weights, r, &opts).unwrap(), fit(want, &weights, r, &opts).unwrap());
    let eig = a.eigenvalues.iter().zip(&b.eigenvalues).fold(0f64, |m, (x, y)| m.max((x - y).abs() / y));
    println!(
        "fit r = {r} ({:.1} s for both): variance kept {:.8} vs {:.8}, max eigenvalue rel diff {eig:.2e}",
        t.elapsed().as_secs_f64(),
        a.variance_kept,
        b.variance_kept
    );
    // sin of the largest principal angle between the spans of the first k columns.
    for k in [16, 64, r] {
        let (ua, ub) = (a.basis.columns(0, k), b.basis.columns(0, k));
        // The part of span(ua) outside span(ub): its largest singular value is that sine.
        let outside = ua - ub * (ub.transpose() * ua);
        let sin = outside.singular_values().max();
        println!("  top {k}: sin(largest principal angle) {sin:.2e}");
    }
}
