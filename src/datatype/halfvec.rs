//! pgvector's `halfvec`, written through its memory layout (pgvector `src/halfvec.h`):
//!
//! ```text
//! int32 varlena header | int16 dim | int16 unused (= 0) | half x[dim]
//! ```
//!
//! Only produced here (combined vectors wider than `vector`'s 2,000 indexable dimensions);
//! values are IEEE binary16, rounded to nearest even from f32 like pgvector's own cast.

use std::ptr::NonNull;

use pgrx::pg_sys;

/// pgvector's limit on the dimension of a `halfvec`.
pub const HALFVEC_MAX_DIM: usize = 16_000;
const HEADER: usize = 8;

#[repr(C)]
struct HalfvecHeader {
    vl_len: u32,
    dim: i16,
    unused: i16,
}

/// A freshly palloc'd `halfvec`.
pub struct HalfvecOutput {
    ptr: NonNull<HalfvecHeader>,
}

impl HalfvecOutput {
    /// A halfvec holding `values` converted to binary16 (`values.len() ≤ HALFVEC_MAX_DIM`,
    /// checked by the callers, who know the model set's width up front).
    pub fn from_f32(values: &[f32]) -> Self {
        assert!(values.len() <= HALFVEC_MAX_DIM, "halfvec width checked by the caller");
        let size = HEADER + 2 * values.len();
        unsafe {
            let p = pg_sys::palloc0(size).cast::<HalfvecHeader>();
            pgrx::varlena::set_varsize_4b(p.cast(), size as i32);
            (*p).dim = values.len() as i16;
            (*p).unused = 0;
            let data = p.cast::<u8>().add(HEADER).cast::<u16>();
            for (i, &v) in values.iter().enumerate() {
                *data.add(i) = half::f16::from_f32(v).to_bits();
            }
            HalfvecOutput { ptr: NonNull::new_unchecked(p) }
        }
    }

    pub fn into_datum(self) -> pg_sys::Datum {
        pg_sys::Datum::from(self.ptr.as_ptr())
    }
}
