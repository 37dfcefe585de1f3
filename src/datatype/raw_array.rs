//! The one reader of a detoasted PostgreSQL array's layout (`utils/array.h`), used by every
//! function that walks an array without pgrx's generic `Array` (the hot paths and the raw V1
//! functions):
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
/// vl_len, ndim, dataoffset, elemtype.
const FIXED: usize = 16;

/// A checked view of a detoasted array.
pub struct RawArray {
    /// Number of elements (product of the dimensions; 0 for an empty array).
    pub len: usize,
    pub ndim: usize,
    pub elemtype: pg_sys::Oid,
    /// Size of the whole value in bytes.
    size: usize,
    base: *const u8,
    bitmap: *const u8,
    data_start: usize,
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
    /// Parses and checks the header of `plain` (a detoasted varlena with a 4-byte header):
    /// dimensions, NULL bitmap and data offset all inside the value. The elements themselves
    /// are not checked (see [`RawArray::parse`] for fixed-width ones).
    ///
    /// # Safety
    /// `plain` must point at a detoasted varlena (any content).
    pub unsafe fn parse_header(plain: *const pg_sys::varlena) -> Result<RawArray, ArrayError> {
        unsafe {
            let size = pgrx::varlena::varsize_any(plain);
            let base = plain.cast::<u8>();
            let corrupt = |what: &str| Err(ArrayError::Corrupt(format!("{what} ({size} bytes)")));
            if size < FIXED {
                return corrupt("shorter than an array header");
            }
            let h = base.cast::<i32>();
            let (ndim, dataoffset, elemtype) = (*h.add(1), *h.add(2), pg_sys::Oid::from(*h.add(3) as u32));
            if !(0..=MAX_NDIM as i32).contains(&ndim) {
                return corrupt("invalid number of dimensions");
            }
            let ndim = ndim as usize;
            let dims_end = FIXED + 8 * ndim;
            if size < dims_end {
                return corrupt("header longer than the value");
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
            if data_start > size && len > 0 {
                return corrupt("data offset past the end of the value");
            }
            Ok(RawArray { len, ndim, elemtype, size, base, bitmap, data_start })
        }
    }

    /// [`RawArray::parse_header`], then checks the elements are `elem_size`-byte values of type
    /// `elemtype` and that they all lie inside the value.
    ///
    /// # Safety
    /// `plain` must point at a detoasted varlena (any content).
    pub unsafe fn parse(
        plain: *const pg_sys::varlena,
        elemtype: pg_sys::Oid,
        elem_size: usize,
    ) -> Result<RawArray, ArrayError> {
        let arr = unsafe { Self::parse_header(plain)? };
        if arr.elemtype != elemtype {
            return Err(ArrayError::ElementType { found: arr.elemtype });
        }
        // NULL elements take no space in the data area: only the others must fit.
        let stored = arr.len - arr.null_count();
        match stored.checked_mul(elem_size).and_then(|b| b.checked_add(arr.data_start)) {
            Some(end) if end <= arr.size => Ok(arr),
            _ => Err(ArrayError::Corrupt(format!(
                "elements extend past the end of the value ({} bytes)",
                arr.size
            ))),
        }
    }

    /// Whether the value carries a NULL bitmap (even one without a NULL in it).
    pub fn has_bitmap(&self) -> bool {
        !self.bitmap.is_null()
    }

    /// Is element `i` (0-based) NULL?
    pub fn is_null(&self, i: usize) -> bool {
        // SAFETY: parse_header checked the bitmap (len bits) lies inside the value.
        self.has_bitmap() && i < self.len && unsafe { *self.bitmap.add(i / 8) } & (1 << (i % 8)) == 0
    }

    fn null_count(&self) -> usize {
        if self.has_bitmap() {
            (0..self.len).filter(|&i| self.is_null(i)).count()
        } else {
            0
        }
    }

    /// 1-based position of the first NULL element, if any.
    pub fn first_null(&self) -> Option<usize> {
        (0..self.len).find(|&i| self.is_null(i)).map(|i| i + 1)
    }

    /// Address of the first element (elements are contiguous when there is no NULL).
    pub fn data(&self) -> *const u8 {
        // SAFETY: data_start ≤ size (checked) for any array with elements.
        unsafe { self.base.add(self.data_start) }
    }

    /// The whole value's bytes.
    pub fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.base, self.size) }
    }

    /// One past the last byte of the value (for walking variable-length elements).
    pub fn end(&self) -> *const u8 {
        unsafe { self.base.add(self.size) }
    }

    /// # Safety
    /// The array must have been [`RawArray::parse`]d as float8 without NULLs and outlive the slice.
    pub unsafe fn as_f64<'a>(&self) -> &'a [f64] {
        unsafe { std::slice::from_raw_parts(self.data().cast::<f64>(), self.len) }
    }

    /// # Safety
    /// The array must have been [`RawArray::parse`]d as int4 without NULLs and outlive the slice.
    pub unsafe fn as_i32<'a>(&self) -> &'a [i32] {
        unsafe { std::slice::from_raw_parts(self.data().cast::<i32>(), self.len) }
    }
}

/// Header of a one-dimensional array without NULL bitmap: vl_len, ndim, dataoffset, elemtype,
/// dims[0], lbound[0] (24 bytes, already MAXALIGNed: the data follows directly).
const FLAT_HEADER: usize = 24;

/// Allocates a one-dimensional float8[] of `len` zeros (no NULL bitmap) in the current memory
/// context: the regression aggregate's state.
///
/// # Safety
/// Calls palloc: the backend's thread, inside a memory context.
pub unsafe fn new_flat_f64(len: usize) -> *mut pg_sys::ArrayType {
    unsafe {
        let size = FLAT_HEADER + 8 * len;
        let p = pg_sys::palloc0(size).cast::<u8>();
        pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
        let h = p.cast::<i32>();
        *h.add(1) = 1; // ndim
        *h.add(2) = 0; // dataoffset: no null bitmap
        *h.add(3) = pg_sys::FLOAT8OID.to_u32() as i32;
        *h.add(4) = len as i32; // dims[0]
        *h.add(5) = 1; // lbound[0]
        p.cast()
    }
}

/// The elements of a one-dimensional float8[] without NULL bitmap that [`new_flat_f64`] made or
/// [`is_flat_f64`] accepted (the aggregate's state, read row after row without a re-check).
///
/// # Safety
/// `arr` must be such an array, owned by the caller for the slice's lifetime.
pub unsafe fn flat_f64_mut<'a>(arr: *mut pg_sys::ArrayType) -> &'a mut [f64] {
    unsafe {
        let len = *arr.cast::<i32>().add(4) as usize;
        std::slice::from_raw_parts_mut(arr.cast::<u8>().add(FLAT_HEADER).cast::<f64>(), len)
    }
}

/// Is `arr` a well-formed one-dimensional float8[] without NULL bitmap (what
/// [`flat_f64_mut`] may read)?
///
/// # Safety
/// `arr` must point at a detoasted varlena.
pub unsafe fn is_flat_f64(arr: *const pg_sys::ArrayType) -> bool {
    matches!(unsafe { RawArray::parse(arr.cast(), pg_sys::FLOAT8OID, 8) }, Ok(a) if a.ndim == 1 && !a.has_bitmap())
}
