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
-- 0.3.0: the served vectors live in generation tables of the extension's making, read through
-- the view demo.items_demo (key, combined vector) joined to the source; the source table is
-- only read: no column, no row version, no lock of its own.
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

SELECT name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage,
       view_name
FROM embedstack.create_model_set('demo', 'demo.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf']);

-- 15 pairs: 6 used (items 1, 2, 3, 5), 9 skipped (touching item 4's zero or item 6's NULL vector).
SELECT id, (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights,
       round(intercept::numeric, 9) AS intercept, round((diagnostics->>'r2')::numeric, 9) AS r2,
       diagnostics->>'n_used' AS n_used, diagnostics->>'n_skipped' AS n_skipped, options,
       training_source - 'pairs_oid' AS training_source  -- (pairs_oid: the pairs table's OID, differs per run)
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'similarity');
SELECT active_fit, served_generation FROM embedstack.model_sets;       -- nothing served yet
SELECT to_regclass('demo.items_demo') AS view_before_materialize;

-- (stack): all 15 pairs, missing blocks count 0, and the score is (y - 1) / 3 exactly, so both
-- correlations are 1; (fit): the 6 pairs with every feature, prediction = y.
SELECT model, n, round(pearson::numeric, 9) AS pearson, round(spearman::numeric, 9) AS spearman
FROM embedstack.evaluate('demo', 'demo.pairs_test', 'a', 'b', 'similarity')
WHERE model LIKE '(%';

-- The source's row versions and columns before materialising: they must stay as they are.
CREATE TABLE demo.versions AS SELECT id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM demo.items;
SET client_min_messages = warning;                 -- progress NOTICEs carry timings
CALL embedstack.materialize('demo');
RESET client_min_messages;
SELECT count(*) AS source_rows_rewritten FROM demo.items i JOIN demo.versions v USING (id)
WHERE i.xmin::text <> v.row_xmin OR i.ctid::text <> v.row_ctid;
SELECT array_agg(attname ORDER BY attnum) AS source_columns, count(*) FILTER (WHERE attisdropped) AS dropped_columns
FROM pg_attribute WHERE attrelid = 'demo.items'::regclass AND attnum > 0;
SELECT combined_column, view_name, active_fit, served_storage, served_index,
       (SELECT array_agg(round(m::numeric, 6) + 0) FROM unnest(served_multipliers) m) AS multipliers
FROM embedstack.model_sets WHERE name = 'demo';
-- Generation 1: a table in the source's schema, owned by the source's owner, without grants,
-- with its HNSW index (inner product), every source row written.
SELECT g.id, g.state, g.relation, g.index_name, g.fit_id, g.storage, g.width, g.rows_written,
       g.id = m.served_generation AS served_by_the_view,
       c.relnamespace = s.relnamespace AS in_source_schema, c.relowner = s.relowner AS owned_by_source_owner,
       c.relacl IS NULL AS no_grants, (SELECT count(*) FROM demo.items) AS source_rows
FROM embedstack.generations g JOIN embedstack.model_sets m ON m.name = g.model_set
JOIN pg_class c ON c.oid = g.relation JOIN pg_class s ON s.oid = m.source
WHERE g.model_set = 'demo';
SELECT pg_get_indexdef(to_regclass('demo.items_demo_g1_hnsw')) AS index;
-- The view's definition (the key and the combined vector behind the gate on the reader's
-- privileges) is shown by plans.sql: its text differs between PostgreSQL majors.
-- Freshness: four statement-level triggers on the source (0.2's row trigger is gone).
SELECT pg_get_triggerdef(oid) AS trigger FROM pg_trigger
WHERE tgrelid = 'demo.items'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT id, (SELECT array_agg(round(x::numeric, 6)) FROM unnest(demo_combined::real[]) x) AS combined
FROM demo.items_demo ORDER BY id;
-- Each row equals the row kernel applied to the source row with the served multipliers.
SELECT count(*) AS rows_served, count(*) FILTER (WHERE v.demo_combined IS DISTINCT FROM embedstack._combine_vector(
         m.served_multipliers, m.model_dims, m.model_columns::text[], s.id, s.m_text, s.m_glove, s.m_cf)) AS rows_differing
FROM demo.items s JOIN demo.items_demo v USING (id), embedstack.model_sets m WHERE m.name = 'demo';

-- The README's query, exact ranking (no index), then through the HNSW index of the generation.
SET enable_indexscan = off;
SELECT s.id, s.label, round((-(v.demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 6) AS score
FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1)
LIMIT 10;
RESET enable_indexscan;
SET enable_seqscan = off;
-- (The plan, the HNSW index serving this query, is shown by plans.sql.)
-- The index answers the same (6 rows: HNSW visits them all).
SELECT s.id, s.label FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1)
LIMIT 10;
RESET enable_seqscan;
-- From vectors that are not stored: item 2's text and cf, no glove. Closed form (cf left out):
-- item1 (2/3)·0 = 0, item2 2/3, item3 (2/3)/√2 = 0.471405, item4 0, item5 (2/3)(2/√5) =
-- 0.596285, item6 (2/3)/√5 = 0.298142.
SET enable_indexscan = off;
SELECT v.id, round((-(v.demo_combined <#> embedstack.query_vector('demo',
           ARRAY[(SELECT m_text FROM demo.items WHERE id = 2), NULL, (SELECT m_cf::vector FROM demo.items WHERE id = 2)])))::numeric, 6) AS score
