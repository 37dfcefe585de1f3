-- The README's model-set walk-through on data with a known exact answer.
-- Six items, three models; the label is y = 1 + 2·cos_text + 3·cos_glove (cf has weight 0).
-- Item 4 has a zero text vector and item 6 a NULL cf vector: pairs touching them are skipped
-- by the fit (a missing feature), but served with a zero block.
-- Expected values (closed forms, checked by hand):
--   weights {2, 3, 0}, intercept 1; symmetric: w_max = 3, kept text (2/3 > 0.05) and glove,
--   cf left out; multipliers sqrt(2/3) = 0.816497, 1, 0; width 2 + 2 = 4.
--   Scores from item 1, Σ (w_k/w_max) cos_k: item1 2/3+1 = 1.666667; item5 (2/3)/√5 + 2/√5 =
--   1.192570; item6 (2/3)(2/√5) + 1/√5 = 1.043498; item4 0 + 1 = 1; item2 0 + 1/√2 = 0.707107;
--   item3 (2/3)/√2 + 0 = 0.471405.
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
CREATE SCHEMA demo;
CREATE TABLE demo.items (id int PRIMARY KEY, label text, m_text vector(2), m_glove vector(2), m_cf real[]);
INSERT INTO demo.items VALUES
  (1, 'one',   '[1,0]', '[1,0]', '{1,0}'),
  (2, 'two',   '[0,1]', '[1,1]', '{1,1}'),
  (3, 'three', '[1,1]', '[0,1]', '{0,1}'),
  (4, 'four',  '[0,0]', '[1,0]', '{1,2}'),
  (5, 'five',  '[1,2]', '[2,1]', '{0,1}'),
  (6, 'six',   '[2,1]', '[1,2]', NULL);
CREATE TABLE demo.pairs AS
SELECT a.id AS a, b.id AS b,
       1 + 2 * coalesce(embedstack.cosine(a.m_text, b.m_text), 0)
         + 3 * embedstack.cosine(a.m_glove, b.m_glove) AS similarity,
       1 - 2 * coalesce(embedstack.cosine(a.m_text, b.m_text), 0)
         + 3 * embedstack.cosine(a.m_glove, b.m_glove) AS similarity2,
       5 - coalesce(embedstack.cosine(a.m_text, b.m_text), 0) - embedstack.cosine(a.m_glove, b.m_glove) AS dissimilarity
FROM demo.items a JOIN demo.items b ON a.id < b.id;
CREATE VIEW demo.pairs_train AS SELECT * FROM demo.pairs;
CREATE VIEW demo.pairs_test AS SELECT * FROM demo.pairs;

SELECT name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage
FROM embedstack.create_model_set('demo', 'demo.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf']);

-- 15 pairs: 6 used (items 1, 2, 3, 5), 9 skipped (touching item 4's zero or item 6's NULL vector).
SELECT id, (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights,
       round(intercept::numeric, 9) AS intercept, round((diagnostics->>'r2')::numeric, 9) AS r2,
       diagnostics->>'n_used' AS n_used, diagnostics->>'n_skipped' AS n_skipped, options, training_source
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'similarity');
SELECT active_fit FROM embedstack.model_sets;       -- nothing served yet

-- (stack): all 15 pairs, missing blocks count 0, and the score is (y - 1) / 3 exactly, so both
-- correlations are 1; (fit): the 6 pairs with every feature, prediction = y.
SELECT model, n, round(pearson::numeric, 9) AS pearson, round(spearman::numeric, 9) AS spearman
FROM embedstack.evaluate('demo', 'demo.pairs_test', 'a', 'b', 'similarity')
WHERE model LIKE '(%';

SET client_min_messages = warning;                 -- progress NOTICEs carry timings
CALL embedstack.materialize('demo');
RESET client_min_messages;
SELECT combined_column, active_fit, served_storage, served_index,
       (SELECT array_agg(round(m::numeric, 6) + 0) FROM unnest(served_multipliers) m) AS multipliers
FROM embedstack.model_sets WHERE name = 'demo';
SELECT id, (SELECT array_agg(round(x::numeric, 6)) FROM unnest(demo_combined::real[]) x) AS combined
FROM demo.items ORDER BY id;

