//! Errors: the one place where each error type of the pure core gets its SQLSTATE and HINT
//! (docs/design.md §4), the errors about a stored row, and the few helpers every module uses.
//!
//! * Core errors implement [`PgError`] here and are raised with [`OrRaise::or_raise`] (or
//!   [`raise`] with a context such as "model 2: ").
//! * [`OrInternal::or_internal`] is for results that can only fail when the extension itself is
//!   wrong (SPI misuse, a datum of another type than our own query returns): XX000, as pgrx's
//!   `error!`. Errors PostgreSQL raises inside SPI (a permission, a cast) are not these: they
//!   propagate with their own SQLSTATE before any Result is returned.
//! * Row errors name the row's key and the column, so a user can find and fix the row; the key
//!   is replaced by [`HIDDEN_KEY`] for a role that may not read it ([`with_keys_hidden`]).

use embedstack_math::combine::{CombineError, ScaleError};
use embedstack_math::eval::EvalError;
use embedstack_math::regstats::{StatsError, MAX_FEATURES};
use embedstack_math::solve::SolveError;
use embedstack_math::vector::VectorError;
use pgrx::prelude::*;

/// `ereport!` with a HINT: pgrx's `ereport!` puts its fourth argument in DETAIL, but "what to
/// do about it" belongs in HINT, where psql and drivers show it as such.
#[macro_export]
macro_rules! ereport_hint {
    (ERROR, $code:expr, $msg:expr, $hint:expr $(,)?) => {{
        ::pgrx::pg_sys::panic::ErrorReport::new($code, $msg, ::pgrx::pg_sys::function_name!())
            .set_hint($hint)
            .report(::pgrx::PgLogLevel::ERROR);
        unreachable!()
    }};
    ($level:ident, $code:expr, $msg:expr, $hint:expr $(,)?) => {
        ::pgrx::pg_sys::panic::ErrorReport::new($code, $msg, ::pgrx::pg_sys::function_name!())
            .set_hint($hint)
            .report(::pgrx::PgLogLevel::$level)
    };
}

/// Raises an ERROR with `code` and `msg` (no HINT).
#[cold]
pub fn fail(code: PgSqlErrorCode, msg: impl Into<String>) -> ! {
    ereport!(PgLogLevel::ERROR, code, msg.into());
    unreachable!()
}

/// Raises an ERROR with `code`, `msg` and `hint`.
#[cold]
pub fn fail_hint(code: PgSqlErrorCode, msg: impl Into<String>, hint: impl Into<String>) -> ! {
    crate::ereport_hint!(ERROR, code, msg.into(), hint.into())
}

/// An error of the pure core, as PostgreSQL reports it.
pub trait PgError: std::fmt::Display {
    fn sqlstate(&self) -> PgSqlErrorCode;
    fn hint(&self) -> Option<String> {
        None
    }
}

/// HINT of every 22003 raised for statistics or results out of the float8 range.
pub const OVERFLOW_HINT: &str =
    "rescale the features or the labels (for example divide the labels by a constant) \
     so that their squares and cross-products fit in double precision";

/// Dimension mismatch → 22000 (pgvector's wording style); a NaN or infinite element → 22023.
impl PgError for VectorError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            VectorError::DimensionMismatch { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            VectorError::NonFinite { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
}

/// As [`VectorError`]: a block of the wrong dimension → 22000, a non-finite element → 22023.
impl PgError for CombineError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            CombineError::Dimension { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            CombineError::NonFinite { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            CombineError::Dimension { .. } => Some(
                "fix or NULL the row's vector; every row of a model column must have the model's dimension"
                    .into(),
            ),
            CombineError::NonFinite { .. } => None,
        }
    }
}

