"""7. Refit under load: embedstack 0.2.1 against 0.3.0, interleaved in one run.

0.2.1 serves the combined vector as a column of the user's table: a refit adds a staging column,
rewrites every row of the source in batches (non-HOT updates that go through the served HNSW
index), builds the index and swaps the columns under ACCESS EXCLUSIVE on the source. 0.3.0
(docs/design.md section 7) writes a new generation table, builds its index and redefines the
served view; the source is only read. Both run here, each in a scratch database of its own with
the same data:

- `<db>_v021`: CREATE EXTENSION vector; CREATE EXTENSION embedstack VERSION '0.2.1' (the frozen
  install script). The 0.3.0 library's catalog writers do not accept 0.2.1's calls, so by
  default the C functions of that database are pointed (pg_proc.probin, this database only) at
  the 0.2.1 library built from its commit by bench/harness/v021-library.sh; --v021-library
  installed keeps the installed one (works only if that library still serves 0.2.1's SQL).
- `<db>_v030`: CREATE EXTENSION embedstack (the default version, the installed library, or the one
  of run.py --library).

Data: `items(id int primary key, m1.., mK vector(dims))` of --load-rows rows at the default
fillfactor, `pairs(a, b, y)` and `pairs_alt` (the same pairs labelled with other true weights):
refits alternate between the two tables, so that every refit serves a new layout (the
multipliers change) and writes every row. Set-up (untimed): model set `load` (symmetric), a fit
on pairs_alt, materialize, VACUUM ANALYZE.

Each timed refit runs under load: --load-writers threads, each loop an UPDATE of one random
row's model column (a random model; rows that no pair uses, so that both versions fit the same
data) + an INSERT of a new row + COMMIT, and --load-readers threads running README-shaped top-10
queries (0.2.1: `SELECT s.id FROM items s ORDER BY s.load_combined <#>
embedstack.query_vector('load', $1) LIMIT 10`; 0.3.0: the source joined to the view
`items_load`); the load starts --load-warmup seconds before the CALL (the baseline throughput)
and stops when it returns. Timed: `CALL embedstack.refit('load', <pairs>, 'a', 'b', 'y',
holdout_fraction => 0, cutover => 'always')`; its phases from the job's row in embedstack.jobs
(polled). Checks (never on timings): the refit succeeded and serves its fit; its weights are the
labels' true weights (within 0.05) and equal between the versions; the served multipliers are
sqrt(w_k / w_max) (threshold 0.05) and changed; after the refit every source row has exactly one
served vector equal to embedstack._combine_vector over the source for the served multipliers;
every reader answer had 10 rows; no reader or writer failed."""

import os
import subprocess
import threading
import time

import numpy as np
import psycopg

from common import copy_in, loaded_libraries, log, median, point_library
from datagen import Dataset

SET = "load"
VERSIONS = ("0.2.1", "0.3.0")
MWM = "SET maintenance_work_mem = '2GB'"
THRESHOLD = 0.05
POOL = 256  # random vectors per model the writers draw from
HERE = os.path.dirname(os.path.abspath(__file__))


def db_name(ctx, v):
    return f"{ctx.args.db}_v{v.replace('.', '')}"


