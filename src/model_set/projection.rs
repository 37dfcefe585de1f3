//! Learned projections (issue 21, `create_model_set(…, dims => N)`): the covariance aggregate
//! over a source's rows, the fit of a generation's basis, and the basis as the row kernels
//! (`_project_vector` / `_project_halfvec`, combine_fn.rs) and `query_vector` read it.
//!
//! A projection is a row of `embedstack.projections`, written once by `_mat_prepare` (as the
//! source's owner, under the catalog's row security) and never changed: the generation that
//! serves it names it (`generations.projection`). Readers load it as the calling role, so a
//! role that cannot see the model set cannot read its basis (a basis is derived from the
//! source's rows).

use embedstack_math::covariance::CovStats;
use embedstack_math::projection::{apply_rows, basis_rows_f32, fit_served};
use embedstack_math::subspace::SubspaceOptions;
use pgrx::prelude::*;
use pgrx::{fcinfo, pg_sys, PgMemoryContexts};

use crate::datatype::model_value::{format_type, ModelKind, ModelValue, ValueError};
use crate::errors::{fail, fail_hint, OrInternal, OrRaise};
use crate::operations::pinned_path::with_pinned_search_path;

/// A generation's projection: `dims` rows of `input` values (row `j` = output coordinate `j`)
/// for the stored layout of `multipliers`.
pub struct Basis {
    pub id: i64,
    pub multipliers: Vec<f64>,
    pub rows: Vec<f32>,
    pub dims: usize,
}

impl Basis {
    /// Width of the unprojected served vector it maps.
    pub fn input(&self) -> usize {
        self.rows.len() / self.dims
    }

    /// `out = B x`.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        apply_rows(&self.rows, x, out).or_raise();
    }
}

thread_local! {
    /// The last basis loaded in this backend, with the `xmin` of its row: `query_vector` builds
    /// one query vector per call, and reading a 512 × 5,632 basis (11.5 MB) for each would cost
    /// more than the search. Reused only after the row is looked up again as the calling role
    /// (row security decides as without the cache) and has the same `xmin` (the same version).
    static LAST: std::cell::RefCell<Option<(String, std::rc::Rc<Basis>)>> = const { std::cell::RefCell::new(None) };
}

/// Loads projection `id` as the calling role sees the catalog (42704 when it does not exist or
/// the role may not see its model set), checked so that nothing downstream trusts a bad row.
pub fn load(id: i64) -> std::rc::Rc<Basis> {
    with_pinned_search_path(|| {
        Spi::connect(|client| {
            // One lookup: the row's version, and its values (read from the tuple only when the
            // cache does not hold that version: a toasted basis is detoasted when read, not before).
            let t = client
                .select(
                    "SELECT p.xmin::pg_catalog.text, p.basis, p.multipliers, p.dims FROM embedstack.projections p
                      WHERE p.id OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
                    Some(1),
                    &[id.into()],
                )
                .or_internal();
            if t.is_empty() {
                fail_hint(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                    format!("projection {id} does not exist or is not visible to this role"),
                    "a projection is read with the rights of the role that uses it: it needs SELECT on the model set's source",
                );
            }
            let row = t.first();
            let version = row.get::<String>(1).or_internal().unwrap_or_default();
            let cached = LAST.with(|l| {
                l.borrow().as_ref().filter(|(v, b)| b.id == id && *v == version).map(|(_, b)| b.clone())
            });
            if let Some(b) = cached {
                return b;
            }
            let corrupt = |what: &str| -> ! {
                fail(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("projection {id} is corrupt: {what}"))
            };
            let basis = row.get::<Array<'_, f32>>(2).or_internal().unwrap_or_else(|| corrupt("no basis"));
            if basis.contains_nulls() {
                corrupt("NULL elements in the basis");
            }
            let rows: Vec<f32> = basis.iter().map(|v| v.unwrap_or(f32::NAN)).collect();
            let multipliers: Vec<f64> =
                row.get::<Vec<f64>>(3).or_internal().unwrap_or_else(|| corrupt("no multipliers"));
            let dims = row.get::<i32>(4).or_internal().unwrap_or(0);
            if dims < 1 || rows.is_empty() || !rows.len().is_multiple_of(dims as usize) {
                corrupt(&format!("{} basis values for {dims} dimensions", rows.len()));
            }
            if rows.iter().any(|v| !v.is_finite())
                || multipliers.iter().any(|m| !(m.is_finite() && *m >= 0.0))
            {
                corrupt("non-finite basis values or multipliers");
            }
            let b = std::rc::Rc::new(Basis { id, multipliers, rows, dims: dims as usize });
            LAST.with(|l| *l.borrow_mut() = Some((version, b.clone())));
            b
        })
    })
}

