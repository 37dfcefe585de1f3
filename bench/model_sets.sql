-- Benchmark (not a test): model sets (issue 4).
--   1. embedstack.fit on labelled pairs, reading the source table's stored vector columns
--      (each entity once, through the entity cache), against plain SQL computing the same
--      features with pgvector (`1 - (a.m <=> b.m)` per model, items joined twice) and then
--      (a) embedstack.regression_stats + solve, (b) core aggregates only (avg, var_pop,
--      covar_pop) turned into the same state and solved. fit with the default
--      embedstack.entity_cache_size (1GB: the entities do not fit, chunked) and with 2GB;
--      the SQL baselines serial and with up to 2 parallel workers. Interleaved, medians.
--   2. CALL embedstack.materialize against CREATE TABLE AS with pgvector's
--      `l2_normalize(m) * array_fill(s, ARRAY[d])::vector || ...` using the same multipliers,
--      then the same HNSW index (vector_ip_ops, 2 parallel workers, maintenance_work_mem 2GB)
--      on each. One run of each (minutes each at full scale). materialize's phases are timed
--      with event triggers on its DDL (write phase = until its CREATE INDEX starts).
-- Data: :entities entities (id, vector(384), vector(768), vector(256)), clustered so that the
-- cosines spread; :pairs pairs, a quarter within a cluster of each model, a quarter random;
-- y = 0.1 + 0.5 c1 + 0.3 c2 + 0.2 c3 + uniform noise (c = the stored vectors' cosines).
-- Knobs: psql -v entities=200000 -v pairs=1000000 -v reps=3 (defaults). Smoke run:
--   -v entities=2000 -v pairs=10000
-- Runs CALL (which COMMITs): not inside a transaction block. Creates and drops event
-- triggers in this database (to time materialize's phases): run it in a scratch database.
\set ON_ERROR_STOP on
\set QUIET on
\if :{?entities} \else \set entities 200000 \endif
\if :{?pairs} \else \set pairs 1000000 \endif
\if :{?reps} \else \set reps 3 \endif
SET client_min_messages = notice;
-- The HNSW graph of the combined vectors is built in memory on both sides of the comparison.
SET maintenance_work_mem = '2GB';
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
DROP EVENT TRIGGER IF EXISTS bench_ms_ddl_start;
DROP EVENT TRIGGER IF EXISTS bench_ms_ddl_end;
DO $$ BEGIN PERFORM embedstack.drop_model_set(name, true) FROM embedstack.model_sets WHERE name = 'bench_ms'; END $$;
DROP TABLE IF EXISTS items, pairs, centers1, centers2, centers3, bench_ms_baseline, bench_ms_ddl_log;
SELECT current_setting('server_version') AS pg_version, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector \gset
\echo 'model sets benchmark:' :entities 'entities,' :pairs 'pairs,' :reps 'repetitions of the fit variants; PostgreSQL' :pg_version ', pgvector' :pgvector

-- ---------------------------------------------------------------------------------------
-- Data. Model k puts entity i in cluster (i - 1) % n_k (n_k differs per model, so the
-- models disagree about who is similar) and stores centre + noise, the noise scale random per
-- entity and model (cosines within a cluster spread over roughly 0.2 .. 0.85).
SELECT setseed(0.42) \gset
SELECT extract(epoch FROM clock_timestamp()) AS t_gen0,
       ceil(:entities / 200.0)::int AS n1, ceil(:entities / 160.0)::int AS n2, ceil(:entities / 250.0)::int AS n3 \gset
CREATE TABLE centers1 AS SELECT c, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 384 + 0 * c))::vector(384) AS v
  FROM generate_series(0, :n1 - 1) c;
CREATE TABLE centers2 AS SELECT c, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 768 + 0 * c))::vector(768) AS v
  FROM generate_series(0, :n2 - 1) c;
CREATE TABLE centers3 AS SELECT c, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 256 + 0 * c))::vector(256) AS v
  FROM generate_series(0, :n3 - 1) c;
