-- Learned projections (README, "Serving more dimensions than the index takes: dims"): three wide
-- models, 3,072 + 1,536 + 1,024 = 5,632 dimensions, served at dims => 512. The README's example
-- statements, on synthetic rows: each model a mix of 12 shared latent factors plus noise.
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
SET client_min_messages = warning;
SELECT setseed(0.5);
CREATE TABLE latent AS SELECT i, array_agg(random() * 2 - 1 ORDER BY f) z
  FROM generate_series(1, 300) i, generate_series(1, 12) f GROUP BY i;
CREATE TABLE mix AS SELECT m, d, array_agg(random() * 2 - 1 ORDER BY f) w
  FROM (VALUES (1, 3072), (2, 1536), (3, 1024)) v(m, n), generate_series(1, n) d, generate_series(1, 12) f GROUP BY m, d;
CREATE FUNCTION model(i int, mm int) RETURNS real[] LANGUAGE sql AS $$
    SELECT array_agg((0.5 + (SELECT sum(x.w[f] * l.z[f]) FROM generate_series(1, 12) f) + 0.4 * (random() * 2 - 1))::real ORDER BY x.d)
      FROM mix x, latent l WHERE x.m = mm AND l.i = model.i $$;
CREATE TABLE docs (id int PRIMARY KEY, text3072 vector(3072), text1536 vector(1536), image1024 vector(1024));
INSERT INTO docs SELECT i, model(i, 1)::vector, model(i, 2)::vector, model(i, 3)::vector FROM generate_series(1, 300) i;
CREATE TABLE doc_pairs AS SELECT (random() * 299)::int + 1 AS a, (random() * 299)::int + 1 AS b FROM generate_series(1, 1000);
ALTER TABLE doc_pairs ADD COLUMN similarity float8;
UPDATE doc_pairs p SET similarity = embedstack.cosine(x.text3072, y.text3072) + 0.5 * embedstack.cosine(x.text1536, y.text1536)
                                    + 0.25 * embedstack.cosine(x.image1024, y.image1024)
  FROM docs x, docs y WHERE x.id = p.a AND y.id = p.b;

-- Too wide to index without dims: a query-weighted set is refused (54000, the HINT names dims).
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT embedstack.create_model_set('docs3', 'docs', 'id', ARRAY['text3072', 'text1536', 'image1024'],
                                   mode => 'query_weighted');
-- The README's example.
SELECT name, projection_dims FROM embedstack.create_model_set('docs3', 'docs', 'id', ARRAY['text3072', 'text1536', 'image1024'],
                                   dims => 512);
SELECT cardinality(weights) AS models FROM embedstack.fit('docs3', 'doc_pairs', 'a', 'b', 'similarity');
CALL embedstack.materialize('docs3');
SELECT dims, unprojected_width, variance_kept > 0.9 AS keeps_over_90_percent, served_spearman > 0.99 AS ranks_like_the_fit
  FROM embedstack.status WHERE model_set = 'docs3';
-- Served: 512-dimension vectors with an HNSW index; a document's nearest neighbour is itself.
SELECT DISTINCT vector_dims(d.docs3_combined) AS served_dims FROM docs_docs3 d;
SELECT count(*) AS hnsw_indexes FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE a.amname = 'hnsw' AND i.indisvalid
   AND i.indrelid = (SELECT g.relation FROM embedstack.model_sets m JOIN embedstack.generations g ON g.id = m.served_generation
                    WHERE m.name = 'docs3');
SELECT d.id FROM docs_docs3 d ORDER BY d.docs3_combined <#> embedstack.query_vector('docs3', 42) LIMIT 1;
-- Re-ranking at full precision: score() is the fit's intercept + sum of weight x cosine, checked
-- here against pgvector's own cosine distance (1 - <=>, float4 sums: to 1e-6), then the README's re-ranking query: 40
-- candidates from the index, the best 10 by score(), which are the exact top 10 by that score.
SELECT abs(embedstack.score('docs3', 42, 7)
           - (f.intercept + f.weights[1] * (1 - (x.text3072 <=> y.text3072)) + f.weights[2] * (1 - (x.text1536 <=> y.text1536))
              + f.weights[3] * (1 - (x.image1024 <=> y.image1024)))) < 1e-6 AS score_is_the_fitted_score
  FROM embedstack.fits f, docs x, docs y WHERE f.model_set = 'docs3' AND x.id = 42 AND y.id = 7;
SELECT array_agg(id ORDER BY id) = (SELECT array_agg(id ORDER BY id) FROM (
         SELECT y.id FROM docs y ORDER BY embedstack.score('docs3', 42, y.id) DESC LIMIT 10) e) AS reranked_is_exact_top_10
  FROM (SELECT c.id FROM (SELECT d.id FROM docs_docs3 d
                           ORDER BY d.docs3_combined <#> embedstack.query_vector('docs3', 42) LIMIT 40) c
         ORDER BY embedstack.score('docs3', 42, c.id) DESC LIMIT 10) r;
SELECT embedstack.drop_model_set('docs3');
DROP TABLE docs, doc_pairs, latent, mix;
DROP FUNCTION model(int, int);
