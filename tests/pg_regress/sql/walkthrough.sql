-- embedstack walk-through: the README shows this file verbatim, and the pg_regress suite runs
-- it as is (tests/pg_regress/sql/walkthrough.sql; `make lint` checks the two are identical).
-- Run it in an empty database: psql -d mydb -f tests/pg_regress/sql/walkthrough.sql
--
-- The labels are an exact function of two models' cosines, y = 1 + 2·cos_text + 3·cos_glove,
-- so the expected results are known in closed form: weights {2, 3, 0}, intercept 1, r² 1,
-- cross-validated MSE 0, and the served score ranks the test pairs exactly like y (Pearson and
-- Spearman 1 for "(stack)" and "(fit)").
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;

-- 1. Primitives: normalise, one cosine, one cosine per model (NULL for a missing or zero vector).
SELECT embedstack.l2_normalize('[3,4]'::vector);                  -- [0.6,0.8]
SELECT embedstack.cosine('[1,2,3]'::vector, '[4,5,6]'::vector);   -- 32/sqrt(14·77) = 0.97463…
SELECT embedstack.cosine_features(
  ARRAY['[1,0]'::vector, '[1,2,3]'::vector, '[0,0]'::vector, NULL],
  ARRAY['[0,1]'::vector, '[2,4,6]'::vector, '[1,1]'::vector, '[5]'::vector]);

-- 2. Items with three models (two pgvector columns, one real[]; item 12 has no cf vector) and
--    labelled pairs, split into train and test.
CREATE SCHEMA walk;
CREATE TABLE walk.items (id int PRIMARY KEY, m_text vector(2), m_glove vector(2), m_cf real[]);
INSERT INTO walk.items
SELECT i, ('[' || cos(i) || ',' || sin(i) || ']')::vector,
          ('[' || cos(2 * i) || ',' || sin(2 * i) || ']')::vector,
          CASE WHEN i < 12 THEN ARRAY[1, i]::real[] END
FROM generate_series(1, 12) i;
CREATE TABLE walk.pairs AS
SELECT a.id AS a, b.id AS b,
       1 + 2 * embedstack.cosine(a.m_text, b.m_text) + 3 * embedstack.cosine(a.m_glove, b.m_glove) AS y
FROM walk.items a JOIN walk.items b ON a.id < b.id;
CREATE VIEW walk.pairs_train AS SELECT * FROM walk.pairs WHERE (7 * a + b) % 5 <> 0;
CREATE VIEW walk.pairs_test AS SELECT * FROM walk.pairs WHERE (7 * a + b) % 5 = 0;
SELECT (SELECT count(*) FROM walk.pairs_train) AS train_pairs, (SELECT count(*) FROM walk.pairs_test) AS test_pairs;

-- 3. The stacking weights in plain SQL: one cosine per model and pair, then the regression
--    aggregate (OLS with intercept, as scikit-learn's LinearRegression).
SELECT (SELECT array_agg(round(w::numeric, 6)) FROM unnest((f).weights) w) AS weights,
       round((f).intercept::numeric, 6) AS intercept, round((f).r2::numeric, 6) AS r2,
       (f).n_used, (f).n_skipped
FROM (SELECT embedstack.fit_weights(
               embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf::vector],
                                          ARRAY[y.m_text, y.m_glove, y.m_cf::vector]), p.y) AS f
        FROM walk.pairs_train p JOIN walk.items x ON x.id = p.a JOIN walk.items y ON y.id = p.b) s;

-- 4. Per-fold statistics stored once; 5-fold cross-validation of ridge penalties from them
--    alone (no second scan), then the fit of the chosen penalty from the merged statistics.
CREATE TABLE walk.fold_stats AS
SELECT abs(hashtext(p.a || ':' || p.b)) % 5 AS fold,
       embedstack.regression_stats(
         embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf::vector],
                                    ARRAY[y.m_text, y.m_glove, y.m_cf::vector]), p.y) AS state
FROM walk.pairs_train p JOIN walk.items x ON x.id = p.a JOIN walk.items y ON y.id = p.b
GROUP BY 1;
SELECT count(*) AS folds FROM walk.fold_stats;
SELECT ridge, round(mse::numeric, 6) AS mse, round(r2::numeric, 6) AS r2, folds
FROM embedstack.cross_validate((SELECT array_agg(state ORDER BY fold) FROM walk.fold_stats), '{0,0.1,1}')
ORDER BY ridge;
SELECT (SELECT array_agg(round(w::numeric, 6)) FROM unnest((s).weights) w) AS weights,
       round((s).intercept::numeric, 6) AS intercept
