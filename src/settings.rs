//! Configuration parameters (GUCs).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `embedstack.entity_cache_size` (kB): memory for the per-entity vector cache of `fit`,
/// `pair_statistics` and `evaluate`.
pub static ENTITY_CACHE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// `embedstack.fit_threads`: threads of the per-pair kernel of fit / pair_statistics, and of the
/// covariance products of a learned projection (covariance_stats).
pub static FIT_THREADS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// `embedstack.keep_history`: fits and jobs kept per model set (0 = all).
pub static KEEP_HISTORY: GucSetting<i32> = GucSetting::<i32>::new(100);

/// `embedstack.keep_generations`: generations kept besides the served one (1 = the previous one,
/// for rollback; 0 = none).
pub static KEEP_GENERATIONS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// `embedstack.cutover_wait_timeout` (ms): how long a materialise waits for older transactions
/// before the cut-over (0 = no limit).
pub static CUTOVER_WAIT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10 * 60 * 1000);

pub fn register() {
    GucRegistry::define_int_guc(
        c"embedstack.keep_generations",
        c"Generations of served vectors kept per model set besides the served one.",
        c"1 keeps the previously served generation, so that embedstack.rollback serves it again at once; \
          each kept generation is reachable with rollback(..., to_fit => id). A kept generation is not \
          written by each write to the source: the keys written are recorded and applied when a rollback \
          serves it again. 0 keeps none (no rollback).",
        &KEEP_GENERATIONS,
        0,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"embedstack.cutover_wait_timeout",
        c"How long a materialise waits for older transactions of the database before its cut-over.",
        c"A transaction whose snapshot predates the new generation would read it as incomplete, so the \
          cut-over waits for them; after this long the job fails with 55000, the new generation complete, \
          and a new call resumes the wait. 0 waits without limit.",
        &CUTOVER_WAIT_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"embedstack.keep_history",
        c"Fits and jobs kept per model set; older ones are deleted after each fit (0 keeps all).",
        c"The active fit, the previous fit (what rollback serves), the fits of kept generations and the fit \
          of an unfinished job are always kept. \
          Set it for scheduled refits with ALTER DATABASE or ALTER ROLE ... SET.",
        &KEEP_HISTORY,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"embedstack.fit_threads",
        c"Threads computing pair features in fit and pair_statistics, and the products of covariance_stats.",
        c"The threads only read the in-memory entity cache or the buffered rows (pure Rust, no Postgres \
          calls) and their results are merged exactly; 1 keeps all work on the backend's thread.",
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

/// The history retention, for the PL/pgSQL procedures (calling it also makes sure the library,
/// and with it the setting, is loaded in the session).
#[pgrx::pg_extern(stable, parallel_safe)]
fn _keep_history() -> i32 {
    KEEP_HISTORY.get()
}

/// The generation retention, for the PL/pgSQL steps.
#[pgrx::pg_extern(stable, parallel_safe)]
fn _keep_generations() -> i32 {
    KEEP_GENERATIONS.get()
}

/// The cut-over wait bound in milliseconds (0: none), for the PL/pgSQL steps.
#[pgrx::pg_extern(stable, parallel_safe)]
fn _cutover_wait_timeout() -> i32 {
    CUTOVER_WAIT_TIMEOUT_MS.get()
}
