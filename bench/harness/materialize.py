"""3. Materialise: CALL embedstack.materialize (staging column in committed batches, HNSW
index, cut-over) vs pgvector CREATE TABLE AS with `l2_normalize(m) * array_fill(s, ..)::vector
|| ..` + the same index vs the seed (numpy combine + COPY back + the same index); the floor
copies the finished vectors into an UNLOGGED table (no computing, no WAL, no index).
4. Refit in query-weighted mode end to end (CALL embedstack.refit when it exists, else fit +
materialize, which only switches the active fit) vs the seed end to end (pull, cosines,
LinearRegression, combine, COPY back, index).

One interleaved loop per repetition: materialize, CTAS, seed end to end, floor, refit. Each
materialize is the first one of a freshly created and fitted model set (untimed), as
materialising a fit with the served multipliers only switches the active fit. The
seed's materialise time is its end-to-end run's pull-items + combine + COPY + index phases.
Every index build gets maintenance_work_mem 2GB (the graph is built in memory) and 2 workers
(parallel_workers on each table: the planner would size the CTAS table's build by its tiny
main fork, the vectors being in TOAST)."""

import time

import numpy as np

import seed
from common import copy_out, log, measure, median

MWM = ("SET maintenance_work_mem = '2GB'",)
SAMPLE = 1000


def vector_schema(conn):
    return conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                        "WHERE e.extname = 'vector'").fetchone()[0]


def setup_ddl_log(conn):
    conn.execute("DROP EVENT TRIGGER IF EXISTS bench_ddl_start")
    conn.execute("DROP EVENT TRIGGER IF EXISTS bench_ddl_end")
    conn.execute("DROP TABLE IF EXISTS public.bench_ddl_log")
    conn.execute("CREATE TABLE public.bench_ddl_log (seq bigserial, event text, tag text, at timestamptz)")
    conn.execute("CREATE OR REPLACE FUNCTION public.bench_ddl_log_fn() RETURNS event_trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN INSERT INTO public.bench_ddl_log (event, tag, at) VALUES (tg_event, tg_tag, clock_timestamp()); END $$")
    conn.execute("CREATE EVENT TRIGGER bench_ddl_start ON ddl_command_start EXECUTE FUNCTION public.bench_ddl_log_fn()")
    conn.execute("CREATE EVENT TRIGGER bench_ddl_end ON ddl_command_end EXECUTE FUNCTION public.bench_ddl_log_fn()")


def drop_ddl_log(conn):
    conn.execute("DROP EVENT TRIGGER IF EXISTS bench_ddl_start")
    conn.execute("DROP EVENT TRIGGER IF EXISTS bench_ddl_end")


def materialize_phases(ctx, m):
    """write / index / cut-over of a CALL materialize from its DDL timestamps."""
    with ctx.connect() as conn:
        rows = conn.execute("SELECT extract(epoch FROM at)::float8, event, tag FROM public.bench_ddl_log "
                            "WHERE at >= to_timestamp(%s) AND at <= to_timestamp(%s) ORDER BY seq",
                            (m.t0 - 0.001, m.t1 + 0.001)).fetchall()
    start = next((t for t, e, tag in rows if e == "ddl_command_start" and tag == "CREATE INDEX"), None)
    end = next((t for t, e, tag in rows if e == "ddl_command_end" and tag == "CREATE INDEX"), None)
    if start is None or end is None:
        return {"write": m.seconds, "index": 0.0, "cut-over": 0.0}
    return {"write": start - m.t0, "index": end - start, "cut-over": m.t1 - end}


def fresh_model_set(conn, cols):
    """Recreates the symmetric model set `bench` and fits it: its next materialize is a first
    one (materialising a fit whose multipliers equal the served ones only switches the active
    fit, and refits of the same pairs are bitwise identical)."""
    conn.execute("DO $$ BEGIN PERFORM embedstack.drop_model_set('bench', true) "
                 "FROM embedstack.model_sets WHERE name = 'bench'; END $$")
    conn.execute("SELECT embedstack.create_model_set('bench', 'items', 'id', %s::name[])", (cols,))
    return conn.execute("SELECT id FROM embedstack.fit('bench', 'pairs', 'a', 'b', 'y')").fetchone()[0]


def expected_combined(d, rows, mult):
    blocks = [mult[m] * d.unit(m, rows) for m in range(len(d.dims)) if mult[m] != 0]
    return np.hstack(blocks)


