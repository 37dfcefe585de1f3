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
