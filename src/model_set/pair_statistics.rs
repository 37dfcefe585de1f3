//! `pair_statistics(model_set, pairs, …)`: the regression state (as `regression_stats`
//! returns) of a model set's pair features, computed from the stored columns through the pair
//! scan (`pair_scan.rs`).

use pgrx::prelude::*;

use super::catalog;
use super::pair_scan::PairSource;
use crate::datatype::regclass::RegClass;
use crate::errors::require;
use crate::operations::pinned_path::with_pinned_search_path;

/// The regression statistics state (as `regression_stats` returns) of the pairs' features,
/// computed from the model set's stored columns: one cosine per model. A pair is skipped and
/// counted when a key is not in the source, a vector is NULL or zero, or the target or weight
/// is NULL.
#[pg_extern(volatile, parallel_unsafe)]
fn pair_statistics(
    model_set: Option<&str>,
    pairs: Option<RegClass>,
    left_column: Option<&str>,
    right_column: Option<&str>,
    target_column: Option<&str>,
    sample_weight_column: default!(Option<&str>, "NULL"),
) -> Vec<f64> {
    let name = require(model_set, "model_set");
    let pairs = require(pairs, "pairs").0;
    let (l, r, t) = (
        require(left_column, "left_column"),
        require(right_column, "right_column"),
        require(target_column, "target_column"),
    );
    // The search path pinned before the catalog is read (src/operations/pinned_path.rs).
    with_pinned_search_path(|| {
        Spi::connect_mut(|client| {
            let def = catalog::load(client, name);
            let src = PairSource::new(client, pairs, l, r, t, sample_weight_column);
            super::pair_scan::pair_statistics(client, &def, &src).to_vec()
        })
    })
}
