"""The seed workflow (the export-to-pandas recipe this project replaces, docs/design.md §1) done client-side with
pandas, numpy and scikit-learn: pull the vectors and the pairs, normalise each model's rows,
one cosine per model and pair, LinearRegression, then the weighted concatenation written back.

The pull uses the fastest client path we know (binary COPY parsed by numpy.frombuffer), not
pandas.read_sql of the vectors' text: the seed baseline is given its best case. The per-pair
cosines are computed in chunks of pairs (the recipe's `.loc` of a million rows at once would
need several GB per model); the arithmetic is the recipe's, in float64."""

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from common import copy_in, copy_out

CHUNK = 50000


def pull_models(conn, items, model_cols, dims, key="id"):
    """One DataFrame per model (index = the key), as the recipe keeps them."""
    cols = [(key, "int4", None)] + [(c, "vector", d) for c, d in zip(model_cols, dims)]
    rec = copy_out(conn, f"SELECT {key}, {', '.join(model_cols)} FROM {items}", cols)
    index = pd.Index(rec[key].astype(np.int64), name=key)
    models = {c: pd.DataFrame(rec[c].astype(np.float32), index=index, copy=False) for c in model_cols}
    return models


def pull_pairs(conn, pairs):
    rec = copy_out(conn, f"SELECT a, b, y FROM {pairs}",
                   [("a", "int4", None), ("b", "int4", None), ("y", "float8", None)])
    return pd.DataFrame({"a": rec["a"].astype(np.int64), "b": rec["b"].astype(np.int64),
                         "y": rec["y"].astype(np.float64)})


def row_normalise(df):
    """l2 normalise each row of df (the recipe's function, in float64)."""
    x = np.asarray(df, dtype=np.float64)
    row_norms = np.sqrt((x ** 2).sum(axis=1))
    return pd.DataFrame(x / row_norms[:, None], index=df.index, copy=False)


def cosine_features(models, pair_df):
    """X: one column of cosines per model for every pair (the recipe's cosine_predictions)."""
    names = list(models)
    normed = {name: row_normalise(df) for name, df in models.items()}
    index = normed[names[0]].index
    ia = index.get_indexer(pair_df["a"].to_numpy())
    ib = index.get_indexer(pair_df["b"].to_numpy())
    if (ia < 0).any() or (ib < 0).any():
        raise ValueError("a pair references an unknown entity")
    X = np.empty((len(pair_df), len(names)))
    for k, name in enumerate(names):
        u = normed[name].to_numpy()
        for s in range(0, len(pair_df), CHUNK):
            X[s:s + CHUNK, k] = (u[ia[s:s + CHUNK]] * u[ib[s:s + CHUNK]]).sum(axis=1)
    return X, normed


def get_stack_weights(X, y):
    lr = LinearRegression()
    lr.fit(X, y)
    return lr.coef_, lr.intercept_


def combine_models(normed, weights, threshold=0.05):
    """The recipe's weighted concatenation: models with weight / max <= threshold are dropped,
    the others scaled by sqrt(weight / max). Returns (ids, float32 matrix, multipliers)."""
    names = list(normed)
    max_weight = max(weights)
    assert max_weight > 0, "At least one weight should be positive"
    vocab = np.sort(normed[names[0]].index.to_numpy())
    blocks, mult = [], []
    for name, w in zip(names, weights):
        weight = w / max_weight
        if weight > threshold:
            blocks.append(np.sqrt(weight) * normed[name].loc[vocab].to_numpy())
            mult.append(np.sqrt(weight))
        else:
            mult.append(0.0)
    return vocab.astype(np.int32), np.hstack(blocks).astype(np.float32), mult


def write_back(conn, table, ids, matrix, vector_schema):
    width = matrix.shape[1]
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int, v {vector_schema}.vector({width}))")
    copy_in(conn, table, ["id", "v"], [("id", "int4", None), ("v", "vector", width)], [ids, matrix], chunk_rows=5000)


def build_index(conn, table):
    # Default table options, as embedstack's generation tables (the harness compares them).
    conn.execute(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (v vector_ip_ops)")


def fit(conn, items, pairs, model_cols, dims):
    """Seed fit: pull, cosines, LinearRegression. Returns (weights, intercept, phases)."""
    ph = {}
    t = time.time()
    models = pull_models(conn, items, model_cols, dims)
    ph["pull items"] = time.time() - t
    t = time.time()
    pair_df = pull_pairs(conn, pairs)
    ph["pull pairs"] = time.time() - t
    t = time.time()
    X, _ = cosine_features(models, pair_df)
    ph["cosines"] = time.time() - t
    t = time.time()
    w, b0 = get_stack_weights(X, pair_df["y"].to_numpy())
    ph["LinearRegression"] = time.time() - t
    return w, b0, ph


def end_to_end(conn, items, pairs, model_cols, dims, table, vector_schema, threshold=0.05):
    """Seed refit end to end: pull, cosines, LinearRegression, combine, COPY back, HNSW index."""
    ph = {}
    t = time.time()
    models = pull_models(conn, items, model_cols, dims)
    ph["pull items"] = time.time() - t
    t = time.time()
    pair_df = pull_pairs(conn, pairs)
    ph["pull pairs"] = time.time() - t
    t = time.time()
    X, normed = cosine_features(models, pair_df)
    del models
    ph["cosines"] = time.time() - t
    t = time.time()
    w, b0 = get_stack_weights(X, pair_df["y"].to_numpy())
    ph["LinearRegression"] = time.time() - t
    t = time.time()
    ids, matrix, mult = combine_models(normed, w, threshold)
    del normed
    ph["combine"] = time.time() - t
    t = time.time()
    write_back(conn, table, ids, matrix, vector_schema)
    ph["COPY back"] = time.time() - t
    t = time.time()
    build_index(conn, table)
    ph["CREATE INDEX hnsw"] = time.time() - t
    return w, b0, mult, ph
