#!/usr/bin/env python3
"""How much served quality a PCA projection keeps: an independent numpy reference on WordSim-353.

Groundwork for issue 21 ("a learned projection"). This is a reference study in numpy float64,
written independently of crates/embedstack-math/src/projection.rs, whose conventions it follows
(and tests; see "Convention variants" below). It reads only tests/fixtures/wordsim353/ and writes
only bench/projection/RESULTS-wordsim.md and bench/projection/wordsim_reference.json.

Run (about 10 s on one core; BLAS is limited to one thread):

    .venv/bin/python bench/projection/wordsim_study.py

Definitions (docs/design.md §2, crates/embedstack-math/src/combine.rs)
-----------------------------------------------------------------------
u_k(e) = v_k(e) / ||v_k(e)|| for each of the 7 models; the feature of a pair is x_k = <u_k(a), u_k(b)>.
OLS on the 213 training pairs gives w (reproduced here against reference.json to 1e-9).

Symmetric mode: score weights s_k = w_k / w_max when w_k > 0.05 w_max, else 0 (the block is left
out). Served vector c(e) = [sqrt(s_k) u_k(e)] over kept models (5 kept, 1188 dims); served score
<c(a), c(b)> = sum_kept s_k x_k. Every word has every model, so ||c|| is the same for every word
and the cosine of combined vectors (reference.json "ols_combined_cosine", the README's "(stack)"
0.838) ranks exactly like the inner product.

Query-weighted mode: stored d(e) = [u_k(e)] over ALL 7 models (2512 dims, independent of the fit);
query q(e) = D_t d(e), t_k = w_k / max_j |w_j| (negative weights kept, no threshold). Exact score
<q(a), d(b)> = sum_k t_k x_k, whose Spearman is reference.json "ols_weighted_sum".

Projections (n = 381 words; covariance centred and divided by n; basis = top-r eigenvectors from
numpy.linalg.eigh, sign fixed so that the largest-|component| entry (first on a tie) is positive;
vectors are projected UNcentred, projected vectors are not re-normalised)
-----------------------------------------------------------------------------------------------
(a) PCA of the served symmetric vectors c: C_w = cov(c), V = top-r eigenvectors, z = V^T c,
    score <z(a), z(b)> = c(a)^T P c(b) with P = V V^T.
(b) Query-weighted mode. The stored side must not depend on the weights, so the basis is PCA of the
    unweighted concatenation d: C = cov(d), V = top-r eigenvectors, stored z(e) = V^T d(e) (computed
    once, never rewritten by a refit). The query of a fit is y(a) = V^T D_t d(a) (D_t diagonal, t_k on
    model k's coordinates) and the score is <y(a), z(b)> = d(a)^T D_t P d(b) ~ d(a)^T D_t d(b).
    Derivation: for a fixed stored map z = V^T d, the r-vector y minimising the mean squared score
    error over candidates, E_d[(q^T d~ - y^T V^T d~)^2] with d~ = d - mean (the centred part, the one
    that ranks), solves (V^T C V) y = V^T C q. Since C V = V Lambda, that is Lambda y = Lambda V^T q,
    i.e. y = V^T q = V^T D_t d(a): the natural query-side projection is also the least-squares one.
    The score is no longer symmetric; the held-out pair (a, b) is scored with a as the query (the
    pair files' first column). The mean does not drop out here: with d = m + d~ and P covering the
    span of the d~ (r >= rank), the score is d(a)^T D_t d(b) - d(a)^T D_t (I - P) m, an offset that is
    constant within one query's ranking but differs between queries (D_t d(a) is not in that span),
    so a pair-level Spearman (or any score threshold) sees it even at full rank; the "mean handling"
    table tests the fix of adding (I - P_{r-1}) m as a basis column. Row (b') uses the same unweighted basis and stored vectors but the
    SYMMETRIC fit's score weights s_k on the query side, so its exact score is the symmetric one and
    it compares with (a) directly: what a weight-independent basis costs.
(c) Per-model PCA: each kept model's unit vectors get their own PCA (centred, /n) with r_k dims,
    r_k proportional to d_k over the kept width (largest remainder, model order on ties), score
    sum_k s_k <V_k^T u_k(a), V_k^T u_k(b)>.
(d) recall@10: every word is a query, the candidates are the other 380 words (the word itself is
    excluded: in symmetric mode it is trivially its own nearest neighbour); truth is the top 10 of
    the exact score of that mode, the answer the top 10 of the projected score; brute force.

"variance kept" = sum of the top-r eigenvalues / trace of the covariance of the vectors being
projected (for (c): sum_k s_k sum_{j<=r_k} lambda_kj / tr(C_w), i.e. measured in the served
vector's covariance like (a)). With 381 words the centred covariance has rank <= 380, so for (a)
r = 512 keeps all variance and every ranking exactly (the remaining error is the same constant for
every pair, m^T (I - P) m); for (a) only r = 64, 128, 256 are informative on this fixture (for (b)
r = 512 still shows the mean offset described above).

Convention variants of (a) (the second table): the Rust module's convention (centred basis,
uncentred projection) against
  - "uncentred basis": top-r eigenvectors of the second moment c^T c / n (no centring);
  - "centre both sides": score (c(a) - m)^T P (c(b) - m) (scikit-learn's PCA.transform on both);
  - "centred + mean direction": the top r-1 centred eigenvectors plus the unit vector along
    (I - P_{r-1}) m as the r-th column, so that the mean is projected exactly. Then with
    c = m + c~, c(a)^T P c(b) = c(a)^T c(b) - c~(a)^T (I - P) c~(b): only the centred error remains,
    whereas the Rust convention also leaves the pair-dependent terms c~(a)^T (I-P) m + m^T (I-P) c~(b),
    which cancel within one query's ranking only partly (the c~(a) term is constant per query, the
    c~(b) one is not) and do not cancel across queries at all (what a pair-level Spearman sees).
    A recall@10 sweep over more r compares the three uncentred projections.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime
import gzip
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import sklearn
from sklearn.linear_model import LinearRegression

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "wordsim353"
RANKS = (64, 128, 256, 512)
THRESHOLD = 0.05
TOPK = 10


def close(got, want, rel=1e-9, abs_=1e-12):
    return abs(got - want) <= rel * abs(want) or abs(got - want) <= abs_


# ---------------------------------------------------------------------------------------------
# Fixture
# ---------------------------------------------------------------------------------------------
def load():
    ref = json.loads((FIXTURE / "reference.json").read_text())
    models = ref["models"]
    words, vecs = [], [[] for _ in models]
    with gzip.open(FIXTURE / "words.copy.gz", "rt", encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            assert len(fields) == 1 + len(models), line[:80]
            assert "\\" not in fields[0], "escaped COPY text is not expected in this fixture"
            words.append(fields[0])
            for k, s in enumerate(fields[1:]):
                assert s != "\\N", f"NULL vector for {fields[0]}"
                vecs[k].append(np.array(s.strip("{}").split(","), dtype=np.float32))
    raw = [np.vstack(v) for v in vecs]
    for k, m in enumerate(models):
        assert raw[k].shape[1] == ref["dims"][m], (m, raw[k].shape)

    def pairs(name):
        rows = []
        with open(FIXTURE / name) as f:
            assert f.readline().strip() == "a,b,y"
            for line in f:
                a, b, y = line.strip().split(",")
                rows.append((a, b, float(y)))
        return rows

    return ref, models, words, raw, pairs("pairs_train.csv"), pairs("pairs_test.csv")


def unit(v32):
    v = v32.astype(np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    assert np.all(n > 0)
    return v / n


# ---------------------------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------------------------
def fix_signs(vecs):
    """Largest-|component| entry of each column positive (first on a tie), as jacobi::fix_signs."""
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.where(vecs[idx, np.arange(vecs.shape[1])] < 0, -1.0, 1.0)
    return vecs * signs


def eig_desc(c):
    vals, vecs = np.linalg.eigh(c)
    return vals[::-1].copy(), fix_signs(vecs[:, ::-1])


def centred_cov(x):
    m = x.mean(axis=0)
    xc = x - m
    return xc.T @ xc / x.shape[0], m


class PCA:
    """Centred covariance / n, full eigendecomposition once, any r afterwards."""

    def __init__(self, x):
        self.cov, self.mean = centred_cov(x)
        self.vals, self.vecs = eig_desc(self.cov)
        self.trace = float(np.trace(self.cov))

    def basis(self, r):
        return self.vecs[:, :r]

    def kept(self, r):
        return float(np.clip(self.vals[:r], 0, None).sum() / self.trace)


def spearman(scores, y):
    return float(scipy.stats.spearmanr(scores, y).statistic)


def recall_at_k(exact, approx, k=TOPK):
    """exact/approx: n x n score matrices (row = query). The query itself is excluded."""
    n = exact.shape[0]
    hits = 0
    for i in range(n):
        e = exact[i].copy()
        a = approx[i].copy()
        e[i] = -np.inf
        a[i] = -np.inf
        te = np.argsort(-e, kind="stable")[:k]
        ta = np.argsort(-a, kind="stable")[:k]
        hits += len(np.intersect1d(te, ta))
    return hits / (n * k)


def alloc(r, dims):
    """r split proportionally to dims: floor, then the largest remainders (first model on ties)."""
    total = sum(dims)
    exact = [r * d / total for d in dims]
    base = [min(int(np.floor(e)), d) for e, d in zip(exact, dims)]
    order = sorted(range(len(dims)), key=lambda k: (-(exact[k] - np.floor(exact[k])), k))
    left = r - sum(base)
    for k in order:
        if left == 0:
            break
        if base[k] < dims[k]:
            base[k] += 1
            left -= 1
    assert sum(base) == min(r, total)
    return base


# ---------------------------------------------------------------------------------------------
def main():
    t_start = datetime.datetime.now(datetime.timezone.utc)
    ref, models, words, raw, train, test = load()
    K = len(models)
    index = {w: i for i, w in enumerate(words)}
    dims = [raw[k].shape[1] for k in range(K)]
    U = [unit(raw[k]) for k in range(K)]
    n = len(words)
    out = []  # report lines

    def say(s=""):
        print(s)
        out.append(s)

    # 1. OLS weights -------------------------------------------------------------------------
    def features(pairs):
        ia = np.array([index[a] for a, _, _ in pairs])
        ib = np.array([index[b] for _, b, _ in pairs])
        x = np.column_stack([np.einsum("ij,ij->i", U[k][ia], U[k][ib]) for k in range(K)])
        return ia, ib, x, np.array([y for _, _, y in pairs])

    _, _, xtr, ytr = features(train)
    ia, ib, xte, yte = features(test)
    assert len(ytr) == ref["n_train"] and len(yte) == ref["n_test"]
    ols = LinearRegression().fit(xtr, ytr)
    w = ols.coef_
    for k, m in enumerate(models):
        want = ref["fits"]["ols"]["coef"][m]
        assert close(w[k], want), f"OLS {m}: {w[k]!r} vs {want!r}"
    assert close(ols.intercept_, ref["fits"]["ols"]["intercept"])
    # Cross-check with a plain numpy least-squares solve (independent of scikit-learn).
    A = np.column_stack([np.ones(len(ytr)), xtr])
    beta = np.linalg.lstsq(A, ytr, rcond=None)[0]
    assert np.allclose(beta[1:], w, rtol=1e-9, atol=1e-12) and close(beta[0], ols.intercept_)

    # Symmetric scales (combine::scales, Mode::Symmetric).
    wmax = w.max()
    s = np.array([wk / wmax if wk > THRESHOLD * wmax else 0.0 for wk in w])
    kept = [k for k in range(K) if s[k] > 0]
    assert [models[k] for k in kept] == ref["fits"]["ols"]["kept"]
    for k in kept:
        assert close(s[k], ref["fits"]["ols"]["scale"][models[k]])
    # Query-weighted scales (Mode::QueryWeighted).
    t = w / np.abs(w).max()

    Xs = np.hstack([np.sqrt(s[k]) * U[k] for k in kept])  # served symmetric vectors
    Dq = np.hstack(U)  # stored query-weighted vectors
    tcol = np.concatenate([np.full(dims[k], t[k]) for k in range(K)])
    scol = np.concatenate([np.full(dims[k], s[k]) for k in range(K)])
    width = Xs.shape[1]
    norms = np.linalg.norm(Xs, axis=1)
    assert np.ptp(norms) < 1e-12 and close(norms[0], ref["checks"]["ols"]["expected_norm"])

    exact_sym = np.einsum("ij,ij->i", Xs[ia], Xs[ib])
    assert np.allclose(exact_sym, xte @ s, atol=1e-12)
    sp_exact = spearman(exact_sym, yte)
    sp_ref = ref["test"]["ols_combined_cosine"]["spearman"]
    assert close(sp_exact, sp_ref), (sp_exact, sp_ref)
    exact_qw = np.einsum("ij,ij->i", Dq[ia] * tcol, Dq[ib])
    sp_exact_qw = spearman(exact_qw, yte)
    sp_ref_qw = ref["test"]["ols_weighted_sum"]["spearman"]
    assert close(sp_exact_qw, sp_ref_qw), (sp_exact_qw, sp_ref_qw)

    say("## Reproduction")
    say()
    say(f"- OLS weights and intercept equal reference.json's to 1e-9 relative (scikit-learn "
        f"{sklearn.__version__} here, 1.9.1 for the reference; numpy lstsq agrees too).")
    say(f"- Symmetric mode: kept {', '.join(models[k] for k in kept)} (threshold {THRESHOLD}); "
        f"served width {width}; ||c|| = {norms[0]:.13f} for every word.")
    say(f"- Exact held-out Spearman, symmetric served score (inner product): **{sp_exact:.10f}** "
        f"(reference.json `ols_combined_cosine`: {sp_ref:.10f}, the README's \"(stack)\" 0.838).")
    say(f"- Exact held-out Spearman, query-weighted score (all 7 models, query = pair's first word): "
        f"**{sp_exact_qw:.10f}** (reference.json `ols_weighted_sum`: {sp_ref_qw:.10f}).")
    say()

    # 2. Projections --------------------------------------------------------------------------
    G_sym = Xs @ Xs.T  # exact symmetric scores, all words
    G_qw = (Dq * tcol) @ Dq.T  # exact query-weighted scores, row = query
    pca_a = PCA(Xs)
    pca_b = PCA(Dq)
    Xkept = {k: U[k] for k in kept}
    pca_c = {k: PCA(U[k]) for k in kept}
    kept_dims = [dims[k] for k in kept]

    rows = []  # (method, r, spearman, ratio, exact, kept, recall)
    variants = []  # (variant, r, spearman, recall)
    variants_b = []  # (variant, r, spearman, ratio, recall)
    sensitivity = []  # (r, seed, spearman)
    eig64 = None
    m_a = pca_a.mean
    second_moment = Xs.T @ Xs / n
    vals_u, vecs_u = eig_desc(second_moment)

    def pair_sp(Z, Y=None):
        Y = Z if Y is None else Y
        return spearman(np.einsum("ij,ij->i", Y[ia], Z[ib]), yte)

    for r0 in RANKS:
        # (a)
        r = min(r0, width)
        V = pca_a.basis(r)
        Z = Xs @ V
        sp = pair_sp(Z)
        rows.append(("a", r0, r, sp, sp / sp_exact, sp_exact, pca_a.kept(r), recall_at_k(G_sym, Z @ Z.T)))
        if r0 == 64:
            eig64 = pca_a.vals[:64].copy()
        variants.append(("centred basis, uncentred projection (projection.rs)", r, sp,
                         rows[-1][-1]))
        # uncentred basis
        Zu = Xs @ vecs_u[:, :r]
        variants.append(("uncentred basis (second moment)", r, pair_sp(Zu), recall_at_k(G_sym, Zu @ Zu.T)))
        # centre both sides
        Zc = (Xs - m_a) @ V
        variants.append(("centred basis, both sides centred", r, pair_sp(Zc), recall_at_k(G_sym, Zc @ Zc.T)))
        # centred r-1 + mean direction
        V1 = pca_a.basis(r - 1)
        e = m_a - V1 @ (V1.T @ m_a)
        Vm = np.column_stack([V1, e / np.linalg.norm(e)])
        Zm = Xs @ Vm
        variants.append(("centred r-1 + mean direction", r, pair_sp(Zm), recall_at_k(G_sym, Zm @ Zm.T)))

        # (b) query-weighted: unweighted basis, weights on the query side
        rb = min(r0, Dq.shape[1])
        Vb = pca_b.basis(rb)
        Zb = Dq @ Vb
        Yb = (Dq * tcol) @ Vb
        sp = pair_sp(Zb, Yb)
        rows.append(("b", r0, rb, sp, sp / sp_exact_qw, sp_exact_qw, pca_b.kept(rb), recall_at_k(G_qw, Yb @ Zb.T)))
        # (b) with the mean direction: top rb-1 unweighted eigenvectors + (I - P) m, m = mean of d
        Vb1 = pca_b.basis(rb - 1)
        eb = pca_b.mean - Vb1 @ (Vb1.T @ pca_b.mean)
        Vbm = np.column_stack([Vb1, eb / np.linalg.norm(eb)])
        Zbm, Ybm = Dq @ Vbm, (Dq * tcol) @ Vbm
        variants_b.append(("centred basis, uncentred projection (projection.rs)", rb, rows[-1][3],
                           rows[-1][3] / sp_exact_qw, rows[-1][-1]))
        sp = pair_sp(Zbm, Ybm)
        variants_b.append(("centred r-1 + mean direction", rb, sp, sp / sp_exact_qw, recall_at_k(G_qw, Ybm @ Zbm.T)))
        # (b') same stored vectors, symmetric score weights on the query side
        Yb2 = (Dq * scol) @ Vb
        sp = pair_sp(Zb, Yb2)
        # Variance kept of (b'): the fraction of the unweighted covariance, as for (b).
        rows.append(("b'", r0, rb, sp, sp / sp_exact, sp_exact, pca_b.kept(rb), recall_at_k(G_sym, Yb2 @ Zb.T)))

        # (c) per-model PCA over the kept models
        rk = alloc(min(r0, width), kept_dims)
        Zc_blocks, kept_var = [], 0.0
        for k, rr in zip(kept, rk):
            Vk = pca_c[k].basis(rr)
            Zc_blocks.append(np.sqrt(s[k]) * (Xkept[k] @ Vk))
            kept_var += s[k] * float(np.clip(pca_c[k].vals[:rr], 0, None).sum())
        Zpm = np.hstack(Zc_blocks)
        sp = pair_sp(Zpm)
        rows.append(("c", r0, sum(rk), sp, sp / sp_exact, sp_exact, kept_var / pca_a.trace,
                     recall_at_k(G_sym, Zpm @ Zpm.T), rk))

    # recall@10 of the three uncentred-projection conventions of (a) over more ranks.
    sweep = []  # (r, rust, mean direction, uncentred basis)
    for r in (16, 32, 64, 96, 128, 192, 256, 300):
        V = pca_a.basis(r)
        V1 = pca_a.basis(r - 1)
        e = m_a - V1 @ (V1.T @ m_a)
        got = []
        for B in (V, np.column_stack([V1, e / np.linalg.norm(e)]), vecs_u[:, :r]):
            Z = Xs @ B
            got.append(recall_at_k(G_sym, Z @ Z.T))
        sweep.append((r, *got))

    # Sensitivity of (a) to an approximate basis: scikit-learn's randomized PCA (default power
    # iterations), as a stand-in for a randomized top-r eigensolver; components used uncentred.
    from sklearn.decomposition import PCA as SkPCA
    for r in (128, 256):
        for seed in (0, 1, 42):
            comp = SkPCA(n_components=r, svd_solver="randomized", random_state=seed).fit(Xs).components_
            sensitivity.append((r, seed, pair_sp(Xs @ comp.T)))

    # Rust-like eigenvalues: CovStats holds f32-rounded unit vectors, weighted in f64.
    U32 = [U[k].astype(np.float32).astype(np.float64) for k in kept]
    Xs32 = np.hstack([np.sqrt(s[k]) * u for k, u in zip(kept, U32)])
    c32, _ = centred_cov(Xs32)
    vals32 = np.linalg.eigvalsh(c32)[::-1]

    # 3. Report -------------------------------------------------------------------------------
    names = {
        "a": "(a) PCA of the weighted served vectors",
        "b": "(b) query-weighted: unweighted PCA, t_k on the query (7 models)",
        "b'": "(b') unweighted PCA, symmetric s_k on the query",
        "c": "(c) per-model PCA, dims proportional to widths",
    }
    say("## Projected held-out Spearman and recall@10")
    say()
    say("| method | r | dims used | held-out Spearman | ratio to exact | exact | variance kept | recall@10 |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in ("a", "b", "b'", "c"):
        for row in rows:
            if row[0] != method:
                continue
            used = str(row[2]) if method != "c" else f"{row[2]} ({'+'.join(map(str, row[8]))})"
            say(f"| {names[method]} | {row[1]} | {used} | {row[3]:.4f} | {row[4]:.4f} | {row[5]:.4f} "
                f"| {row[6]:.4f} | {row[7]:.3f} |")
    say()
    say(f"Exact (unprojected): symmetric {sp_exact:.4f}, query-weighted {sp_exact_qw:.4f}. Per-model "
        f"split (c) is over the kept models {', '.join(models[k] for k in kept)} "
        f"({'+'.join(map(str, kept_dims))} = {width} dims). Variance kept of (b)/(b') is of the "
        f"unweighted concatenation (2512 dims, all 7 models). recall@10: 381 queries, 380 candidates each, "
        f"truth = exact score of the same mode.")
    say()
    say("## Convention variants of (a)")
    say()
    say("| basis / projection | r | held-out Spearman | ratio to exact | recall@10 |")
    say("| --- | --- | --- | --- | --- |")
    for name, r, sp, rec in variants:
        say(f"| {name} | {r} | {sp:.4f} | {sp / sp_exact:.4f} | {rec:.3f} |")
    say()

    say(f"recall@10 of (a) by r for the three uncentred projections (||m||^2 = {float(m_a @ m_a):.4f} "
        f"against tr(C_w) = {pca_a.trace:.4f}):")
    say()
    say("| r | centred basis (projection.rs) | centred r-1 + mean direction | uncentred basis |")
    say("| --- | --- | --- | --- |")
    for r, a_, b_, c_ in sweep:
        say(f"| {r} | {a_:.3f} | {b_:.3f} | {c_:.3f} |")
    say()
    say("## Mean handling in query-weighted mode (b)")
    say()
    say("| basis / projection | r | held-out Spearman | ratio to exact | recall@10 |")
    say("| --- | --- | --- | --- | --- |")
    for name, r, sp, ratio, rec in variants_b:
        say(f"| {name} | {r} | {sp:.4f} | {ratio:.4f} | {rec:.3f} |")
    say()
    say("## Sensitivity of (a) to an approximate basis")
    say()
    say("scikit-learn `PCA(svd_solver='randomized')` (default power iterations), components applied to the "
        "uncentred served vectors, against the exact `eigh` basis:")
    say()
    say("| r | exact basis | seed 0 | seed 1 | seed 42 |")
    say("| --- | --- | --- | --- | --- |")
    for r in (128, 256):
        ex = next(row[3] for row in rows if row[0] == "a" and row[1] == r)
        say(f"| {r} | {ex:.4f} | " + " | ".join(f"{sp:.4f}" for rr, _, sp in sensitivity if rr == r) + " |")
    say()
    say("## Eigenvalues of (a) for r = 64 (covariance of the served vectors, centred, divided by n)")
    say()
    say(f"- total variance tr(C_w) = {pca_a.trace!r}")
    say(f"- variance kept at r = 64: {pca_a.kept(64)!r}")
    say(f"- first 8 eigenvalues (float64 unit vectors): {', '.join(repr(float(v)) for v in eig64[:8])}")
    say(f"- first 8 eigenvalues (f32-rounded unit vectors, as CovStats holds them): "
        f"{', '.join(repr(float(v)) for v in vals32[:8])}")
    say(f"- max relative difference of the top 64 between the two: "
        f"{float(np.max(np.abs(vals32[:64] - eig64) / eig64)):.2e}")
    say(f"- rank of C_w (eigenvalues > 1e-12 * largest): {int(np.sum(pca_a.vals > 1e-12 * pca_a.vals[0]))}")
    say()

    # Claims of issue 21 ------------------------------------------------------------------------
    def get(method, r0):
        return next(row for row in rows if row[0] == method and row[1] == r0)

    a128, a256 = get("a", 128), get("a", 256)
    c256 = get("c", 256)
    b256, bp256 = get("b", 256), get("b'", 256)
    rust256 = next(v for v in variants if v[0].startswith("centred basis, uncentred") and v[1] == 256)
    mean256 = next(v for v in variants if v[0].startswith("centred r-1") and v[1] == 256)
    unc256 = next(v for v in variants if v[0].startswith("uncentred basis") and v[1] == 256)
    both256 = next(v for v in variants if v[0].startswith("centred basis, both") and v[1] == 256)
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    bm = {r: v for name, r, *v in variants_b if name.startswith("centred r-1")}
    b512 = get("b", 512)
    sens = [sp for r, _, sp in sensitivity]
    say("## Interpretation")
    say()
    say(f"- dims = 256 keeps >= 0.99x of the exact held-out Spearman with (a): "
        f"**{yes(a256[4] >= 0.99)}** ({a256[3]:.4f} / {sp_exact:.4f} = {a256[4]:.4f}; recall@10 {a256[7]:.3f}). "
        f"128 dims also do ({a128[4]:.4f}), 64 dims keep {get('a', 64)[4]:.4f}.")
    claim = {"exact": 0.8375, 128: 0.8412, 256: 0.8436}
    say(f"- The issue's figures for (a) (exact 0.8375, 128 dims 0.8412, 256 dims 0.8436): here exact "
        f"{sp_exact:.4f}, 128 dims {a128[3]:.4f}, 256 dims {a256[3]:.4f} -> "
        f"exact {'matches' if round(sp_exact, 4) == claim['exact'] else 'differs'}, "
        f"128 {'matches' if round(a128[3], 4) == claim[128] else 'differs'}, "
        f"256 {'matches' if round(a256[3], 4) == claim[256] else 'differs'} (to 4 decimals). With an exact "
        f"basis 256 dims do not beat the exact score; they equal it. An approximate (randomized) basis moves "
        f"the figure by up to {max(abs(sp - get('a', r)[3]) for r, _, sp in sensitivity):.4f} from the "
        f"exact-basis one on this fixture (table above), so figures in the third and fourth decimal depend "
        f"on the solver and its convergence; none of it is outside the noise of 91 pairs.")
    loss_c = sp_exact - c256[3]
    say(f"- Per-model PCA (c) at 256 loses {loss_c:.4f} against exact ({c256[3]:.4f}); the issue says "
        f"0.04-0.07: {'within' if 0.04 <= loss_c <= 0.07 else 'not reproduced (outside that range)'}. "
        f"It is worse than (a) in recall@10 at every r "
        f"({c256[7]:.3f} vs {a256[7]:.3f} at 256) and in Spearman at 64/128 "
        f"({get('c', 64)[3]:.4f}/{get('c', 128)[3]:.4f} vs {get('a', 64)[3]:.4f}/{a128[3]:.4f}).")
    say(f"- Query-weighted mode with a weight-independent basis (b) at 256: {b256[3]:.4f} against its "
        f"exact {sp_exact_qw:.4f} (ratio {b256[4]:.4f}, recall@10 {b256[7]:.3f} vs {a256[7]:.3f} for (a)). "
        f"The unweighted basis spends dimensions on all 2512 coordinates, including char_ngram's 1024 "
        f"(weight {t[models.index('char_ngram')]:+.3f}), the likely cause of the lower recall (the mean column "
        f"below does not recover it). The Spearman loss, though, is the mean: "
        f"the query-weighted score keeps the per-query offset d(a)^T D_t (I - P) m, which does not "
        f"vanish even at full rank (r = 512: recall@10 {b512[7]:.3f} but Spearman {b512[3]:.4f}). Adding "
        f"the mean's residual as one basis column gives {bm[256][0]:.4f} at 256 and exactly "
        f"{bm[512][0]:.4f} at 512 (recall@10 barely moves: {bm[256][2]:.3f} at 256).")
    say(f"- Mean handling in symmetric mode at 256: projection.rs's convention (centred basis, "
        f"uncentred projection) {rust256[2]:.4f} / recall {rust256[3]:.3f}; centred r-1 + mean "
        f"direction {mean256[2]:.4f} / {mean256[3]:.3f}; uncentred basis {unc256[2]:.4f} / "
        f"{unc256[3]:.3f}; centring both sides {both256[2]:.4f} / {both256[3]:.3f}. Centring both "
        f"sides, which projection.rs's docs warn against, is clearly worse, as they predict. The Spearman "
        f"figures of the three uncentred projections are within noise of each other, but recall@10 is "
        f"not: from r = 32 on, spending one dimension on the mean (either variant) ranks better than the "
        f"pure centred basis at every r of the sweep (+{min(b_ - a_ for r, a_, b_, c_ in sweep if r >= 32):.3f} "
        f"to +{max(b_ - a_ for r, a_, b_, c_ in sweep if r >= 32):.3f}). projection.rs's docs call a dimension "
        f"spent on the mean wasted because the stored side's mean adds the same amount to every "
        f"candidate; that is true of q^T (I - P) m, but the query's own mean also enters the error term "
        f"they keep, q^T (I - P) x~ = m^T (I - P) x~ + q~^T (I - P) x~, and m^T (I - P) x~ varies by "
        f"candidate. Averaged over queries drawn from the rows, the error's mean square is "
        f"tr((I - P) C (I - P) (C + m m^T)): the queries' second moment C + m m^T does not commute with C "
        f"(the docs' own condition fails because of m m^T), and m is large here.")
    say("- Caveats: 91 held-out pairs (a Spearman difference of 0.005 is well inside its sampling noise), "
        "381 words (the centred covariance has rank 380, so (a) at r = 512 is exact by construction and "
        "recall@10 is over 380 candidates); a projection that scores above the exact served score is "
        "fitting noise of this sample, not a property to expect at scale.")
    say()

    ref_out = {
        "note": "bench/projection/wordsim_study.py: numpy float64 reference for the learned projection "
                "(issue 21) on tests/fixtures/wordsim353, OLS fit, symmetric mode, threshold 0.05",
        "kept": [models[k] for k in kept],
        "score_weights": {models[k]: float(s[k]) for k in range(K)},
        "served_width": width,
        "n_rows": n,
        "total_variance": pca_a.trace,
        "eigenvalues_top64": [float(v) for v in eig64],
        "eigenvalues_top64_f32_unit_vectors": [float(v) for v in vals32[:64]],
        "variance_kept": {str(r): pca_a.kept(min(r, width)) for r in RANKS},
        "basis_r64_column0_first8": [float(v) for v in pca_a.basis(64)[:8, 0]],
        "exact_spearman": {"symmetric": sp_exact, "query_weighted": sp_exact_qw},
        "results": [
            {"method": row[0], "r": row[1], "dims": row[2], "spearman": row[3], "ratio": row[4],
             "variance_kept": row[6], "recall_at_10": row[7]} for row in rows
        ],
        "variants": [{"variant": v[0], "r": v[1], "spearman": v[2], "recall_at_10": v[3]} for v in variants],
        "recall_sweep_a": [{"r": r, "centred": a_, "mean_direction": b_, "uncentred": c_} for r, a_, b_, c_ in sweep],
        "variants_query_weighted": [{"variant": v[0], "r": v[1], "spearman": v[2], "recall_at_10": v[4]}
                                    for v in variants_b],
    }
    (HERE / "wordsim_reference.json").write_text(json.dumps(ref_out, indent=1) + "\n")

    def rel(p):
        p = Path(p).absolute()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

    cmd = " ".join(shlex.quote(a) for a in [rel(sys.executable), rel(sys.argv[0])] + sys.argv[1:])
    header = [
        "# Learned projection (issue 21): WordSim-353 reference study",
        "",
        f"Generated by `bench/projection/wordsim_study.py` (run as `{cmd}` from the repository root) on "
        f"{t_start.strftime('%Y-%m-%d %H:%M UTC')}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}; float64, numpy.linalg.eigh, one BLAS thread. "
        "Definitions and derivations: the script's header. Machine-readable numbers (eigenvalues for a "
        "later Rust test): `wordsim_reference.json`.",
        "",
    ]
    (HERE / "RESULTS-wordsim.md").write_text("\n".join(header + out).rstrip() + "\n")


if __name__ == "__main__":
    main()