def v021_library(ctx):
    """(path or None for the installed library, description, reason to skip 0.2.1 or None)."""
    a = ctx.args.v021_library
    if a == "installed":
        return None, "the installed library", None
    if a != "auto":
        return (a, a, None) if os.path.exists(a) else (None, None, f"--v021-library {a} does not exist")
    script = os.path.join(HERE, "v021-library.sh")
    path = subprocess.run(["bash", script, "--path"], capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.exists(path):
        if not ctx.args.v021_build:
            return None, None, (f"the 0.2.1 library is not built ({path}): run bench/harness/v021-library.sh "
                                "or pass --v021-build")
        log("refit under load: building the 0.2.1 library (bench/harness/v021-library.sh)")
        path = subprocess.run(["bash", script], stdout=subprocess.PIPE, text=True, check=True).stdout.strip().splitlines()[-1]
    return path, path, None


def create_db(ctx, v, lib):
    name = db_name(ctx, v)
    with ctx.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    with ctx.connect(name) as conn:
        conn.execute("CREATE EXTENSION vector")
        if v == "0.2.1":
            conn.execute("CREATE EXTENSION embedstack VERSION '0.2.1'")
        else:
            conn.execute("CREATE EXTENSION embedstack")
        if lib:
            # This database only; this connection (which loaded the installed library while
            # creating the C functions) is closed right after.
            log(f"refit under load: {point_library(conn, lib)} C functions of {name} point at {lib}")
    with ctx.connect(name) as conn:
        ver = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'embedstack'").fetchone()[0]
        conn.execute("SELECT embedstack.l2_normalize('[1]'::vector)")  # loads the library
        libs = loaded_libraries(conn.info.backend_pid)
    want = lib or "/embedstack.so"
    # "0.3.0" stands for the storage of 0.3 and later (generation tables behind a view): the release
    # whose default version CREATE EXTENSION installed.
    same_line = ver == v or (v == "0.3.0" and tuple(int(x) for x in ver.split(".")) >= (0, 3, 0))
    ctx.check("refit_load", f"{v}: database {name} runs embedstack {v if ver == v else v + ' storage (' + ver + ')'} "
              "on the intended library",
              same_line and len(libs) == 1 and libs[0].endswith(want), f"extversion {ver}, loaded {libs}")
    return name


def load_data(ctx, conn, d, y_alt):
    d.load(conn)  # items (default fillfactor, primary key), pairs
    conn.execute("DROP TABLE IF EXISTS pairs_alt")
    conn.execute("CREATE TABLE pairs_alt (a int NOT NULL, b int NOT NULL, y float8 NOT NULL)")
    copy_in(conn, "pairs_alt", ["a", "b", "y"], [("a", "int4", None), ("b", "int4", None), ("y", "float8", None)],
            [d.a, d.b, y_alt], chunk_rows=200000)
    conn.execute("VACUUM ANALYZE pairs_alt")


def catalog(conn, v):
    """(combined column, served relation for reads, the reader's query) of the model set."""
    comb = conn.execute("SELECT combined_column FROM embedstack.model_sets WHERE name = %s", (SET,)).fetchone()[0]
    if v == "0.2.1":
        return comb, None, (f"SELECT s.id FROM items s ORDER BY s.{comb} <#> embedstack.query_vector('{SET}', %s::int) "
                            "LIMIT 10")
    view = conn.execute("SELECT format('%%I.%%I', n.nspname, m.view_name) FROM embedstack.model_sets m "
                        "JOIN pg_class c ON c.oid = m.source JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE m.name = %s", (SET,)).fetchone()[0]
    return comb, view, (f"SELECT s.id FROM items s JOIN {view} v USING (id) ORDER BY v.{comb} <#> "
                        f"embedstack.query_vector('{SET}', %s::int) LIMIT 10")


class Load:
    """Writer and reader threads on one database; every finished operation is recorded as
    (end time, seconds)."""

    def __init__(self, ctx, dbname, query, dims, rows, free_ids, next_id, seed):
        self.ctx = ctx
        self.rows = rows  # readers query the original rows 1..rows
        self.dbname = dbname
        self.query = query
        self.dims = dims
        self.free_ids = free_ids
        self.next_id = next_id  # [int], shared by the writers under self.lock
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.writes, self.reads = [], []  # (t_end, seconds)
        self.write_errors, self.read_errors = [], []
        self.short_answers = 0
        self.answers = 0
        rng = np.random.default_rng(seed)
        self.pool = [["[" + ",".join(f"{x:.6g}" for x in rng.standard_normal(dm)) + "]" for _ in range(POOL)]
                     for dm in dims]
        self.seed = seed
        self.threads = []

    def _new_id(self):
        with self.lock:
            self.next_id[0] += 1
            return self.next_id[0]

    def writer(self, i):
        rng = np.random.default_rng(self.seed * 1000 + i)
        k = len(self.dims)
        cols = ", ".join(f"m{m + 1}" for m in range(k))
        ins = f"INSERT INTO items (id, {cols}) VALUES (%s, " + ", ".join(["%s::vector"] * k) + ")"
        with self.ctx.connect(self.dbname, autocommit=False) as conn:
            while not self.stop.is_set():
                t = time.time()
                try:
                    m = int(rng.integers(k))
                    conn.execute(f"UPDATE items SET m{m + 1} = %s::vector WHERE id = %s",
                                 (self.pool[m][int(rng.integers(POOL))], int(rng.choice(self.free_ids))))
                    conn.execute(ins, [self._new_id()] + [self.pool[j][int(rng.integers(POOL))] for j in range(k)])
                    conn.commit()
                    e = time.time()
                    self.writes.append((e, e - t))
                except psycopg.Error as ex:
                    conn.rollback()
                    self.write_errors.append(f"{type(ex).__name__}: {str(ex).splitlines()[0]}")
                    time.sleep(0.05)

    def reader(self, i):
        rng = np.random.default_rng(self.seed * 1000 + 500 + i)
        with self.ctx.connect(self.dbname) as conn:
            while not self.stop.is_set():
                t = time.time()
                try:
                    rows = conn.execute(self.query, (int(rng.integers(1, self.rows + 1)),)).fetchall()
                    e = time.time()
                    self.reads.append((e, e - t))
                    self.answers += 1
                    self.short_answers += len(rows) != 10
                except psycopg.Error as ex:
                    self.read_errors.append(f"{type(ex).__name__}: {str(ex).splitlines()[0]}")
                    time.sleep(0.05)

    def start(self, writers, readers):
        self.threads = ([threading.Thread(target=self.writer, args=(i,), daemon=True) for i in range(writers)]
                        + [threading.Thread(target=self.reader, args=(i,), daemon=True) for i in range(readers)])
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


class JobPoller:
    """Polls the model set's latest job (phase) every `interval` s: the refit's phase timings."""

    def __init__(self, ctx, dbname, interval=0.2):
        self.ctx = ctx
        self.dbname = dbname
        self.interval = interval
        self.seen = []  # (time, job id, phase)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.ctx.connect(self.dbname) as conn:
            while not self.stop.is_set():
                # 0.3.0's index step ends with a catch-up (the keys the triggers recorded during
                # the build, applied to the indexed generation): after it set catchup_synced.
                r = conn.execute("SELECT id, CASE WHEN phase = 'index' AND details ? 'catchup_synced' THEN 'catchup' "
                                 "ELSE phase END FROM embedstack.jobs WHERE model_set = %s ORDER BY id DESC LIMIT 1",
                                 (SET,)).fetchone()
                if r and (not self.seen or self.seen[-1][1:] != tuple(r)):
                    self.seen.append((time.time(), r[0], r[1]))
                self.stop.wait(self.interval)

    GROUP = {"fit": "fit", "prepare": "write", "write": "write", "index": "index", "catchup": "catch-up",
             "wait": "cut-over", "cutover": "cut-over"}

    def windows(self, job, t0, t1):
        """[(phase group, start, end)] of a job within [t0, t1]: fit / write (prepare + write) /
        index (the HNSW build) / catch-up (0.3.0: the keys written during the build applied to the
        indexed generation) / cut-over (wait + cutover). A phase observed first at time t started at most one
        interval earlier: the time from the previous mark to this one goes to the previous phase
        (the first to 'fit')."""
        marks = [(t, p) for t, j, p in self.seen if j == job and t0 <= t <= t1 + 1]
        out = []
        prev_t, prev_p = t0, "fit"
        for t, p in marks:
            if p == prev_p:
                continue
            out.append((self.GROUP.get(prev_p, "cut-over"), prev_t, min(t, t1)))
            prev_t, prev_p = min(t, t1), p
        if prev_p != "done":
            out.append((self.GROUP.get(prev_p, "cut-over"), prev_t, t1))
        return out

    def phases(self, job, t0, t1):
        out = {"fit": 0.0, "write": 0.0, "index": 0.0, "catch-up": 0.0, "cut-over": 0.0}
        for g, a, b in self.windows(job, t0, t1):
            out[g] += max(0.0, b - a)
        return out


def longest_by_phase(ops, windows):
    """The longest operation that started in each phase group (seconds)."""
    out = {}
    for e, s in ops:
        start = e - s
        for g, a, b in windows:
            if a <= start < b:
                out[g] = max(out.get(g, 0.0), s)
                break
    return out


def rate(ops, t0, t1):
    n = sum(1 for e, _ in ops if t0 <= e <= t1)
    return n / (t1 - t0) if t1 > t0 else float("nan")


def p99(ops, t0, t1):
    xs = sorted(s for e, s in ops if t0 <= e <= t1)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


def expected_multipliers(w):
    w = np.asarray(w, dtype=np.float64)
    top = np.max(w)
    return np.where(w / top >= THRESHOLD, np.sqrt(np.clip(w / top, 0, None)), 0.0)


def served_check(ctx, conn, v, label):
    """Every source row has exactly one served vector, equal to _combine_vector over the source
    for the served multipliers (writers stopped)."""
    comb, view, _ = catalog(conn, v)
    k = conn.execute("SELECT cardinality(model_columns) FROM embedstack.model_sets WHERE name = %s", (SET,)).fetchone()[0]
    args = "s.id, " + ", ".join(f"s.m{m + 1}" for m in range(k))
    kernel = f"embedstack._combine_vector(m.served_multipliers, m.model_dims, m.model_columns::text[], {args})"
    if v == "0.2.1":
        r = conn.execute(f"SELECT count(*), count(s.{comb}), 0::bigint, count(*) FILTER (WHERE s.{comb} IS DISTINCT FROM {kernel}) "
                         f"FROM items s CROSS JOIN embedstack.model_sets m WHERE m.name = %s", (SET,)).fetchone()
    else:
        r = conn.execute(f"SELECT count(s.id), count(v.id), count(*) FILTER (WHERE s.id IS NULL OR v.id IS NULL), "
                         f"count(*) FILTER (WHERE v.{comb} IS DISTINCT FROM {kernel}) "
                         f"FROM items s FULL JOIN {view} v USING (id) CROSS JOIN embedstack.model_sets m "
                         f"WHERE m.name = %s", (SET,)).fetchone()
        dup = conn.execute(f"SELECT count(*) - count(DISTINCT id) FROM {view}").fetchone()[0]
        r = (r[0], r[1], r[2] + dup, r[3])
    src, srv, unmatched, differ = r
    ctx.check("refit_load", f"{v} {label}: every source row has one served vector == _combine_vector "
              "(served multipliers)", src == srv and unmatched == 0 and differ == 0,
              f"{src} source rows, {srv} served, {unmatched} unmatched or duplicated, {differ} differ")
    return src


def storage_bytes(conn, v):
    """Bytes of the source table, plus (0.3.0) every live generation table, indexes and TOAST included."""
    src = conn.execute("SELECT pg_total_relation_size('items')").fetchone()[0]
    if v == "0.2.1":
        return src
    gens = conn.execute("SELECT coalesce(sum(pg_total_relation_size(g.relation)), 0) FROM embedstack.generations g "
                        "WHERE g.model_set = %s AND g.relation IS NOT NULL", (SET,)).fetchone()[0]
    return src + int(gens)


def reader_plan(conn, query):
    """'HNSW index scan' when the reader's query is ordered by an index scan, else the top scan."""
    plan = [r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + query.replace("%s", "1")).fetchall()]
    if any("Order By:" in line for line in plan):
        return "HNSW index scan"
    scans = [line.strip().lstrip("-> ").strip() for line in plan if "Scan" in line]
    return (scans[0] if scans else plan[0]) + " + sort"