CREATE TABLE items (id int PRIMARY KEY, m1 vector(384), m2 vector(768), m3 vector(256));
INSERT INTO items
SELECT e.id,
       c1.v + ARRAY(SELECT ((random() - 0.5) * e.s1)::real FROM generate_series(1, 384))::vector,
       c2.v + ARRAY(SELECT ((random() - 0.5) * e.s2)::real FROM generate_series(1, 768))::vector,
       c3.v + ARRAY(SELECT ((random() - 0.5) * e.s3)::real FROM generate_series(1, 256))::vector
FROM (SELECT i AS id, 0.4 + 1.6 * random() AS s1, 0.4 + 1.6 * random() AS s2, 0.4 + 1.6 * random() AS s3
        FROM generate_series(1, :entities) i) e
JOIN centers1 c1 ON c1.c = (e.id - 1) % :n1
JOIN centers2 c2 ON c2.c = (e.id - 1) % :n2
JOIN centers3 c3 ON c3.c = (e.id - 1) % :n3
ORDER BY e.id;
SELECT extract(epoch FROM clock_timestamp()) AS t_gen1 \gset
-- Pairs: b in a's cluster of model 1, 2 or 3, or uniform (a quarter each).
CREATE TABLE pairs AS
WITH p AS (
  SELECT s.a,
         CASE s.kind
           WHEN 0 THEN 1 + (s.a - 1) % :n1 + :n1 * floor(random() * ((:entities - 1 - (s.a - 1) % :n1) / :n1 + 1))::int
           WHEN 1 THEN 1 + (s.a - 1) % :n2 + :n2 * floor(random() * ((:entities - 1 - (s.a - 1) % :n2) / :n2 + 1))::int
           WHEN 2 THEN 1 + (s.a - 1) % :n3 + :n3 * floor(random() * ((:entities - 1 - (s.a - 1) % :n3) / :n3 + 1))::int
           ELSE 1 + floor(random() * :entities)::int
         END AS b,
         s.noise
  FROM (SELECT 1 + floor(random() * :entities)::int AS a, floor(random() * 4)::int AS kind, random() - 0.5 AS noise
          FROM generate_series(1, :pairs)) s
)
SELECT p.a, p.b,
       0.1 + 0.5 * (1 - (x.m1 <=> y.m1)) + 0.3 * (1 - (x.m2 <=> y.m2)) + 0.2 * (1 - (x.m3 <=> y.m3)) + 0.1 * p.noise AS y
FROM p JOIN items x ON x.id = p.a JOIN items y ON y.id = p.b;
SELECT extract(epoch FROM clock_timestamp()) AS t_gen2 \gset
VACUUM ANALYZE items;
VACUUM ANALYZE pairs;
SELECT round((:t_gen1 - :t_gen0)::numeric, 1) AS gen_items_s, round((:t_gen2 - :t_gen1)::numeric, 1) AS gen_pairs_s,
       pg_size_pretty(pg_total_relation_size('items')) AS items_size,
       pg_size_pretty(pg_total_relation_size('pairs')) AS pairs_size,
       (SELECT count(*) FROM pairs) AS n_pairs,
       (SELECT count(DISTINCT e) FROM (SELECT a FROM pairs UNION ALL SELECT b FROM pairs) u(e)) AS entities_in_pairs \gset
\echo 'data:' :gen_items_s 's to generate items (' :items_size '),' :gen_pairs_s 's for the pairs with y (' :pairs_size '),' :n_pairs 'pairs over' :entities_in_pairs 'entities'

SELECT (embedstack.create_model_set('bench_ms', 'items', 'id', ARRAY['m1', 'm2', 'm3'])).model_dims AS dims \gset
\echo 'model set bench_ms: model dims' :dims

-- ---------------------------------------------------------------------------------------
-- 1. fit (psql does not substitute variables inside the dollar-quoted blocks: settings)
SELECT set_config('bench_ms.reps', :'reps', false), set_config('bench_ms.pairs', :'pairs', false),
       set_config('bench_ms.entities', :'entities', false) \gset
