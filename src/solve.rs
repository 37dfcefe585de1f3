//! `solve(state, …) → fit`, the `fit_weights` final function and exact k-fold
//! cross-validation from stored per-fold states. Thin glue over `embedstack_math::solve`.
//!
//! Also the bridge that lets the core's long loops honour `statement_timeout` and cancel
//! requests: [`register_interrupt_hook`].

use std::sync::OnceLock;

use embedstack_math::regstats::{split_states, RegStats};
use embedstack_math::solve::{
    cross_validate as cv_core, prediction_mse as prediction_mse_core, solve as solve_core, Fit, SolveOptions,
};
use pgrx::prelude::*;

use crate::errors::OrRaise;
use crate::regression_state::parse_state;

/// The thread that installed the interrupt hook: the backend's own (`_PG_init` runs on it).
static BACKEND_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();

/// The core's interrupt hook: Postgres' `CHECK_FOR_INTERRUPTS()`, on the backend's thread only.
/// The fit also runs core code (the per-pair kernels of `model_set::pairs`) on helper threads,
/// which must never call into Postgres; there the hook does nothing, and the backend thread
/// checks between segments itself.
fn interrupt_hook() {
    if BACKEND_THREAD.get() == Some(&std::thread::current().id()) {
        // Raises (57014 on cancel or statement_timeout) by unwinding through the core, which
        // holds only owned Rust memory at its check points.
        pgrx::check_for_interrupts!();
    }
}

/// Installs [`interrupt_hook`] as the core's hook (`embedstack_math::interrupt`), recording the
/// calling thread as the backend's. Call once from `_PG_init`.
pub fn register_interrupt_hook() {
    let _ = BACKEND_THREAD.set(std::thread::current().id());
    embedstack_math::interrupt::set_interrupt_hook(interrupt_hook);
}

extension_sql!(
    r#"
CREATE TYPE embedstack.fit AS (
    weights          double precision[],
    intercept        double precision,
    r2               double precision,
    rmse             double precision,
    n_used           bigint,
    n_skipped        bigint,
    condition_number double precision,
    std_errors       double precision[],
    rank             integer,
    collinear        integer[]
);
"#,
    name = "fit_type",
    bootstrap
);

fn to_composite(fit: Fit) -> pgrx::composite_type!('static, "embedstack.fit") {
    let mut t = PgHeapTuple::new_composite_type("embedstack.fit").unwrap();
    t.set_by_name("weights", fit.weights).unwrap();
    t.set_by_name("intercept", fit.intercept).unwrap();
    t.set_by_name("r2", fit.r2).unwrap();
    t.set_by_name("rmse", fit.rmse).unwrap();
    t.set_by_name("n_used", fit.n_used as i64).unwrap();
    t.set_by_name("n_skipped", fit.n_skipped as i64).unwrap();
    t.set_by_name("condition_number", fit.condition_number).unwrap();
    t.set_by_name("std_errors", fit.std_errors).unwrap();
    t.set_by_name("rank", fit.rank as i32).unwrap();
    let collinear: Vec<i32> = fit.collinear.iter().map(|&i| i as i32 + 1).collect();
    t.set_by_name("collinear", collinear).unwrap();
    t
}

fn solve_state(
    st: &RegStats,
    opts: SolveOptions,
) -> Option<pgrx::composite_type!('static, "embedstack.fit")> {
    let fit = solve_core(st, opts).or_raise()?;
    let needed = st.k as u64 + u64::from(opts.fit_intercept);
    if st.n < needed && opts.ridge == 0.0 {
        // Fewer rows than unknowns: the cause of the rank deficiency, said as such (P8 of the
        // 0.3.0 trial: "collinear" sent users looking for a modelling problem).
        crate::ereport_hint!(
            WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "only {} usable rows for {} weights{}: at least {needed} are needed, the weights are not determined \
                 (minimum-norm solution)",
                st.n,
                st.k,
                if opts.fit_intercept { " and the intercept" } else { "" }
            ),
            "label more pairs (a model set's fit then is not what a plain materialize serves)"
        );
    } else if !fit.collinear.is_empty() {
        let names: Vec<String> = fit.collinear.iter().map(|i| (i + 1).to_string()).collect();
        crate::ereport_hint!(
            WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "features {} are collinear (rank {} of {}); returning the minimum-norm solution",
                names.join(", "),
                fit.rank,
                st.k
            ),
            "drop one of the collinear features, or use ridge => alpha"
        );
    }
    Some(to_composite(fit))
}

