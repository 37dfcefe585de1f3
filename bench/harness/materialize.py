"""3. Materialise (0.3.0 storage, docs/design.md section 7): CALL embedstack.materialize writes a new
generation table `items_bench_g<id>` (key, combined vector) in committed batches, builds its HNSW
index and redefines the served view `items_bench` (key, combined vector); the source `items` is
only read. Compared with what a user would write by hand for the same result: CREATE TABLE AS of
the key and the combined vector computed the same way (the same row kernel,
`embedstack._combine_vector`, with the served multipliers) + CREATE INDEX ... USING hnsw with the
same settings (the session's maintenance_work_mem 2GB and max_parallel_maintenance_workers,
default table options on both tables: the workers each build really got are sampled from
pg_stat_activity). Also: the write phase of a CTAS with pgvector's own expression
(`l2_normalize(m) * array_fill(s, ..)::vector || ..`, no index: its build would be the same),
the seed (numpy combine + COPY back + the same index), and a floor that copies the finished
vectors into an UNLOGGED table (no computing, no WAL, no index). materialize's phases come from
the DDL log (event triggers): write = up to the start of its CREATE INDEX (prepare, the wait for
the source's writers and the batches), index = the CREATE INDEX, cut-over = the rest (the wait
for older transactions, the view's redefinition, retention).
4. Refit in query-weighted mode end to end (CALL embedstack.refit when it exists, else fit +
materialize, which only switches the active fit) vs the seed end to end (pull, cosines,
LinearRegression, combine, COPY back, index).

One interleaved loop per repetition: materialize, CTAS, CTAS with the pgvector expression, seed
end to end, floor, refit. Each materialize is the first one of a freshly created and fitted model
set (untimed), as materialising a fit with the served multipliers only switches the active fit.
The seed's materialise time is its end-to-end run's pull-items + combine + COPY + index phases."""

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


def served(conn, name):
    """(schema-qualified view, combined column, source schema) of a model set (0.3.0 catalog)."""
    return conn.execute("SELECT format('%%I.%%I', n.nspname, m.view_name), m.combined_column, n.nspname "
                        "FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE m.name = %s", (name,)).fetchone()


