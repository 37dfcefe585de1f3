//! pgvector's `vector`, read and written through its memory layout (pgvector `src/vector.h`):
//!
//! ```text
//! int32 varlena header | int16 dim | int16 unused (= 0) | float4 x[dim]
//! ```
//!
//! We do not link against pgvector; the layout is its on-disk format, stable since 0.1.
//! Values are detoasted first (out-of-line, compressed and short-header forms all become a
//! plain 4-byte-header copy; an in-line 4-byte-header value is used in place, without a copy).

use std::marker::PhantomData;
use std::ptr::NonNull;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum, IntoDatum, UnboxDatum};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{ereport, PgLogLevel, PgSqlErrorCode};

/// pgvector's limit on the dimension of a `vector`.
pub const VECTOR_MAX_DIM: usize = 16_000;
const HEADER: usize = 8;

#[repr(C)]
struct VectorHeader {
    vl_len: u32,
    dim: i16,
    unused: i16,
}

/// A borrowed, detoasted pgvector `vector` argument.
pub struct VectorInput<'a> {
    ptr: NonNull<VectorHeader>,
    _marker: PhantomData<&'a [f32]>,
}

impl<'a> VectorInput<'a> {
    /// # Safety
    /// `datum` must be a non-null datum of pgvector's `vector` type.
    pub unsafe fn from_raw_datum(datum: pg_sys::Datum) -> Self {
        unsafe {
            let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
            let plain = pg_sys::pg_detoast_datum(raw);
            let size = pgrx::varlena::varsize_any(plain);
            let header = plain.cast::<VectorHeader>();
            if size < HEADER {
                crate::errors::raise_corrupt_vector(size, -1);
            }
            let dim = (*header).dim;
            if dim < 0 || (*header).unused != 0 || size != HEADER + 4 * dim as usize {
                crate::errors::raise_corrupt_vector(size, dim as i32);
            }
            VectorInput { ptr: NonNull::new_unchecked(header), _marker: PhantomData }
        }
    }

    #[inline]
    pub fn dim(&self) -> usize {
        unsafe { (*self.ptr.as_ptr()).dim as usize }
    }

    #[inline]
    pub fn as_slice(&self) -> &'a [f32] {
        // SAFETY: validated in `from_raw_datum`: the varlena holds exactly `dim` floats after
        // the 8-byte header, and a 4-byte-header varlena is at least 4-byte aligned.
        unsafe {
            let data = self.ptr.as_ptr().cast::<u8>().add(HEADER).cast::<f32>();
            std::slice::from_raw_parts(data, self.dim())
        }
    }
}

impl FromDatum for VectorInput<'_> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            Some(unsafe { Self::from_raw_datum(datum) })
        }
    }
}

unsafe impl UnboxDatum for VectorInput<'_> {
    type As<'src>
        = VectorInput<'src>
    where
        Self: 'src;

    unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        unsafe { VectorInput::from_raw_datum(datum.sans_lifetime()) }
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for VectorInput<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl SqlTranslatable for VectorInput<'_> {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(VectorInput<'static>);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("vector"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Err(ReturnsError::Datum);
}

/// A freshly palloc'd pgvector `vector`, filled in place and returned to Postgres.
pub struct VectorOutput {
    ptr: NonNull<VectorHeader>,
}

impl VectorOutput {
    /// A zero-filled vector of `dim` dimensions in the current memory context.
    pub fn zeroed(dim: usize) -> Self {
        if dim > VECTOR_MAX_DIM {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("vector cannot have more than {VECTOR_MAX_DIM} dimensions, got {dim}")
            );
        }
        let size = HEADER + 4 * dim;
        unsafe {
            let p = pg_sys::palloc0(size).cast::<VectorHeader>();
            pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
            (*p).dim = dim as i16;
            (*p).unused = 0;
            VectorOutput { ptr: NonNull::new_unchecked(p) }
        }
    }

    /// A copy of a vector's bytes (as [`VectorOutput::as_bytes`] gave them) in the current
    /// memory context.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        assert!(bytes.len() >= HEADER, "a vector's bytes");
        unsafe {
            let p = pg_sys::palloc(bytes.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            VectorOutput { ptr: NonNull::new_unchecked(p.cast()) }
        }
    }

    /// The whole value (header and elements).
    pub fn as_bytes(&self) -> &[u8] {
        unsafe {
            let dim = (*self.ptr.as_ptr()).dim as usize;
            std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), HEADER + 4 * dim)
        }
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        unsafe {
            let dim = (*self.ptr.as_ptr()).dim as usize;
            let data = self.ptr.as_ptr().cast::<u8>().add(HEADER).cast::<f32>();
            std::slice::from_raw_parts_mut(data, dim)
        }
    }
}

impl IntoDatum for VectorOutput {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.ptr.as_ptr()))
    }

    fn type_oid() -> pg_sys::Oid {
        // Only needed when the value is nested in an array or composite: look it up by name
        // on the search path, as CREATE EXTENSION places pgvector's schema on it for us.
        pgrx::regtypein("vector")
    }
}

unsafe impl BoxRet for VectorOutput {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(pg_sys::Datum::from(self.ptr.as_ptr())) }
    }
}

unsafe impl SqlTranslatable for VectorOutput {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(VectorOutput);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Err(ArgumentError::NotValidAsArgument("VectorOutput"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("vector")));
}