FROM demo.items_demo v
ORDER BY v.demo_combined <#> embedstack.query_vector('demo',
           ARRAY[(SELECT m_text FROM demo.items WHERE id = 2), NULL, (SELECT m_cf::vector FROM demo.items WHERE id = 2)]), v.id
LIMIT 10;
RESET enable_indexscan;

-- Query-weighted mode on the same table: stored blocks are unweighted; a second fit with a
-- negative weight (similarity2 = 1 − 2·cos_text + 3·cos_glove) is served without writing a row:
-- same generation, its rows untouched.
-- Scores from item 1 with weights/max|w| = (−2/3, 1, 0): item4 1, item2 0.707107, item5
-- −(2/3)/√5 + 2/√5 = 0.596285, item1 1/3, item6 −(2/3)(2/√5) + 1/√5 = −0.149071,
-- item3 −(2/3)/√2 + 0 = −0.471405.
SELECT name, mode, view_name FROM embedstack.create_model_set('qw', 'demo.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf'],
                                                              mode => 'query_weighted');
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('qw', 'demo.pairs_train', 'a', 'b', 'similarity');
SET client_min_messages = warning;
CALL embedstack.materialize('qw');
RESET client_min_messages;
-- Stored blocks u_k: width 2 + 2 + 2, multipliers all 1.
SELECT served_generation, served_index, served_storage, served_multipliers,
       (SELECT width FROM embedstack.generations g WHERE g.id = m.served_generation) AS width
FROM embedstack.model_sets m WHERE name = 'qw';
SELECT served_generation AS qw_generation FROM embedstack.model_sets WHERE name = 'qw' \gset
CREATE TABLE demo.qw_versions AS SELECT id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM demo.items_qw_g:qw_generation;
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('qw', 'demo.pairs_train', 'a', 'b', 'similarity2');
CALL embedstack.materialize('qw');
SELECT served_generation = :qw_generation AS same_generation, active_fit = (SELECT max(id) FROM embedstack.fits WHERE model_set = 'qw') AS new_fit_active
FROM embedstack.model_sets WHERE name = 'qw';
SELECT count(*) AS generation_rows_rewritten FROM demo.items_qw_g:qw_generation g JOIN demo.qw_versions v USING (id)
WHERE g.xmin::text <> v.row_xmin OR g.ctid::text <> v.row_ctid;
SELECT count(*) AS source_rows_rewritten FROM demo.items i JOIN demo.versions v USING (id)
WHERE i.xmin::text <> v.row_xmin OR i.ctid::text <> v.row_ctid;
SET enable_indexscan = off;
SELECT v.id, round((-(v.qw_combined <#> embedstack.query_vector('qw', 1)))::numeric, 6) AS score
FROM demo.items_qw v ORDER BY v.qw_combined <#> embedstack.query_vector('qw', 1), v.id;
RESET enable_indexscan;

-- Bad input (CONTEXT lines name PL/pgSQL line numbers: not part of the contract).
\set SHOW_CONTEXT never
SELECT embedstack.fit('nope', 'demo.pairs_train', 'a', 'b', 'similarity');
SELECT embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'no_such_column');
SELECT embedstack.create_model_set('bad', 'demo.items', 'id', ARRAY['label']);
-- The served view's name is taken (by another model set's view, or any relation): 42P07.
SELECT embedstack.create_model_set('bad', 'demo.items', 'id', ARRAY['m_text'], view_name => 'items_demo');
SELECT embedstack.create_model_set('bad', 'demo.items', 'id', ARRAY['m_text'], view_name => 'pairs');
-- Pair keys of a type that cannot be compared with the source's key: 42804 naming both types,
-- before any work (0.2.0: "operator does not exist: integer = text" from inside the scan).
CREATE TABLE demo.text_pairs AS SELECT a::text AS a, b::text AS b, similarity FROM demo.pairs;
SELECT embedstack.fit('demo', 'demo.text_pairs', 'a', 'b', 'similarity');
-- materialize and refit commit after every step: refused inside a transaction block, with a hint.
BEGIN;
CALL embedstack.materialize('demo');
ROLLBACK;
-- Nothing to roll back to before a second materialisation: 55000.
CALL embedstack.rollback('demo');
\echo :LAST_ERROR_SQLSTATE
-- Every weight negative (dissimilarity = 5 − cos_text − cos_glove; cf's weight is 0 up to
-- rounding): symmetric mode refuses, and nothing served changes.
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'dissimilarity');
CALL embedstack.materialize('demo');
SELECT active_fit, served_generation, (SELECT array_agg(round(m::numeric, 6) + 0) FROM unnest(served_multipliers) m) AS multipliers
FROM embedstack.model_sets WHERE name = 'demo';   -- unchanged

