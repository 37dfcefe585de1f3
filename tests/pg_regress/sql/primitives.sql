-- The README's "Primitives" examples, executed. Expected values are closed forms:
-- l2_normalize([3,4]) = [0.6,0.8]; cosine([1,2,3],[4,5,6]) = 32/sqrt(14*77) = 0.9746318461970762.
CREATE EXTENSION embedstack CASCADE;

SELECT embedstack.l2_normalize('[3,4]'::vector);
SELECT embedstack.l2_normalize('{3,0,4}'::real[]);
SELECT embedstack.l2_normalize('{1,1,1,1}'::float8[]);
SELECT embedstack.l2_normalize('[0,0,0]'::vector) AS zero_vector_unchanged;

SELECT embedstack.cosine('[1,2,3]'::vector, '[4,5,6]'::vector);
SELECT embedstack.cosine('{1,2,3}'::real[], '{4,5,6}'::real[]);
SELECT embedstack.cosine('{1,2,3}'::float8[], '{4,5,6}'::float8[]);
SELECT embedstack.cosine('[0,0]'::vector, '[1,2]'::vector) IS NULL AS zero_vector_gives_null;
SELECT embedstack.cosine(NULL::vector, '[1,2]'::vector) IS NULL AS null_gives_null;

-- One cosine per model; models differ in dimension; a NULL or zero vector gives NULL.
SELECT embedstack.cosine_features(
  ARRAY['[1,0]'::vector, '[1,2,3]'::vector, '[0,0]'::vector, NULL],
  ARRAY['[0,1]'::vector, '[2,4,6]'::vector, '[1,1]'::vector, '[5]'::vector]);

-- Bad input (docs/design.md §4).
\set VERBOSITY sqlstate
SELECT embedstack.cosine('[1,2]'::vector, '[1,2,3]'::vector);
SELECT embedstack.cosine('{1,NaN}'::real[], '{1,2}'::real[]);
SELECT embedstack.l2_normalize('{1,NULL}'::float8[]);
SELECT embedstack.cosine_features(ARRAY['[1]'::vector], ARRAY['[1]'::vector, '[2]'::vector]);
\set VERBOSITY default
SELECT embedstack.cosine('[1,2]'::vector, '[1,2,3]'::vector);
SELECT embedstack.cosine('{1,NaN}'::real[], '{1,2}'::real[]);
SELECT embedstack.l2_normalize('{1,NULL}'::float8[]);

-- Declared volatility / strictness / parallel safety, and documentation, of every function.
SELECT p.oid::regprocedure AS function, p.provolatile, p.proisstrict, p.proparallel,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented
FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace ORDER BY p.oid::regprocedure::text COLLATE "C";
