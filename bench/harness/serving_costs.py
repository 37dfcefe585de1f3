"""8. Serving costs (issue 19): what a served source costs its writers, and how long a rollback takes.

Write cost. `items` (the harness's data, --cost-rows rows) served by model set `wc` (symmetric,
embedstack.keep_generations = 1) after two materialisations of different fits: a served and a
retained generation, as in production after a refit. Baseline: `plain`, a copy of the same rows
that holds the combined vector in a column of its own, set in the same statement, with its own
HNSW index (vector_ip_ops) -- what a user would build by hand. Timed, interleaved, --reps times,
each statement its own transaction: a 1,000-row UPDATE of one model column (new vectors from a
pool), and a 1,000-row INSERT of new rows. Goal: served / plain <= 1.3 for both.

Rollback. After N rows changed (an UPDATE of a model column) since the retained generation was
served, `CALL embedstack.rollback('wc')` writes those N rows into it and serves it: timed for
N = 1,000 and 10,000 (capped at the table's rows). Goal: under 2 s at 10,000. Then the same N
changes, `CALL embedstack.catch_up('wc')` (writes them into the kept generation without pausing
writers), and the rollback after it.

Checks (never on timings): after the timed statements the view serves exactly plain's vectors
(the same kernel and multipliers), before and after each rollback pair."""

import time

import numpy as np

from common import copy_in, log, median
from datagen import Dataset

SET = "wc"
BATCH = 1000
POOL = 4000


def _cols(k):
    return [f"m{m + 1}" for m in range(k)]


def _view_equals_plain(conn, cols):
    """(rows of the view, rows that differ from the kernel over plain's model columns for the served
    layout)."""
    mult_sql = f"(SELECT served_multipliers FROM embedstack.model_sets WHERE name = '{SET}')"
    return conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE v.wc_combined::real[] IS DISTINCT FROM "
        f"  embedstack._combine_vector({mult_sql}, (SELECT model_dims FROM embedstack.model_sets WHERE name = '{SET}'), "
        f"  (SELECT model_columns::text[] FROM embedstack.model_sets WHERE name = '{SET}'), p.id, "
        + ", ".join(f"p.{c}" for c in cols) + ")::real[]) "
        "FROM items_wc v JOIN plain p USING (id)").fetchone()