/// The basis of projection `id` for one call site: loaded on its first call and kept in its
/// `FmgrInfo` (as long as the query's executor state: a batch of 10,000 rows loads it once).
///
/// # Safety
/// `fcinfo` must be the current call's.
pub unsafe fn for_call<'a>(fcinfo: pg_sys::FunctionCallInfo, id: i64) -> &'a Basis {
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        let slot = (*flinfo).fn_extra.cast::<std::rc::Rc<Basis>>();
        if !slot.is_null() {
            let cached: &std::rc::Rc<Basis> = &*slot;
            if cached.id == id {
                return cached;
            }
        }
        let b = load(id);
        if slot.is_null() {
            let mut cx = PgMemoryContexts::For((*flinfo).fn_mcxt);
            let p = cx.leak_and_drop_on_delete(b);
            (*flinfo).fn_extra = p.cast();
            &*p
        } else {
            *slot = b;
            &*slot
        }
    }
}

/// `_fit_projection(state, multipliers, dims, seed)`: the basis of the served vector for the
/// stored `multipliers` projected to `dims` dimensions, from a covariance state of the source's
/// rows (`covariance_stats`). Returns the basis rows (`dims` × input width, as
/// `projections.basis`), the variance along each, the variance kept, the total variance and the
/// rows the state holds.
// The return type is written out: pgrx's schema generation cannot resolve a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(immutable, strict, parallel_safe)]
fn _fit_projection(
    state: Array<'_, f64>,
    multipliers: Array<'_, f64>,
    dims: i32,
    seed: i64,
) -> TableIterator<
    'static,
    (
        name!(basis, Vec<f32>),
        name!(eigenvalues, Vec<f64>),
        name!(variance_kept, f64),
        name!(total_variance, f64),
        name!(sample_rows, i64),
    ),
> {
    let state = crate::datatype::float_array::non_null_slice(&state, "state");
    let multipliers = crate::datatype::float_array::non_null_slice(&multipliers, "multipliers");
    let mut st = CovStats::from_slice(state).or_raise();
    if dims < 1 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("dims must be positive, got {dims}"));
    }
    let opts = SubspaceOptions { seed: seed as u64, ..SubspaceOptions::default() };
    let p = fit_served(&mut st, multipliers, dims as usize, &opts).or_raise();
    let rows = st.n() as i64;
    TableIterator::once((basis_rows_f32(&p.basis), p.eigenvalues, p.variance_kept, p.total_variance, rows))
}

// ---- covariance_stats(model_dims integer[], VARIADIC "any"): the aggregate ----------------

macro_rules! v1 {
    ($finfo:ident) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

v1!(pg_finfo_embedstack_covariance_accum);
v1!(pg_finfo_embedstack_covariance_combine);
v1!(pg_finfo_embedstack_covariance_serialize);
v1!(pg_finfo_embedstack_covariance_deserialize);
v1!(pg_finfo_embedstack_covariance_final);

/// The aggregate's memory context (an error outside an aggregate: these take `internal`).
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, what: &str) -> pg_sys::MemoryContext {
    unsafe {
        let mut cx: pg_sys::MemoryContext = std::ptr::null_mut();
        if pg_sys::AggCheckCallContext(fcinfo, &mut cx) == 0 {
            error!("{what} called outside an aggregate");
        }
        cx
    }
}

/// A state in the aggregate's context, dropped with it.
unsafe fn new_state(cx: pg_sys::MemoryContext, st: CovStats) -> pg_sys::Datum {
    let p = PgMemoryContexts::For(cx).leak_and_drop_on_delete(st);
    pg_sys::Datum::from(p)
}

unsafe fn state_arg<'a>(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<&'a mut CovStats> {
    unsafe {
        if fcinfo::pg_arg_is_null(fcinfo, i) {
            None
        } else {
            Some(&mut *fcinfo::pg_getarg_datum_raw(fcinfo, i).cast_mut_ptr::<CovStats>())
        }
    }
}

