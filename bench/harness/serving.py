"""5. Serving, on the vectors materialize wrote (symmetric model set `bench`), read as the README
queries them (0.3.0): the source joined to the served view, `SELECT s.id FROM items s JOIN
items_bench v USING (id) ORDER BY v.bench_combined <#> $1 LIMIT 10` (the plan: the served
generation's HNSW index scan, probing the source's primary key). HNSW build time (from the
materialize runs), recall@10 of the index at ef_search 40 and 100 against exact search, and a
check that the exact top-10 by the combined vector (a sequential scan ordering by `<#>`) equals
the top-10 by the weighted sum of the per-model cosines (numpy, float64, from the generated
vectors). Recall is measured against the numpy exact top-10, which the check shows equal to
SQL's exact search on the first queries."""

import time

import numpy as np

from common import log
from materialize import served

TOL = 1e-5


def run(ctx):
    d = ctx.truth
    k = len(d.dims)
    nq = min(ctx.args.queries, d.n)
    n_exact = min(ctx.args.exact_queries, nq)
    rng = np.random.default_rng(d.seed + 5)
    qrows = np.sort(rng.choice(d.n, size=nq, replace=False))
    with ctx.connect() as conn:
        fid, weights = conn.execute("SELECT m.active_fit, f.weights FROM embedstack.model_sets m "
                                    "JOIN embedstack.fits f ON f.id = m.active_fit WHERE m.name = 'bench'").fetchone()
        mult = conn.execute("SELECT served_multipliers FROM embedstack.model_sets WHERE name = 'bench'").fetchone()[0]
        view, comb, _ = served(conn, "bench")
    sw = np.array([s * s for s in mult])  # = w_k / w_max for kept models, 0 otherwise

    # Exact top-10 by the weighted sum (numpy): score(q, e) = sum_k sw_k cos_k(q, e).
    t = time.time()
    scores = np.zeros((d.n, nq))
    for m in range(k):
        if sw[m] == 0:
            continue
        u = d.unit(m)
        scores += sw[m] * (u @ u[qrows].T)
        del u
    top = np.argsort(-scores, axis=0)[:10].T  # (nq, 10) rows
    log(f"serving: numpy exact top-10 of {nq} queries in {time.time() - t:.1f} s")

    # The query vector (item-to-item: embedstack.query_vector(model_set, key)) is fetched first
    # and passed as a parameter, as an application would.
    q_vec = "SELECT embedstack.query_vector('bench', %s::int)::text"
    q_ann = f"SELECT s.id FROM items s JOIN {view} v USING (id) ORDER BY v.{comb} <#> %s::vector LIMIT 10"
    q_exact = (f"SELECT s.id, -(v.{comb} <#> %s::vector) FROM items s JOIN {view} v USING (id) "
               f"ORDER BY v.{comb} <#> %s::vector LIMIT 10")
    res = {"queries": nq, "exact_queries": n_exact, "recall": {}, "ann_ms": {}, "short_answers": 0}
    with ctx.connect() as conn:
        qvec = [conn.execute(q_vec, (int(r) + 1,)).fetchone()[0] for r in qrows]
        # Small tables get a sequential scan by cost: the recall is the index's.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q_ann.replace("%s", "'" + qvec[0] + "'")).fetchall())
        # The served generation's index (embedstack.model_sets.served_index, in the source's schema).
        index = conn.execute("SELECT served_index FROM embedstack.model_sets WHERE name = 'bench'").fetchone()[0]
        ctx.check("serving", "the top-10 query uses the HNSW index", f"Index Scan using {index}" in plan,
                  plan.splitlines()[0] if index not in plan else f"Index Scan using {index}")
        for ef in (40, 100):
            conn.execute(f"SET hnsw.ef_search = {ef}")
            hits = 0
            t = time.time()
            for i, r in enumerate(qrows):
                got = [x[0] for x in conn.execute(q_ann, (qvec[i],)).fetchall()]
                res["short_answers"] += len(got) != 10
                hits += len(set(got) & set((top[i] + 1).tolist()))
            res["ann_ms"][ef] = 1000 * (time.time() - t) / nq
            res["recall"][ef] = hits / (10.0 * nq)
            log(f"serving: recall@10 at ef_search {ef}: {res['recall'][ef]:.4f} ({res['ann_ms'][ef]:.1f} ms/query)")
        conn.execute("RESET hnsw.ef_search")
        conn.execute("RESET enable_seqscan")

        # Exact search in SQL (no index) == top-10 by the weighted sum.
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_bitmapscan = off")
        worst_set, worst_score, mismatches = 0.0, 0.0, 0
        t = time.time()
        for i in range(n_exact):
            r = int(qrows[i])
            rows = conn.execute(q_exact, (qvec[i], qvec[i])).fetchall()
            ids, sc = [x[0] for x in rows], [x[1] for x in rows]
            want = top[i] + 1
            tenth = scores[top[i][-1], i]
            # Scores agree; ids agree except for near-ties at the cut-off (float32 storage).
            sc_np = scores[np.array(ids) - 1, i]
            worst_score = max(worst_score, float(np.max(np.abs(np.array(sc) - sc_np))))
            diff = set(ids) ^ set(want.tolist())
            if diff:
                gap = max(abs(scores[e - 1, i] - tenth) for e in diff)
                worst_set = max(worst_set, gap)
                if gap > TOL:
                    mismatches += 1
        res["exact_ms"] = 1000 * (time.time() - t) / max(1, n_exact)
    ctx.check("serving", f"exact top-10 by the combined vector == top-10 by the weighted sum ({n_exact} queries)",
              mismatches == 0 and worst_score < TOL,
              f"{mismatches} mismatches, largest score difference {worst_score:.2e}, near-tie gap {worst_set:.2e}")
    ctx.check("serving", "every top-10 answer through the view has 10 rows", res["short_answers"] == 0,
              f"{res['short_answers']} answers with fewer rows")
    ctx.check("serving", "recall@10 is a fraction in [0, 1] at both ef_search",
              all(0 <= x <= 1 for x in res["recall"].values()), str(res["recall"]))
    mat = ctx.results.get("materialize", {})
    res["build_s_materialize"] = mat.get("phases", {}).get("mat", {}).get("index")
    res["build_s_ctas"] = mat.get("phases", {}).get("ctas", {}).get("index")
    res["rows"] = d.n
    res["width"] = mat.get("width")
    res["fit"] = fid
    ctx.results["serving"] = res
