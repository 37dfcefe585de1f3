//! Maps errors of the pure core to Postgres errors with the SQLSTATEs of docs/design.md §4.

use embedstack_math::vector::VectorError;
use pgrx::prelude::*;

/// Raises `e` as an ERROR: dimension mismatch → 22000, non-finite element → 22023.
#[cold]
pub fn raise_vector_error(e: VectorError) -> ! {
    let code = match e {
        VectorError::DimensionMismatch { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        VectorError::NonFinite { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
    };
    ereport!(PgLogLevel::ERROR, code, e.to_string());
    unreachable!()
}

/// Unwraps a core result, raising its error with the right SQLSTATE.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, VectorError> {
    #[inline]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise_vector_error(e),
        }
    }
}

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