-- Reading the served vectors takes SELECT on the source's key and model columns, checked when
-- the view is read: grants and revokes on the source apply at once; generations have no grants.
CREATE ROLE regress_embedstack_reader;
GRANT USAGE ON SCHEMA demo TO regress_embedstack_reader;
SET ROLE regress_embedstack_reader;
SELECT count(*) FROM demo.items_demo;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT (id, label, m_text, m_glove) ON demo.items TO regress_embedstack_reader;
SET ROLE regress_embedstack_reader;
SELECT count(*) FROM demo.items_demo;              -- m_cf is a model column too
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT (m_cf) ON demo.items TO regress_embedstack_reader;
SET ROLE regress_embedstack_reader;
SELECT count(*) AS rows_read, count(*) = (SELECT count(*) FROM demo.items) AS all_source_rows FROM demo.items_demo;
SELECT s.id FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1), s.id LIMIT 3;
SELECT count(*) FROM demo.items_demo_g1;           -- the generation itself: no grant
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE SELECT (m_glove) ON demo.items FROM regress_embedstack_reader;
SET ROLE regress_embedstack_reader;
SELECT count(*) FROM demo.items_demo;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON demo.items TO regress_embedstack_reader;   -- the whole table
SET ROLE regress_embedstack_reader;
SELECT count(*) AS rows_read FROM demo.items_demo;
RESET ROLE;
DROP OWNED BY regress_embedstack_reader;
DROP ROLE regress_embedstack_reader;

