//! `evaluate(model_set, pairs, …, ablation)`: held-out correlations of each model's cosine, of
//! the served score and of the fit's prediction with the labels; with `ablation`, also of the
//! stack refitted without each model in turn (from the fit's stored regression statistics, in
//! the same single pass over the pairs).

use embedstack_math::combine::scales;
use embedstack_math::eval::{pearson_checked, spearman_checked};
use embedstack_math::regstats::RegStats;
use embedstack_math::solve::{solve_without, SolveOptions};
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
///
/// `ablation => true` adds one row `(without <model>)` per model (none when the model set has a
/// single model): the prediction `b⁽ᵏ⁾ + Σ_{j≠k} w⁽ᵏ⁾_j x_j` of the fit refitted without model
/// `k` — solved from the fit's stored statistics (`fits.state`) with feature `k`'s row and column
/// removed, with the fit's options (`fits.options`: ridge, nonnegative, fit_intercept) — scored
/// on the pairs whose other features are all present. The same scan feeds every row.
#[pg_extern(volatile, parallel_unsafe)]
fn evaluate(
    model_set: Option<&str>,
    pairs: Option<RegClass>,
    left_column: Option<&str>,
    right_column: Option<&str>,
    target_column: Option<&str>,
    fit_id: default!(Option<i64>, "NULL"),
    ablation: default!(Option<bool>, "false"),
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
    let ablation = require(ablation, "ablation");
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
            let k = def.dims.len();
            // The refits without each model, before the scan (a bad stored state fails fast).
            let without: Vec<Option<(Vec<f64>, f64)>> =
                if ablation && k > 1 { ablation_fits(client, &def, fit) } else { Vec::new() };
            let mut ablated: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); without.len()];
            let src = PairSource::new(client, pairs, l, r, t, None);
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
                for (m, refit) in without.iter().enumerate() {
                    let Some((w, b)) = refit else { continue };
                    let others = p.features.iter().enumerate().filter(|(j, _)| *j != m).map(|(_, f)| *f);
                    if let Some(x) = others.clone().collect::<Option<Vec<f64>>>() {
                        ablated[m].0.push(b + x.iter().zip(w).map(|(x, w)| x * w).sum::<f64>());
                        ablated[m].1.push(y);
                    }
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
            for (c, d) in def.model_columns.iter().zip(&ablated) {
                out.push(row(format!("(without {c})"), d));
            }
            out
        })
    });
    TableIterator::new(rows)
}

pub(super) fn latest_fit(client: &pgrx::spi::SpiClient<'_>, name: &str) -> Option<i64> {
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

/// For each model `k`, the weights and intercept of fit `fit` refitted without it: solved from
/// the fit's stored regression state with feature `k` removed, with the fit's solver options.
/// `None` for a refit without rows (a state without used rows cannot be recorded, but is not
/// trusted either).
fn ablation_fits(
    client: &pgrx::spi::SpiClient<'_>,
    def: &ModelSetDef,
    fit: i64,
) -> Vec<Option<(Vec<f64>, f64)>> {
    let row = client
        .select(
            "SELECT f.state,
                    pg_catalog.jsonb_extract_path_text(f.options, 'ridge')::pg_catalog.float8,
                    pg_catalog.jsonb_extract_path_text(f.options, 'nonnegative')::pg_catalog.bool,
                    pg_catalog.jsonb_extract_path_text(f.options, 'fit_intercept')::pg_catalog.bool
               FROM embedstack.fits f
              WHERE f.id OPERATOR(pg_catalog.=) $1::pg_catalog.int8
                AND f.model_set OPERATOR(pg_catalog.=) $2::pg_catalog.text",
            Some(1),
            &[fit.into(), def.name.as_str().into()],
        )
        .or_internal()
        .next()
        .map(|r| {
            (
                r.get::<Vec<f64>>(1).or_internal().unwrap_or_default(),
                r.get::<f64>(2).or_internal(),
                r.get::<bool>(3).or_internal(),
                r.get::<bool>(4).or_internal(),
            )
        });
    // (fit_weights found the fit a moment ago, in the same snapshot.)
    let Some((state, ridge, nonnegative, fit_intercept)) = row else {
        crate::errors::fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("fit {fit} of model set \"{}\" does not exist", def.name),
        )
    };
    let st = RegStats::from_slice(&state).unwrap_or_else(|e| {
        crate::errors::raise_corrupt_catalog(&def.name, &format!("the state of fit {fit}: {e}"))
    });
    if st.k != def.dims.len() {
        crate::errors::raise_corrupt_catalog(
            &def.name,
            &format!("the state of fit {fit} has {} features for {} models", st.k, def.dims.len()),
        );
    }
    // Options a fit does not record take the defaults of embedstack.fit.
    let opts = SolveOptions {
        ridge: ridge.unwrap_or(0.0),
        nonnegative: nonnegative.unwrap_or(false),
        fit_intercept: fit_intercept.unwrap_or(true),
    };
    (0..st.k).map(|m| solve_without(&st, m, opts).or_raise().map(|f| (f.weights, f.intercept))).collect()
}
