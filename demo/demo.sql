-- The main job on the built-in sample (demo/sample.sql). Each step prints what it shows.
\pset footer off
\echo
\echo '== 1. The primitives: l2_normalize and cosine, on pgvector vector, real[] and float8[]'
SELECT embedstack.l2_normalize('[3,4]'::vector)           AS vector_normalised,
       embedstack.l2_normalize('{1,1,1,1}'::float8[])     AS float8_normalised,
       embedstack.cosine('[1,2,3]'::vector, '[4,5,6]'::vector) AS cosine,
       embedstack.cosine('[0,0]'::vector, '[1,2]'::vector) IS NULL AS zero_vector_cosine_is_null;

\echo
\echo '== 2. One cosine per model for a few labelled pairs (cosine_features)'
SELECT p.a, p.b, round(p.similarity::numeric, 2) AS label,
       (SELECT array_agg(round(c::numeric, 4))
          FROM unnest(embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf],
                                                 ARRAY[y.m_text, y.m_glove, y.m_cf])) c) AS "cosines (text, glove, cf)"
FROM demo.pairs p JOIN demo.items x ON x.id = p.a JOIN demo.items y ON y.id = p.b
ORDER BY p.a, p.b LIMIT 5;

\echo
\echo '== 3. Same numbers as pgvector: largest |cosine - (1 - <=>)| over all pairs and models'
SELECT max(greatest(abs(f[1] - (1 - (x.m_text <=> y.m_text))),
                    abs(f[2] - (1 - (x.m_glove <=> y.m_glove))),
                    abs(f[3] - (1 - (x.m_cf <=> y.m_cf))))) AS max_abs_difference
FROM demo.pairs p JOIN demo.items x ON x.id = p.a JOIN demo.items y ON y.id = p.b,
     LATERAL embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf],
                                        ARRAY[y.m_text, y.m_glove, y.m_cf]) f;

\echo
\echo '== 4. How well each model alone tracks the labels (Pearson r over 2,000 pairs)'
SELECT round(corr(f[1], p.similarity)::numeric, 4) AS text,
       round(corr(f[2], p.similarity)::numeric, 4) AS glove,
       round(corr(f[3], p.similarity)::numeric, 4) AS cf
FROM demo.pairs p JOIN demo.items x ON x.id = p.a JOIN demo.items y ON y.id = p.b,
     LATERAL embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf],
                                        ARRAY[y.m_text, y.m_glove, y.m_cf]) f;

\echo
\echo '== 5. Fit the stacking weights in the database (fit_weights = scikit-learn LinearRegression)'
SELECT (SELECT array_agg(round(w::numeric, 3)) FROM unnest((f).weights) w) AS "weights (text, glove, cf)",
       round((f).intercept::numeric, 3) AS intercept, round((f).r2::numeric, 4) AS r2,
       round((f).rmse::numeric, 4) AS rmse, (f).n_used, (f).n_skipped
FROM (SELECT embedstack.fit_weights(
               embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf], ARRAY[y.m_text, y.m_glove, y.m_cf]),
               p.similarity) AS f
      FROM demo.pairs p JOIN demo.items x ON x.id = p.a JOIN demo.items y ON y.id = p.b) s;

\echo
\echo '== 6. Exact 5-fold cross-validation of ridge penalties from per-fold statistics (one scan)'
WITH folds AS (
  SELECT abs(hashtext(p.a || ':' || p.b)) % 5 AS fold,
         embedstack.regression_stats(
           embedstack.cosine_features(ARRAY[x.m_text, x.m_glove, x.m_cf], ARRAY[y.m_text, y.m_glove, y.m_cf]),
           p.similarity) AS state
  FROM demo.pairs p JOIN demo.items x ON x.id = p.a JOIN demo.items y ON y.id = p.b
  GROUP BY 1)
