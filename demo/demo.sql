-- embedstack's main job on real data: WordSim-353 (tests/fixtures/wordsim353, see its README.md).
-- 381 words with seven real embedding models each, and human similarity ratings of 304 word
-- pairs split 213 train / 91 test. Load -> model set -> fit on the train pairs -> evaluate on the
-- held-out pairs against scikit-learn's reference numbers -> materialise the combined vectors and
-- their HNSW index (a generation table, read through the view wordsim.words_wordsim joined to the
-- words) -> nearest words through the index, also with a filter -> the same in query-weighted
-- mode, with the served score checked against the regression's weighted sum -> a scheduled-style
-- refit and a rollback.
--
-- `make demo` runs it from the repository root; from elsewhere, pass the fixture directory:
--   psql -v ON_ERROR_STOP=1 -v fixtures=/path/to/wordsim353 -f demo/demo.sql
\if :{?fixtures}
\else
\set fixtures tests/fixtures/wordsim353
\endif
\pset footer off
\set QUIET on
-- QUIET: no command tags (CREATE TABLE, CALL, ...) between the results
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
DROP SCHEMA IF EXISTS wordsim CASCADE;
CREATE SCHEMA wordsim;
RESET client_min_messages;
-- scikit-learn's numbers for this split, computed outside this project (reference.json)
\set reference `cat :'fixtures'/reference.json`
CREATE TABLE wordsim.reference AS SELECT :'reference'::jsonb AS r;
\unset reference

\echo
\echo '== 1. Load the 381 words with their seven models, and the train / test pairs'
\echo '   (the raw real[] vectors become pgvector vector(n) columns: the model set reads each dimension from the type)'
-- psql runs `\copy ... FROM PROGRAM` on the client through the shell, so the fixture
-- directory (a psql variable) reaches the command as an environment variable.
\setenv EMBEDSTACK_FIXTURES :fixtures
CREATE TEMP TABLE words_raw (word text PRIMARY KEY, minilm_l6 real[], para_minilm_l3 real[],
    wordllama_l2s256 real[], static_m2v64 real[], w2v_sg100 real[], ppmi_svd300 real[],
    char_ngram real[]);
\copy words_raw FROM PROGRAM 'gzip -dc "$EMBEDSTACK_FIXTURES/words.copy.gz"'

CREATE TABLE wordsim.words (
  word             text PRIMARY KEY,
  minilm_l6        vector(384),    -- all-MiniLM-L6-v2 sentence transformer
  para_minilm_l3   vector(384),    -- paraphrase-MiniLM-L3-v2 sentence transformer
  wordllama_l2s256 vector(256),    -- WordLlama static embeddings
  static_m2v64     vector(64),     -- a 64-dim int8 static embedding model
  w2v_sg100        vector(100),    -- word2vec skip-gram, trained on a 511k-token corpus
  ppmi_svd300      vector(300),    -- PPMI + truncated SVD of that same corpus
  char_ngram       vector(1024)    -- hashed character 3- to 5-grams
);
INSERT INTO wordsim.words
SELECT word, minilm_l6::vector(384), para_minilm_l3::vector(384), wordllama_l2s256::vector(256),
       static_m2v64::vector(64), w2v_sg100::vector(100), ppmi_svd300::vector(300),
       char_ngram::vector(1024)
FROM words_raw;

