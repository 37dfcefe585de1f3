"""1. Pair features: embedstack.cosine_features vs pgvector `<=>` per column vs the seed (pull
both sides, numpy cosines), plus the floor (a query that only detoasts the same columns).
SQL variants run serial (max_parallel_workers_per_gather = 0): a per-core comparison."""

import numpy as np

import seed
from common import log, measure, median

SERIAL = ("SET max_parallel_workers_per_gather = 0",)


def queries(k):
    cols = [f"m{m + 1}" for m in range(k)]
    arr = lambda t: "ARRAY[" + ", ".join(f"{t}.{c}" for c in cols) + "]"
    join = "FROM pairs p JOIN items x ON x.id = p.a JOIN items y ON y.id = p.b"
    sums = ", ".join(f"sum(f{m + 1})" for m in range(k))
    # OFFSET 0 keeps the planner from copying the feature expression into every sum.
    q_cf = (f"SELECT count(*), {', '.join(f'sum(f[{m + 1}])' for m in range(k))} FROM "
            f"(SELECT embedstack.cosine_features({arr('x')}, {arr('y')}) AS f {join} OFFSET 0) s")
    q_pgv = (f"SELECT count(*), {sums} FROM (SELECT "
             + ", ".join(f"1 - (x.{c} <=> y.{c}) AS f{m + 1}" for m, c in enumerate(cols))
             + f" {join} OFFSET 0) s")
    q_floor = (f"SELECT count(*), sum(d) FROM (SELECT "
               + " + ".join(f"vector_dims(x.{c}) + vector_dims(y.{c})" for c in cols)
               + f" AS d {join} OFFSET 0) s")
    return q_cf, q_pgv, q_floor


def run(ctx):
    d = ctx.truth
    k = len(d.dims)
    cols = [f"m{m + 1}" for m in range(k)]
    q_cf, q_pgv, q_floor = queries(k)
    expected = d.features.sum(axis=0)

    def sql(q):
        return lambda conn: conn.execute(q).fetchone()

    def seed_features(conn):
        models = seed.pull_models(conn, "items", cols, d.dims)
        pair_df = seed.pull_pairs(conn, "pairs")
        X, _ = seed.cosine_features(models, pair_df)
        return (len(X),) + tuple(X.sum(axis=0))

    variants = [
        ("embedstack.cosine_features(ARRAY[..], ARRAY[..])", sql(q_cf), SERIAL, False),
        ("pgvector 1 - (<=>) per column", sql(q_pgv), SERIAL, False),
        ("seed: pull both sides (binary COPY) + numpy cosines", seed_features, (), True),
        ("floor: detoast only (vector_dims of the same columns)", sql(q_floor), SERIAL, False),
    ]
    runs = {name: [] for name, *_ in variants}
    values = {}
    hwm = {}
    for rep in range(ctx.args.reps):
        for name, fn, setup, client in variants:
            m = measure(ctx, fn, setup=setup, client_memory=client)
            runs[name].append(m.seconds)
            values[name] = m.value
            hwm[name] = max(hwm.get(name, 0), m.backend_hwm_kb or 0)
            log(f"features rep {rep + 1}: {name}: {m.seconds:.2f} s")

    # Correctness: every variant sees every pair, and the per-model sums of the cosines agree
    # with the generator's (float64 cosines of the stored float32 vectors).
    for name, *_ in variants[:3]:
        v = values[name]
        got = np.array(v[1:], dtype=np.float64)
        rel = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))
        ctx.check("features", f"{name}: {v[0]} pairs, per-model cosine sums vs generator",
                  v[0] == d.n_pairs and rel < 1e-6, f"max relative difference {rel:.2e}")
    fv = values[variants[3][0]]
    ctx.check("features", "floor query reads every pair's vectors",
              fv[0] == d.n_pairs and int(fv[1]) == 2 * sum(d.dims) * d.n_pairs, f"{fv[0]} rows, {fv[1]} dims")

    ctx.results["features"] = {
        "variants": [name for name, *_ in variants],
        "runs": runs,
        "median": {n: median(r) for n, r in runs.items()},
        "rows": d.n_pairs,
        "backend_hwm_kb": hwm,
    }
