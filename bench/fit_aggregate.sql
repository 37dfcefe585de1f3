-- Benchmark (not a test): embedstack.regression_stats over 1M rows of 3 and of 8 features,
-- against plain SQL building XᵀX and Xᵀy with sum(f_i*f_j) in one SELECT. Serial, then with
-- 2 parallel workers. Medians of 3 interleaved runs.
\set QUIET on
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
DROP TABLE IF EXISTS bench_fit;
CREATE TABLE bench_fit AS
SELECT sin(i) AS f1, cos(i) AS f2, sin(i * 0.37) AS f3, cos(i * 0.11) AS f4, sin(i * 1.7) AS f5,
       cos(i * 2.3) AS f6, sin(i * 0.05) AS f7, cos(i * 0.9) AS f8,
       2 * sin(i) - cos(i) + 0.1 * sin(i * 7.1) AS y
FROM generate_series(1, 1000000) i;
VACUUM ANALYZE bench_fit;
\set QUIET off
DO $bench$
DECLARE
  k int; workers int; q_es text; q_sql text; sums text; t0 timestamptz;
  t_es float8[]; t_sql float8[]; m_es float8; m_sql float8; serial_es float8;
BEGIN
  FOREACH k IN ARRAY ARRAY[3, 8] LOOP
    SELECT string_agg(format('sum(f%s*f%s)', i, j), ', ') INTO sums
    FROM generate_series(1, k) i, generate_series(1, k) j WHERE i <= j;
    sums := sums || ', ' || (SELECT string_agg(format('sum(f%s*y), sum(f%s)', i, i), ', ') FROM generate_series(1, k) i)
            || ', sum(y), sum(y*y), count(*)';
    q_sql := 'SELECT ' || sums || ' FROM bench_fit';
    q_es := 'SELECT embedstack.regression_stats(ARRAY[' ||
            (SELECT string_agg(format('f%s', i), ',') FROM generate_series(1, k) i) || '], y) FROM bench_fit';
    FOREACH workers IN ARRAY ARRAY[0, 2] LOOP
      PERFORM set_config('max_parallel_workers_per_gather', workers::text, true);
      PERFORM set_config('parallel_setup_cost', '0', true);
      PERFORM set_config('parallel_tuple_cost', '0', true);
      t_es := '{}'; t_sql := '{}';
      FOR rep IN 1..3 LOOP
        t0 := clock_timestamp(); EXECUTE q_es;
        t_es := t_es || extract(epoch FROM clock_timestamp() - t0)::float8;
        t0 := clock_timestamp(); EXECUTE q_sql;
        t_sql := t_sql || extract(epoch FROM clock_timestamp() - t0)::float8;
      END LOOP;
      SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_es FROM unnest(t_es) v;
      SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) INTO m_sql FROM unnest(t_sql) v;
      IF workers = 0 THEN serial_es := m_es; END IF;
      RAISE NOTICE 'k=% workers=%: regression_stats % s, plain SQL sums % s, ratio SQL/embedstack %, parallel speedup of regression_stats %',
        k, workers, round(m_es::numeric, 3), round(m_sql::numeric, 3), round((m_sql / m_es)::numeric, 2),
        round((serial_es / m_es)::numeric, 2);
    END LOOP;
  END LOOP;
END
$bench$;
DROP TABLE bench_fit;
