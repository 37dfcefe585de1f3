-- Operations (0.2.0; served through generations and a view since 0.3.0): prediction_mse, refit
-- and its cut-over policy, the status view, the jobs history, retention, argument errors.
-- Expected values are closed forms or independent SQL recomputations.
-- (pg_regress runs every file in one database; the model_sets file drops what it made.)
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;

-- prediction_mse: rows x = 1, 2, 3 with y = 2, 4, 7.
--   weights {2}, intercept 0: residuals 0, 0, 1  -> MSE 1/3
--   weights {2}, intercept 1: residuals -1, -1, 0 -> MSE 2/3
--   weights {2.5}, intercept -0.6666…: the OLS line (slope 2.5, intercept 13/3 - 5 = -2/3):
--   residuals 1/6, -1/3, 1/6 -> MSE (1/36 + 1/9 + 1/36) / 3 = 1/18
CREATE TABLE obs AS SELECT * FROM (VALUES (1.0, 2.0), (2.0, 4.0), (3.0, 7.0)) v(x, y);
SELECT round(embedstack.prediction_mse(s, '{2}', 0)::numeric, 12) AS third,
       round(embedstack.prediction_mse(s, '{2}', 1)::numeric, 12) AS two_thirds,
       round(embedstack.prediction_mse(s, ARRAY[2.5], -2.0 / 3)::numeric, 12) AS eighteenth,
       round(1.0 / 18, 12) AS want
FROM (SELECT embedstack.regression_stats(ARRAY[x::float8], y::float8) AS s FROM obs) t;
SELECT embedstack.prediction_mse(embedstack.regression_stats(ARRAY[x::float8], y::float8), '{2}', 0) IS NULL AS empty
FROM obs WHERE false;
\set VERBOSITY terse
SELECT embedstack.prediction_mse(embedstack.regression_stats(ARRAY[x::float8], y::float8), '{1,2}', 0) FROM obs;
SELECT embedstack.prediction_mse(embedstack.regression_stats(ARRAY[x::float8], y::float8), '{NaN}', 0) FROM obs;
\set VERBOSITY default

-- 60 items, three models in 3 dims with vectors from sines of the id (deterministic, no two
-- parallel), every pair a < b: 1,770 pairs. y  = 1 + 2 cos_a + 3 cos_b          (cos_c weight 0)
--                                             y2 = 1 - 2 cos_a + 3 cos_b
-- Any training subset of these pairs recovers each relation exactly.
CREATE TABLE items (id int PRIMARY KEY, a vector(3), b vector(3), c vector(3));
INSERT INTO items
SELECT i, ARRAY[sin(i), cos(2 * i), sin(3 * i) + 0.1]::real[]::vector,
          ARRAY[cos(i), sin(5 * i), cos(7 * i) + 0.2]::real[]::vector,
          ARRAY[sin(11 * i), 0.3, cos(13 * i)]::real[]::vector
FROM generate_series(1, 60) i;
CREATE TABLE pairs AS
SELECT x.id AS l, y.id AS r,
       1 + 2 * embedstack.cosine(x.a, y.a) + 3 * embedstack.cosine(x.b, y.b) AS y,
       1 - 2 * embedstack.cosine(x.a, y.a) + 3 * embedstack.cosine(x.b, y.b) AS y2
FROM items x JOIN items y ON x.id < y.id;
SELECT name FROM embedstack.create_model_set('qw', 'items', 'id', ARRAY['a', 'b', 'c'], mode => 'query_weighted');

-- Serve a fit of y2 first: for y it is wrong.
SET client_min_messages = warning;                 -- progress NOTICEs carry timings
SELECT weights IS NOT NULL AS fitted_y2 FROM embedstack.fit('qw', 'pairs', 'l', 'r', 'y2');
CALL embedstack.materialize('qw');
-- refit on y: the new fit is exact, the active one is off by 4 cos_a -> cut over. Query-weighted
-- mode: the stored vectors do not depend on the weights, so no row is rewritten.
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y');
RESET client_min_messages;
SELECT (SELECT array_agg(round(w::numeric, 6) + 0) FROM unnest(f.weights) w) AS weights,
       round(f.intercept::numeric, 6) + 0 AS intercept, f.training_source->>'split' AS split,
       f.id = (SELECT active_fit FROM embedstack.model_sets WHERE name = 'qw') AS active
