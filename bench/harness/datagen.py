"""Deterministic synthetic data with a known true weighting.

Every entity has a latent factor vector z (a cluster centre plus individual variation). Model k
stores v_k = z P_k + sigma_k s_ke eps: a fixed random projection of the latent factors into its
own dimension, plus model-specific noise (scale sigma_k, times a per-entity factor s_ke). So the
models agree about who is similar, each with its own noise, and their cosines are correlated
but not collinear. Half of the labelled pairs join two entities of one latent cluster, half
are uniform. The label is

    y = b0 + sum_k w_k cos_k(a, b) + noise,   noise ~ N(0, noise_sd^2),

with cos_k the cosines of the stored (float32) vectors: a regression of y on the per-model
cosines recovers (b0, w) up to the noise, which gives every fit a known answer.
"""

import time

import numpy as np

from common import copy_in, log

LATENT_DIM = 32
CLUSTER_SIZE = 50
SIGMAS = (0.5, 0.9, 0.7)


def true_weights(k):
    if k == 3:
        return np.array([0.5, 0.3, 0.2])
    w = np.linspace(1.0, 0.2, k)
    return w / w.sum()


class Dataset:
    def __init__(self, n_entities, n_pairs, dims, seed):
        self.n = n_entities
        self.n_pairs = n_pairs
        self.dims = list(dims)
        self.seed = seed
        self.true_w = true_weights(len(dims))
        self.true_b0 = 0.1
        self.noise_sd = 0.05
        self.ids = None
        self.vectors = []  # float32 (n, d_k), row i is entity id i + 1
        self.inv_norms = []  # float64 (n,)
        self.a = self.b = self.y = None
        self.features = None  # float64 (n_pairs, K): the cosines of the stored vectors

    def generate(self):
        t0 = time.time()
        rng = np.random.default_rng(self.seed)
        n, k = self.n, len(self.dims)
        n_clusters = max(2, n // CLUSTER_SIZE)
        cluster = rng.integers(0, n_clusters, size=n)
        centres = rng.standard_normal((n_clusters, LATENT_DIM))
        z = centres[cluster] + 0.8 * rng.standard_normal((n, LATENT_DIM))
        self.ids = np.arange(1, n + 1, dtype=np.int32)
        for m, d in enumerate(self.dims):
            proj = rng.standard_normal((LATENT_DIM, d)) / np.sqrt(LATENT_DIM)
            sigma = SIGMAS[m % len(SIGMAS)] * rng.uniform(0.5, 1.5, size=n)
            v = np.empty((n, d), dtype=np.float32)
            step = 20000
            for s in range(0, n, step):
                e = min(n, s + step)
                block = z[s:e] @ proj
                block += sigma[s:e, None] * rng.standard_normal((e - s, d))
                v[s:e] = block
            self.vectors.append(v)
            self.inv_norms.append(1.0 / np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64)))

        # Pairs: half within a latent cluster, half uniform.
        p = self.n_pairs
        a = rng.integers(0, n, size=p)
        order = np.argsort(cluster, kind="stable")
        sizes = np.bincount(cluster, minlength=n_clusters)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        within = rng.random(p) < 0.5
        ca = cluster[a]
        pick = starts[ca] + np.floor(rng.random(p) * sizes[ca]).astype(np.int64)
        b = np.where(within, order[np.minimum(pick, n - 1)], rng.integers(0, n, size=p))
        self.a = (a + 1).astype(np.int32)
        self.b = (b + 1).astype(np.int32)
        self.features = self.cosines(a, b)
        noise = self.noise_sd * rng.standard_normal(p)
        self.y = self.true_b0 + self.features @ self.true_w + noise
        log(f"generated {n:,} entities x dims {self.dims} and {p:,} pairs in {time.time() - t0:.1f} s "
            f"(true weights {self.true_w.tolist()}, intercept {self.true_b0}, noise sd {self.noise_sd})")
        return self

    def cosines(self, rows_a, rows_b, chunk=50000):
        """Cosines (float64) of the stored float32 vectors for 0-based row pairs."""
        out = np.empty((len(rows_a), len(self.dims)))
        for m, v in enumerate(self.vectors):
            inv = self.inv_norms[m]
            for s in range(0, len(rows_a), chunk):
                ra, rb = rows_a[s:s + chunk], rows_b[s:s + chunk]
                dot = np.einsum("ij,ij->i", v[ra].astype(np.float64), v[rb].astype(np.float64))
                out[s:s + chunk, m] = dot * inv[ra] * inv[rb]
        return out

    def unit(self, m, rows=None):
        """Model m's normalised vectors (float64) of the given 0-based rows (all by default)."""
        v = self.vectors[m] if rows is None else self.vectors[m][rows]
        inv = self.inv_norms[m] if rows is None else self.inv_norms[m][rows]
        return v.astype(np.float64) * inv[:, None]

    # -- loading -----------------------------------------------------------------------
    def load(self, conn, items="items", pairs="pairs"):
        """(Re)creates the two tables and COPYs the data in (binary)."""
        t0 = time.time()
        cols = [f"m{m + 1}" for m in range(len(self.dims))]
        conn.execute(f"DROP TABLE IF EXISTS {items}, {pairs} CASCADE")
        conn.execute(f"CREATE TABLE {items} (id int NOT NULL, "
                     + ", ".join(f"{c} vector({d})" for c, d in zip(cols, self.dims)) + ")")
        conn.execute(f"CREATE TABLE {pairs} (a int NOT NULL, b int NOT NULL, y float8 NOT NULL)")
        copy_in(conn, items, ["id"] + cols,
                [("id", "int4", None)] + [(c, "vector", d) for c, d in zip(cols, self.dims)],
                [self.ids] + self.vectors, chunk_rows=5000)
        copy_in(conn, pairs, ["a", "b", "y"],
                [("a", "int4", None), ("b", "int4", None), ("y", "float8", None)],
                [self.a, self.b, self.y], chunk_rows=200000)
        conn.execute(f"ALTER TABLE {items} ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM ANALYZE {items}")
        conn.execute(f"VACUUM ANALYZE {pairs}")
        size = conn.execute(f"SELECT pg_size_pretty(pg_total_relation_size('{items}')), "
                            f"pg_size_pretty(pg_total_relation_size('{pairs}'))").fetchone()
        log(f"loaded {items} ({size[0]}) and {pairs} ({size[1]}) in {time.time() - t0:.1f} s")
        return time.time() - t0, size