-- A second layout: fit similarity2 = 1 − 2·cos_text + 3·cos_glove in symmetric mode. Weights
-- {-2, 3, 0}: w_max = 3, text (negative) and cf left out, multipliers {0, 1, 0}, width 2. The
-- default fit is the newest (the refused dissimilarity fit was not rejected by a refit, but
-- this one is newer). A new generation is written; the view now reads it (vector of 2
-- dimensions, same view), and the previous generation is retained for rollback.
SELECT (SELECT array_agg(round(w::numeric, 9) + 0) FROM unnest(weights) w) AS weights
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'similarity2');
SET client_min_messages = warning;
CALL embedstack.materialize('demo');
RESET client_min_messages;
SELECT model_set, view, active_fit, served_generation, served_index, previous_fit, previous_generation
FROM embedstack.status WHERE model_set = 'demo';
SELECT id, relation, fit_id, state, width FROM embedstack.generations WHERE model_set = 'demo' ORDER BY id;
-- Scores from item 1 are now cos_glove: item1 1, item4 1, item5 2/√5 = 0.894427,
-- item2 1/√2 = 0.707107, item6 1/√5 = 0.447214, item3 0.
SET enable_indexscan = off;
SELECT s.id, round((-(v.demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 6) AS score,
       vector_dims(v.demo_combined) AS dims
FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1), s.id;
RESET enable_indexscan;

-- Freshness: inserts, updates and deletes reach the served generation; the retained one is not
-- written (0.4.0: an HNSW insert per write and retained generation was most of a write's cost),
-- it records the keys, and the rollback that serves it again writes them first. Item 7: text
-- [3,0], glove [0,5]; item 3 loses its text vector (a zero block); item 6 goes. An update that
-- changes no model column rewrites no generation row. Expected in the served one (0, 1, 0): item
-- 3 {0,1}, item 7 {0,1}; generation 1 keeps items 3 and 6 as they were, has no item 7, and
-- records keys 3, 6 and 7.
CREATE TABLE demo.gen_versions AS
SELECT 'g1' AS gen, id, xmin::text AS row_xmin, ctid::text AS row_ctid FROM demo.items_demo_g1
UNION ALL SELECT 'served', id, xmin::text, ctid::text FROM demo.items_demo_g3;
UPDATE demo.items SET label = upper(label);
SELECT count(*) AS generation_rows_rewritten FROM demo.gen_versions v
LEFT JOIN demo.items_demo_g1 g1 ON v.gen = 'g1' AND g1.id = v.id
LEFT JOIN demo.items_demo_g3 g3 ON v.gen = 'served' AND g3.id = v.id
WHERE coalesce(g1.xmin, g3.xmin)::text <> v.row_xmin OR coalesce(g1.ctid, g3.ctid)::text <> v.row_ctid;
INSERT INTO demo.items VALUES (7, 'seven', '[3,0]', '[0,5]', '{9,9}');
UPDATE demo.items SET m_text = NULL WHERE id = 3;
DELETE FROM demo.items WHERE id = 6;
SELECT id, (SELECT array_agg(round(x::numeric, 6)) FROM unnest(demo_combined::real[]) x) AS combined
FROM demo.items_demo WHERE id IN (3, 6, 7) ORDER BY id;
SELECT id, (SELECT array_agg(round(x::numeric, 6)) FROM unnest(demo_combined::real[]) x) AS combined
FROM demo.items_demo_g1 WHERE id IN (3, 6, 7) ORDER BY id;
SELECT DISTINCT id AS recorded_for_generation_1 FROM demo.items_demo_g1_pending ORDER BY id;
-- Every live generation holds exactly the source's keys, each row the kernel's vector for the
-- source row with that generation's multipliers -- the retained one but for the keys it recorded.
SELECT g.id AS generation, g.state,
       (SELECT count(*) FROM demo.items) AS source_rows,
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', g.relation), false, true, '')))[1]::text::int AS generation_rows,
       (xpath('/row/n/text()', query_to_xml(format(
          'SELECT count(*) AS n FROM demo.items s FULL JOIN %s x USING (id) WHERE x.demo_combined IS DISTINCT FROM '
          'embedstack._combine_vector(%L, ''{2,2,2}'', ''{m_text,m_glove,m_cf}'', s.id, s.m_text, s.m_glove, s.m_cf)',
          g.relation, g.multipliers), false, true, '')))[1]::text::int AS rows_differing,
       (xpath('/row/n/text()', query_to_xml(format(
          'SELECT count(*) AS n FROM demo.items s FULL JOIN %s x USING (id) WHERE x.demo_combined IS DISTINCT FROM '
          'embedstack._combine_vector(%L, ''{2,2,2}'', ''{m_text,m_glove,m_cf}'', s.id, s.m_text, s.m_glove, s.m_cf) '
          'AND coalesce(s.id, x.id) NOT IN (SELECT p.id FROM %s p)',
          g.relation, g.multipliers, coalesce(g.pending::text, '(SELECT NULL::int AS id WHERE false)')), false, true, '')))[1]::text::int
         AS differing_not_recorded
FROM embedstack.generations g WHERE g.model_set = 'demo' ORDER BY g.id;

-- Rollback: the previous fit from the previous generation, at once (no rewrite, no index
-- build: the 3 recorded rows are written again first); calling it again switches back. A
-- rollback holds the model set (refits keep the served fit) until embedstack.release.
-- Scores from item 1 under fit 1 with the new rows:
-- item1 1.666667, item5 1.192570, item4 1, item2 0.707107, item7 (2/3)·1 + 0 = 0.666667,
-- item3 0 + 0 = 0.
CALL embedstack.rollback('demo');
SELECT model_set, view, active_fit, served_generation, served_index, previous_fit, previous_generation
FROM embedstack.status WHERE model_set = 'demo';
SELECT id, state FROM embedstack.generations WHERE model_set = 'demo' ORDER BY id;
SET enable_indexscan = off;
SELECT s.id, round((-(v.demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 6) AS score
FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1), s.id;
RESET enable_indexscan;
-- The same ranking from the weighted sum of per-model cosines of the served fit (Σ over kept
-- models of (w_k / w_max)·cos_k, a missing vector counting 0), with the index serving the query.
SET enable_seqscan = off;
SELECT (SELECT array_agg(id) FROM (SELECT s.id FROM demo.items s JOIN demo.items_demo v USING (id)
                                    ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1) LIMIT 4) t) AS served_top4,
       (SELECT array_agg(id ORDER BY score DESC, id)
          FROM (SELECT s.id, sum(CASE WHEN f.weights[k] > m.threshold * wmax THEN f.weights[k] / wmax END
                                 * coalesce(CASE k WHEN 1 THEN embedstack.cosine(q.m_text, s.m_text)
                                                   WHEN 2 THEN embedstack.cosine(q.m_glove, s.m_glove)
                                                   ELSE embedstack.cosine(q.m_cf, s.m_cf) END, 0)) AS score
                  FROM demo.items s, demo.items q, embedstack.model_sets m
                  JOIN embedstack.fits f ON f.id = m.active_fit,
                  LATERAL (SELECT max(w) AS wmax FROM unnest(f.weights) w) x, generate_series(1, 3) k
                 WHERE m.name = 'demo' AND q.id = 1 GROUP BY s.id ORDER BY score DESC, s.id LIMIT 4) e) AS exact_top4;
RESET enable_seqscan;
CALL embedstack.rollback('demo');
SELECT model_set, active_fit, served_generation, previous_fit, previous_generation
FROM embedstack.status WHERE model_set = 'demo';
SET enable_indexscan = off;
SELECT s.id, round((-(v.demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 6) AS score
FROM demo.items s JOIN demo.items_demo v USING (id)
ORDER BY v.demo_combined <#> embedstack.query_vector('demo', 1), s.id;
RESET enable_indexscan;

-- Retention: embedstack.keep_generations (default 1) keeps the previous generation only.
-- Serving fit 1 again (a fit named explicitly ends the hold) reuses generation 1, which holds
-- its layout: no generation is written; generation 3 is retained.
SELECT min(id) AS first_fit FROM embedstack.fits WHERE model_set = 'demo' \gset
SET client_min_messages = warning;
CALL embedstack.materialize('demo', fit_id => :first_fit);
RESET client_min_messages;
SELECT id, fit_id, state FROM embedstack.generations WHERE model_set = 'demo' ORDER BY id;
SELECT to_regclass('demo.items_demo_g1') AS generation_1_table;
-- keep_generations = 0: nothing is retained, so nothing to roll back to (55000). (The last fit's
-- layout is generation 3's: served again from it.)
SELECT max(id) AS last_fit FROM embedstack.fits WHERE model_set = 'demo' \gset
SET embedstack.keep_generations = 0;
SET client_min_messages = warning;
CALL embedstack.materialize('demo', fit_id => :last_fit);
RESET client_min_messages;
RESET embedstack.keep_generations;
SELECT id, state FROM embedstack.generations WHERE model_set = 'demo' ORDER BY id;
SELECT count(*) AS generation_tables FROM pg_class WHERE relnamespace = 'demo'::regnamespace AND relname ~ '^items_demo_g[0-9]+$';
CALL embedstack.rollback('demo');
\echo :LAST_ERROR_SQLSTATE

-- Dropping: a view of the user's on the served view blocks drop_model_set (2BP01); without it,
-- the triggers, the view and the generation tables go (the source keeps its columns).
CREATE VIEW demo.my_top AS SELECT id FROM demo.items_qw;
SELECT embedstack.drop_model_set('qw');
\echo :LAST_ERROR_SQLSTATE
DROP VIEW demo.my_top;
SELECT embedstack.drop_model_set('qw');
SELECT name FROM embedstack.model_sets;
SELECT to_regclass('demo.items_qw') AS qw_view,
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'demo'::regnamespace AND relname LIKE 'items\_qw\_g%') AS qw_generation_tables,
       (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'demo.items'::regclass AND tgname LIKE 'embedstack\_qw\_%') AS qw_triggers,
       (SELECT count(*) FROM embedstack.generations WHERE model_set = 'qw') AS qw_generations;
-- DROP TABLE of the source drops its model sets with their view and generation tables.
DROP TABLE demo.items;
SELECT count(*) AS model_sets, (SELECT count(*) FROM embedstack.generations) AS generations,
       to_regclass('demo.items_demo') AS demo_view,
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'demo'::regnamespace AND relname LIKE 'items\_%') AS leftover_relations
FROM embedstack.model_sets;