\set QUIET off
DO $bench$
DECLARE
  n_reps int := current_setting('bench_ms.reps')::int;
  n_pairs bigint := current_setting('bench_ms.pairs')::bigint;
  q_fit text := $q$SELECT f.id, f.weights, f.intercept, f.diagnostics
                   FROM embedstack.fit('bench_ms', 'pairs', 'a', 'b', 'y') f$q$;
  q_rs text := $q$SELECT (t.s).weights, (t.s).intercept FROM (SELECT embedstack.solve(embedstack.regression_stats(
                   ARRAY[1 - (x.m1 <=> y.m1), 1 - (x.m2 <=> y.m2), 1 - (x.m3 <=> y.m3)], p.y)) AS s
                   FROM pairs p JOIN items x ON x.id = p.a JOIN items y ON y.id = p.b) t$q$;
  -- Core aggregates only; the state is assembled from them (embedstack_math::regstats layout:
  -- magic, version, k, n, skipped, weight sum, means of [x, y], upper triangle of the centred
  -- co-moments) and solved. OFFSET 0 keeps the planner from copying each `<=>` into every
  -- aggregate that uses it (it does not prevent a parallel plan).
  q_core text := $q$SELECT (t.s).weights, (t.s).intercept FROM (SELECT embedstack.solve(ARRAY[4011970, 1, 3, n, 0, n,
                     a1, a2, a3, ay, v1 * n, c12 * n, c13 * n, c1y * n, v2 * n, c23 * n, c2y * n, v3 * n, c3y * n, vy * n]) AS s
                   FROM (SELECT count(*)::float8 AS n, avg(f1) AS a1, avg(f2) AS a2, avg(f3) AS a3, avg(y) AS ay,
                                var_pop(f1) AS v1, var_pop(f2) AS v2, var_pop(f3) AS v3, var_pop(y) AS vy,
                                covar_pop(f1, f2) AS c12, covar_pop(f1, f3) AS c13, covar_pop(f2, f3) AS c23,
                                covar_pop(f1, y) AS c1y, covar_pop(f2, y) AS c2y, covar_pop(f3, y) AS c3y
                           FROM (SELECT 1 - (x.m1 <=> y.m1) AS f1, 1 - (x.m2 <=> y.m2) AS f2, 1 - (x.m3 <=> y.m3) AS f3, p.y
                                   FROM pairs p JOIN items x ON x.id = p.a JOIN items y ON y.id = p.b OFFSET 0) f) a) t$q$;
  names text[] := ARRAY['fit, entity_cache_size 1GB (default)', 'fit, entity_cache_size 2GB',
                        'SQL: pgvector + regression_stats, serial', 'SQL: pgvector + regression_stats, <= 2 workers',
                        'SQL: pgvector + core aggregates, serial', 'SQL: pgvector + core aggregates, <= 2 workers'];
  times float8[] := array_fill(NULL::float8, ARRAY[6, n_reps]);
  med float8[] := '{}';
  w float8[]; w0 float8[]; b float8; b0 float8; d jsonb; fid bigint; t0 timestamptz; line text;
  maxdiff float8 := 0; v float8;