SELECT ridge, round(mse::numeric, 5) AS heldout_mse, round(r2::numeric, 4) AS heldout_r2, folds
FROM embedstack.cross_validate((SELECT array_agg(state ORDER BY fold) FROM folds), '{0,0.1,1,10,100}')
ORDER BY mse;

\echo
\echo '== 7. A model set: the table, its key, its model columns (dimensions read from vector(n))'
CREATE VIEW demo.pairs_train AS SELECT * FROM demo.pairs WHERE abs(hashtext(a || ':' || b)) % 5 <> 0;
CREATE VIEW demo.pairs_test  AS SELECT * FROM demo.pairs WHERE abs(hashtext(a || ':' || b)) % 5 = 0;
SELECT name, source, key_column, model_columns, model_dims, mode, threshold, combined_column
FROM embedstack.create_model_set('demo', 'demo.items', 'id', ARRAY['m_text', 'm_glove', 'm_cf']);

\echo
\echo '== 8. Fit it on the training pairs, from the stored columns (each item read once)'
SELECT id AS fit_id, (SELECT array_agg(round(w::numeric, 3)) FROM unnest(weights) w) AS "weights (text, glove, cf)",
       round(intercept::numeric, 3) AS intercept, round((diagnostics->>'r2')::numeric, 4) AS r2,
       diagnostics->>'n_used' AS n_used
FROM embedstack.fit('demo', 'demo.pairs_train', 'a', 'b', 'similarity');

\echo
\echo '== 9. What stacking buys on held-out pairs: each model alone, the served stack, the regression'
SELECT model, n, round(pearson::numeric, 4) AS pearson, round(spearman::numeric, 4) AS spearman
FROM embedstack.evaluate('demo', 'demo.pairs_test', 'a', 'b', 'similarity');

\echo
\echo '== 10. Materialise the combined column (batches that commit, HNSW index, atomic cut-over)'
CALL embedstack.materialize('demo', batch_size => 100);
SELECT combined_column, active_fit, served_storage, served_index,
       (SELECT array_agg(round(m::numeric, 4)) FROM unnest(served_multipliers) m) AS block_multipliers
FROM embedstack.model_sets WHERE name = 'demo';

\echo
\echo '== 11. Query: the 5 items most similar to item 1 under the learned weights, through the index'
SET enable_seqscan = off;
SELECT i.id, i.label, round((-(i.demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 4) AS score
FROM demo.items i
ORDER BY i.demo_combined <#> embedstack.query_vector('demo', 1)
LIMIT 5;
EXPLAIN (COSTS off) SELECT id FROM demo.items ORDER BY demo_combined <#> embedstack.query_vector('demo', 1) LIMIT 5;
RESET enable_seqscan;

\echo
\echo '== 12. Freshness: a new item gets its combined vector from the trigger'
INSERT INTO demo.items (id, label, m_text, m_glove, m_cf)
SELECT 1001, 'copy of item 1', m_text, m_glove, m_cf FROM demo.items WHERE id = 1;
SELECT id, label, vector_dims(demo_combined) AS dims,
       round((-(demo_combined <#> embedstack.query_vector('demo', 1)))::numeric, 4) AS score_vs_item_1
FROM demo.items WHERE id IN (1, 1001) ORDER BY id;

\echo
\echo '== 13. A scheduled refit: fit on the pairs, compare with the active fit on held-out pairs, cut over if not worse'
\echo '   (fit 1 was trained on demo.pairs_train, which overlaps the held-out pairs, so it may well look better and stay)'
CALL embedstack.refit('demo', 'demo.pairs', 'a', 'b', 'similarity', batch_size => 100);
SELECT model_set, active_fit, job_kind, job_state, phase, rows_done, rows_total, outcome
FROM embedstack.status;
SELECT id AS job, kind, fit_id, state, details->>'holdout_pairs' AS holdout_pairs,
       round((details->>'new_mse')::numeric, 5) AS new_mse, round((details->>'active_mse')::numeric, 5) AS active_mse
FROM embedstack.jobs ORDER BY id;
