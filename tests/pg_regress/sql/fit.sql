-- The README's fitting examples on data with a known exact answer:
-- y = 1 + 2·x1 − 3·x2 (no noise), so weights {2,-3}, intercept 1, r2 1, rmse 0 (to 1e-6:
-- residuals computed from moments carry ~sqrt(eps·Σy²) of rounding).
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
CREATE TABLE rows AS
SELECT i, ARRAY[(i % 7)::float8 / 7, (i % 5)::float8 / 5 + i / 100.0] AS x,
       1 + 2 * ((i % 7)::float8 / 7) - 3 * ((i % 5)::float8 / 5 + i / 100.0) AS y
FROM generate_series(1, 60) i;
INSERT INTO rows VALUES (61, ARRAY[1, NULL]::float8[], 1), (62, NULL, 2), (63, '{1,2}', NULL);

SELECT round((f).weights[1]::numeric, 9) AS w1, round((f).weights[2]::numeric, 9) AS w2,
       round((f).intercept::numeric, 9) AS intercept, round((f).r2::numeric, 9) AS r2,
       round((f).rmse::numeric, 6) AS rmse, (f).n_used, (f).n_skipped, (f).rank, (f).collinear
FROM (SELECT embedstack.fit_weights(x, y) AS f FROM rows) s;

-- Store per-fold statistics, solve and cross-validate from them alone. With an exact
-- relation every held-out error is 0 at ridge 0 (mse 0, r2 1), and ridge 0 is the best.
CREATE TABLE fold_stats AS
SELECT i % 3 AS fold, embedstack.regression_stats(x, y) AS state FROM rows GROUP BY 1;
SELECT round((embedstack.solve(embedstack.merge(a.state, embedstack.merge(b.state, c.state)))).intercept::numeric, 9)
FROM fold_stats a, fold_stats b, fold_stats c WHERE a.fold = 0 AND b.fold = 1 AND c.fold = 2;
SELECT ridge, round(mse::numeric, 12) AS mse, round(r2::numeric, 9) AS r2, folds
FROM embedstack.cross_validate((SELECT array_agg(state ORDER BY fold) FROM fold_stats), '{0}');
SELECT ridge FROM embedstack.cross_validate((SELECT array_agg(state ORDER BY fold) FROM fold_stats), '{0,1,10}')
ORDER BY mse LIMIT 1;

-- Non-negative: the weight of x2 (truly -3) is clamped to 0.
SELECT (embedstack.solve(embedstack.regression_stats(x, y), nonnegative => true)).weights[2] AS w2_nonnegative
FROM rows;

-- Collinear features (the same column twice, y = 1 + 3·x1): the minimum-norm solution splits
-- the weight evenly, 1.5 and 1.5, with a WARNING naming features 1 and 2.
SELECT round((f).weights[1]::numeric, 9) AS w1, round((f).weights[2]::numeric, 9) AS w2, (f).rank, (f).collinear
FROM (SELECT embedstack.fit_weights(ARRAY[x[1], x[1]], 1 + 3 * x[1]) AS f FROM rows WHERE i <= 60) s;

-- Bad input.
\set VERBOSITY sqlstate
SELECT embedstack.regression_stats(x, 1) FROM (VALUES ('{1,2}'::float8[]), ('{1}')) v(x);
SELECT embedstack.solve('{1,2,3}'::float8[]);
SELECT embedstack.regression_stats('{NaN}'::float8[], 1);
\set VERBOSITY default
SELECT embedstack.regression_stats(x, 1) FROM (VALUES ('{1,2}'::float8[]), ('{1}')) v(x);
SELECT embedstack.solve('{1,2,3}'::float8[]);