/// Every scale error is an invalid argument (22023); symmetric mode without a positive weight
/// says what to do instead.
impl PgError for ScaleError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
    }
    fn hint(&self) -> Option<String> {
        match self {
            ScaleError::NoPositiveWeight { .. } => Some(
                "use mode 'query_weighted' (negative weights work there), or refit with nonnegative => true"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// * `FeatureCount` → 22000 `data_exception` (arrays of different lengths);
/// * `NonFinite`, `NegativeWeight` → 22023 `invalid_parameter_value`;
/// * `Corrupt` → 22023: a forged, truncated or inconsistent state is an invalid argument value
///   (22P02 is about parsing text, and the state arrives as a float8[] that parsed fine);
/// * `TooManyFeatures` → 54000 `program_limit_exceeded`, with a HINT naming the limit;
/// * `Overflow` → 22003 `numeric_value_out_of_range`, with a HINT to rescale.
impl PgError for StatsError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            StatsError::FeatureCount { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            StatsError::NonFinite { .. } | StatsError::NegativeWeight(_) | StatsError::Corrupt(_) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            StatsError::TooManyFeatures { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            StatsError::Overflow(_) => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            StatsError::TooManyFeatures { got } => Some(format!(
                "a regression state is limited to {MAX_FEATURES} features (its size and the solve time grow \
                 with the square and the cube of the count), got {got}: fit fewer models or features at once"
            )),
            StatsError::Overflow(_) => Some(OVERFLOW_HINT.into()),
            // The message names what is wrong with the state.
            _ => None,
        }
    }
}

/// * `InvalidOption` → 22023 `invalid_parameter_value`;
/// * `State` → as [`StatsError`] (22000 / 22023 / 54000 / 22003);
/// * `Overflow` (a weight, r², rmse, mse, … beyond float8) → 22003 `numeric_value_out_of_range`;
/// * `NoConvergence` (the eigen-solver's iteration cap) → 22000 `data_exception`: the data make
///   the system numerically intractable; a ridge penalty regularises it.
impl PgError for SolveError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            SolveError::InvalidOption(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            SolveError::State(e) => e.sqlstate(),
            SolveError::Overflow(_) => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            SolveError::NoConvergence => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            SolveError::InvalidOption(_) => None,
            SolveError::State(e) => e.hint(),
            SolveError::Overflow(_) => Some(OVERFLOW_HINT.into()),
            SolveError::NoConvergence => {
                Some("use a small ridge penalty (ridge => 1e-6), or rescale the features".into())
            }
        }
    }
}

/// The covariance state of a learned projection: a bad row as the row kernels report it, a
/// forged or mismatched state 22023, limits 54000.
impl PgError for embedstack_math::covariance::CovError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use embedstack_math::covariance::CovError as E;
        match self {
            E::Row(e) => e.sqlstate(),
            E::ModelCount { .. } | E::Mismatch { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            E::Layout(_) | E::Corrupt(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            E::TooManyDims { .. } | E::Overflow => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            E::NoRows => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            embedstack_math::covariance::CovError::NoRows => {
                Some("the source has no rows to learn a projection from: insert rows first".into())
            }
            _ => None,
        }
    }
}

/// Fitting or applying a learned projection.
impl PgError for embedstack_math::projection::ProjectionError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use embedstack_math::projection::ProjectionError as E;
        match self {
            E::Weights(_) | E::NonFinite { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            E::Dimension { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            E::NoVariance => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            E::Covariance(e) => e.sqlstate(),
            E::Eigen(_) => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            embedstack_math::projection::ProjectionError::NoVariance => Some(
                "every row has the same combined vector: a projection has nothing to keep; serve without dims".into(),
            ),
            embedstack_math::projection::ProjectionError::Covariance(e) => e.hint(),
            _ => None,
        }
    }
}

/// A label or score that is NaN or infinite cannot be correlated: 22023.
impl PgError for EvalError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
    }
}

/// Raises `e` as an ERROR, its message prefixed with `context` ("" for none).
#[cold]
pub fn raise<E: PgError>(e: E, context: &str) -> ! {
    let msg = format!("{context}{e}");
    match e.hint() {
        Some(h) => fail_hint(e.sqlstate(), msg, h),
        None => fail(e.sqlstate(), msg),
    }
}

/// Raises `e` with its SQLSTATE and HINT but a message of the caller's (one that names a row
/// and a column instead of a model number).
#[cold]
pub fn raise_with_message<E: PgError>(e: &E, msg: String) -> ! {
    match e.hint() {
        Some(h) => fail_hint(e.sqlstate(), msg, h),
        None => fail(e.sqlstate(), msg),
    }
}

/// Unwraps a core result, raising its error with the right SQLSTATE.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
    /// With a context prefix for the message, e.g. "model 2: ".
    fn or_raise_in(self, context: &str) -> T;
}

impl<T, E: PgError> OrRaise<T> for Result<T, E> {
    #[inline]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e, ""),
        }
    }
    #[inline]
    fn or_raise_in(self, context: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e, context),
        }
    }
}

/// Unwraps a result whose error would be a bug of the extension (XX000).
pub trait OrInternal<T> {
    fn or_internal(self) -> T;
}

impl<T, E: std::fmt::Display> OrInternal<T> for Result<T, E> {
    #[inline]
    #[track_caller]
    fn or_internal(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => error!("{e}"),
        }
    }
}

/// ERROR 22004 for a required argument given as NULL.
pub fn require<T>(v: Option<T>, what: &str) -> T {
    v.unwrap_or_else(|| {
        fail(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{what} must not be NULL"))
    })
}

// ---------------------------------------------------------------- errors about a stored row

/// 22004: a NULL element inside a stored model vector.
#[cold]
pub fn raise_null_element(key: &str, column: &str, position: usize) -> ! {
    fail_hint(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!(
            "row with key {}: column {column} contains a NULL element at position {position}",
            shown_key(key)
        ),
        "use a NULL array for a missing vector; a NULL element is not a value",
    )
}

/// XX001: a stored value whose bytes are not a value of the column's type.
#[cold]
pub fn raise_corrupt_value(key: &str, column: &str, what: &str) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("row with key {}: column {column} holds a malformed value: {what}", shown_key(key)),
    )
}