def run(ctx):
    a = ctx.args
    n = a.cost_rows
    dims = a.dims
    k = len(dims)
    cols = _cols(k)
    db = f"{a.db}_costs"
    with ctx.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    d = Dataset(n, max(4 * n, 2000), dims, a.seed + 21).generate()
    rng = np.random.default_rng(a.seed + 22)
    pool = [rng.standard_normal((POOL, dm)).astype(np.float32) for dm in dims]
    t_setup = time.time()
    with ctx.connect(db) as conn:
        conn.execute("CREATE EXTENSION embedstack CASCADE")
        conn.execute("SET maintenance_work_mem = '2GB'")
        d.load(conn)
        conn.execute(f"SELECT embedstack.create_model_set('{SET}', 'items', 'id', %s::name[])", (cols,))
        conn.execute("SET embedstack.keep_generations = 1")
        f2 = conn.execute(f"SELECT id FROM embedstack.fit('{SET}', 'pairs', 'a', 'b', 'y', ridge => 50)").fetchone()[0]
        f1 = conn.execute(f"SELECT id FROM embedstack.fit('{SET}', 'pairs', 'a', 'b', 'y')").fetchone()[0]
        conn.execute(f"CALL embedstack.materialize('{SET}', {f2})")
        conn.execute(f"CALL embedstack.materialize('{SET}', {f1})")
        gens = conn.execute("SELECT state FROM embedstack.generations WHERE model_set = %s ORDER BY id", (SET,)).fetchall()
        ctx.check("serving_costs", "two materialisations: a served and a retained generation",
                  [g[0] for g in gens] == ["retained", "served"], f"generations {gens}")
        mult = conn.execute("SELECT served_multipliers FROM embedstack.model_sets WHERE name = %s", (SET,)).fetchone()[0]
        comb = (f"embedstack._combine_vector(%s::float8[], %s::int4[], %s::text[], x.id, "
                + ", ".join(f"x.{c}" for c in cols) + ")")
        width = sum(dm for dm, m in zip(dims, mult) if m != 0)
        conn.execute(f"CREATE TABLE plain AS SELECT x.*, {comb}::vector({width}) AS combined FROM items x",
                     (mult, dims, cols))
        conn.execute("ALTER TABLE plain ADD PRIMARY KEY (id)")
        conn.execute("CREATE INDEX ON plain USING hnsw (combined vector_ip_ops)")
        # The new values: a pool of vectors for model 1, loaded once.
        conn.execute(f"CREATE TABLE newvals (i int PRIMARY KEY, v vector({dims[0]}))")
        copy_in(conn, "newvals", ["i", "v"], [("i", "int4", None), ("v", "vector", dims[0])],
                [np.arange(POOL, dtype=np.int32), pool[0]])
        conn.execute("VACUUM ANALYZE")
    log(f"serving costs: {n:,} rows x dims {dims}, set up in {time.time() - t_setup:.1f} s")

    upd_s, ins_s = {"served": [], "plain": []}, {"served": [], "plain": []}
    next_id = n + 1
    with ctx.connect(db) as conn:
        for rep in range(a.reps):
            ids = (rng.choice(n, size=BATCH, replace=False) + 1).tolist()
            offset = int(rng.integers(0, POOL - BATCH))
            new_ids = list(range(next_id, next_id + BATCH))
            next_id += BATCH
            srcs = (rng.choice(n, size=BATCH, replace=False) + 1).tolist()  # the rows the INSERTs copy
            order = ["served", "plain"] if rep % 2 == 0 else ["plain", "served"]
            for which in order:
                # UPDATE of model column m1 of 1,000 rows (new vectors), one transaction.
                if which == "served":
                    sql = ("UPDATE items x SET m1 = nv.v FROM unnest(%s::int[]) WITH ORDINALITY u(id, o) "
                           "JOIN newvals nv ON nv.i = u.o + %s WHERE x.id = u.id")
                    args = (ids, offset)
                else:
                    sql = ("UPDATE plain x SET m1 = nv.v, combined = embedstack._combine_vector(%s::float8[], %s::int4[], "
                           "%s::text[], x.id, nv.v, " + ", ".join(f"x.{c}" for c in cols[1:]) + ") "
                           "FROM unnest(%s::int[]) WITH ORDINALITY u(id, o) JOIN newvals nv ON nv.i = u.o + %s "
                           "WHERE x.id = u.id")
                    args = (mult, dims, cols, ids, offset)
                t = time.time()
                conn.execute(sql, args)
                upd_s[which].append(time.time() - t)
                # INSERT of 1,000 new rows (copies of existing rows' vectors under new ids).
                # (Each table copies from itself: the two hold the same model values at this point
                # of their own sequence, whichever went first in this repetition.)
                src = ("SELECT u.id, " + ", ".join(f"s.{c}" for c in cols)
                       + f" FROM unnest(%s::int[], %s::int[]) u(id, src) JOIN {'items' if which == 'served' else 'plain'} s "
                       "ON s.id = u.src")
                if which == "served":
                    sql, args = f"INSERT INTO items (id, {', '.join(cols)}) {src}", (new_ids, srcs)
                else:
                    sql = (f"INSERT INTO plain (id, {', '.join(cols)}, combined) SELECT y.*, "
                           + comb.replace("x.", "y.") + f" FROM ({src}) y")
                    args = (mult, dims, cols, new_ids, srcs)
                t = time.time()
                conn.execute(sql, args)
                ins_s[which].append(time.time() - t)
            log(f"serving costs: rep {rep + 1}: UPDATE served {upd_s['served'][-1]:.2f} s / plain "
                f"{upd_s['plain'][-1]:.2f} s, INSERT served {ins_s['served'][-1]:.2f} s / plain {ins_s['plain'][-1]:.2f} s")
        nv, bad = _view_equals_plain(conn, cols)
        total = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        ctx.check("serving_costs", "after the timed writes the view serves exactly the hand-built column's vectors",
                  nv == total and bad == 0, f"{nv} rows joined of {total}, {bad} differ")

        # Rollback after N changed rows: directly (the rollback writes them), and after a
        # catch_up (which writes them without pausing writers; the rollback then has nothing left).
        rollback_s, catch_up_s, after_catch_up_s = {}, {}, {}
        conn.execute(f"CALL embedstack.rollback('{SET}')")  # (both up to date now: the pending keys applied)
        conn.execute(f"CALL embedstack.rollback('{SET}')")

        def change(n_changed):
            ids = (rng.choice(total, size=n_changed, replace=False) + 1).tolist()
            conn.execute("UPDATE items x SET m1 = nv.v FROM unnest(%s::int[]) WITH ORDINALITY u(id, o) "
                         "JOIN newvals nv ON nv.i = (u.o %% %s) WHERE x.id = u.id", (ids, POOL))
            conn.execute("UPDATE plain x SET m1 = i.m1 FROM items i WHERE i.id = x.id AND x.id = ANY(%s)", (ids,))

        def timed_rollback(label):
            t = time.time()
            conn.execute(f"CALL embedstack.rollback('{SET}')")
            secs = time.time() - t
            nv, bad = _view_equals_plain(conn, cols)
            ctx.check("serving_costs", f"after the rollback {label} the view is exact", bad == 0, f"{bad} of {nv} differ")
            conn.execute(f"CALL embedstack.rollback('{SET}')")  # back (untimed)
            return secs

        for n_changed in sorted({min(1000, total), min(10000, total)}):
            change(n_changed)
            rollback_s[n_changed] = timed_rollback(f"of {n_changed:,} changed rows")
            change(n_changed)
            t = time.time()
            conn.execute(f"CALL embedstack.catch_up('{SET}')")
            catch_up_s[n_changed] = time.time() - t
            after_catch_up_s[n_changed] = timed_rollback(f"after a catch_up of {n_changed:,} changed rows")
            log(f"serving costs: {n_changed:,} changed rows: rollback {rollback_s[n_changed]:.2f} s; catch_up "
                f"{catch_up_s[n_changed]:.2f} s then rollback {after_catch_up_s[n_changed]:.2f} s")
        conn.execute(f"SELECT embedstack.release('{SET}')")
    ctx.results["serving_costs"] = {
        "rows": n, "dims": dims, "reps": a.reps, "update": upd_s, "insert": ins_s,
        "update_ratio": median(upd_s["served"]) / median(upd_s["plain"]),
        "insert_ratio": median(ins_s["served"]) / median(ins_s["plain"]),
        "rollback": rollback_s, "catch_up": catch_up_s, "rollback_after_catch_up": after_catch_up_s,
    }