/// Solves a stored or aggregated regression state. NULL when the state has no usable rows.
#[pg_extern(immutable, strict, parallel_safe)]
fn solve(
    state: Array<'_, f64>,
    ridge: default!(f64, 0.0),
    nonnegative: default!(bool, false),
    fit_intercept: default!(bool, true),
) -> Option<pgrx::composite_type!('static, "embedstack.fit")> {
    solve_state(&parse_state(&state), SolveOptions { ridge, nonnegative, fit_intercept })
}

/// Final function of `fit_weights`: OLS with intercept (scikit-learn `LinearRegression`).
#[pg_extern(immutable, parallel_safe)]
fn fit_weights_final(
    state: Option<Array<'_, f64>>,
) -> Option<pgrx::composite_type!('static, "embedstack.fit")> {
    solve_state(&parse_state(&state?), SolveOptions::default())
}

/// Exact k-fold cross-validation: `fold_states` holds one regression state per fold (e.g.
/// `array_agg(state)` over `GROUP BY fold`); each fold is scored by the model fitted on all
/// the others, from the statistics alone. One row per candidate ridge penalty.
#[pg_extern(immutable, strict, parallel_safe)]
fn cross_validate(
    fold_states: Array<'_, f64>,
    ridges: Array<'_, f64>,
    nonnegative: default!(bool, false),
    fit_intercept: default!(bool, true),
) -> TableIterator<
    'static,
    (name!(ridge, f64), name!(mse, Option<f64>), name!(r2, Option<f64>), name!(folds, i32)),
> {
    let flat = crate::datatype::float_array::non_null_slice(&fold_states, "fold_states");
    let ridges = crate::datatype::float_array::non_null_slice(&ridges, "ridges").to_vec();
    // A 2-D array of equally long states, one per row; each length comes from its header,
    // whose feature count is checked against MAX_FEATURES first.
    let folds: Vec<RegStats> = split_states(flat).or_raise();
    if folds.len() < 2 {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cross-validation needs at least 2 fold states, got {}", folds.len())
        );
    }
    let opts = SolveOptions { ridge: 0.0, nonnegative, fit_intercept };
    let rows = cv_core(&folds, &ridges, opts).or_raise();
    TableIterator::new(rows.into_iter().map(|r| (r.ridge, r.mse, r.r2, r.folds as i32)))
}

/// Weighted mean squared error of the prediction `intercept + weights·x` over the rows a state
/// summarises, exactly and without a scan (`solve::prediction_mse`). NULL for a state without
/// rows; 22003 when the error exceeds float8 (never a NaN reported as 0). This is how `refit`
/// compares a new fit with the active one on held-out pairs.
#[pg_extern(immutable, strict, parallel_safe)]
fn prediction_mse(state: Array<'_, f64>, weights: Vec<Option<f64>>, intercept: f64) -> Option<f64> {
    let st = parse_state(&state);
    if weights.len() != st.k {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("{} weights for a state of {} features", weights.len(), st.k)
        );
    }
    let Some(w) = weights.into_iter().collect::<Option<Vec<f64>>>() else {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "weights must not contain NULL"
        );
        unreachable!()
    };
    if !intercept.is_finite() || w.iter().any(|x| !x.is_finite()) {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "weights and intercept must be finite"
        );
    }
    prediction_mse_core(&st, &w, intercept).or_raise()
}
