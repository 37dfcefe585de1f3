//! Configuration parameters (GUCs).

use std::ffi::CStr;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `embedstack.entity_cache_size` (kB): memory for the per-entity vector cache of `fit`,
/// `pair_statistics` and `evaluate`.
pub static ENTITY_CACHE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

pub fn register() {
    GucRegistry::define_int_guc(
        c"embedstack.entity_cache_size",
        c"Memory for the per-entity vector cache of fit, pair_statistics and evaluate.",
        c"Each entity referenced by the pairs is read and its vectors kept once. When they do not \
          fit, entities are processed in chunks of half this size, each chunk pair once, which reads \
          the entities several times but stays within the budget.",
        &ENTITY_CACHE_SIZE_KB,
        1024,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
}

/// The cache budget in bytes.
pub fn entity_cache_bytes() -> usize {
    ENTITY_CACHE_SIZE_KB.get().max(1) as usize * 1024
}

#[allow(dead_code)]
fn _assert_cstr(_: &CStr) {}