BEGIN
  -- Plans of the SQL baselines as run (EXPLAIN, no ANALYZE).
  FOR i IN 0..1 LOOP
    PERFORM set_config('max_parallel_workers_per_gather', (2 * i)::text, true);
    RAISE NOTICE 'plan of the regression_stats baseline, max_parallel_workers_per_gather = %:', 2 * i;
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q_rs LOOP RAISE NOTICE '  %', line; END LOOP;
  END LOOP;
  -- Warm-up (brings the items table and its TOAST into the OS cache) and reference result.
  PERFORM set_config('embedstack.entity_cache_size', '2GB', true);
  EXECUTE q_fit INTO fid, w0, b0, d;
  RAISE NOTICE 'fit %: weights % intercept % (true: 0.5, 0.3, 0.2; 0.1), diagnostics %', fid,
    (SELECT array_agg(round(x::numeric, 4)) FROM unnest(w0) x), round(b0::numeric, 4), d;
  FOR rep IN 1..n_reps LOOP
    FOR k IN 1..6 LOOP
      PERFORM set_config('embedstack.entity_cache_size', CASE k WHEN 2 THEN '2GB' ELSE '1GB' END, true);
      PERFORM set_config('max_parallel_workers_per_gather', CASE WHEN k IN (4, 6) THEN '2' ELSE '0' END, true);
      t0 := clock_timestamp();
      IF k <= 2 THEN
        EXECUTE q_fit INTO fid, w, b, d;
      ELSIF k <= 4 THEN
        EXECUTE q_rs INTO w, b;
      ELSE
        EXECUTE q_core INTO w, b;
      END IF;
      times[k][rep] := extract(epoch FROM clock_timestamp() - t0);
      FOR j IN 1..3 LOOP maxdiff := greatest(maxdiff, abs(w[j] - w0[j])); END LOOP;
      maxdiff := greatest(maxdiff, abs(b - b0));
    END LOOP;
  END LOOP;
  RAISE NOTICE 'largest difference of any variant''s weights or intercept from the reference fit: %', maxdiff;
  IF maxdiff > 1e-6 THEN
    RAISE EXCEPTION 'the variants disagree (largest difference %)', maxdiff;
  END IF;
  FOR k IN 1..6 LOOP
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) INTO v FROM unnest(times[k:k][1:n_reps]) x;
    med := med || v;
  END LOOP;
  RAISE NOTICE 'fit: % pairs, models vector(384) + vector(768) + vector(256); medians of %, seconds (runs)', n_pairs, n_reps;
  FOR k IN 1..6 LOOP
    RAISE NOTICE '  %: % s  (%)  % pairs/s', rpad(names[k], 48), round(med[k]::numeric, 2),
      (SELECT string_agg(round(x::numeric, 2)::text, ' ') FROM unnest(times[k:k][1:n_reps]) x), round(n_pairs / med[k]);
  END LOOP;
  FOR k IN 3..6 LOOP
    RAISE NOTICE 'ratio % / fit: % (default cache), % (2GB cache); goal >= 5', rpad(names[k], 48),
      round((med[k] / med[1])::numeric, 2), round((med[k] / med[2])::numeric, 2);
  END LOOP;
END
$bench$;
\set QUIET on

-- ---------------------------------------------------------------------------------------
-- 2. materialize. The fit and multipliers used by both sides:
SELECT max(id) AS fit_id FROM embedstack.fits WHERE model_set = 'bench_ms' \gset
SELECT m[1] AS s1, m[2] AS s2, m[3] AS s3, (384 * (m[1] > 0)::int + 768 * (m[2] > 0)::int + 256 * (m[3] > 0)::int) AS width
  FROM embedstack._stored_multipliers('bench_ms', :fit_id) m \gset
\echo 'materialize: fit' :fit_id ', block multipliers' :s1 :s2 :s3 ', combined width' :width
SELECT :width = 1408 AS all_models_kept \gset
\if :all_models_kept
\else
  \echo 'unexpected: a model was left out of the combined vector; the baseline below assumes all three'
  SELECT 1 / 0;
\endif
-- Timestamps of materialize's DDL (ALTER TABLE ADD COLUMN, CREATE INDEX, cut-over), to
-- split its duration into the write phase, the index build and the cut-over.
CREATE TABLE bench_ms_ddl_log (seq bigserial, event text, tag text, at timestamptz);
CREATE OR REPLACE FUNCTION public.bench_ms_ddl_log_fn() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.bench_ms_ddl_log (event, tag, at) VALUES (tg_event, tg_tag, clock_timestamp()); END $$;

-- 2a. Baseline: CREATE TABLE AS with pgvector, then the same HNSW index.
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t_b0 \gset
CREATE TABLE bench_ms_baseline AS
SELECT id, (l2_normalize(m1) * array_fill(:s1::real, ARRAY[384])::vector
         || l2_normalize(m2) * array_fill(:s2::real, ARRAY[768])::vector
         || l2_normalize(m3) * array_fill(:s3::real, ARRAY[256])::vector)::vector(1408) AS v
