-- Benchmark (not a test): embedstack.cosine_features over three models against pgvector's
-- `1 - (a.m <=> b.m)` per column, and the floor (a query that only detoasts the same columns).
-- 10,000 entities with vector(384), vector(768), vector(256); 100,000 pairs. Serial plans.
-- Runs the variants interleaved, 5 repetitions, reports medians and ratios.
\set QUIET on
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
DROP TABLE IF EXISTS bench_items, bench_pairs;
SELECT setseed(0.5);
CREATE TABLE bench_items AS
SELECT i AS id,
       (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384 + 0 * i))::vector(384) AS m1,
       (SELECT array_agg(random() - 0.5) FROM generate_series(1, 768 + 0 * i))::vector(768) AS m2,
       (SELECT array_agg(random() - 0.5) FROM generate_series(1, 256 + 0 * i))::vector(256) AS m3
FROM generate_series(1, 10000) i;
ALTER TABLE bench_items ADD PRIMARY KEY (id);
CREATE TABLE bench_pairs AS
SELECT 1 + (random() * 9999)::int AS a, 1 + (random() * 9999)::int AS b FROM generate_series(1, 100000);
VACUUM ANALYZE bench_items, bench_pairs;
SET max_parallel_workers_per_gather = 0;
SET client_min_messages = notice;
\set QUIET off
DO $bench$
DECLARE
  q_es text := $q$SELECT sum(f[1] + f[2] + f[3]) FROM bench_pairs p
      JOIN bench_items x ON x.id = p.a JOIN bench_items y ON y.id = p.b,
      LATERAL embedstack.cosine_features(ARRAY[x.m1, x.m2, x.m3], ARRAY[y.m1, y.m2, y.m3]) f$q$;
  q_es_sub text := $q$SELECT sum(f[1] + f[2] + f[3]) FROM (SELECT embedstack.cosine_features(
      ARRAY[x.m1, x.m2, x.m3], ARRAY[y.m1, y.m2, y.m3]) AS f FROM bench_pairs p
      JOIN bench_items x ON x.id = p.a JOIN bench_items y ON y.id = p.b OFFSET 0) s$q$;
  q_cos text := $q$SELECT sum(embedstack.cosine(x.m1, y.m1) + embedstack.cosine(x.m2, y.m2) + embedstack.cosine(x.m3, y.m3))
      FROM bench_pairs p JOIN bench_items x ON x.id = p.a JOIN bench_items y ON y.id = p.b$q$;
  q_pgv text := $q$SELECT sum((1 - (x.m1 <=> y.m1)) + (1 - (x.m2 <=> y.m2)) + (1 - (x.m3 <=> y.m3)))
      FROM bench_pairs p JOIN bench_items x ON x.id = p.a JOIN bench_items y ON y.id = p.b$q$;
  q_floor text := $q$SELECT sum(vector_dims(x.m1) + vector_dims(x.m2) + vector_dims(x.m3)
                              + vector_dims(y.m1) + vector_dims(y.m2) + vector_dims(y.m3))
      FROM bench_pairs p JOIN bench_items x ON x.id = p.a JOIN bench_items y ON y.id = p.b$q$;
  t_es float8[] := '{}'; t_sub float8[] := '{}'; t_cos float8[] := '{}'; t_pgv float8[] := '{}'; t_floor float8[] := '{}';
  t0 timestamptz; r1 float8; r2 float8; m_es float8; m_sub float8; m_cos float8; m_pgv float8; m_floor float8;
BEGIN
  EXECUTE q_es INTO r1; EXECUTE q_pgv INTO r2;   -- warm the cache
  IF abs(r1 - r2) > 1e-3 * greatest(1, abs(r2)) THEN
    RAISE EXCEPTION 'results differ: % vs %', r1, r2;
  END IF;
  FOR rep IN 1..5 LOOP
    t0 := clock_timestamp(); EXECUTE q_es INTO r1;
    t_es := t_es || extract(epoch FROM clock_timestamp() - t0)::float8;
    t0 := clock_timestamp(); EXECUTE q_es_sub INTO r1;
    t_sub := t_sub || extract(epoch FROM clock_timestamp() - t0)::float8;
    t0 := clock_timestamp(); EXECUTE q_cos INTO r1;
    t_cos := t_cos || extract(epoch FROM clock_timestamp() - t0)::float8;
    t0 := clock_timestamp(); EXECUTE q_pgv INTO r2;
    t_pgv := t_pgv || extract(epoch FROM clock_timestamp() - t0)::float8;
    t0 := clock_timestamp(); EXECUTE q_floor INTO r2;
    t_floor := t_floor || extract(epoch FROM clock_timestamp() - t0)::float8;
  END LOOP;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_es FROM unnest(t_es) v;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_sub FROM unnest(t_sub) v;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_cos FROM unnest(t_cos) v;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_pgv FROM unnest(t_pgv) v;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_floor FROM unnest(t_floor) v;
  RAISE NOTICE 'pairs: 100000, models: vector(384), vector(768), vector(256); median of 5, serial';
  RAISE NOTICE 'embedstack.cosine_features : % s (% pairs/s)', round(m_es::numeric, 3), round(100000 / m_es);
  RAISE NOTICE 'cosine_features (subquery)  : % s (% pairs/s)', round(m_sub::numeric, 3), round(100000 / m_sub);
  RAISE NOTICE 'embedstack.cosine x3       : % s (% pairs/s)', round(m_cos::numeric, 3), round(100000 / m_cos);
  RAISE NOTICE 'pgvector 1-(<=>) x3        : % s (% pairs/s)', round(m_pgv::numeric, 3), round(100000 / m_pgv);
  RAISE NOTICE 'detoast-only floor         : % s', round(m_floor::numeric, 3);
  RAISE NOTICE 'ratio pgvector / embedstack (>= 1: not slower): cosine_features lateral %, subquery %, cosine x3 %',
    round((m_pgv / m_es)::numeric, 3), round((m_pgv / m_sub)::numeric, 3), round((m_pgv / m_cos)::numeric, 3);
  RAISE NOTICE 'above the detoast floor: cosine_features % s, cosine x3 % s, pgvector % s',
    round((m_es - m_floor)::numeric, 3), round((m_cos - m_floor)::numeric, 3), round((m_pgv - m_floor)::numeric, 3);
END
$bench$;
DROP TABLE bench_items, bench_pairs;