FROM (SELECT embedstack.solve(
               (SELECT embedstack.merge(embedstack.merge(embedstack.merge(embedstack.merge(f0, f1), f2), f3), f4)
                  FROM (SELECT max(state) FILTER (WHERE fold = 0) f0, max(state) FILTER (WHERE fold = 1) f1,
                               max(state) FILTER (WHERE fold = 2) f2, max(state) FILTER (WHERE fold = 3) f3,
                               max(state) FILTER (WHERE fold = 4) f4 FROM walk.fold_stats) folds),
               ridge => 0) AS s) x;

-- 5. A model set: the same from the stored columns, with a fits history. Its combined vectors
--    will be served through the view walk.items_walk (the key and the combined vector).
SELECT name, source, model_columns, model_dims, mode, combined_column, view_name
FROM embedstack.create_model_set('walk', 'walk.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf']);
SELECT (SELECT array_agg(round(w::numeric, 6)) FROM unnest(weights) w) AS weights,
       round(intercept::numeric, 6) AS intercept, diagnostics->>'n_used' AS n_used
FROM embedstack.fit('walk', 'walk.pairs_train', 'a', 'b', 'y');

-- 6. Held-out evaluation: each model alone, the served score "(stack)" and the fit "(fit)".
SELECT model, n, round(pearson::numeric, 4) AS pearson, round(spearman::numeric, 4) AS spearman
FROM embedstack.evaluate('walk', 'walk.pairs_test', 'a', 'b', 'y');

-- 7. Materialise: the combined vectors are written into a new table (a generation,
--    walk.items_walk_g<id>) with its HNSW index, and the view walk.items_walk is pointed at
--    it; walk.items is only read. A procedure that commits per batch: call it outside a
--    transaction block.
SET client_min_messages = warning;
CALL embedstack.materialize('walk');
RESET client_min_messages;

-- 8. The items most similar to item 1 under the learned weights: join the view to the items
--    and order by inner product (<#>) with the query vector. (On 12 rows the planner prefers a
--    sort; "Check the plan" below shows the HNSW index serving the same query.)
SELECT i.id, round((-(v.walk_combined <#> embedstack.query_vector('walk', 1)))::numeric, 6) AS score
FROM walk.items i JOIN walk.items_walk v USING (id)
ORDER BY v.walk_combined <#> embedstack.query_vector('walk', 1)
LIMIT 5;
-- The score is the fit's weighted sum of cosines, Σ (w_k / w_max)·cos_k over the models kept:
-- with weights {2, 3, 0}, 2/3·cos_text + cos_glove. Computed directly, the same five items:
SELECT i.id, round((2.0 / 3 * coalesce(embedstack.cosine(q.m_text, i.m_text), 0)
                    + coalesce(embedstack.cosine(q.m_glove, i.m_glove), 0))::numeric, 5) AS score
FROM walk.items i, walk.items q WHERE q.id = 1
ORDER BY score DESC
LIMIT 5;
-- ... or from vectors that are not stored (one per model, NULL for a missing one).
SELECT i.id FROM walk.items i JOIN walk.items_walk v USING (id)
ORDER BY v.walk_combined <#> embedstack.query_vector('walk', ARRAY['[1,0]'::vector, '[1,0]'::vector, NULL])
LIMIT 3;

-- 9. Serve another fit, then roll back. A ridge fit has other weights, so other stored vectors:
--    materialise writes a new generation and switches the view to it; the previous generation
--    is kept (embedstack.keep_generations = 1) and kept up to date, so rollback serves it again
--    at once, and a second rollback would switch back.
SELECT id, options->>'ridge' AS ridge FROM embedstack.fit('walk', 'walk.pairs_train', 'a', 'b', 'y', ridge => 1);
SET client_min_messages = warning;
CALL embedstack.materialize('walk');
RESET client_min_messages;
SELECT active_fit, served_generation, previous_fit, previous_generation FROM embedstack.status WHERE model_set = 'walk';
CALL embedstack.rollback('walk');
SELECT active_fit, served_generation, previous_fit, previous_generation FROM embedstack.status WHERE model_set = 'walk';
SELECT i.id FROM walk.items i JOIN walk.items_walk v USING (id)
ORDER BY v.walk_combined <#> embedstack.query_vector('walk', 1)
LIMIT 5;

-- 10. What is served (the view, the generation and its index), and the last job.
SELECT model_set, view, served_generation, served_index, job_kind, job_state, rows_done, rows_total
FROM embedstack.status WHERE model_set = 'walk';