/// XX001: a pgvector value whose header does not match its size.
#[cold]
pub fn raise_corrupt_vector(size: usize, dim: i32) -> ! {
    fail_hint(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("corrupt pgvector value: {size} bytes, dimension {dim}"),
        "a vector has an 8-byte header followed by 4 bytes per dimension",
    )
}

/// XX001: a catalog row the extension's own writers would never produce.
#[cold]
pub fn raise_corrupt_catalog(model_set: &str, what: &str) -> ! {
    fail_hint(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("model set \"{model_set}\": inconsistent catalog row: {what}"),
        "the catalog is written by embedstack's functions only; drop the model set and create it again",
    )
}

/// Any other error about one column of one row (`what` completes "row with key K: column C …").
#[cold]
pub fn raise_row_error(code: PgSqlErrorCode, key: &str, column: &str, what: &str) -> ! {
    fail(code, format!("row with key {}: column {column} {what}", shown_key(key)))
}

/// 22000 for a row whose model vector has another dimension than the model set's, with a HINT
/// that finds all such rows at once (0.3.0 reported one bad row per attempt).
pub fn raise_dimension_error(model_set: &str, key: &str, column: &str, found: usize, expected: usize) -> ! {
    fail_hint(
        PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        format!(
            "row with key {}: column {column} has {found} dimensions, the model set expects {expected}",
            shown_key(key)
        ),
        format!(
            "SELECT * FROM embedstack.check('{}') counts the rows of every other dimension and gives the query that \
             lists them",
            model_set.replace('\'', "''")
        ),
    )
}

// ------------------------------------------------- keys hidden from a role that may not read them

/// What a row error says instead of the key, to a role that may not read the key (see
/// [`with_keys_hidden`]).
pub const HIDDEN_KEY: &str = "(hidden: no SELECT privilege on the key)";

thread_local! {
    /// Whether row errors raised now must not show the row's key.
    static KEYS_HIDDEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether row errors raised now hide the row's key.
pub fn keys_hidden() -> bool {
    KEYS_HIDDEN.with(std::cell::Cell::get)
}

/// `key` as a row error shows it: [`HIDDEN_KEY`] while keys are hidden.
pub fn shown_key(key: &str) -> &str {
    if keys_hidden() {
        HIDDEN_KEY
    } else {
        key
    }
}

/// The key `key` computes, as a row error shows it; `key` is not called while keys are hidden
/// (it runs the key type's output function).
pub fn shown_key_of(key: &dyn Fn() -> String) -> String {
    if keys_hidden() {
        HIDDEN_KEY.to_string()
    } else {
        key()
    }
}

/// Runs `f` with the row keys hidden from every row error it raises when `hide` (or when an
/// enclosing call already hides them: a nested trigger never shows what the outer statement's
/// role may not see). The previous state is restored when `f` returns or raises.
///
/// The freshness trigger runs its statements as the source's owner; the row kernels they call
/// (`_combine_vector`) name the row's key in their errors, which reach the role whose statement
/// fired the trigger. PostgreSQL itself never shows a row's values in an error to a role that
/// may not SELECT them (`ExecBuildSlotValueDescription`): a role that may UPDATE a model column
/// but not read the key must not learn key values from our errors either.
pub fn with_keys_hidden<R>(hide: bool, f: impl FnOnce() -> R) -> R {
    let previous = keys_hidden();
    KEYS_HIDDEN.with(|c| c.set(previous || hide));
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .finally(move || KEYS_HIDDEN.with(|c| c.set(previous)))
        .execute()
}

/// Whether `role` may see the value of column `attnum` of relation `relid` in an error, by
/// PostgreSQL's own rule for row contents in errors (`ExecBuildSlotValueDescription`): not when
/// row security applies to the role on the relation; otherwise when it holds SELECT on the
/// relation or on the column. (PostgreSQL also shows the columns the statement itself wrote;
/// this rule does not, so it is stricter: a key the role inserted but may not read is hidden
/// too.) `attnum` ≤ 0 (the column is not known) checks the relation-level privilege only.
pub fn role_may_see_column(relid: pg_sys::Oid, attnum: i16, role: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups for an open relation and a role OID.
    unsafe {
        if pg_sys::check_enable_rls(relid, role, true) == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
            return false;
        }
        let select = pg_sys::ACL_SELECT as pg_sys::AclMode;
        pg_sys::pg_class_aclcheck(relid, role, select) == pg_sys::AclResult::ACLCHECK_OK
            || (attnum > 0
                && pg_sys::pg_attribute_aclcheck(relid, attnum, role, select)
                    == pg_sys::AclResult::ACLCHECK_OK)
    }
}