FROM embedstack.fits f WHERE f.model_set = 'qw' ORDER BY f.id;
SELECT job_kind, job_state, phase, active_fit = job_fit AS serves_new_fit, outcome LIKE '%no rows written%' AS no_rewrite,
       last_error
FROM embedstack.status WHERE model_set = 'qw';

-- The recorded held-out MSEs against an independent recomputation over the held-out pairs
-- (the documented split, cosines from embedstack.cosine): new fit ~0, active (y2) fit = mean of
-- (4 cos_a)^2.
WITH j AS (SELECT * FROM embedstack.jobs WHERE model_set = 'qw' AND kind = 'refit' ORDER BY id DESC LIMIT 1),
     held AS (SELECT p.* FROM pairs p
               WHERE (hashtextextended(p.l::text || chr(31) || p.r::text, 0) & 1048575) < 0.2 * 1048576),
     feats AS (SELECT h.y, embedstack.cosine(x.a, z.a) AS ca, embedstack.cosine(x.b, z.b) AS cb,
                      embedstack.cosine(x.c, z.c) AS cc
                 FROM held h JOIN items x ON x.id = h.l JOIN items z ON z.id = h.r),
     act AS (SELECT * FROM embedstack.fits WHERE id = (SELECT (details->>'active_fit')::bigint FROM j))
SELECT (SELECT (details->>'holdout_pairs')::int FROM j) = count(*) AS same_pairs,
       count(*) BETWEEN 300 AND 420 AS about_a_fifth,
       abs((SELECT (details->>'active_mse')::float8 FROM j)
           - avg(power(y - (act.intercept + act.weights[1] * ca + act.weights[2] * cb + act.weights[3] * cc), 2))) < 1e-9 AS active_mse_matches,
       abs((SELECT (details->>'active_mse')::float8 FROM j) - avg(power(4 * ca, 2))) < 1e-6 AS active_mse_is_16_cos_a_squared,
       (SELECT (details->>'new_mse')::float8 FROM j) < 1e-12 AS new_mse_is_zero   -- from moments: SSE = yy - 2b'beta + beta'A beta, ~eps * sum y^2
FROM feats, act GROUP BY act.intercept, act.weights;

-- A ridge fit is worse on the held-out pairs than the exact active fit: kept, nothing changes.
SET client_min_messages = warning;
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', ridge => 100);
RESET client_min_messages;
SELECT job_state, phase, active_fit <> job_fit AS active_fit_kept, outcome LIKE '%the active fit stays' AS says_why
FROM embedstack.status WHERE model_set = 'qw';
-- materialize without a fit id serves the latest fit that no refit rejected: not the one just kept out.
SET client_min_messages = warning;
CALL embedstack.materialize('qw');
RESET client_min_messages;
SELECT m.active_fit <> (SELECT max(f.id) FROM embedstack.fits f WHERE f.model_set = 'qw') AS rejected_fit_not_served,
       m.active_fit = (SELECT j.fit_id FROM embedstack.jobs j WHERE j.model_set = 'qw' AND j.kind = 'materialize'
                        ORDER BY j.id DESC LIMIT 1) AS materialised_the_active_fit
FROM embedstack.model_sets m WHERE m.name = 'qw';
-- cutover => 'never' records the fit only; 'always' serves it even though it is worse.
SET client_min_messages = warning;
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', cutover => 'never');
SELECT job_state, active_fit <> job_fit AS not_served FROM embedstack.status WHERE model_set = 'qw';
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', ridge => 100, cutover => 'always');
RESET client_min_messages;
SELECT job_state, active_fit = job_fit AS served FROM embedstack.status WHERE model_set = 'qw';
SELECT kind, state, phase FROM embedstack.jobs WHERE model_set = 'qw' ORDER BY id;

