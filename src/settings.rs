//! Configuration parameters (GUCs).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `embedstack.entity_cache_size` (kB): memory for the per-entity vector cache of `fit`,
/// `pair_statistics` and `evaluate`.
pub static ENTITY_CACHE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// `embedstack.fit_threads`: threads of the per-pair kernel of fit / pair_statistics.
pub static FIT_THREADS: GucSetting<i32> = GucSetting::<i32>::new(2);

pub fn register() {
    GucRegistry::define_int_guc(
        c"embedstack.fit_threads",
        c"Threads computing pair features in fit and pair_statistics.",
        c"The threads only read the in-memory entity cache (pure Rust, no Postgres calls) and \
          their statistics are merged exactly; 1 keeps all work on the backend's thread.",
        &FIT_THREADS,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
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

pub fn fit_threads() -> usize {
    FIT_THREADS.get().max(1) as usize
}
