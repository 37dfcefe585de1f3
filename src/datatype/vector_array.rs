//! `vector[]` arguments and `float8[]` results without pgrx's generic `Array` machinery.
//!
//! `cosine_features` runs once per labelled pair, so its fixed cost matters: pgrx's `Array`
//! looks the element layout up in the catalog and boxes an iterator on every call, and
//! `Vec<Option<f64>>` goes through generic array construction. Here the array is walked by its
//! documented layout (`utils/array.h`) and the result is built by `construct_md_array` with
//! float8's fixed layout, which needs no catalog access.

use std::marker::PhantomData;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlArrayMappingRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};

use pgrx::PgSqlErrorCode;

use super::raw_array::RawArray;
use super::vector::VectorInput;

/// A detoasted `vector[]` argument (any number of dimensions, read in storage order).
pub struct VectorArray<'a> {
    arr: RawArray,
    _marker: PhantomData<&'a ()>,
}

/// Alignment of pgvector's `vector` inside arrays (its `typalign`), looked up once per backend.
fn vector_typalign(elemtype: pg_sys::Oid) -> usize {
    use std::sync::atomic::{AtomicU64, Ordering};
    // (oid << 8) | align; 0 = not cached yet. Backends are single-threaded; the atomic only
    // makes the static safe to touch.
    static CACHE: AtomicU64 = AtomicU64::new(0);
    let cached = CACHE.load(Ordering::Relaxed);
    if cached != 0 && (cached >> 8) as u32 == elemtype.to_u32() {
        return (cached & 0xff) as usize;
    }
    let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
    unsafe { pg_sys::get_typlenbyvalalign(elemtype, &mut len, &mut byval, &mut align) };
    let bytes = match align as u8 {
        b'c' => 1,
        b's' => 2,
        b'i' => 4,
        _ => 8,
    };
    CACHE.store(((elemtype.to_u32() as u64) << 8) | bytes as u64, Ordering::Relaxed);
    bytes
}

impl<'a> VectorArray<'a> {
    /// # Safety
    /// `datum` must be a non-null `vector[]` datum.
    unsafe fn from_raw_datum(datum: pg_sys::Datum) -> Self {
        unsafe {
            let plain = pg_sys::pg_detoast_datum(datum.cast_mut_ptr());
            let arr = RawArray::parse_header(plain).unwrap_or_else(|e| {
                crate::errors::fail(
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    format!("corrupt vector[] value: {e:?}"),
                )
            });
            VectorArray { arr, _marker: PhantomData }
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.arr.len
    }

    /// The whole array value's bytes (to compare arguments).
    pub fn bytes(&self) -> &[u8] {
        self.arr.bytes()
    }

    /// The elements in storage order; `None` for a NULL element.
    pub fn iter(&self) -> impl Iterator<Item = Option<VectorInput<'a>>> + '_ {
        let align = if self.arr.len > 0 { vector_typalign(self.arr.elemtype) } else { 4 };
        let end = self.arr.end() as usize;
        let mut p = self.arr.data();
        (0..self.arr.len).map(move |i| {
            if self.arr.is_null(i) {
                return None;
            }
            // att_align_nominal on the absolute address, then step over the varlena; each
            // element must lie inside the array value.
            let addr = p as usize;
            let aligned = (addr + align - 1) & !(align - 1);
            if aligned + 4 > end {
                crate::errors::fail(
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    "corrupt vector[] value: element past its end",
                )
            }
            unsafe {
                p = p.add(aligned - addr);
                let elem = p;
                let size = pgrx::varlena::varsize_any(elem.cast());
                if aligned + size > end {
                    crate::errors::fail(
                        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                        "corrupt vector[] value: element past its end",
                    )
                }
                p = p.add(size);
                Some(VectorInput::from_raw_datum(pg_sys::Datum::from(elem)))
            }
        })
    }
}

impl FromDatum for VectorArray<'_> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            Some(unsafe { Self::from_raw_datum(datum) })
        }
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for VectorArray<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl SqlTranslatable for VectorArray<'_> {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(VectorArray<'static>);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Ok(SqlMappingRef::Array(SqlArrayMappingRef::As("vector")));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Err(ReturnsError::Datum);
}

/// A one-dimensional `float8[]` result with possible NULL elements.
pub struct Float8ArrayOut(pg_sys::Datum);

impl Float8ArrayOut {
    pub fn build(values: &[Option<f64>]) -> Self {
        let n = values.len();
        let mut datums: Vec<pg_sys::Datum> = Vec::with_capacity(n);
        let mut nulls: Vec<bool> = Vec::with_capacity(n);
        for v in values {
            datums.push(pg_sys::Datum::from(v.unwrap_or(0.0).to_bits() as usize));
            nulls.push(v.is_none());
        }
        let mut dims = [n as i32];
        let mut lbs = [1i32];
        // float8: typlen 8, by value, 'd' alignment (fixed by Postgres on 64-bit platforms).
        let arr = unsafe {
            pg_sys::construct_md_array(
                datums.as_mut_ptr(),
                nulls.as_mut_ptr(),
                1,
                dims.as_mut_ptr(),
                lbs.as_mut_ptr(),
                pg_sys::FLOAT8OID,
                8,
                true,
                b'd' as std::ffi::c_char,
            )
        };
        Float8ArrayOut(pg_sys::Datum::from(arr))
    }
}

unsafe impl BoxRet for Float8ArrayOut {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

unsafe impl SqlTranslatable for Float8ArrayOut {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Float8ArrayOut);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Err(ArgumentError::NotValidAsArgument("Float8ArrayOut"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::Array(SqlArrayMappingRef::As("double precision"))));
}
