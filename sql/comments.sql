-- Object documentation (COMMENT ON). Kept in one file so that \df+ / \dT+ read like the README.
COMMENT ON SCHEMA embedstack IS
  'embedstack: learn a weighted stack of several embedding models and serve it through pgvector';

COMMENT ON FUNCTION embedstack.l2_normalize(vector) IS
  'x / ||x|| accumulated in float8. A zero vector is returned unchanged (pgvector''s convention). '
  'NaN/Infinity: ERROR 22023. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.l2_normalize(real[]) IS
  'x / ||x|| accumulated in float8. A zero vector is returned unchanged. NULL element: ERROR 22004; '
  'NaN/Infinity: ERROR 22023. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.l2_normalize(double precision[]) IS
  'x / ||x||, rescaled first when the squares would under- or overflow. A zero vector is returned '
  'unchanged. NULL element: ERROR 22004; NaN/Infinity: ERROR 22023. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.cosine(vector, vector) IS
  'Cosine similarity <a,b>/(||a|| ||b||) accumulated in float8, clamped to [-1, 1]. NULL when either '
  'is a zero vector. Dimension mismatch: ERROR 22000. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.cosine(real[], real[]) IS
  'Cosine similarity accumulated in float8, clamped to [-1, 1]. NULL when either is a zero vector. '
  'Dimension mismatch: 22000; NULL element: 22004; NaN/Infinity: 22023. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.cosine(double precision[], double precision[]) IS
  'Cosine similarity in float8, clamped to [-1, 1]. NULL when either is a zero vector. '
  'Dimension mismatch: 22000; NULL element: 22004; NaN/Infinity: 22023. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.cosine_features(vector[], vector[]) IS
  'One cosine per model: element i is cosine(a[i], b[i]); models may differ in dimension, the two '
  'vectors of one model may not (22000). A NULL or zero vector gives a NULL element. Arrays of '
  'different lengths: 22000. IMMUTABLE STRICT PARALLEL SAFE.';

COMMENT ON TYPE embedstack.fit IS
  'A fitted stack: weights (one per feature), intercept, r2 and rmse on the training rows, rows used '
  'and skipped, 2-norm condition number of the centred design (Infinity when singular), standard '
  'errors of the weights (NULL for non-negative fits), numerical rank, and the 1-based indices of '
  'collinear features (empty when full rank).';
COMMENT ON FUNCTION embedstack.regression_stats_accum(double precision[], double precision[], double precision) IS
  'Transition function of regression_stats / fit_weights: adds one row (features, y) to a float8[] '
  'state, in place inside an aggregate. A NULL feature array, NULL element or NULL label skips and '
  'counts the row. Feature count mismatch: 22000; NaN/Infinity: 22023; corrupt state: 22023.';
COMMENT ON FUNCTION embedstack.regression_stats_accum(double precision[], double precision[], double precision, double precision) IS
  'As regression_stats_accum(state, features, y) with a sample weight (>= 0; 0 skips the row, NULL '
  'skips and counts it; negative: 22023).';
COMMENT ON AGGREGATE embedstack.regression_stats(double precision[], double precision) IS
  'Sufficient statistics (n, weight sum, means, centred co-moments of [features, y]) as a float8[] '
  'state that can be stored, merged with embedstack.merge and solved later with embedstack.solve. '
  'Parallel safe, with a combine function. NULL when there are no input rows.';
COMMENT ON AGGREGATE embedstack.regression_stats(double precision[], double precision, double precision) IS
  'As regression_stats(features, y), weighting each row by sample_weight.';
COMMENT ON AGGREGATE embedstack.fit_weights(double precision[], double precision) IS
  'One-call OLS fit with intercept of y on the features (scikit-learn LinearRegression). NULL when '
  'no row is usable.';
COMMENT ON FUNCTION embedstack.merge(double precision[], double precision[]) IS
  'Merges two regression states (Chan et al.): merge(stats(A), stats(B)) = stats(A UNION ALL B). '
  'Corrupt state: 22023; different feature counts: 22000.';
COMMENT ON FUNCTION embedstack.solve(double precision[], double precision, boolean, boolean) IS
  'Solves a regression state: OLS (ridge => 0), ridge (intercept never penalised, scikit-learn Ridge) '
  'or non-negative (LinearRegression(positive=True)), with or without intercept. Collinear features: '
  'minimum-norm solution and a WARNING naming them. NULL when the state has no usable rows.';
COMMENT ON FUNCTION embedstack.fit_weights_final(double precision[]) IS
  'Final function of fit_weights: solve(state) with the defaults.';
COMMENT ON FUNCTION embedstack.cross_validate(double precision[], double precision[], boolean, boolean) IS
  'Exact k-fold cross-validation from per-fold regression states (a 2-D array, one state per fold): '
  'for each ridge penalty, each fold is scored by the model fitted on the other folds, from the '
  'statistics alone (no second scan). mse = sum of held-out SSE / held-out weight; r2 = 1 - SSE/SST '
  'with SST centred on each fold''s own mean. Pick the best with ORDER BY mse LIMIT 1.';
