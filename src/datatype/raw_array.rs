//! A checked reader of a detoasted PostgreSQL array (`utils/array.h`):
//!
//! ```text
//! int32 vl_len | int32 ndim | int32 dataoffset (0 = no NULL bitmap) | Oid elemtype
//! int32 dims[ndim] | int32 lbounds[ndim] | [NULL bitmap] | MAXALIGN padding | data
//! ```
//!
//! Every field is checked against the varlena's size before anything is read through it, so
//! a value that is not the array the caller expects (a forged or corrupt datum) is an error,
//! never a read outside the value.

use pgrx::pg_sys;

/// PostgreSQL's MAXDIM.
const MAX_NDIM: usize = 6;
const FIXED: usize = 16;

/// A borrowed view of a detoasted array of fixed-width elements.
pub struct RawArray {
    /// Number of elements (product of the dimensions; 0 for an empty array).
    pub len: usize,
    pub ndim: usize,
    bitmap: *const u8,
    data: *const u8,
}

/// Why a datum is not a usable array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayError {
    /// The header is inconsistent with the value's size.
    Corrupt(String),
    /// The element type is not the expected one.
    ElementType { found: pg_sys::Oid },
}

impl RawArray {
    /// Parses the header of `plain` (a detoasted varlena with a 4-byte header), checking it
    /// describes `elem_size`-byte elements of type `elemtype` that fit inside the value.
    ///
    /// # Safety
    /// `plain` must point at a detoasted varlena (any content).
    pub unsafe fn parse(
        plain: *const pg_sys::varlena,
        elemtype: pg_sys::Oid,
        elem_size: usize,
    ) -> Result<RawArray, ArrayError> {
        unsafe {
            let size = pgrx::varlena::varsize_any(plain);
            let base = plain.cast::<u8>();
            let corrupt = |what: &str| Err(ArrayError::Corrupt(format!("{what} ({size} bytes)")));
            if size < FIXED {
                return corrupt("shorter than an array header");
            }
            let h = base.cast::<i32>();
            let (ndim, dataoffset, found) = (*h.add(1), *h.add(2), pg_sys::Oid::from(*h.add(3) as u32));
            if !(0..=MAX_NDIM as i32).contains(&ndim) {
                return corrupt("invalid number of dimensions");
            }
            let ndim = ndim as usize;
            let dims_end = FIXED + 8 * ndim;
            if size < dims_end {
                return corrupt("header longer than the value");
            }
            if found != elemtype {
                return Err(ArrayError::ElementType { found });
            }
            let mut len: usize = if ndim == 0 { 0 } else { 1 };
            for d in 0..ndim {
                let n = *h.add(4 + d);
                if n < 0 {
                    return corrupt("negative dimension");
                }
                len = match len.checked_mul(n as usize) {
                    Some(l) => l,
                    None => return corrupt("dimensions overflow"),
                };
            }
            let (bitmap, data_start) = if dataoffset != 0 {
                let bitmap_end = dims_end + len.div_ceil(8);
                if dataoffset < 0 || (dataoffset as usize) < bitmap_end || dataoffset as usize > size {
                    return corrupt("invalid data offset");
                }
                (base.add(dims_end), dataoffset as usize)
            } else {
                (std::ptr::null(), (dims_end + 7) & !7)
            };
            // NULL elements take no space in the data area: only the others must fit.
            let mut stored = len;
            if !bitmap.is_null() {
                stored = (0..len).filter(|&i| *bitmap.add(i / 8) & (1 << (i % 8)) != 0).count();
            }
            match stored.checked_mul(elem_size).and_then(|b| b.checked_add(data_start)) {
                Some(end) if end <= size => {}
                _ => return corrupt("elements extend past the end of the value"),
            }
            Ok(RawArray { len, ndim, bitmap, data: base.add(data_start) })
        }
    }

    /// 1-based position of the first NULL element, if any.
    pub fn first_null(&self) -> Option<usize> {
        if self.bitmap.is_null() {
            return None;
        }
        // SAFETY: parse checked the bitmap (len bits) lies inside the value.
        (0..self.len).find(|&i| unsafe { *self.bitmap.add(i / 8) } & (1 << (i % 8)) == 0).map(|i| i + 1)
    }

    /// Address of the first element (elements are contiguous when there is no NULL).
    pub fn data(&self) -> *const u8 {
        self.data
    }

    /// # Safety
    /// The array must hold float8 elements without NULLs and outlive the slice.
    pub unsafe fn as_f64<'a>(&self) -> &'a [f64] {
        unsafe { std::slice::from_raw_parts(self.data.cast::<f64>(), self.len) }
    }

    /// # Safety
    /// The array must hold int4 elements without NULLs and outlive the slice.
    pub unsafe fn as_i32<'a>(&self) -> &'a [i32] {
        unsafe { std::slice::from_raw_parts(self.data.cast::<i32>(), self.len) }
    }
}