-- Exact ranking (sequential scan), then the plan the README's query gets: the HNSW index.
SET enable_indexscan = off;
SELECT id, label, round((-(demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 6) AS score
FROM demo.items
ORDER BY demo_combined <#> embedstack.query_vector('demo', 1)
LIMIT 10;
RESET enable_indexscan;
SET enable_seqscan = off;
EXPLAIN (COSTS off)
SELECT id, label FROM demo.items
ORDER BY demo_combined <#> embedstack.query_vector('demo', 1)
LIMIT 10;
RESET enable_seqscan;
-- From vectors that are not stored: item 2's text and cf, no glove. Closed form (cf left out):
-- item1 (2/3)·0 = 0, item2 2/3, item3 (2/3)/√2 = 0.471405, item4 0, item5 (2/3)(2/√5) =
-- 0.596285, item6 (2/3)/√5 = 0.298142.
SET enable_indexscan = off;
SELECT id, round((-(demo_combined <#> embedstack.query_vector('demo',
           ARRAY[(SELECT m_text FROM demo.items WHERE id = 2), NULL, (SELECT m_cf::vector FROM demo.items WHERE id = 2)])))::numeric, 6) AS score
FROM demo.items
ORDER BY demo_combined <#> embedstack.query_vector('demo',
           ARRAY[(SELECT m_text FROM demo.items WHERE id = 2), NULL, (SELECT m_cf::vector FROM demo.items WHERE id = 2)]), id
LIMIT 10;
RESET enable_indexscan;

-- Query-weighted mode on the same table: stored blocks are unweighted; a second fit with a
-- negative weight (similarity2 = 1 − 2·cos_text + 3·cos_glove) is served without rewriting a row.
-- Scores from item 1 with weights/max|w| = (−2/3, 1, 0): item4 1, item2 0.707107, item5
-- −(2/3)/√5 + 2/√5 = 0.596285, item1 1/3, item6 −(2/3)(2/√5) + 1/√5 = −0.149071,
-- item3 −(2/3)/√2 + 0 = −0.471405.
SELECT name, mode FROM embedstack.create_model_set('qw', 'demo.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf'],
                                                   mode => 'query_weighted');
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('qw', 'demo.pairs_train', 'a', 'b', 'similarity');
SET client_min_messages = warning;
CALL embedstack.materialize('qw');
RESET client_min_messages;
CREATE TABLE demo.versions AS SELECT id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM demo.items;
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('qw', 'demo.pairs_train', 'a', 'b', 'similarity2');
CALL embedstack.materialize('qw');
SELECT count(*) AS rows_rewritten FROM demo.items i JOIN demo.versions v USING (id)
WHERE i.xmin::text <> v.row_xmin OR i.ctid::text <> v.row_ctid;
SET enable_indexscan = off;
SELECT id, round((-(qw_combined <#> embedstack.query_vector('qw', 1)))::numeric, 6) AS score
FROM demo.items ORDER BY qw_combined <#> embedstack.query_vector('qw', 1), id;
RESET enable_indexscan;

-- Bad input (CONTEXT lines name PL/pgSQL line numbers: not part of the contract).
\set SHOW_CONTEXT never
SELECT embedstack.fit('nope', 'demo.pairs_train', 'a', 'b', 'similarity');
SELECT embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'no_such_column');
SELECT embedstack.create_model_set('bad', 'demo.items', 'id', ARRAY['label']);
-- Pair keys of a type that cannot be compared with the source's key: 42804 naming both types,
-- before any work (0.2.0: "operator does not exist: integer = text" from inside the scan).
CREATE TABLE demo.text_pairs AS SELECT a::text AS a, b::text AS b, similarity FROM demo.pairs;
SELECT embedstack.fit('demo', 'demo.text_pairs', 'a', 'b', 'similarity');
-- materialize and refit commit after every step: refused inside a transaction block, with a hint.
BEGIN;
CALL embedstack.materialize('demo');
ROLLBACK;
-- Every weight negative (dissimilarity = 5 − cos_text − cos_glove; cf's weight is 0 up to
-- rounding): symmetric mode refuses, and nothing served changes.
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'dissimilarity');
CALL embedstack.materialize('demo');
SELECT active_fit, (SELECT array_agg(round(m::numeric, 6) + 0) FROM unnest(served_multipliers) m) AS multipliers
FROM embedstack.model_sets WHERE name = 'demo';   -- unchanged

-- Freshness: an inserted row and an updated row get their combined vectors from the trigger.
-- Item 7: text [3,0] -> sqrt(2/3)·[1,0], glove [0,5] -> [0,1]; item 3 with text NULL: a zero block.
INSERT INTO demo.items VALUES (7, 'seven', '[3,0]', '[0,5]', '{9,9}');
UPDATE demo.items SET m_text = NULL WHERE id = 3;
SELECT id, (SELECT array_agg(round(x::numeric, 6)) FROM unnest(demo_combined::real[]) x) AS combined
FROM demo.items WHERE id IN (3, 7) ORDER BY id;

SELECT embedstack.drop_model_set('qw', drop_columns => true);
SELECT name FROM embedstack.model_sets;
