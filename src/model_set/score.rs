//! `score(model_set, a_key, b_key)`: the score the served index ranks a pair by, at full
//! precision — from the two rows' model vectors, never through the stored (possibly projected,
//! possibly halfvec) vectors. Meant for re-ranking the candidates a projected set's index
//! returns (README, "Serving more dimensions than the index takes"):
//!
//! `intercept + Σ w_k · cos_k` over the models the served vector keeps, with the served fit's
//! weights; a model whose vector is NULL or zero on either side counts 0, as in the served
//! vectors. In symmetric mode this is `intercept + w_max · (a's unprojected served vector · b's)`,
//! in query-weighted mode `intercept + query_vector(a) · b` unprojected: the same order as the
//! exact unprojected served score, and the fit's prediction when every model is kept and present.

use embedstack_math::entity_cache::{pair_features, ElemKind, EntityChunk};
use pgrx::datum::AnyElement;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::call_cache;
use super::catalog::{self, ModelSetDef};
use super::explain::{as_key_type, entity_layout, read_entity, Side};
use super::key_compare::KeyColumn;
use crate::operations::pinned_path::with_pinned_search_path;

/// What one call site keeps for the rest of the query while `model_set` and `a_key` stay the
/// same (call_cache.rs): re-ranking scores many b against one a.
struct Fixed {
    def: ModelSetDef,
    key: KeyColumn,
    /// The served fit's weight of each model the served vector keeps, 0 for the others.
    served_weights: Vec<f64>,
    intercept: f64,
    /// Each model's block layout, for b's row.
    layout: Vec<(usize, ElemKind)>,
    /// a's row (one entity).
    a: EntityChunk,
}

/// The served score of the stored rows `a_key` and `b_key` before any projection. STRICT: a NULL
/// argument gives NULL. 55000 when the model set serves nothing; P0002 naming the argument when a
/// key has no row.
#[pg_extern(stable, strict, parallel_restricted, name = "score")]
fn score_keys(
    model_set: &str,
    a_key: AnyElement,
    b_key: AnyElement,
    fcinfo: pg_sys::FunctionCallInfo,
) -> f64 {
    score(model_set, (a_key.datum(), a_key.oid()), (b_key.datum(), b_key.oid()), fcinfo)
}

/// The same for keys given as text (quoted literals, which a polymorphic argument cannot take),
/// read with the key type's input function as `query_vector(model_set, text)` reads them.
#[pg_extern(stable, strict, parallel_restricted, name = "score")]
fn score_text_keys(model_set: &str, a_key: &str, b_key: &str, fcinfo: pg_sys::FunctionCallInfo) -> f64 {
    let text = |k: &str| (k.into_datum().expect("text datum"), pg_sys::TEXTOID);
    score(model_set, text(a_key), text(b_key), fcinfo)
}

fn score(
    model_set: &str,
    a: (pg_sys::Datum, pg_sys::Oid),
    b: (pg_sys::Datum, pg_sys::Oid),
    fcinfo: pg_sys::FunctionCallInfo,
) -> f64 {
    let mut args = model_set.as_bytes().to_vec();
    args.push(0);
    // SAFETY: a non-null datum of the type its OID names.
    unsafe { call_cache::datum_bytes(a.1, a.0, &mut args) };
    with_pinned_search_path(|| {
        Spi::connect(|client| {
            // SAFETY: this call's fcinfo; the call site only ever keeps a `Fixed`.
            let f = unsafe { call_cache::remembered(fcinfo, args, || fixed(client, model_set, a)) };
            let b = as_key_type(&f.def, &f.key, Side { which: "b_key", datum: b.0, oid: b.1 });
            let (eb, _) = read_entity(client, &f.def, &f.key, &b, &f.layout);
            let mut x = vec![None; f.def.dims.len()];
            pair_features(&f.a, 0, &eb, 0, &mut x);
            f.intercept + f.served_weights.iter().zip(&x).map(|(w, x)| w * x.unwrap_or(0.0)).sum::<f64>()
        })
    })
}

/// The model set, its served fit and a's row.
fn fixed(client: &SpiClient<'_>, model_set: &str, a: (pg_sys::Datum, pg_sys::Oid)) -> Fixed {
    let def: ModelSetDef = catalog::load(client, model_set);
    let (Some(layout), Some(fit)) = (&def.served, def.active_fit) else {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("model set \"{model_set}\" serves nothing"),
            "CALL embedstack.materialize first; embedstack.explain scores a pair under any fit"
        );
    };
    let (weights, intercept) = catalog::fit_weights(client, model_set, fit);
    let k = def.dims.len();
    if weights.len() != k || layout.multipliers.len() != k {
        crate::errors::raise_corrupt_catalog(
            model_set,
            &format!(
                "fit {fit} has {} weights and the served layout {} multipliers for {k} models",
                weights.len(),
                layout.multipliers.len()
            ),
        );
    }
    let served_weights =
        weights.iter().zip(&layout.multipliers).map(|(&w, &m)| if m != 0.0 { w } else { 0.0 }).collect();
    let mut cols: Vec<&str> = vec![&def.key_column];
    cols.extend(def.model_columns.iter().map(String::as_str));
    catalog::require_model_set_columns(&def, &cols);
    let key = KeyColumn::load(client, def.source_oid, &def.source_sql, &def.key_column);
    let side = as_key_type(&def, &key, Side { which: "a_key", datum: a.0, oid: a.1 });
    let layout = entity_layout(&def);
    let (a, _) = read_entity(client, &def, &key, &side, &layout);
    Fixed { def, key, served_weights, intercept, layout, a }
}