def bare_index_build(conn):
    """Seconds of a bare CREATE INDEX ... USING hnsw over a copy of the served generation's vectors
    (same maintenance_work_mem, parallel_workers as the refit's build): the floor of a refit."""
    rel, comb, storage = conn.execute(
        "SELECT g.relation::text, m.combined_column, g.storage FROM embedstack.model_sets m "
        "JOIN embedstack.generations g ON g.id = m.served_generation WHERE m.name = %s", (SET,)).fetchone()
    conn.execute("DROP TABLE IF EXISTS bare_floor")
    conn.execute(f"CREATE TABLE bare_floor AS SELECT * FROM {rel}")
    workers = conn.execute("SHOW max_parallel_maintenance_workers").fetchone()[0]
    conn.execute(f"ALTER TABLE bare_floor SET (parallel_workers = {int(workers)})")
    conn.execute(MWM)
    conn.execute("CHECKPOINT")
    t = time.time()
    conn.execute(f"CREATE INDEX ON bare_floor USING hnsw ({comb} {storage}_ip_ops)")
    secs = time.time() - t
    conn.execute("DROP TABLE bare_floor")
    return secs


def run(ctx):
    a = ctx.args
    n = a.load_rows
    n_pairs = a.load_pairs or n
    dims = a.dims
    k = len(dims)
    cols = [f"m{m + 1}" for m in range(k)]
    lib, lib_desc, skip = v021_library(ctx)
    with ctx.connect("postgres") as conn:
        avail = {r[0] for r in conn.execute("SELECT version FROM pg_available_extension_versions "
                                            "WHERE name = 'embedstack'").fetchall()}
    if skip is None and "0.2.1" not in avail:
        skip = "embedstack 0.2.1's install script is not installed"
    versions = [v for v in VERSIONS if not (v == "0.2.1" and skip)]
    if skip:
        log(f"refit under load: 0.2.1 not measured: {skip}")
        ctx.notes.append(f"Refit under load: 0.2.1 not measured ({skip}); 0.3.0 only.")

    d = Dataset(n, n_pairs, dims, a.seed + 11).generate()
    rng = np.random.default_rng(a.seed + 12)
    w_alt = d.true_w[::-1].copy()
    y_alt = d.true_b0 + d.features @ w_alt + d.noise_sd * rng.standard_normal(n_pairs)
    truth = {"pairs": d.true_w, "pairs_alt": w_alt}
    free_ids = np.setdiff1d(np.arange(1, n + 1), np.union1d(d.a, d.b))
    if len(free_ids) == 0:
        free_ids = np.arange(1, n + 1)  # (tiny sizes) then the fits of the two versions may differ
    log(f"refit under load: {n:,} rows x dims {dims}, {n_pairs:,} pairs, {len(free_ids):,} rows that no pair uses "
        f"(the writers' UPDATEs), versions {versions}")

    dbs, setup_s, mult_prev, next_ids = {}, {}, {}, {}
    for v in versions:
        t = time.time()
        dbs[v] = create_db(ctx, v, lib if v == "0.2.1" else ctx.library)
        with ctx.connect(dbs[v]) as conn:
            load_data(ctx, conn, d, y_alt)
            conn.execute(f"SELECT embedstack.create_model_set('{SET}', 'items', 'id', %s::name[])", (cols,))
            fid = conn.execute(f"SELECT id FROM embedstack.fit('{SET}', 'pairs_alt', 'a', 'b', 'y')").fetchone()[0]
            conn.execute(MWM)
            conn.execute(f"CALL embedstack.materialize('{SET}', {fid})")
            conn.execute("VACUUM ANALYZE items")
            mult_prev[v] = conn.execute("SELECT served_multipliers FROM embedstack.model_sets WHERE name = %s",
                                        (SET,)).fetchone()[0]
            ncols = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass "
                                                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
            comb, view, _ = catalog(conn, v)
        if v == "0.2.1":
            ctx.check("refit_load", "0.2.1 serves a column of the source table", comb in ncols, f"items columns {ncols}")
        else:
            ctx.check("refit_load", "0.3.0 serves through a view; the source keeps its columns",
                      ncols == ["id"] + cols and view is not None, f"items columns {ncols}, view {view}")
        next_ids[v] = [n]
        setup_s[v] = time.time() - t
        log(f"refit under load: {v} set up in {setup_s[v]:.1f} s (load, fit, first materialize)")

    runs = {v: [] for v in versions}
    phases = {v: [] for v in versions}
    thr = {v: [] for v in versions}  # per rep: dict of rates and latencies
    sizes = {v: [] for v in versions}
    plans = {v: [] for v in versions}  # the readers' plan before each refit
    weights = {v: [] for v in versions}
    bare = {v: [] for v in versions}  # 0.3.0: a bare HNSW build of the served vectors after each refit
    for rep in range(a.load_reps):
        target = "pairs" if rep % 2 == 0 else "pairs_alt"
        order = versions if rep % 2 == 0 else versions[::-1]
        for v in order:
            db = dbs[v]
            with ctx.connect(db) as conn:
                _, _, query = catalog(conn, v)
                size0 = storage_bytes(conn, v)
                plans[v].append(reader_plan(conn, query))
                conn.execute("CHECKPOINT")
            load = Load(ctx, db, query, dims, n, free_ids, next_ids[v], a.seed + 100 * rep + (1 if v == "0.2.1" else 2))
            poller = JobPoller(ctx, db)
            tl = time.time()
            load.start(a.load_writers, a.load_readers)
            time.sleep(a.load_warmup)
            poller.thread.start()
            sql = (f"CALL embedstack.refit('{SET}', '{target}', 'a', 'b', 'y', holdout_fraction => 0, "
                   "cutover => 'always')")
            err = None
            with ctx.connect(db) as conn:
                conn.execute(MWM)
                notices = []
                conn.add_notice_handler(lambda diag, out=notices: out.append(diag.message_primary or ""))
                last_job = conn.execute("SELECT coalesce(max(id), 0) FROM embedstack.jobs").fetchone()[0]
                t0 = time.time()
                try:
                    conn.execute(sql)
                except psycopg.Error as ex:
                    err = f"{type(ex).__name__}: {str(ex).splitlines()[0]}"
                t1 = time.time()
            load.finish()
            poller.stop.set()
            poller.thread.join()
            secs = t1 - t0
            with ctx.connect(db) as conn:
                job = conn.execute("SELECT id, state, fit_id, outcome FROM embedstack.jobs WHERE model_set = %s "
                                   "AND kind = 'refit' AND id > %s ORDER BY id DESC LIMIT 1", (SET, last_job)).fetchone()
                ms = conn.execute("SELECT active_fit, served_multipliers, (SELECT max(id) FROM embedstack.fits) "
                                  "FROM embedstack.model_sets WHERE name = %s", (SET,)).fetchone()
                w = conn.execute("SELECT weights FROM embedstack.fits WHERE id = %s", (ms[0],)).fetchone()[0]
                size1 = storage_bytes(conn, v)
                live = (conn.execute("SELECT count(*) FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation "
                                     "WHERE g.model_set = %s", (SET,)).fetchone()[0] if v == "0.3.0" else None)
                ok_job = err is None and job is not None and job[1] == "succeeded" and ms[0] == job[2] == ms[2]
                ctx.check("refit_load", f"{v} rep {rep + 1}: the refit succeeded and serves its (the newest) fit",
                          ok_job, err or f"job {job}, active fit {ms[0]}, newest {ms[2]}")
                dw = float(np.max(np.abs(np.array(w) - truth[target])))
                ctx.check("refit_load", f"{v} rep {rep + 1}: refit weights == true weights of {target} (within 0.05)",
                          dw < 0.05, f"weights {np.round(w, 4).tolist()}, max difference {dw:.3f}")
                em = expected_multipliers(w)
                dm = float(np.max(np.abs(np.array(ms[1]) - em)))
                changed = float(np.max(np.abs(np.array(ms[1]) - np.array(mult_prev[v]))))
                ctx.check("refit_load", f"{v} rep {rep + 1}: served multipliers == sqrt(w_k / w_max) and changed "
                          "(every row rewritten)", dm < 1e-9 and changed > 1e-3,
                          f"{np.round(ms[1], 4).tolist()}, difference {dm:.1e}, change {changed:.3f}")
                mult_prev[v] = ms[1]
                rows_after = served_check(ctx, conn, v, f"rep {rep + 1}")
                conn.execute("VACUUM ANALYZE items")  # untimed, before the next refit
                if v == "0.3.0":
                    bare[v].append(bare_index_build(conn))
                    log(f"refit under load: bare CREATE INDEX ... USING hnsw of the same vectors (no load): "
                        f"{bare[v][-1]:.1f} s")
            ctx.check("refit_load", f"{v} rep {rep + 1}: every reader answer had 10 rows, no reader failed",
                      load.short_answers == 0 and not load.read_errors and load.answers > 0,
                      f"{load.answers} answers, {load.short_answers} short, {len(load.read_errors)} errors "
                      f"{load.read_errors[:2]}")
            ctx.check("refit_load", f"{v} rep {rep + 1}: no writer failed", not load.write_errors,
                      f"{len(load.writes)} writes, {len(load.write_errors)} errors {load.write_errors[:2]}")
            runs[v].append(secs)
            win = poller.windows(job[0] if job else -1, t0, t1)
            phases[v].append(poller.phases(job[0] if job else -1, t0, t1))
            in_use = sum(1 for x in notices if "is in use" in x)
            weights[v].append(list(w))
            sizes[v].append((size0, size1, rows_after))
            thr[v].append({
                "write_base": rate(load.writes, tl + 0.5, t0), "write_during": rate(load.writes, t0, t1),
                "read_base": rate(load.reads, tl + 0.5, t0), "read_during": rate(load.reads, t0, t1),
                "write_p99_base": p99(load.writes, tl + 0.5, t0), "write_p99_during": p99(load.writes, t0, t1),
                "read_p99_base": p99(load.reads, tl + 0.5, t0), "read_p99_during": p99(load.reads, t0, t1),
                # Every operation that overlapped the refit (one the refit's last transaction held
                # back ends after the CALL returned).
                "write_max_during": max((s for e, s in load.writes if e >= t0 and e - s <= t1), default=float("nan")),
                "read_max_during": max((s for e, s in load.reads if e >= t0 and e - s <= t1), default=float("nan")),
                "write_longest_by_phase": longest_by_phase(load.writes, win),
                "writes_over_1s": sum(1 for e, x in load.writes if x > 1 and e >= t0 and e - x <= t1),
                "live_generations": live,
                "retention_skipped": in_use,
            })
            tt = thr[v][-1]
            log(f"refit under load: {v} rep {rep + 1} ({target}): {secs:.1f} s "
                + ", ".join(f"{p} {x:.1f}" for p, x in phases[v][-1].items())
                + f"; writes/s {tt['write_base']:.1f} -> {tt['write_during']:.1f}, reads/s {tt['read_base']:.1f} -> "
                f"{tt['read_during']:.1f}; longest write by phase "
                + ", ".join(f"{g} {x:.2f}" for g, x in tt["write_longest_by_phase"].items())
                + (f"; {live} live generations after, retention skipped {in_use}" if live is not None else ""))
        if len(versions) == 2:
            dw = float(np.max(np.abs(np.array(weights[VERSIONS[0]][-1]) - np.array(weights[VERSIONS[1]][-1]))))
            ctx.check("refit_load", f"rep {rep + 1}: 0.2.1 and 0.3.0 refits found the same weights",
                      dw < 1e-9, f"max difference {dw:.1e}")

    ctx.results["refit_load"] = {
        "rows": n, "pairs": n_pairs, "dims": dims, "writers": a.load_writers, "readers": a.load_readers,
        "warmup": a.load_warmup, "reps": a.load_reps, "versions": versions, "library_v021": lib_desc,
        "library_v030": ctx.library or "the installed library",
        "skip_v021": skip, "setup_s": setup_s, "runs": runs, "median": {v: median(r) for v, r in runs.items()},
        "phases": {v: {p: median([x[p] for x in phases[v]]) for p in phases[v][0]} for v in versions if phases[v]},
        "phases_by_rep": phases,
        "throughput": thr, "sizes": sizes, "plans": plans, "databases": dbs,
        "bare_index_s": bare.get("0.3.0", []),
    }
