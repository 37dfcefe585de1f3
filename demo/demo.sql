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
\echo 'Next (later releases): model sets, materialise the combined column, query it through HNSW.'
