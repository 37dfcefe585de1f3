//! Model sets: a catalog of which columns form a stack (sql/catalog.sql, sql/model_sets.sql),
//! features and evaluation from stored columns, the materialise row kernel, the serving query
//! vector and the freshness trigger.

mod call_cache;
pub mod catalog;
mod combine_fn;
mod evaluate;
mod explain;
mod fit_threads;
mod freshness;
mod key_compare;
mod legacy_row_trigger;
mod output;
mod pair_scan;
mod pair_statistics;
pub mod projection;
mod query_vector;
mod score;
mod spi_scan;

use embedstack_math::combine::{scales, Mode};

use crate::errors::OrRaise;
use pgrx::prelude::*;

/// Multipliers of the stored blocks for `weights` in `mode` with `threshold`: symmetric mode
/// `sqrt(w_k / w_max)` for kept models and 0 for left-out ones; query-weighted mode 1 for all.
#[pg_extern(immutable, strict, parallel_safe)]
fn block_multipliers(weights: Array<'_, f64>, mode: &str, threshold: f64) -> Vec<f64> {
    let weights = crate::datatype::float_array::non_null_slice(&weights, "weights");
    let Some(mode) = Mode::parse(mode) else {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown mode \"{mode}\""),
            "mode is 'symmetric' or 'query_weighted'"
        );
    };
    scales(weights, mode, threshold).or_raise().stored
}