def source_columns(conn, table):
    return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                       "AND attnum > 0 ORDER BY attnum", (table,)).fetchall()]


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
        # Default table options everywhere (earlier versions of the harness forced 2 workers on
        # every table; the generation tables of materialize have default options).
        conn.execute("ALTER TABLE items RESET (parallel_workers)")
        cols_before = source_columns(conn, "items")
        for t in ("mat_ctas", "mat_ctas_expr", "mat_seed", "mat_floor"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        fid0 = fresh_model_set(conn, cols)
        weights = np.array(conn.execute("SELECT weights FROM embedstack.fits WHERE id = %s", (fid0,)).fetchone()[0])
        mult = list(conn.execute("SELECT embedstack.block_multipliers(%s, 'symmetric', 0.05)",
                                 (weights.tolist(),)).fetchone()[0])
        refit_args = conn.execute("SELECT p.proargnames FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                                  "WHERE n.nspname = 'embedstack' AND p.proname = 'refit' AND p.prokind = 'p'").fetchone()
        has_refit = refit_args is not None
        # The query-weighted model set, materialised once (its stored vectors never change), on
        # the same table (0.3.0: a model set adds nothing to its source; each has its own view).
        conn.execute("DO $$ BEGIN PERFORM embedstack.drop_model_set('bench_qw', true) "
                     "FROM embedstack.model_sets WHERE name = 'bench_qw'; END $$")
        conn.execute("DROP TABLE IF EXISTS items_qw")
        conn.execute("SELECT embedstack.create_model_set('bench_qw', 'items', 'id', %s::name[], "
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
    # The row kernel materialize uses (sql/materialize.sql, _combine_expr), with the multipliers.
    kernel = (f"embedstack._combine_vector('{{{','.join(repr(float(x)) for x in mult)}}}'::float8[], "
              f"'{{{','.join(str(x) for x in d.dims)}}}'::int4[], '{{{','.join(cols)}}}'::text[], id, {', '.join(cols)})")

    def do_materialize(fid):
        return lambda conn: conn.execute(f"CALL embedstack.materialize('bench', {fid})")

    def do_ctas(conn):
        ph = {}
        t = time.time()
        conn.execute(f"CREATE TABLE mat_ctas AS SELECT id, {kernel}::{vs}.vector({width}) AS v FROM items")
        ph["write"] = time.time() - t
        t = time.time()
        conn.execute("CREATE INDEX mat_ctas_hnsw ON mat_ctas USING hnsw (v vector_ip_ops)")
        ph["index"] = time.time() - t
        return ph

    def do_ctas_expr(conn):
        t = time.time()
        conn.execute(f"CREATE TABLE mat_ctas_expr AS SELECT id, ({expr})::{vs}.vector({width}) AS v FROM items")
        return {"write": time.time() - t}

    def do_seed(conn):
        return seed.end_to_end(conn, "items", "pairs", cols, d.dims, "mat_seed", vs)

    def do_floor(conn):
        conn.execute(f"CREATE UNLOGGED TABLE mat_floor AS SELECT id, {comb} AS v FROM {view}")

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

    with ctx.connect() as conn:
        view, comb, _ = served(conn, "bench")
    names = {
        "mat": "embedstack.materialize (generation table in batches of 10,000 + HNSW + view cut-over)",
        "ctas": "CREATE TABLE AS (key, _combine_vector(..)) + CREATE INDEX hnsw",
        "ctas_expr": "CREATE TABLE AS with pgvector's expression (l2_normalize * array_fill || ..), write only",
        "seed": "seed: pull items + numpy combine + COPY back + HNSW",
        "floor": "floor: CREATE UNLOGGED TABLE AS of the finished vectors (write only, no index)",
        "refit": ("CALL embedstack.refit (query-weighted)" if has_refit
                  else "embedstack.fit + CALL materialize (query-weighted: switches the active fit)"),
        "seed_e2e": "seed end to end: pull, cosines, LinearRegression, combine, COPY back, HNSW",
    }
    runs = {n: [] for n in names}
    phases = {n: [] for n in names}
    hwm = {n: 0 for n in names}
    workers = {n: [] for n in names}  # parallel workers seen during each run's index build
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
        m = measure(ctx, do_materialize(fid), setup=MWM, sample_rss=True, sample_workers=True)
        ph = materialize_phases(ctx, m)
        workers["mat"].append(m.workers.max_between(m.t0 + ph["write"], m.t0 + ph["write"] + ph["index"]))
        runs["mat"].append(m.seconds)
        phases["mat"].append(ph)
        hwm["mat"] = max(hwm["mat"], m.backend_hwm_kb or 0)
        mat_rss.append((m.sampler.peak_between(m.t0, m.t0 + ph["write"]),
                        m.sampler.peak_between(m.t0 + ph["write"], m.t1), m.backend_hwm_kb))
        log(f"materialize rep {rep + 1}: {m.seconds:.1f} s {fmt_ph(ph)}")

        prepare("mat_ctas")
        m = measure(ctx, do_ctas, setup=MWM, sample_workers=True)
        runs["ctas"].append(m.seconds)
        phases["ctas"].append(m.value)
        workers["ctas"].append(m.workers.max_between(m.t1 - m.value["index"], m.t1))
        hwm["ctas"] = max(hwm["ctas"], m.backend_hwm_kb or 0)
        log(f"CTAS rep {rep + 1}: {m.seconds:.1f} s {fmt_ph(m.value)}, {workers['ctas'][-1]} index build workers "
            f"(materialize's: {workers['mat'][-1]})")

        prepare("mat_ctas_expr")
        m = measure(ctx, do_ctas_expr)
        runs["ctas_expr"].append(m.seconds)
        phases["ctas_expr"].append(m.value)
        hwm["ctas_expr"] = max(hwm["ctas_expr"], m.backend_hwm_kb or 0)
        log(f"CTAS (pgvector expression, write only) rep {rep + 1}: {m.seconds:.1f} s")

        prepare("mat_seed")
        m = measure(ctx, do_seed, setup=MWM, client_memory=True, sample_workers=True)
        w_seed, b_seed, seed_mult, ph = m.value
        workers["seed"].append(m.workers.max_between(m.t1 - ph["CREATE INDEX hnsw"], m.t1))
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

    checks(ctx, vs, weights, mult, seed_mult, w_seed, b_seed, width, reps, cols_before)
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
        "workers": workers,
        "seed_client_hwm_kb": client_hwm,
        "mat_rss": mat_rss,
        "qw_initial_s": m0.seconds,
        "has_refit": bool(has_refit),
        "refit_sql": refit_sql,
        "refit_notices": refit_notices,
    }


def fmt_ph(ph):
    return "(" + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) + ")"


def checks(ctx, vs, weights, mult, seed_mult, w_seed, b_seed, width, reps, cols_before):
    d = ctx.truth
    k = len(d.dims)
    rng = np.random.default_rng(d.seed + 3)
    rows = np.sort(rng.choice(d.n, size=min(SAMPLE, d.n), replace=False))
    ids = (rows + 1).tolist()
    expect = expected_combined(d, rows, mult)
    vcols = [("id", "int4", None), ("v", "vector", width)]
    with ctx.connect() as conn:
        view, comb, nsp = served(conn, "bench")
        qw_view, qw_comb, _ = served(conn, "bench_qw")
        cols_after = source_columns(conn, "items")
        ctx.check("materialize", "the source table is left as it was (no column added by materialize or refit)",
                  cols_after == cols_before, f"columns of items: {cols_after}")
        # Served vectors: the view joined to the source (README's query shape).
        counts = conn.execute(f"SELECT (SELECT count(v.{comb}) FROM items s JOIN {view} v USING (id)), "
                              f"(SELECT count(*) FROM {view}), (SELECT count(v) FROM mat_ctas), "
                              "(SELECT count(v) FROM mat_ctas_expr), (SELECT count(v) FROM mat_seed), "
                              "(SELECT count(v) FROM mat_floor)").fetchone()
        ctx.check("materialize", "every row has its vector (materialize's view joined to items, the view, CTAS, "
                  "CTAS expression, seed, floor)", all(c == d.n for c in counts), f"counts {counts}")
        for name, q in (("embedstack.materialize (view)", f"SELECT s.id, v.{comb} FROM items s JOIN {view} v USING (id)"),
                        ("CTAS with _combine_vector", "SELECT id, v FROM mat_ctas"),
                        ("CTAS with the pgvector expression", "SELECT id, v FROM mat_ctas_expr"),
                        ("seed COPY back", "SELECT id, v FROM mat_seed")):
            where = "s.id" if "JOIN" in q else "id"
            rec = copy_out(conn, f"{q} WHERE {where} = ANY('{{{','.join(map(str, ids))}}}'::int[]) ORDER BY {where}", vcols)
            got = rec["v"].astype(np.float64)
            ok_ids = np.array_equal(rec["id"].astype(np.int64), np.array(ids))
            diff = float(np.max(np.abs(got - expect))) if ok_ids else float("inf")
            ctx.check("materialize", f"{name}: {len(ids)} sampled vectors == numpy weighted concatenation",
                      ok_ids and diff < 1e-6, f"max abs difference {diff:.2e}")
        dm = float(np.max(np.abs(np.array(seed_mult) - np.array(mult))))
        ctx.check("materialize", "seed's multipliers == embedstack.block_multipliers", dm < 1e-6, f"max difference {dm:.2e}")
        dw = max(float(np.max(np.abs(np.array(w_seed) - weights))), 0.0)
        ctx.check("refit", "seed end to end weights == embedstack.fit", dw < 1e-6, f"max difference {dw:.2e}")
        # The served index: the served generation's (catalog), in the source's schema, valid, hnsw.
        idx = conn.execute("SELECT count(*) FROM embedstack.model_sets m JOIN embedstack.generations g "
                           "ON g.id = m.served_generation JOIN pg_index x ON x.indrelid = g.relation "
                           "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_am a ON a.oid = c.relam "
                           "WHERE m.name = 'bench' AND x.indisvalid AND a.amname = 'hnsw' AND c.relname = m.served_index "
                           "AND c.relnamespace = %s::regnamespace", (nsp,)).fetchone()[0]
        ctx.check("materialize", "the served HNSW index of 'bench' (its served generation's) is valid", idx == 1,
                  f"{idx} valid index")

        # Served scores == weighted sums of the cosines, for sampled labelled pairs.
        np_ = min(300, d.n_pairs)
        pa, pb = d.a[:np_].tolist(), d.b[:np_].tolist()
        cos = d.features[:np_]
        qw_fits = conn.execute("SELECT m.active_fit, (SELECT count(*) FROM embedstack.fits f WHERE f.model_set = 'bench_qw'), "
                               "(SELECT max(id) FROM embedstack.fits f WHERE f.model_set = 'bench_qw'), "
                               "(SELECT weights FROM embedstack.fits f WHERE f.id = m.active_fit) "
                               "FROM embedstack.model_sets m WHERE m.name = 'bench_qw'").fetchone()
        active, nfits, maxfit, qw_w = qw_fits
        newest_w = conn.execute("SELECT weights FROM embedstack.fits WHERE id = %s", (maxfit,)).fetchone()[0]
        ctx.check("refit", f"query-weighted refits: the active fit has the newest fit's weights ({reps} refits + the "
                  "initial fit; since 0.4.0 a refit whose fit serves exactly what is served changes nothing)",
                  list(newest_w) == list(qw_w) and nfits == reps + 1, f"active {active}, newest {maxfit}, {nfits} fits")
        qw_w = np.array(qw_w)
        dq = float(np.max(np.abs(qw_w - weights)))
        ctx.check("refit", "refit weights == embedstack.fit", dq < 1e-6, f"max difference {dq:.2e}")
        cols = ", ".join(f"x.m{m + 1}" for m in range(k))
        got_qw = conn.execute(
            f"SELECT -(embedstack.query_vector('bench_qw', ARRAY[" + cols + f"]) <#> yv.{qw_comb}) "
            f"FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY u(a, b, o) JOIN items x ON x.id = u.a "
            f"JOIN items y ON y.id = u.b JOIN {qw_view} yv ON yv.id = y.id ORDER BY u.o", (pa, pb)).fetchall()
        got_sym = conn.execute(
            f"SELECT -(xv.{comb} <#> yv.{comb}) "
            f"FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY u(a, b, o) JOIN items x ON x.id = u.a "
            f"JOIN items y ON y.id = u.b JOIN {view} xv ON xv.id = x.id JOIN {view} yv ON yv.id = y.id "
            f"ORDER BY u.o", (pa, pb)).fetchall()
        ctx.check("materialize", f"every sampled pair has its served vectors through the views ({np_} pairs)",
                  len(got_qw) == np_ and len(got_sym) == np_, f"{len(got_qw)} query-weighted, {len(got_sym)} symmetric")
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
