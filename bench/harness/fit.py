"""2. Fit: embedstack.fit (features + aggregate, every entity detoasted once) vs plain SQL
(pgvector features, core aggregates avg / var_pop / covar_pop turned into a state, solve),
serial and with <= 2 workers, vs the seed (pull, numpy, LinearRegression). Then the aggregate
alone (regression_stats + solve over a table of stored features), serial vs 2 workers."""

import json

import numpy as np

import seed
from common import log, measure, median

SERIAL = ("SET max_parallel_workers_per_gather = 0",)
PARALLEL = ("SET max_parallel_workers_per_gather = 2",)
STATE_MAGIC = 4011970


def plain_sql_fit(k):
    """Features with pgvector, sufficient statistics from core aggregates, assembled into
    embedstack's state layout (magic, version, k, n, skipped, weight sum, means of [x, y],
    upper triangle of the centred co-moments, row-major) and solved."""
    cols = [f"m{m + 1}" for m in range(k)]
    v = [f"f{m + 1}" for m in range(k)] + ["y"]
    aggs = ["count(*)::float8 AS n"] + [f"avg({x}) AS a_{x}" for x in v]
    tri = []
    for i in range(k + 1):
        for j in range(i, k + 1):
            if i == j:
                aggs.append(f"var_pop({v[i]}) AS c_{v[i]}_{v[j]}")
            else:
                aggs.append(f"covar_pop({v[i]}, {v[j]}) AS c_{v[i]}_{v[j]}")
            tri.append(f"c_{v[i]}_{v[j]} * n")
    state = (f"ARRAY[{STATE_MAGIC}, 1, {k}, n, 0, n, " + ", ".join(f"a_{x}" for x in v) + ", "
             + ", ".join(tri) + "]")
    feats = ", ".join(f"1 - (x.{c} <=> y.{c}) AS f{m + 1}" for m, c in enumerate(cols))
    return (f"SELECT (t.s).weights, (t.s).intercept FROM (SELECT embedstack.solve({state}) AS s FROM "
            f"(SELECT {', '.join(aggs)} FROM (SELECT {feats}, p.y FROM pairs p JOIN items x ON x.id = p.a "
            f"JOIN items y ON y.id = p.b OFFSET 0) f) a) t")


def workers_planned(conn, setup, query):
    for s in setup:
        conn.execute(s)
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + query).fetchone()[0]
    text = json.dumps(plan)
    found = [int(x.split(":")[1].strip(" }")) for x in text.replace(",", "\n").splitlines()
             if '"Workers Planned"' in x]
    return max(found) if found else 0


def run(ctx):
    d = ctx.truth
    k = len(d.dims)
    cols = [f"m{m + 1}" for m in range(k)]
    q_sql = plain_sql_fit(k)
    q_fit = "SELECT id, weights, intercept, diagnostics FROM embedstack.fit('bench', 'pairs', 'a', 'b', 'y')"

    def sql(q):
        return lambda conn: conn.execute(q).fetchone()

    def do_fit(conn):
        r = conn.execute(q_fit).fetchone()
        return r[0], list(r[1]), r[2], r[3]

    def do_seed(conn):
        w, b0, ph = seed.fit(conn, "items", "pairs", cols, d.dims)
        return list(w), b0, ph

    with ctx.connect() as conn:
        wp_sql = workers_planned(conn, PARALLEL, q_sql)
    variants = [
        ("embedstack.fit (default: entity_cache_size 1GB, fit_threads 2)", do_fit, (), False),
        ("plain SQL: pgvector <=> + core aggregates + solve, serial", sql(q_sql), SERIAL, False),
        (f"plain SQL: same, <= 2 workers ({wp_sql} planned)", sql(q_sql), PARALLEL, False),
        ("seed: pull + numpy cosines + LinearRegression", do_seed, (), True),
    ]
    runs = {name: [] for name, *_ in variants}
    weights = {name: [] for name, *_ in variants}
    hwm = {name: 0 for name, *_ in variants}
    client_hwm = {}
    fit_ids, seed_phases, diag = [], [], None
    for rep in range(ctx.args.reps):
        for name, fn, setup, client in variants:
            m = measure(ctx, fn, setup=setup, client_memory=client)
            runs[name].append(m.seconds)
            hwm[name] = max(hwm[name], m.backend_hwm_kb or 0)
            if fn is do_fit:
                fid, w, b0, diag = m.value
                fit_ids.append(fid)
            elif fn is do_seed:
                w, b0, ph = m.value
                seed_phases.append(ph)
                client_hwm[name] = max(client_hwm.get(name, 0), m.client_hwm_kb or 0)
            else:
                w, b0 = list(m.value[0]), m.value[1]
            weights[name].append((np.array(w, dtype=np.float64), float(b0)))
            log(f"fit rep {rep + 1}: {name}: {m.seconds:.2f} s, weights {np.round(w, 6).tolist()}")

    # Correctness: all variants and repetitions agree, and recover the true weights.
    ref_w, ref_b = weights[variants[0][0]][0]
    for name, *_ in variants:
        dw = max(max(float(np.max(np.abs(w - ref_w))), abs(b - ref_b)) for w, b in weights[name])
        ctx.check("fit", f"{name}: weights and intercept == embedstack.fit", dw < 1e-6, f"max difference {dw:.2e}")
    se = np.array(diag["std_errors"][:k] if diag.get("std_errors") else [np.nan] * k, dtype=np.float64)
    z = np.abs(ref_w - d.true_w) / se
    ctx.check("fit", "embedstack.fit recovers the true weights (within 6 standard errors)",
              bool(np.all(z < 6)), f"fitted {np.round(ref_w, 5).tolist()} true {d.true_w.tolist()} "
                                   f"|err|/se {np.round(z, 2).tolist()}")
    ctx.check("fit", "n_used = number of pairs", int(diag["n_used"]) == d.n_pairs, f"n_used {diag['n_used']}")

    res = {
        "variants": [name for name, *_ in variants],
        "runs": runs,
        "median": {n: median(r) for n, r in runs.items()},
        "rows": d.n_pairs,
        "backend_hwm_kb": hwm,
        "client_hwm_kb": client_hwm,
        "fit_ids": fit_ids,
        "weights": ref_w.tolist(),
        "intercept": ref_b,
        "r2": diag.get("r2"),
        "seed_phases": {p: median([ph[p] for ph in seed_phases]) for p in seed_phases[0]},
        "workers_planned_sql": wp_sql,
    }
    res.update(aggregate_alone(ctx, ref_w))
    ctx.results["fit"] = res