CREATE TABLE wordsim.pairs_train (a text NOT NULL, b text NOT NULL, y float8 NOT NULL);
CREATE TABLE wordsim.pairs_test (LIKE wordsim.pairs_train);
\copy wordsim.pairs_train FROM PROGRAM 'cat "$EMBEDSTACK_FIXTURES/pairs_train.csv"' WITH (FORMAT csv, HEADER true)
\copy wordsim.pairs_test FROM PROGRAM 'cat "$EMBEDSTACK_FIXTURES/pairs_test.csv"' WITH (FORMAT csv, HEADER true)
ANALYZE wordsim.words, wordsim.pairs_train, wordsim.pairs_test;
SELECT (SELECT count(*) FROM wordsim.words) AS words,
       (SELECT count(*) FROM wordsim.pairs_train) AS train_pairs,
       (SELECT count(*) FROM wordsim.pairs_test) AS test_pairs,
       (SELECT string_agg(format('%s(%s)', a.attname, a.atttypmod), ' ' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = 'wordsim.words'::regclass AND a.attnum > 1) AS models;

\echo
\echo '== 2. The features: one cosine per model for a labelled pair, next to the human rating (0-10)'
\echo '   (the models often disagree about a pair: the stack learns from the ratings how much each one should count)'
SELECT p.a, p.b, p.y AS rating,
       (SELECT array_agg(round(c::numeric, 2))
          FROM unnest(embedstack.cosine_features(
                 ARRAY[x.minilm_l6, x.para_minilm_l3, x.wordllama_l2s256, x.static_m2v64, x.w2v_sg100, x.ppmi_svd300, x.char_ngram],
                 ARRAY[y.minilm_l6, y.para_minilm_l3, y.wordllama_l2s256, y.static_m2v64, y.w2v_sg100, y.ppmi_svd300, y.char_ngram])) c)
         AS "cosine per model, in the order above"
FROM wordsim.pairs_train p JOIN wordsim.words x ON x.word = p.a JOIN wordsim.words y ON y.word = p.b
WHERE (p.a, p.b) IN (('football', 'soccer'), ('murder', 'manslaughter'), ('precedent', 'cognition'))
ORDER BY p.y DESC;
SELECT count(*) AS pairs_x_models,
       trim(to_char(max(abs(c.cos - (1 - c.pgvector_distance))), '9.9EEEE')) AS "max |cosine - (1 - pgvector <=>)|"
FROM wordsim.pairs_train p JOIN wordsim.words x ON x.word = p.a JOIN wordsim.words y ON y.word = p.b,
     LATERAL (VALUES (embedstack.cosine(x.minilm_l6, y.minilm_l6), x.minilm_l6 <=> y.minilm_l6),
                     (embedstack.cosine(x.para_minilm_l3, y.para_minilm_l3), x.para_minilm_l3 <=> y.para_minilm_l3),
                     (embedstack.cosine(x.wordllama_l2s256, y.wordllama_l2s256), x.wordllama_l2s256 <=> y.wordllama_l2s256),
                     (embedstack.cosine(x.static_m2v64, y.static_m2v64), x.static_m2v64 <=> y.static_m2v64),
                     (embedstack.cosine(x.w2v_sg100, y.w2v_sg100), x.w2v_sg100 <=> y.w2v_sg100),
                     (embedstack.cosine(x.ppmi_svd300, y.ppmi_svd300), x.ppmi_svd300 <=> y.ppmi_svd300),
                     (embedstack.cosine(x.char_ngram, y.char_ngram), x.char_ngram <=> y.char_ngram)) c(cos, pgvector_distance);
\echo '   (embedstack.cosine accumulates in float8, pgvector in float4: the same numbers up to float4 rounding)'

\echo
\echo '== 3. A model set: the table, its key and the model columns that form the stack'
\echo '   (symmetric mode, threshold 0.05: a model is served only if its weight exceeds 5% of the largest;'
\echo '    the combined vectors will be served through the view wordsim.words_wordsim: word, wordsim_combined)'
\set ECHO queries
SELECT name, key_column, model_dims, mode, threshold, combined_column, view_name
FROM embedstack.create_model_set('wordsim', 'wordsim.words', 'word',
       ARRAY['minilm_l6', 'para_minilm_l3', 'wordllama_l2s256', 'static_m2v64', 'w2v_sg100', 'ppmi_svd300', 'char_ngram']);
\set ECHO none

\echo
\echo '== 4. Fit the stacking weights on the 213 training pairs, from the stored columns'
\echo '   (ordinary least squares with an intercept, as scikit-learn''s LinearRegression: reference.json''s numbers alongside)'
\set ECHO queries
SELECT id AS fit_id, round(intercept::numeric, 6) AS intercept, round((diagnostics->>'r2')::numeric, 6) AS r2_train,
       diagnostics->>'n_used' AS n_used
FROM embedstack.fit('wordsim', 'wordsim.pairs_train', 'a', 'b', 'y');
\set ECHO none
SELECT round((r #>> '{fits,ols,intercept}')::numeric, 6) AS reference_intercept,
       round((r #>> '{fits,ols,r2_train}')::numeric, 6) AS reference_r2_train, r->>'n_train' AS reference_n_train
FROM wordsim.reference;
SELECT m.model, round(m.w::numeric, 6) AS weight, round((ref.r #>> ARRAY['fits', 'ols', 'coef', m.model])::numeric, 6) AS sklearn_coef,
       round(m.mult::numeric, 6) AS block_multiplier, round((m.mult ^ 2)::numeric, 6) AS "multiplier^2 = w/w_max",
       round(coalesce((ref.r #>> ARRAY['fits', 'ols', 'scale', m.model])::numeric, 0), 6) AS reference_scale
FROM embedstack.model_sets s
JOIN embedstack.fits f ON f.id = (SELECT max(id) FROM embedstack.fits WHERE model_set = s.name),
     wordsim.reference ref,
     unnest(s.model_columns, f.weights, embedstack.block_multipliers(f.weights, s.mode, s.threshold))
       WITH ORDINALITY m(model, w, mult, i)
WHERE s.name = 'wordsim'
ORDER BY m.i;
\echo '   each served block is sqrt(w_k / w_max) * (model k normalised), so inner products weigh cosine k by w_k / w_max;'
\echo '   ppmi_svd300 and char_ngram are below the threshold (negative weights): multiplier 0, not stored'

\echo
\echo '== 5. Held-out evaluation on the 91 test pairs: each model alone against the stack'
\echo '   ((stack) = the score the served vectors rank by, (fit) = the regression''s prediction with every model)'
\set ECHO queries
SELECT model, n, round(pearson::numeric, 4) AS pearson, round(spearman::numeric, 4) AS spearman
FROM embedstack.evaluate('wordsim', 'wordsim.pairs_test', 'a', 'b', 'y');
\set ECHO none
WITH e AS (SELECT * FROM embedstack.evaluate('wordsim', 'wordsim.pairs_test', 'a', 'b', 'y')),
     best AS (SELECT model, spearman FROM e WHERE model NOT LIKE '(%' ORDER BY spearman DESC LIMIT 1),
     t AS (SELECT r->'test' AS t FROM wordsim.reference)
SELECT format('Held-out Spearman, measured (reference.json): stack %s (%s, OLS, threshold 0.05, cosine of the combined vectors)'
              ' vs best single model %s %s (%s): %s; regression %s (%s, weighted sum of all 7 cosines)',
              round(stack.spearman::numeric, 4), round((t->'ols_combined_cosine'->>'spearman')::numeric, 4),
              best.model, round(best.spearman::numeric, 4), round((t->'single'->best.model->>'spearman')::numeric, 4),
              CASE WHEN stack.spearman > best.spearman
                   THEN format('the stack is %s above', round((stack.spearman - best.spearman)::numeric, 4))
                   ELSE 'the stack is NOT above' END,
              round(fit.spearman::numeric, 4), round((t->'ols_weighted_sum'->>'spearman')::numeric, 4)) AS line
FROM best, t, e stack, e fit
WHERE stack.model = '(stack)' AND fit.model = '(fit)' \gset comparison_
\echo :comparison_line

\echo '   ablation: the stack refitted without each model (from the fit''s stored statistics, no second pass over'
\echo '   the training pairs), scored on the same held-out pairs; delta = what removing the model costs in Spearman'
\set ECHO queries
SELECT model, n, round(spearman::numeric, 4) AS spearman,
       round((spearman - (SELECT e2.spearman FROM embedstack.evaluate('wordsim', 'wordsim.pairs_test', 'a', 'b', 'y') e2
                          WHERE e2.model = '(fit)'))::numeric, 4) AS delta_vs_fit
FROM embedstack.evaluate('wordsim', 'wordsim.pairs_test', 'a', 'b', 'y', ablation => true)
WHERE model = '(fit)' OR model LIKE '(without %';
\set ECHO none

\echo
\echo '== 6. Materialise: one combined vector per word (a weighted concatenation of the kept models) and its HNSW index'
\echo '   (its inner product is the stack''s score, so one pgvector index serves the learned similarity; the vectors go'
\echo '    into a table of their own, a generation, and the view wordsim.words_wordsim reads it: wordsim.words is only read)'
\set ECHO queries
CALL embedstack.materialize('wordsim');
\set ECHO none
SELECT s.view_name AS view, s.combined_column, s.active_fit, s.served_generation, g.relation AS generation_table,
       s.served_storage, s.served_index,
       (SELECT vector_dims(v.wordsim_combined) FROM wordsim.words_wordsim v LIMIT 1) AS width,
       (SELECT count(*) FROM wordsim.words_wordsim) AS rows
FROM embedstack.model_sets s JOIN embedstack.generations g ON g.id = s.served_generation WHERE s.name = 'wordsim';
\echo '   width 1188 = 384 + 384 + 256 + 64 + 100, the five kept models; the words table keeps its own 8 columns:'
SELECT string_agg(attname, ' ' ORDER BY attnum) AS "wordsim.words columns"
FROM pg_attribute WHERE attrelid = 'wordsim.words'::regclass AND attnum > 0 AND NOT attisdropped;

\echo '   explain one pair: per model its cosine, the fit''s weight, weight x cosine and its share; (total) has the'
\echo '   prediction (intercept included) as contribution and the served score (what the index ranks by) as cosine'
\set ECHO queries
SELECT model, round(cosine::numeric, 4) AS cosine, round(weight::numeric, 3) AS weight,
       round(contribution::numeric, 3) AS contribution, round(share::numeric, 3) AS share, note
FROM embedstack.explain('wordsim', 'tiger', 'cat');
\set ECHO none

\echo
\echo '== 7. The nearest words under the learned similarity, through the HNSW index: join the view to the words'
\echo '   (381 rows are so few that the planner would rather join and sort them all; enable_seqscan and enable_sort off'
\echo '    show the path it takes on a large table: the HNSW scan of the generation, each row joined to wordsim.words by'
\echo '    its primary key, LIMIT stopping the scan)'
SET enable_seqscan = off;
SET enable_sort = off;
\set ECHO queries
EXPLAIN (COSTS off)
SELECT w.* FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
ORDER BY v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text)
LIMIT 6;
\set ECHO none
SELECT q.word AS query,
       string_agg(format('%s %s', n.word, round(n.score::numeric, 3)), ', ' ORDER BY n.score DESC) AS "5 nearest words (score)"
FROM unnest(ARRAY['money', 'computer', 'king', 'tiger', 'drink']) WITH ORDINALITY q(word, i)
CROSS JOIN LATERAL (
  SELECT w.word, -(v.wordsim_combined <#> embedstack.query_vector('wordsim', q.word)) AS score
  FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
  ORDER BY v.wordsim_combined <#> embedstack.query_vector('wordsim', q.word)
  LIMIT 6) n
WHERE n.word <> q.word
GROUP BY q.word, q.i
ORDER BY q.i;
\echo '   every word as a query: its 10 nearest through the index against the exact 10 (an ORDER BY the index cannot serve)'
WITH q AS MATERIALIZED (SELECT word, embedstack.query_vector('wordsim', word) AS qv FROM wordsim.words)
SELECT count(*) AS queries, round(avg(h.hits) / 10, 4) AS recall_at_10
FROM q CROSS JOIN LATERAL (
  SELECT count(*) AS hits
  FROM (SELECT v.word FROM wordsim.words_wordsim v ORDER BY v.wordsim_combined <#> q.qv LIMIT 10) ann
  JOIN (SELECT v.word FROM wordsim.words_wordsim v ORDER BY (v.wordsim_combined <#> q.qv) + 0 LIMIT 10) exact USING (word)) h;
\echo '   with a filter on the words (here: words of 7 letters or more, 175 of 381), the index scan stops after'
\echo '   hnsw.ef_search candidates (40 by default), so fewer than LIMIT 30 rows pass, unless pgvector 0.8''s iterative'
\echo '   scan lets it go on until LIMIT rows pass the filter; strict_order keeps them in exact score order:'
SELECT count(*) AS rows_without_iterative_scan
FROM (SELECT w.word FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
      WHERE length(w.word) >= 7
      ORDER BY v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text) LIMIT 30) t;
\set ECHO queries
SET hnsw.iterative_scan = strict_order;
SELECT w.word, round((-(v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text)))::numeric, 3) AS score
FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
WHERE length(w.word) >= 7
ORDER BY v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text)
LIMIT 5;
\set ECHO none
SELECT count(*) AS rows_with_iterative_scan,
       array_agg(word ORDER BY i) = (SELECT array_agg(word ORDER BY d, word) FROM (
           SELECT w.word, (v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text)) + 0 AS d
           FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
           WHERE length(w.word) >= 7 ORDER BY d, w.word LIMIT 30) e) AS same_as_exact_filtered_top_30
FROM (SELECT w.word, row_number() OVER () AS i
      FROM (SELECT w.word FROM wordsim.words w JOIN wordsim.words_wordsim v USING (word)
            WHERE length(w.word) >= 7
            ORDER BY v.wordsim_combined <#> embedstack.query_vector('wordsim', 'money'::text) LIMIT 30) w) t;
RESET hnsw.iterative_scan;
RESET enable_sort;
RESET enable_seqscan;

\echo
\echo '== 8. Query-weighted mode: stored blocks are the plain normalised models, the weights go into the query vector'
\echo '   (negative weights count too, and a new fit never rewrites stored rows; char_ngram is left out here: with it the'
\echo '    width, 2,512, is over HNSW''s 2,000 for vector and would be stored as 16-bit halfvec, whose rounding (about'
\echo '    1e-4 on these scores) would blur the exactness check of step 9; without it the width is 1,488)'
\set ECHO queries
SELECT name, model_dims, mode, combined_column, view_name
FROM embedstack.create_model_set('wordsim_qw', 'wordsim.words', 'word',
       ARRAY['minilm_l6', 'para_minilm_l3', 'wordllama_l2s256', 'static_m2v64', 'w2v_sg100', 'ppmi_svd300'],
       mode => 'query_weighted');
SELECT id AS fit_id, (SELECT array_agg(round(w::numeric, 3)) FROM unnest(weights) w) AS weights,
       round((diagnostics->>'r2')::numeric, 4) AS r2_train
FROM embedstack.fit('wordsim_qw', 'wordsim.pairs_train', 'a', 'b', 'y');
SELECT model, n, round(pearson::numeric, 4) AS pearson, round(spearman::numeric, 4) AS spearman
FROM embedstack.evaluate('wordsim_qw', 'wordsim.pairs_test', 'a', 'b', 'y')
WHERE model LIKE '(%';
\set ECHO none
\echo '   ((stack) and (fit) rank alike here: the served score is the prediction minus the intercept, over max |w|)'
\set ECHO queries
CALL embedstack.materialize('wordsim_qw');
\set ECHO none
SET enable_seqscan = off;
SELECT 'money' AS query,
       string_agg(format('%s %s', n.word, round(n.score::numeric, 3)), ', ' ORDER BY n.score DESC) AS "5 nearest words (score)"
FROM (SELECT w.word, -(v.wordsim_qw_combined <#> embedstack.query_vector('wordsim_qw', 'money'::text)) AS score
      FROM wordsim.words w JOIN wordsim.words_wordsim_qw v USING (word)
      ORDER BY v.wordsim_qw_combined <#> embedstack.query_vector('wordsim_qw', 'money'::text)
      LIMIT 6) n
WHERE n.word <> 'money';
RESET enable_seqscan;

\echo
\echo '== 9. The served score is the regression''s weighted sum of per-model cosines (intercept aside), up to float4 rounding'
\echo '   (-(combined <#> query_vector) on every labelled pair against sum_k (w_k / w_max) * cosine_k computed here with'
\echo '    embedstack.cosine: symmetric sums the kept models, w_max = max w; query-weighted all models, w_max = max |w|;'
\echo '    and the held-out Spearman of the served scores, ranked in plain SQL)'
WITH pairs AS (SELECT a, b, y, false AS test FROM wordsim.pairs_train
               UNION ALL SELECT a, b, y, true FROM wordsim.pairs_test),
     -- one cosine per model, from the model columns (the query-weighted set has the first six)
     cosines AS (
       SELECT p.*, ARRAY[embedstack.cosine(x.minilm_l6, y.minilm_l6), embedstack.cosine(x.para_minilm_l3, y.para_minilm_l3),
                         embedstack.cosine(x.wordllama_l2s256, y.wordllama_l2s256), embedstack.cosine(x.static_m2v64, y.static_m2v64),
                         embedstack.cosine(x.w2v_sg100, y.w2v_sg100), embedstack.cosine(x.ppmi_svd300, y.ppmi_svd300),
                         embedstack.cosine(x.char_ngram, y.char_ngram)] AS cos
       FROM pairs p JOIN wordsim.words x ON x.word = p.a JOIN wordsim.words y ON y.word = p.b),
     -- each model set's active fit
     sets AS (
       SELECT s.name, s.mode, f.weights, embedstack.block_multipliers(f.weights, s.mode, s.threshold) AS mult,
              (SELECT CASE s.mode WHEN 'symmetric' THEN max(w) ELSE max(abs(w)) END FROM unnest(f.weights) w) AS w_max
       FROM embedstack.model_sets s JOIN embedstack.fits f ON f.id = s.active_fit),
     scored AS (
       SELECT s.name, s.mode, c.test, c.y,
              CASE s.name WHEN 'wordsim' THEN -((SELECT v.wordsim_combined FROM wordsim.words_wordsim v WHERE v.word = c.a)
                                                <#> embedstack.query_vector('wordsim', c.b))
                          ELSE -((SELECT v.wordsim_qw_combined FROM wordsim.words_wordsim_qw v WHERE v.word = c.a)
                                 <#> embedstack.query_vector('wordsim_qw', c.b)) END AS served,
              (SELECT sum(u.w / s.w_max * u.cos) FROM unnest(s.weights, s.mult, c.cos) u(w, mult, cos)
                WHERE s.mode = 'query_weighted' OR u.mult > 0) AS weighted_sum
       FROM sets s CROSS JOIN cosines c),
     -- Spearman = Pearson correlation of ranks, ties sharing their average rank
     ranked AS (
       SELECT name,
              rank() OVER (PARTITION BY name ORDER BY served) + (count(*) OVER (PARTITION BY name, served) - 1) / 2.0 AS r_served,
              rank() OVER (PARTITION BY name ORDER BY y) + (count(*) OVER (PARTITION BY name, y) - 1) / 2.0 AS r_y
       FROM scored WHERE test)
SELECT sc.name AS model_set, sc.mode, count(*) AS pairs,
       round(min(sc.served)::numeric, 4) || ' .. ' || round(max(sc.served)::numeric, 4) AS served_scores,
       trim(to_char(max(abs(sc.served - sc.weighted_sum)), '9.9EEEE')) AS max_abs_difference,
       (SELECT round(corr(r_served, r_y)::numeric, 4) FROM ranked r WHERE r.name = sc.name) AS test_spearman_served
FROM scored sc GROUP BY sc.name, sc.mode ORDER BY sc.name;
\echo '   (differences are float4 rounding: pgvector stores the blocks and sums the inner product in float4)'

\echo
\echo '== 10. A refit, as a scheduled job (pg_cron) would run it: hold out a hashed ~20% of all 304 pairs, fit on the rest,'
\echo '    cut over if the new fit is not worse than the active one on the held-out pairs (query-weighted: no row is rewritten;'
\echo '    the held-out pairs include some that trained the active fit 2, which favours it)'
CREATE VIEW wordsim.pairs_all AS SELECT * FROM wordsim.pairs_train UNION ALL SELECT * FROM wordsim.pairs_test;
\set ECHO queries
CALL embedstack.refit('wordsim_qw', 'wordsim.pairs_all', 'a', 'b', 'y');
\set ECHO none
SELECT id AS job, model_set, kind, fit_id, state, details->>'holdout_pairs' AS holdout_pairs,
       round((details->>'new_mse')::numeric, 4) AS new_fit_mse, round((details->>'active_mse')::numeric, 4) AS active_fit_mse,
       rows_done AS rows_written
FROM embedstack.jobs ORDER BY id;
\set ECHO queries
SELECT model_set, mode, active_fit, job_kind, job_state, outcome FROM embedstack.status;
\set ECHO none

\echo
\echo '== 11. Rollback: serve the previous fit again, at once (no row written, no index built; a refit that changed the'
\echo '    stored layout would switch the view back to the previous generation, kept up to date for this), and again'
\set ECHO queries
CALL embedstack.rollback('wordsim_qw');
SELECT model_set, view, active_fit, served_generation, served_index, previous_fit, previous_generation
FROM embedstack.status ORDER BY model_set;
CALL embedstack.rollback('wordsim_qw');
SELECT model_set, active_fit, served_generation, previous_fit, previous_generation
FROM embedstack.status WHERE model_set = 'wordsim_qw';
\set ECHO none

\echo
\echo '== 12. All seven models, 2,512 dimensions, served at 256 learned dimensions (dims => 256): PCA of the served vectors,'
\echo '    learned from the words when the generation is written; the fit stays exact, the served score is projected'
\set ECHO queries
SELECT name, mode, projection_dims
FROM embedstack.create_model_set('wordsim_256', 'wordsim.words', 'word',
       ARRAY['minilm_l6', 'para_minilm_l3', 'wordllama_l2s256', 'static_m2v64', 'w2v_sg100', 'ppmi_svd300', 'char_ngram'],
       mode => 'query_weighted', dims => 256);
SELECT id AS fit_id FROM embedstack.fit('wordsim_256', 'wordsim.pairs_train', 'a', 'b', 'y');
CALL embedstack.materialize('wordsim_256');
SELECT model_set, dims, unprojected_width, round(variance_kept::numeric, 4) AS variance_kept,
       round(served_spearman::numeric, 4) AS served_vs_fitted_spearman
FROM embedstack.status WHERE model_set = 'wordsim_256';
\set ECHO none
\echo '   held-out Spearman of the served (projected) score, against scikit-learn''s exact 0.8356 for this fit:'
WITH s AS (SELECT p.y, -(embedstack.query_vector('wordsim_256', p.a) <#> v.wordsim_256_combined) AS served
             FROM wordsim.pairs_test p JOIN wordsim.words_wordsim_256 v ON v.word = p.b),
     r AS (SELECT rank() OVER (ORDER BY served) + (count(*) OVER (PARTITION BY served) - 1) / 2.0 AS r_served,
                  rank() OVER (ORDER BY y) + (count(*) OVER (PARTITION BY y) - 1) / 2.0 AS r_y FROM s)
SELECT count(*) AS test_pairs, round(corr(r_served, r_y)::numeric, 4) AS test_spearman_served FROM r;
SET enable_seqscan = off;
SELECT 'money' AS query,
       string_agg(n.word, ', ' ORDER BY n.score DESC) AS "5 nearest words (256 dims)"
FROM (SELECT v.word, -(v.wordsim_256_combined <#> embedstack.query_vector('wordsim_256', 'money'::text)) AS score
      FROM wordsim.words_wordsim_256 v
      ORDER BY v.wordsim_256_combined <#> embedstack.query_vector('wordsim_256', 'money'::text)
      LIMIT 6) n
WHERE n.word <> 'money';
RESET enable_seqscan;