/// Transition: one row, `model_dims` then one value per model (`vector`, `real[]` or
/// `double precision[]`, NULL = missing). A row whose `model_dims` is NULL is skipped.
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_covariance_accum(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        let cx = agg_context(fcinfo, "embedstack._covariance_accum");
        let nargs = (*fcinfo).nargs as usize;
        let state = state_arg(fcinfo, 0);
        if fcinfo::pg_arg_is_null(fcinfo, 1) || nargs < 3 {
            return match state {
                Some(s) => pg_sys::Datum::from(s as *mut CovStats),
                None => {
                    (*fcinfo).isnull = true;
                    pg_sys::Datum::from(0usize)
                }
            };
        }
        let state = match state {
            Some(s) => s,
            None => {
                let arr = Array::<i32>::from_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 1), false)
                    .expect("non-null model_dims");
                if arr.contains_nulls() {
                    fail(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "model_dims must not contain NULL");
                }
                let dims: Vec<usize> = arr.iter().map(|d| d.unwrap_or(0).max(0) as usize).collect();
                let mut st = CovStats::new(&dims).or_raise();
                st.set_threads(crate::settings::fit_threads(), super::fit_threads::spawn_guarded);
                let d = new_state(cx, st);
                &mut *d.cast_mut_ptr::<CovStats>()
            }
        };
        let k = nargs - 2;
        if k != state.dims().len() {
            fail(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("{k} model values for {} model dimensions", state.dims().len()),
            );
        }
        let flinfo = (*fcinfo).flinfo;
        let values: Vec<Option<ModelValue>> = (0..k)
            .map(|m| {
                let i = 2 + m;
                if fcinfo::pg_arg_is_null(fcinfo, i) {
                    return None;
                }
                let typ = pg_sys::get_fn_expr_argtype(flinfo, i as i32);
                let kind = ModelKind::from_type_oid(typ).unwrap_or_else(|| {
                    fail_hint(
                        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                        format!("model {} has type {}", m + 1, format_type(typ, -1)),
                        "model values must be vector, real[] or double precision[]",
                    )
                });
                match ModelValue::read(fcinfo::pg_getarg_datum_raw(fcinfo, i), kind) {
                    Ok(v) => Some(v),
                    Err(ValueError::NullElement(p)) => fail(
                        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                        format!("model {}: element {p} is NULL", m + 1),
                    ),
                    Err(ValueError::Corrupt(w)) => {
                        fail(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("model {}: {w}", m + 1))
                    }
                }
            })
            .collect();
        let blocks: Vec<_> = values.iter().map(|v| v.as_ref().map(ModelValue::block)).collect();
        state.accumulate(&blocks).or_raise();
        pg_sys::Datum::from(state as *mut CovStats)
    }
}

/// Combine (parallel workers, Citus-shaped partial aggregation): merges the second state in.
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_covariance_combine(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        let cx = agg_context(fcinfo, "embedstack._covariance_combine");
        match (state_arg(fcinfo, 0), state_arg(fcinfo, 1)) {
            (None, None) => {
                (*fcinfo).isnull = true;
                pg_sys::Datum::from(0usize)
            }
            (Some(a), None) => pg_sys::Datum::from(a as *mut CovStats),
            (None, Some(b)) => {
                // A copy in the aggregate's context (the second state belongs to its caller).
                let copy = CovStats::from_slice(&b.to_vec()).or_raise();
                new_state(cx, copy)
            }
            (Some(a), Some(b)) => {
                a.merge(b).or_raise();
                pg_sys::Datum::from(a as *mut CovStats)
            }
        }
    }
}

/// Serialise (for parallel workers): the state's float8 layout as bytea.
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_covariance_serialize(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        agg_context(fcinfo, "embedstack._covariance_serialize");
        let st = state_arg(fcinfo, 0).expect("serialize is strict");
        let v = st.to_vec();
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        bytes.as_slice().into_datum().expect("bytea")
    }
}

#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_covariance_deserialize(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        let cx = agg_context(fcinfo, "embedstack._covariance_deserialize");
        let bytes = <&[u8]>::from_datum(fcinfo::pg_getarg_datum_raw(fcinfo, 0), false).expect("strict");
        if bytes.len() % 8 != 0 {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "invalid covariance state: not float8 values",
            );
        }
        let v: Vec<f64> = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        let mut st = CovStats::from_slice(&v).or_raise();
        st.set_threads(crate::settings::fit_threads(), super::fit_threads::spawn_guarded);
        new_state(cx, st)
    }
}

/// Final: the state as `float8[]` (the layout `_fit_projection` reads), NULL for no rows.
#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_covariance_final(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        agg_context(fcinfo, "embedstack._covariance_final");
        match state_arg(fcinfo, 0) {
            None => {
                (*fcinfo).isnull = true;
                pg_sys::Datum::from(0usize)
            }
            Some(st) => st.to_vec().into_datum().expect("float8[]"),
        }
    }
}