def run(ctx):
    d = ctx.truth
    k = len(d.dims)
    cols = [f"m{m + 1}" for m in range(k)]
    reps = ctx.args.reps
    with ctx.connect() as conn:
        vs = vector_schema(conn)
        setup_ddl_log(conn)
        conn.execute("ALTER TABLE items SET (parallel_workers = 2)")
        for t in ("mat_ctas", "mat_seed", "mat_floor"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        fid0 = fresh_model_set(conn, cols)
        weights = np.array(conn.execute("SELECT weights FROM embedstack.fits WHERE id = %s", (fid0,)).fetchone()[0])
        mult = list(conn.execute("SELECT embedstack.block_multipliers(%s, 'symmetric', 0.05)",
                                 (weights.tolist(),)).fetchone()[0])
        refit_args = conn.execute("SELECT p.proargnames FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                                  "WHERE n.nspname = 'embedstack' AND p.proname = 'refit' AND p.prokind = 'p'").fetchone()
        has_refit = refit_args is not None
        # The query-weighted model set, materialised once (its stored vectors never change), on
        # a copy of the table: its HNSW index on `items` would make materialize's UPDATEs there
        # non-HOT on full pages, each row then inserted into that index (tens of rows/s).
        conn.execute("DO $$ BEGIN PERFORM embedstack.drop_model_set('bench_qw', true) "
                     "FROM embedstack.model_sets WHERE name = 'bench_qw'; END $$")
        conn.execute("DROP TABLE IF EXISTS items_qw")
        conn.execute(f"CREATE TABLE items_qw AS SELECT id, {', '.join(cols)} FROM items")
        conn.execute("ALTER TABLE items_qw ADD PRIMARY KEY (id)")
        conn.execute("ALTER TABLE items_qw SET (parallel_workers = 2)")
        conn.execute("VACUUM ANALYZE items_qw")
        conn.execute("SELECT embedstack.create_model_set('bench_qw', 'items_qw', 'id', %s::name[], "
                     "mode => 'query_weighted', combined_column => 'bench_qw_combined')", (cols,))
        qw_fid = conn.execute("SELECT id FROM embedstack.fit('bench_qw', 'pairs', 'a', 'b', 'y')").fetchone()[0]
    width = sum(dm for dm, s in zip(d.dims, mult) if s != 0)
    log(f"materialize: multipliers {mult}, combined width {width}; refit procedure "
        f"{'exists' if has_refit else 'does not exist: timing fit + materialize'}")
    m0 = measure(ctx, lambda conn: conn.execute(f"CALL embedstack.materialize('bench_qw', {qw_fid})"), setup=MWM)
    log(f"query-weighted model set materialised once (one-off, not a refit): {m0.seconds:.1f} s")

    kept = [(c, dm, s) for c, dm, s in zip(cols, d.dims, mult) if s != 0]
    expr = " || ".join(f"{vs}.l2_normalize({c}) * array_fill({float(s)!r}::real, ARRAY[{dm}])::{vs}.vector"
                       for c, dm, s in kept)

    def do_materialize(fid):
        return lambda conn: conn.execute(f"CALL embedstack.materialize('bench', {fid})")

    def do_ctas(conn):
        ph = {}
        t = time.time()
        conn.execute(f"CREATE TABLE mat_ctas AS SELECT id, ({expr})::{vs}.vector({width}) AS v FROM items")
        ph["write"] = time.time() - t
        t = time.time()
        conn.execute("ALTER TABLE mat_ctas SET (parallel_workers = 2)")
        conn.execute("CREATE INDEX mat_ctas_hnsw ON mat_ctas USING hnsw (v vector_ip_ops)")
        ph["index"] = time.time() - t
        return ph

    def do_seed(conn):
        return seed.end_to_end(conn, "items", "pairs", cols, d.dims, "mat_seed", vs)

    def do_floor(conn):
        conn.execute("CREATE UNLOGGED TABLE mat_floor AS SELECT id, bench_combined AS v FROM items")

    # The same work as the seed's: fit on every pair and serve the new fit (the default refit
    # also holds out pairs to compare the new fit with the active one, and may keep the latter).
    opts = [o for o in ("holdout_fraction => 0", "cutover => 'always'") if has_refit and o.split()[0] in refit_args[0]]
    refit_sql = ("CALL embedstack.refit('bench_qw', 'pairs', 'a', 'b', 'y'" + "".join(", " + o for o in opts) + ")"
                 if has_refit else None)

    def do_refit(conn):
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        if refit_sql:
            conn.execute(refit_sql)
        else:
            fid = conn.execute("SELECT id FROM embedstack.fit('bench_qw', 'pairs', 'a', 'b', 'y')").fetchone()[0]
            conn.execute(f"CALL embedstack.materialize('bench_qw', {fid})")
        return notices

    names = {
        "mat": "embedstack.materialize (batches of 10,000 + HNSW + cut-over)",
        "ctas": "pgvector CREATE TABLE AS (l2_normalize * array_fill || ..) + HNSW",
        "seed": "seed: pull items + numpy combine + COPY back + HNSW",
        "floor": "floor: CREATE UNLOGGED TABLE AS of the finished vectors (write only, no index)",
        "refit": ("CALL embedstack.refit (query-weighted)" if has_refit
                  else "embedstack.fit + CALL materialize (query-weighted: switches the active fit)"),
        "seed_e2e": "seed end to end: pull, cosines, LinearRegression, combine, COPY back, HNSW",
    }
    runs = {n: [] for n in names}
    phases = {n: [] for n in names}
    hwm = {n: 0 for n in names}
    client_hwm = 0
    mat_rss = []  # (write-phase peak, index-phase peak, VmHWM) per materialize run, kB
    seed_mult = None
    refit_notices = []

    def prepare(*tables):
        with ctx.connect() as conn:
            for t in tables:
                conn.execute(f"DROP TABLE IF EXISTS {t}")
            conn.execute("CHECKPOINT")

    for rep in range(reps):
        with ctx.connect() as conn:
            fid = fid0 if rep == 0 else fresh_model_set(conn, cols)
        prepare()
        m = measure(ctx, do_materialize(fid), setup=MWM, sample_rss=True)
        ph = materialize_phases(ctx, m)
        runs["mat"].append(m.seconds)
        phases["mat"].append(ph)
        hwm["mat"] = max(hwm["mat"], m.backend_hwm_kb or 0)
        mat_rss.append((m.sampler.peak_between(m.t0, m.t0 + ph["write"]),
                        m.sampler.peak_between(m.t0 + ph["write"], m.t1), m.backend_hwm_kb))
        log(f"materialize rep {rep + 1}: {m.seconds:.1f} s {fmt_ph(ph)}")

        prepare("mat_ctas")
        m = measure(ctx, do_ctas, setup=MWM)
        runs["ctas"].append(m.seconds)
        phases["ctas"].append(m.value)
        hwm["ctas"] = max(hwm["ctas"], m.backend_hwm_kb or 0)
        log(f"CTAS rep {rep + 1}: {m.seconds:.1f} s {fmt_ph(m.value)}")

        prepare("mat_seed")
        m = measure(ctx, do_seed, setup=MWM, client_memory=True)
        w_seed, b_seed, seed_mult, ph = m.value
        runs["seed_e2e"].append(m.seconds)
        phases["seed_e2e"].append(ph)
        sm = {p: ph[p] for p in ("pull items", "combine", "COPY back", "CREATE INDEX hnsw")}
        runs["seed"].append(sum(sm.values()))
        phases["seed"].append(sm)
        client_hwm = max(client_hwm, m.client_hwm_kb or 0)
        hwm["seed_e2e"] = max(hwm["seed_e2e"], m.backend_hwm_kb or 0)
        log(f"seed end to end rep {rep + 1}: {m.seconds:.1f} s {fmt_ph(ph)}")

        prepare("mat_floor")
        m = measure(ctx, do_floor)
        runs["floor"].append(m.seconds)
        log(f"floor rep {rep + 1}: {m.seconds:.1f} s")

        prepare()
        m = measure(ctx, do_refit)
        runs["refit"].append(m.seconds)
        hwm["refit"] = max(hwm["refit"], m.backend_hwm_kb or 0)
        refit_notices = m.value
        log(f"refit rep {rep + 1}: {m.seconds:.2f} s ({'; '.join(refit_notices)[:200]})")

    checks(ctx, vs, weights, mult, seed_mult, w_seed, b_seed, width, reps)
    with ctx.connect() as conn:
        drop_ddl_log(conn)

    med_ph = {n: {p: median([x[p] for x in phases[n]]) for p in phases[n][0]} for n in names if phases[n]}
    ctx.results["materialize"] = {
        "names": names,
        "runs": runs,
        "median": {n: median(r) for n, r in runs.items()},
        "phases": med_ph,
        "rows": d.n,
        "width": width,
        "multipliers": mult,
        "backend_hwm_kb": hwm,
        "seed_client_hwm_kb": client_hwm,
        "mat_rss": mat_rss,
        "qw_initial_s": m0.seconds,
        "has_refit": bool(has_refit),
        "refit_sql": refit_sql,
        "refit_notices": refit_notices,
    }


def fmt_ph(ph):
    return "(" + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) + ")"


def checks(ctx, vs, weights, mult, seed_mult, w_seed, b_seed, width, reps):
    d = ctx.truth
    k = len(d.dims)
    rng = np.random.default_rng(d.seed + 3)
    rows = np.sort(rng.choice(d.n, size=min(SAMPLE, d.n), replace=False))
    ids = (rows + 1).tolist()
    expect = expected_combined(d, rows, mult)
    vcols = [("id", "int4", None), ("v", "vector", width)]
    with ctx.connect() as conn:
        counts = conn.execute("SELECT (SELECT count(bench_combined) FROM items), (SELECT count(v) FROM mat_ctas), "
                              "(SELECT count(v) FROM mat_seed), (SELECT count(v) FROM mat_floor)").fetchone()
        ctx.check("materialize", "every row has its vector (materialize, CTAS, seed, floor)",
                  all(c == d.n for c in counts), f"counts {counts}")
        for name, q in (("embedstack.materialize", "SELECT id, bench_combined FROM items"),
                        ("pgvector CTAS", "SELECT id, v FROM mat_ctas"),
                        ("seed COPY back", "SELECT id, v FROM mat_seed")):
            rec = copy_out(conn, f"{q} WHERE id = ANY('{{{','.join(map(str, ids))}}}'::int[]) ORDER BY id", vcols)
            got = rec["v"].astype(np.float64)
            ok_ids = np.array_equal(rec["id"].astype(np.int64), np.array(ids))
            diff = float(np.max(np.abs(got - expect))) if ok_ids else float("inf")
            ctx.check("materialize", f"{name}: {len(ids)} sampled vectors == numpy weighted concatenation",
                      ok_ids and diff < 1e-6, f"max abs difference {diff:.2e}")
        dm = float(np.max(np.abs(np.array(seed_mult) - np.array(mult))))
        ctx.check("materialize", "seed's multipliers == embedstack.block_multipliers", dm < 1e-6, f"max difference {dm:.2e}")
        dw = max(float(np.max(np.abs(np.array(w_seed) - weights))), 0.0)
        ctx.check("refit", "seed end to end weights == embedstack.fit", dw < 1e-6, f"max difference {dw:.2e}")
        # The served index by the catalog's name for it (<table>_<column>_<md5 prefix>_hnsw since 0.2.1).
        idx = conn.execute("SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                           "WHERE x.indrelid = 'items'::regclass AND x.indisvalid AND c.relname = "
                           "(SELECT served_index FROM embedstack.model_sets WHERE name = 'bench')").fetchone()[0]
        ctx.check("materialize", "the served HNSW index of 'bench' is valid", idx == 1, f"{idx} valid index")

        # Served scores == weighted sums of the cosines, for sampled labelled pairs.
        np_ = min(300, d.n_pairs)
        pa, pb = d.a[:np_].tolist(), d.b[:np_].tolist()
        cos = d.features[:np_]
        qw_fits = conn.execute("SELECT m.active_fit, (SELECT count(*) FROM embedstack.fits f WHERE f.model_set = 'bench_qw'), "
                               "(SELECT max(id) FROM embedstack.fits f WHERE f.model_set = 'bench_qw'), "
                               "(SELECT weights FROM embedstack.fits f WHERE f.id = m.active_fit) "
                               "FROM embedstack.model_sets m WHERE m.name = 'bench_qw'").fetchone()
        active, nfits, maxfit, qw_w = qw_fits
        ctx.check("refit", f"query-weighted refits: active fit is the newest ({reps} refits + the initial fit)",
                  active == maxfit and nfits == reps + 1, f"active {active}, newest {maxfit}, {nfits} fits")
        qw_w = np.array(qw_w)
        dq = float(np.max(np.abs(qw_w - weights)))
        ctx.check("refit", "refit weights == embedstack.fit", dq < 1e-6, f"max difference {dq:.2e}")
        cols = ", ".join(f"x.m{m + 1}" for m in range(k))
        got_qw = conn.execute(
            "SELECT -(embedstack.query_vector('bench_qw', ARRAY[" + cols + "]) <#> y.bench_qw_combined) "
            "FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY u(a, b, o) JOIN items_qw x ON x.id = u.a "
            "JOIN items_qw y ON y.id = u.b ORDER BY u.o", (pa, pb)).fetchall()
        got_sym = conn.execute(
            "SELECT -(x.bench_combined <#> y.bench_combined) "
            "FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY u(a, b, o) JOIN items x ON x.id = u.a "
            "JOIN items y ON y.id = u.b ORDER BY u.o", (pa, pb)).fetchall()
        got = np.array([[q[0], s_[0]] for q, s_ in zip(got_qw, got_sym)], dtype=np.float64)
        exp_qw = cos @ (qw_w / np.max(np.abs(qw_w)))
        sym_w = np.array([s * s for s in mult])
        exp_sym = cos @ sym_w
        e1 = float(np.max(np.abs(got[:, 0] - exp_qw)))
        e2 = float(np.max(np.abs(got[:, 1] - exp_sym)))
        ctx.check("refit", f"query-weighted: <query_vector(a), stored(b)> == sum_k (w_k/max|w|) cos_k ({np_} pairs)",
                  e1 < 1e-5, f"max difference {e1:.2e}")
        ctx.check("materialize", f"symmetric: <combined(a), combined(b)> == sum_kept (w_k/w_max) cos_k ({np_} pairs)",
                  e2 < 1e-5, f"max difference {e2:.2e}")