def aggregate_alone(ctx, ref_w):
    """regression_stats + solve over stored features, serial vs 2 workers."""
    d = ctx.truth
    k = len(d.dims)
    cols = [f"m{m + 1}" for m in range(k)]
    arr = lambda t: "ARRAY[" + ", ".join(f"{t}.{c}" for c in cols) + "]"
    with ctx.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS feats")
        conn.execute(f"CREATE TABLE feats AS SELECT embedstack.cosine_features({arr('x')}, {arr('y')}) AS f, p.y "
                     "FROM pairs p JOIN items x ON x.id = p.a JOIN items y ON y.id = p.b")
        conn.execute("ALTER TABLE feats SET (parallel_workers = 2)")
        conn.execute("VACUUM ANALYZE feats")
    q = "SELECT (s).weights, (s).intercept FROM (SELECT embedstack.solve(embedstack.regression_stats(f, y)) AS s FROM feats) t"
    # Small tables get no parallel plan by cost: make the 2-worker plan the planner's choice
    # at any size (it is for the 1M-row default anyway).
    par = PARALLEL + ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                      "SET min_parallel_table_scan_size = 0")
    with ctx.connect() as conn:
        wp = workers_planned(conn, par, q)
        wp0 = workers_planned(conn, SERIAL, q)
    ctx.check("fit", "aggregate alone: the parallel plan has 2 workers, the serial none", wp == 2 and wp0 == 0,
              f"{wp} / {wp0} workers planned")
    names = ["regression_stats + solve, serial", "regression_stats + solve, 2 workers (Partial Aggregate)"]
    runs = {n: [] for n in names}
    res = {}
    reps = max(ctx.args.reps, 5)
    for rep in range(reps):
        for name, setup in zip(names, (SERIAL, par)):
            m = measure(ctx, lambda conn: conn.execute(q).fetchone(), setup=setup)
            runs[name].append(m.seconds)
            res[name] = (np.array(m.value[0]), m.value[1])
    log("aggregate alone: " + ", ".join(f"{n}: {median(r):.3f} s" for n, r in runs.items()))
    w0, b0 = res[names[0]]
    w1, b1 = res[names[1]]
    dw = max(float(np.max(np.abs(w0 - w1))), abs(b0 - b1))
    ctx.check("fit", "aggregate alone: serial == parallel", dw < 1e-9, f"max difference {dw:.2e}")
    dr = float(np.max(np.abs(w0 - ref_w)))
    ctx.check("fit", "aggregate alone == embedstack.fit", dr < 1e-6, f"max difference {dr:.2e}")
    return {"agg_variants": names, "agg_runs": runs, "agg_median": {n: median(r) for n, r in runs.items()},
            "agg_reps": reps}
