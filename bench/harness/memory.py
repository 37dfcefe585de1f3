"""6. Memory: peak RSS (VmHWM from /proc, a fresh connection per operation) of the backend
running fit and materialize at two data sizes. The full size comes from the timed runs of
sections 2 and 3; the smaller one (entities and pairs divided by --memory-divisor) is generated
with another seed into items_s / pairs_s and measured here, plus a fit at the full size with a
small embedstack.entity_cache_size to show that setting is the bound.

Budgets (what the documentation promises): fit's entity cache is bounded by
embedstack.entity_cache_size; materialize's write phase holds one batch; its index build is
pgvector's, bounded by maintenance_work_mem. The backend's RSS also counts the shared buffers
it touched (shared_buffers) and a fixed overhead (we allow 256 MB)."""

import numpy as np

from common import log, measure
from datagen import Dataset
from materialize import drop_ddl_log, materialize_phases, setup_ddl_log

OVERHEAD_KB = 256 * 1024
SMALL_CACHE = "256MB"


def setting_kb(conn, name):
    v, unit = conn.execute("SELECT setting::bigint, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
    mult = {"8kB": 8, "kB": 1, "MB": 1024, None: 1}[unit]
    return v * mult


def run(ctx):
    d = ctx.truth
    div = ctx.args.memory_divisor
    k = len(d.dims)
    cols = [f"m{m + 1}" for m in range(k)]
    with ctx.connect() as conn:
        conn.execute("SELECT embedstack.l2_normalize('[1]'::vector)")  # loads the library: its settings
        shared_kb = setting_kb(conn, "shared_buffers")
        cache_kb = setting_kb(conn, "embedstack.entity_cache_size")
        mwm_kb = 2 * 1024 * 1024  # the harness runs materialize with maintenance_work_mem 2GB

    # Small size.
    small = Dataset(max(100, d.n // div), max(1000, d.n_pairs // div), d.dims, d.seed + 1).generate()
    with ctx.connect() as conn:
        conn.execute("DO $$ BEGIN PERFORM embedstack.drop_model_set(name, true) FROM embedstack.model_sets "
                     "WHERE name = 'bench_s'; END $$")
        small.load(conn, "items_s", "pairs_s")
        conn.execute("ALTER TABLE items_s SET (parallel_workers = 2)")
        conn.execute("SELECT embedstack.create_model_set('bench_s', 'items_s', 'id', %s::name[])", (cols,))
    m_fit = measure(ctx, lambda c: c.execute("SELECT id, weights, diagnostics->'std_errors' "
                                             "FROM embedstack.fit('bench_s', 'pairs_s', 'a', 'b', 'y')").fetchone())
    fid, w, se = m_fit.value
    with ctx.connect() as conn:
        conn.execute("CHECKPOINT")
        setup_ddl_log(conn)
    m_mat = measure(ctx, lambda c: c.execute(f"CALL embedstack.materialize('bench_s', {fid})"),
                    setup=("SET maintenance_work_mem = '2GB'",), sample_rss=True)
    ph = materialize_phases(ctx, m_mat)
    with ctx.connect() as conn:
        drop_ddl_log(conn)
    log(f"memory: small size {small.n:,} entities / {small.n_pairs:,} pairs: fit {m_fit.seconds:.1f} s "
        f"VmHWM {m_fit.backend_hwm_kb} kB; materialize {m_mat.seconds:.1f} s VmHWM {m_mat.backend_hwm_kb} kB")
    # Small fit recovers its own true weights.
    z = np.abs(np.array(w) - small.true_w) / np.array(se[:len(w)], dtype=np.float64)
    ctx.check("memory", "small-size fit recovers its true weights (within 6 standard errors)",
              bool(np.all(z < 6)), f"fitted {np.round(w, 4).tolist()}, |err|/se {np.round(z, 2).tolist()}")

    # Full size, small entity cache.
    m_fit_small_cache = measure(ctx, lambda c: c.execute("SELECT weights FROM embedstack.fit('bench', 'pairs', 'a', 'b', 'y')").fetchone(),
                                setup=(f"SET embedstack.entity_cache_size = '{SMALL_CACHE}'",))
    ref_w = np.array(ctx.results.get("fit", {}).get("weights", m_fit_small_cache.value[0]))
    dw = float(np.max(np.abs(np.array(m_fit_small_cache.value[0]) - ref_w)))
    ctx.check("memory", f"fit with entity_cache_size {SMALL_CACHE} == default fit", dw < 1e-6, f"max difference {dw:.2e}")
    log(f"memory: full size fit with entity_cache_size {SMALL_CACHE}: {m_fit_small_cache.seconds:.1f} s, "
        f"VmHWM {m_fit_small_cache.backend_hwm_kb} kB")

    fit_res = ctx.results.get("fit", {})
    mat_res = ctx.results.get("materialize", {})
    full_fit = fit_res.get("backend_hwm_kb", {}).get(fit_res.get("variants", [None])[0]) if fit_res else None
    mat_rss = mat_res.get("mat_rss") or []
    full_mat = max((r[2] or 0) for r in mat_rss) if mat_rss else None
    full_mat_write = max((r[0] or 0) for r in mat_rss) if mat_rss else None
    small_mat_write = m_mat.sampler.peak_between(m_mat.t0, m_mat.t0 + ph["write"])
    rows = [
        ("fit (entity_cache_size default)", small.n, full_fit, m_fit.backend_hwm_kb, cache_kb + shared_kb + OVERHEAD_KB,
         f"entity_cache_size {cache_kb // 1024} MB + shared_buffers {shared_kb // 1024} MB + 256 MB"),
        (f"fit (entity_cache_size {SMALL_CACHE}), full size only", None, m_fit_small_cache.backend_hwm_kb, None,
         256 * 1024 + shared_kb + OVERHEAD_KB, f"{SMALL_CACHE} + shared_buffers + 256 MB"),
        ("materialize, whole call (VmHWM)", small.n, full_mat, m_mat.backend_hwm_kb, mwm_kb + shared_kb + OVERHEAD_KB,
         "maintenance_work_mem 2 GB (HNSW build) + shared_buffers + 256 MB"),
        ("materialize, write phase (sampled VmRSS)", small.n, full_mat_write, small_mat_write, shared_kb + OVERHEAD_KB,
         "shared_buffers + 256 MB"),
    ]
    for name, _, full, sm, budget, _ in rows:
        for label, v in (("full", full), ("small", sm)):
            if v:
                ctx.check("memory", f"{name} at the {label} size within its budget", v <= budget,
                          f"{v // 1024} MB <= {budget // 1024} MB")
    ctx.results["memory"] = {
        "small_entities": small.n, "small_pairs": small.n_pairs,
        "full_entities": d.n, "full_pairs": d.n_pairs,
        "rows": rows, "small_fit_s": m_fit.seconds, "small_mat_s": m_mat.seconds,
    }