FROM items;
SELECT extract(epoch FROM clock_timestamp()) AS t_b1 \gset
-- The planner sizes a parallel index build by the heap's main fork, which is small here (the
-- vectors are in TOAST): it would give this table fewer workers than materialize's index on
-- items gets. Both tables get the same 2 (max_parallel_maintenance_workers) explicitly.
ALTER TABLE bench_ms_baseline SET (parallel_workers = 2);
CREATE INDEX bench_ms_baseline_hnsw ON bench_ms_baseline USING hnsw (v vector_ip_ops);
SELECT extract(epoch FROM clock_timestamp()) AS t_b2 \gset
SELECT round((:t_b1 - :t_b0)::numeric, 2) AS b_write_s, round((:t_b2 - :t_b1)::numeric, 2) AS b_index_s \gset
\echo 'baseline: CREATE TABLE AS' :b_write_s 's, CREATE INDEX hnsw' :b_index_s 's'

-- 2b. materialize (batches of 10000 rows with COMMIT, HNSW index, cut-over).
ALTER TABLE items SET (parallel_workers = 2);
CHECKPOINT;
CREATE EVENT TRIGGER bench_ms_ddl_start ON ddl_command_start EXECUTE FUNCTION public.bench_ms_ddl_log_fn();
CREATE EVENT TRIGGER bench_ms_ddl_end ON ddl_command_end EXECUTE FUNCTION public.bench_ms_ddl_log_fn();
SELECT extract(epoch FROM clock_timestamp()) AS t_m0 \gset
\set QUIET off
CALL embedstack.materialize('bench_ms', :fit_id);
\set QUIET on
SELECT extract(epoch FROM clock_timestamp()) AS t_m3 \gset
DROP EVENT TRIGGER bench_ms_ddl_start;
DROP EVENT TRIGGER bench_ms_ddl_end;
SELECT extract(epoch FROM min(at) FILTER (WHERE event = 'ddl_command_start' AND tag = 'CREATE INDEX')) AS t_m1,
       extract(epoch FROM min(at) FILTER (WHERE event = 'ddl_command_end' AND tag = 'CREATE INDEX')) AS t_m2
  FROM bench_ms_ddl_log \gset

-- Same vectors on both sides (up to float rounding), and the index is in place.
SELECT max(i.bench_ms_combined <-> b.v) AS max_l2_diff, count(*) AS n_rows,
       (SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
         WHERE x.indrelid = 'items'::regclass AND c.relname = 'bench_ms_combined_hnsw' AND x.indisvalid) AS index_ok
  FROM items i JOIN bench_ms_baseline b USING (id) \gset
\echo 'check: largest L2 distance between materialize''s and the baseline''s vector:' :max_l2_diff 'over' :n_rows 'rows; HNSW index valid:' :index_ok

\set QUIET off
\echo 'materialize:' :entities 'rows, vector(1408), HNSW vector_ip_ops (m 16, ef_construction 64), one run each:'
SELECT phase, round(baseline::numeric, 2) AS "baseline s", round(materialize::numeric, 2) AS "materialize s",
       round((baseline / materialize)::numeric, 2) AS "baseline / materialize (goal >= 1.5)",
       CASE WHEN o IN (1, 4) THEN round(:entities / materialize) END AS "materialize rows/s"
FROM (VALUES (1, 'write (CREATE TABLE AS | staging column in batches)', :t_b1 - :t_b0, :t_m1 - :t_m0),
             (2, 'CREATE INDEX hnsw', :t_b2 - :t_b1, :t_m2 - :t_m1),
             (3, 'cut-over', NULL, :t_m3 - :t_m2),
             (4, 'total (write + index [+ cut-over])', :t_b2 - :t_b0, :t_m3 - :t_m0)) r(o, phase, baseline, materialize)
ORDER BY o;
\set QUIET on

-- Cleanup.
DROP FUNCTION public.bench_ms_ddl_log_fn();
SELECT embedstack.drop_model_set('bench_ms', true) \gset
DROP TABLE items, pairs, centers1, centers2, centers3, bench_ms_baseline, bench_ms_ddl_log;