-- Retention: keep_history = 2 keeps the two newest fits and the fits still in use: the active
-- one, the previous one (what rollback serves) and the one each generation was written for
-- (query-weighted: the first fit materialised). Here: the new fit and the newest before it
-- (the active one), the previous one (the refit's y fit) and the generation's (the y2 fit).
SELECT count(*) AS fits_before, max(id) AS newest_before FROM embedstack.fits WHERE model_set = 'qw' \gset
SET embedstack.keep_history = 2;
SELECT id AS new_fit FROM embedstack.fit('qw', 'pairs', 'l', 'r', 'y') \gset
RESET embedstack.keep_history;
SELECT :fits_before AS fits_before, count(*) AS fits,
       array_agg(f.id ORDER BY f.id) = (SELECT array_agg(DISTINCT x ORDER BY x) FROM (
           SELECT :new_fit::bigint UNION ALL SELECT :newest_before::bigint
           UNION ALL SELECT m.active_fit FROM embedstack.model_sets m WHERE m.name = 'qw'
           UNION ALL SELECT m.previous_fit FROM embedstack.model_sets m WHERE m.name = 'qw'
           UNION ALL SELECT g.fit_id FROM embedstack.generations g WHERE g.model_set = 'qw') u(x)
         WHERE x IS NOT NULL) AS kept_exactly_those,
       bool_or(f.id = (SELECT active_fit FROM embedstack.model_sets WHERE name = 'qw')) AS has_active,
       bool_or(f.id = (SELECT previous_fit FROM embedstack.model_sets WHERE name = 'qw')) AS has_previous,
       bool_or(f.id = (SELECT min(fit_id) FROM embedstack.generations WHERE model_set = 'qw')) AS has_generation_fit,
       max(f.id) = :new_fit AS has_newest
FROM embedstack.fits f WHERE f.model_set = 'qw';

-- Argument errors (nothing runs, nothing changes).
\set VERBOSITY terse
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', cutover => 'sometimes');
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', holdout_fraction => 1);
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', tolerance => -1);
CALL embedstack.refit('qw', 'pairs', 'l', 'nope', 'y');
CALL embedstack.refit('nope', 'pairs', 'l', 'r', 'y');
CALL embedstack.refit('qw', NULL, 'l', 'r', 'y');
CALL embedstack.materialize('qw', batch_size => 0);
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', holdout_fraction => 0);
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', tolerance => 'NaN');
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', ridge => 'NaN');
-- A fraction so small that no pair is held out: the job fails with 22023 before recording a
-- fit, and the error is the status view's last error.
SELECT count(*) AS fits_before FROM embedstack.fits WHERE model_set = 'qw' \gset
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y', holdout_fraction => 1e-9);
\set VERBOSITY default
SELECT count(*) = :fits_before AS no_fit_recorded FROM embedstack.fits WHERE model_set = 'qw';
SELECT regexp_replace(last_error, '[0-9]+', 'N', 'g') AS last_error_shape FROM embedstack.status WHERE model_set = 'qw';
SELECT job_state, last_error_sqlstate FROM embedstack.status WHERE model_set = 'qw';
-- Procedures that COMMIT cannot run inside a transaction block.
BEGIN;
CALL embedstack.materialize('qw');
ROLLBACK;
-- The failed calls left no job lock behind in this session (released by the abort callback).
SELECT count(*) AS advisory_locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT job_state FROM embedstack.status WHERE model_set = 'qw';
-- Inside a savepoint that is rolled back (psql ON_ERROR_ROLLBACK, drivers' automatic
-- savepoints) the session goes on: the lock taken inside it must go with it.
BEGIN;
SAVEPOINT s;
CALL embedstack.refit('qw', 'pairs', 'l', 'r', 'y');
ROLLBACK TO s;
SELECT count(*) AS advisory_locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
