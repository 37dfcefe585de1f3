//! Deterministic test data and how it reaches the server: the SplitMix64 generator, rows of
//! model vectors, pgvector literals and COPY text fields, and loading vectors and pairs tables
//! with COPY.

use std::collections::BTreeMap;
use std::io::Write;

use postgres::Client;

use crate::reference::cos;

/// SplitMix64: a small deterministic generator, so every run sees the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unif(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f64 {
        2.0 * self.unif() - 1.0
    }
    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i32
    }
    pub fn vec(&mut self, d: usize) -> Vec<f32> {
        (0..d).map(|_| self.sym() as f32).collect()
    }
}

/// One row's model vectors (`None` = SQL NULL).
pub type Models = Vec<Option<Vec<f32>>>;

/// pgvector text of a vector. Rust prints the shortest f32 representation that round-trips,
/// and pgvector parses it with strtof: the server stores exactly these f32 values.
pub fn lit(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

/// SQL expression of one model value as `vector`.
pub fn vec_sql(v: &Option<Vec<f32>>) -> String {
    match v {
        Some(v) => format!("'{}'::vector", lit(v)),
        None => "NULL::vector".into(),
    }
}

/// `ARRAY[...]::vector[]` of a row's model vectors.
pub fn models_sql(m: &Models) -> String {
    let parts: Vec<String> = m.iter().map(vec_sql).collect();
    format!("ARRAY[{}]::vector[]", parts.join(", "))
}

/// COPY text field of a model value.
pub fn copy_field(v: &Option<Vec<f32>>) -> String {
    match v {
        Some(v) => lit(v),
        None => "\\N".into(),
    }
}

/// Creates `table (id int PRIMARY KEY, m1 vector(d1), …)` (followed by `with`, e.g.
/// `WITH (fillfactor = 25)`, unless empty) and COPYs the rows in.
pub fn load_vectors(c: &mut Client, table: &str, dims: &[usize], rows: &BTreeMap<i32, Models>, with: &str) {
    let cols: Vec<String> = dims.iter().enumerate().map(|(k, d)| format!("m{} vector({d})", k + 1)).collect();
    let with = if with.is_empty() { String::new() } else { format!(" {with}") };
    c.batch_execute(&format!("CREATE TABLE {table} (id int PRIMARY KEY, {}){with}", cols.join(", ")))
        .unwrap();
    let names: Vec<String> = (1..=dims.len()).map(|k| format!("m{k}")).collect();
    let mut w = c.copy_in(&format!("COPY {table} (id, {}) FROM STDIN", names.join(", "))).unwrap();
    for (id, m) in rows {
        let fields: Vec<String> = m.iter().map(copy_field).collect();
        writeln!(w, "{id}\t{}", fields.join("\t")).unwrap();
    }
    w.finish().unwrap();
}

/// Random pairs of distinct ids in `lo..=hi`, target `f(cosines)` (missing cosine = 0).
pub fn make_pairs(
    rng: &mut Rng,
    rows: &BTreeMap<i32, Models>,
    (lo, hi): (i32, i32),
    n: usize,
    f: &dyn Fn(&[f64], &mut Rng) -> f64,
) -> Vec<(i32, i32, f64)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (a, b) = (rng.range(lo, hi), rng.range(lo, hi));
        if a == b {
            continue;
        }
        let x: Vec<f64> =
            (0..rows[&a].len()).map(|k| cos(&rows[&a][k], &rows[&b][k]).unwrap_or(0.0)).collect();
        let y = f(&x, rng);
        out.push((a, b, y));
    }
    out
}

/// Creates `table (a int, b int, y float8)` and COPYs the pairs in (f64 printed exactly).
pub fn load_pairs(c: &mut Client, table: &str, pairs: &[(i32, i32, f64)]) {
    c.batch_execute(&format!("CREATE TABLE {table} (a int NOT NULL, b int NOT NULL, y float8)")).unwrap();
    let mut w = c.copy_in(&format!("COPY {table} (a, b, y) FROM STDIN")).unwrap();
    for (a, b, y) in pairs {
        writeln!(w, "{a}\t{b}\t{y:?}").unwrap();
    }
    w.finish().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_copy_fields() {
        assert_eq!(lit(&[1.0, -0.5, 0.1]), "[1,-0.5,0.1]");
        assert_eq!(vec_sql(&None), "NULL::vector");
        assert_eq!(models_sql(&vec![Some(vec![1.0]), None]), "ARRAY['[1]'::vector, NULL::vector]::vector[]");
        assert_eq!(copy_field(&None), "\\N");
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!(a.next_u64(), b.next_u64());
        for _ in 0..1000 {
            let r = a.range(3, 5);
            assert!((3..=5).contains(&r));
            let s = a.sym();
            assert!((-1.0..1.0).contains(&s));
        }
    }
}
