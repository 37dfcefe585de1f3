//! `evaluate(model_set, pairs, …)`: held-out correlations of each model's cosine, of the
//! served score and of the fit's prediction with the labels.

use embedstack_math::combine::scales;
use embedstack_math::eval::{pearson_checked, spearman_checked};
use pgrx::prelude::*;

use super::catalog::{self, ModelSetDef};
use super::pair_scan::{for_each_pair, PairSource};
use crate::datatype::regclass::RegClass;
use crate::errors::{require, OrInternal, OrRaise};
use crate::operations::pinned_path::with_pinned_search_path;

/// Held-out evaluation: one row per model (its cosine alone), one for `(stack)` — the score
/// the served vectors rank by, `Σ s_k x_k` over the mode's score weights, a missing or zero
/// block counting 0 — and one for `(fit)` — the regression's prediction
/// `intercept + Σ w_k x_k` on pairs with every feature. `n` counts the pairs each row used.
#[pg_extern(volatile, parallel_unsafe)]
fn evaluate(
    model_set: Option<&str>,
    pairs: Option<RegClass>,
    left_column: Option<&str>,
    right_column: Option<&str>,
    target_column: Option<&str>,
    fit_id: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (name!(model, String), name!(n, i64), name!(pearson, Option<f64>), name!(spearman, Option<f64>)),
> {
    let name = require(model_set, "model_set");
    let pairs = require(pairs, "pairs").0;
    let (l, r, t) = (
        require(left_column, "left_column"),
        require(right_column, "right_column"),
        require(target_column, "target_column"),
    );
    // The search path pinned before the catalog is read (src/operations/pinned_path.rs).
    let rows = with_pinned_search_path(|| {
        Spi::connect_mut(|client| {
            let def: ModelSetDef = catalog::load(client, name);
            let fit = fit_id.or(def.active_fit).or_else(|| latest_fit(client, name));
            let Some(fit) = fit else {
                crate::ereport_hint!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("model set \"{name}\" has no fit"),
                    "run embedstack.fit first"
                );
            };
            let (weights, intercept) = catalog::fit_weights(client, name, fit);
            let score = match scales(&weights, def.mode, def.threshold) {
                Ok(s) => Some(s.score),
                Err(_) => None, // e.g. symmetric mode with no positive weight: no served score
            };
            let src = PairSource::new(client, pairs, l, r, t, None);
            let k = def.dims.len();
            let mut per_model: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); k];
            let (mut stack, mut pred) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
            for_each_pair(client, &def, &src, |p| {
                let Some(y) = p.y else { return };
                if !p.found {
                    return;
                }
                for (m, f) in p.features.iter().enumerate() {
                    if let Some(v) = f {
                        per_model[m].0.push(*v);
                        per_model[m].1.push(y);
                    }
                }
                if let Some(s) = &score {
                    stack.0.push(p.features.iter().zip(s).map(|(f, s)| f.unwrap_or(0.0) * s).sum::<f64>());
                    stack.1.push(y);
                }
                if p.features.iter().all(Option::is_some) {
                    pred.0.push(
                        intercept + p.features.iter().zip(&weights).map(|(f, w)| f.unwrap() * w).sum::<f64>(),
                    );
                    pred.1.push(y);
                }
            });
            // A NaN or infinite label is an error (22023), never a silent NULL correlation.
            let row = |label: String, (x, y): &(Vec<f64>, Vec<f64>)| {
                (label, x.len() as i64, pearson_checked(x, y).or_raise(), spearman_checked(x, y).or_raise())
            };
            let mut out: Vec<_> =
                def.model_columns.iter().zip(&per_model).map(|(c, d)| row(c.clone(), d)).collect();
            if score.is_some() {
                out.push(row("(stack)".into(), &stack));
            }
            out.push(row("(fit)".into(), &pred));
            out
        })
    });
    TableIterator::new(rows)
}

fn latest_fit(client: &pgrx::spi::SpiClient<'_>, name: &str) -> Option<i64> {
    client
        .select(
            "SELECT pg_catalog.max(f.id) FROM embedstack.fits f
              WHERE f.model_set OPERATOR(pg_catalog.=) $1::pg_catalog.text",
            Some(1),
            &[name.into()],
        )
        .and_then(|t| t.first().get_one::<i64>())
        .or_internal()
}
