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
  'Merges two regression states (Chan et al.): merge(stats(A), stats(B)) = stats(A UNION ALL B); NULL is the '
  'empty state (merge(s, NULL) = s, merge(NULL, NULL) = NULL). Corrupt state: 22023; different feature counts: 22000.';
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

-- Model sets (sql/catalog.sql, sql/model_sets.sql, sql/materialize.sql, src/model_set/).
COMMENT ON TABLE embedstack.model_sets IS
  'Model sets: which columns of which table form a stack, how they are combined, and what is served. '
  'Written only by the embedstack functions; readable by everyone; dumped by pg_dump.';
COMMENT ON COLUMN embedstack.model_sets.name IS 'Model set name (1-63 bytes).';
COMMENT ON COLUMN embedstack.model_sets.source IS 'The table holding the entities and their model vectors.';
COMMENT ON COLUMN embedstack.model_sets.key_column IS 'NOT NULL column with a single-column unique index identifying a row.';
COMMENT ON COLUMN embedstack.model_sets.model_columns IS 'Model columns in order (vector, real[] or double precision[]).';
COMMENT ON COLUMN embedstack.model_sets.model_dims IS 'Dimension of each model (from vector(n), given, or discovered from the first row).';
COMMENT ON COLUMN embedstack.model_sets.model_types IS 'Type of each model column at creation.';
COMMENT ON COLUMN embedstack.model_sets.mode IS
  'symmetric: stored blocks sqrt(w_k/w_max)*u_k over kept models; query_weighted: stored blocks u_k, '
  'weights applied to the query only (a refit rewrites no row).';
COMMENT ON COLUMN embedstack.model_sets.threshold IS 'Symmetric mode keeps models with w_k > threshold * w_max.';
COMMENT ON COLUMN embedstack.model_sets.combined_column IS 'Name of the combined-vector column of the served view and of the generation tables.';
COMMENT ON COLUMN embedstack.model_sets.storage IS 'auto (vector up to 2000 dims, else halfvec up to 4000), vector or halfvec.';
COMMENT ON COLUMN embedstack.model_sets.active_fit IS 'The fit whose weights are served (NULL until the first materialize).';
COMMENT ON COLUMN embedstack.model_sets.served_multipliers IS 'Per-model multiplier of the stored blocks of the served generation (0 = left out).';
COMMENT ON COLUMN embedstack.model_sets.served_storage IS 'Type of the served vectors: vector or halfvec.';
COMMENT ON COLUMN embedstack.model_sets.served_index IS 'Name of the HNSW (inner product) index of the served generation.';
COMMENT ON COLUMN embedstack.model_sets.created_at IS 'When the model set was created.';
COMMENT ON COLUMN embedstack.model_sets.view_name IS 'The served view (in the source''s schema): key and combined vector of the served generation.';
COMMENT ON COLUMN embedstack.model_sets.served_generation IS 'The generation the view reads (embedstack.generations.id).';
COMMENT ON COLUMN embedstack.model_sets.previous_fit IS 'The fit served before the last switch (what rollback serves).';
COMMENT ON COLUMN embedstack.model_sets.previous_generation IS 'The generation served before the last switch (what rollback serves).';
COMMENT ON TABLE embedstack.generations IS
  'Generations: tables of combined vectors (key, vector) the extension wrote, one per materialisation, in the '
  'source''s schema, owned by its owner: building (a job writes it), served (the view reads it), retained (for '
  'rollback, kept fresh). Dumped by pg_dump, with the tables.';
COMMENT ON COLUMN embedstack.generations.id IS 'Generation id (the table is <view>_g<id>).';
COMMENT ON COLUMN embedstack.generations.model_set IS 'The model set.';
COMMENT ON COLUMN embedstack.generations.relation IS 'The generation table.';
COMMENT ON COLUMN embedstack.generations.index_name IS 'Its HNSW (inner product) index.';
COMMENT ON COLUMN embedstack.generations.fit_id IS 'The fit it was written for (query-weighted mode: any fit of the same layout serves from it).';
COMMENT ON COLUMN embedstack.generations.multipliers IS 'Per-model multipliers of its stored blocks.';
COMMENT ON COLUMN embedstack.generations.storage IS 'vector or halfvec.';
COMMENT ON COLUMN embedstack.generations.width IS 'Dimensions of its vectors.';
COMMENT ON COLUMN embedstack.generations.state IS 'building, served or retained.';
COMMENT ON COLUMN embedstack.generations.cursor_key IS 'The last key written by the batches (a resumed job continues after it).';
COMMENT ON COLUMN embedstack.generations.rows_written IS 'Rows written by the batches.';
COMMENT ON COLUMN embedstack.generations.created_at IS 'When the generation was started.';
COMMENT ON COLUMN embedstack.generations.served_at IS 'When it was last switched to.';
COMMENT ON COLUMN embedstack.generations.pending IS
  'While its index is built: the table of keys the freshness triggers changed meanwhile (applied afterwards).';
COMMENT ON COLUMN embedstack.generations.pending_open IS 'Whether the freshness triggers record into the pending table.';
COMMENT ON COLUMN embedstack.model_sets.legacy_column IS
  'The source column a 0.1/0.2 release served from (set by the 0.3.0 upgrade; no longer written); '
  'drop_model_set(name, drop_columns => true) drops it.';
COMMENT ON COLUMN embedstack.model_sets.held_since IS
  'Since when a rollback holds the model set: refit records its fits but keeps the served one, a plain materialize '
  'refuses, until embedstack.release(name). NULL: not held.';
COMMENT ON COLUMN embedstack.model_sets.held_reason IS 'Which rollback holds the model set.';
COMMENT ON FUNCTION embedstack._w_generation_pending(text, bigint, regclass, boolean) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a generation''s pending-keys table.';
COMMENT ON FUNCTION embedstack._keep_generations() IS 'Internal: the value of embedstack.keep_generations.';
COMMENT ON FUNCTION embedstack._cutover_wait_timeout() IS 'Internal: the value of embedstack.cutover_wait_timeout (ms).';
COMMENT ON FUNCTION embedstack._wait_for_writers(regclass) IS
  'Internal: waits until the transactions writing a table when called have ended (takes no lock).';
COMMENT ON TABLE embedstack.fits IS
  'Fit history: one row per embedstack.fit or refit. Written only by the embedstack functions; trimmed to '
  'embedstack.keep_history fits per model set (never the active one); dumped by pg_dump.';
COMMENT ON COLUMN embedstack.fits.id IS 'Fit id (materialize(model_set, fit_id) serves it).';
COMMENT ON COLUMN embedstack.fits.model_set IS 'The model set fitted.';
COMMENT ON COLUMN embedstack.fits.created_at IS 'When the fit was made.';
COMMENT ON COLUMN embedstack.fits.options IS 'Solver options: ridge, nonnegative, fit_intercept.';
COMMENT ON COLUMN embedstack.fits.weights IS 'One weight per model, in the model set''s order.';
COMMENT ON COLUMN embedstack.fits.intercept IS 'Intercept of the regression.';
COMMENT ON COLUMN embedstack.fits.diagnostics IS 'r2, rmse, n_used, n_skipped, condition_number, std_errors, rank, collinear.';
COMMENT ON COLUMN embedstack.fits.state IS 'The regression statistics state (as regression_stats returns): merge or re-solve it later.';
COMMENT ON COLUMN embedstack.fits.training_source IS 'Pairs table and columns the fit was trained on.';

COMMENT ON FUNCTION embedstack.create_model_set(text, regclass, name, name[], text, double precision, name, text, integer[], name, integer) IS
  'Registers a model set: source table, key column (NOT NULL, single-column unique index), model columns '
  '(vector(n), real[] or double precision[]; dims from the typmod, model_dims, or the first row), mode '
  'symmetric | query_weighted, threshold, combined column name (default <name>_combined), storage, served view '
  'name (default <source>_<name>), dims (serve a wider fit as a learned projection onto dims dimensions). '
  'Errors: 42703 unknown column, 42804 wrong type, 42P10 key not unique, 42710 duplicate name, 42701/42P07 name '
  'clash, 54000 too wide to index (query-weighted, without dims).';
COMMENT ON FUNCTION embedstack._fit_projection(double precision[], double precision[], integer, bigint) IS
  'Internal: the learned projection of a stored layout (multipliers) onto dims dimensions from a covariance_stats '
  'state: basis rows, variances, variance kept, total variance, rows.';
COMMENT ON FUNCTION embedstack.drop_model_set(text, boolean) IS
  'Removes a model set, its fit history, freshness triggers, served view and generation tables (2BP01 when '
  'objects of yours depend on the view); drop_columns => true also drops a combined column a 0.2 release left '
  'in the source. Unknown model set: 42704.';
COMMENT ON FUNCTION embedstack.fit(text, regclass, name, name, name, double precision, boolean, name) IS
  'Fits the stacking weights on labelled pairs (keys of the source table and a target): one cosine per model '
  'from the stored columns, each referenced entity read once (embedstack.entity_cache_size), OLS with intercept '
  '(or ridge / nonnegative). Returns the new embedstack.fits row; nothing served changes. Pairs with a missing '
  'key, a NULL or zero vector, or a NULL target/weight are skipped and counted. No usable pair: 22023.';
COMMENT ON FUNCTION embedstack.pair_statistics(text, regclass, text, text, text, text) IS
  'The regression statistics state (as regression_stats returns) of the pairs'' per-model cosines computed from '
  'the model set''s stored columns; feed it to solve() or merge(). VOLATILE (uses a temporary table).';
COMMENT ON FUNCTION embedstack.evaluate(text, regclass, text, text, text, bigint, boolean) IS
  'Held-out evaluation on labelled pairs: one row per model (its cosine alone), (stack) = the served score '
  'sum_k s_k x_k (missing blocks count 0), and (fit) = intercept + sum_k w_k x_k on pairs with every feature; '
  'n, Pearson, Spearman (average ranks). fit_id defaults to the active fit, else the latest. ablation => true adds '
  '(without <model>) per model: the fit refitted without that model from its stored statistics (fits.state, same '
  'options), scored on the pairs whose other features are present, in the same pass (none for a single model).';
COMMENT ON FUNCTION embedstack.explain(text, anyelement, anyelement, bigint) IS
  'Why two stored rows score what they score under a fit (fit_id, else the active fit, else the latest): per model '
  'its cosine (NULL for a NULL or zero vector), weight, contribution = weight * cosine and share = contribution / '
  'sum of |contributions|; (intercept); (total) with the prediction as contribution and, as cosine, the served '
  'score -(query_vector(a) <#> b''s served vector) (NULL when not materialised); note says what is served and '
  'what the threshold left out. Unknown model set 42704, key not found P0002, no fit 55000, NULL 22004. STABLE.';
COMMENT ON FUNCTION embedstack.explain(text, text, text, bigint) IS
  'explain for keys given as text (quoted literals), read with the key type''s input function as query_vector '
  'reads them. STABLE.';
COMMENT ON FUNCTION embedstack.score(text, anyelement, anyelement) IS
  'The served score of two stored rows at full precision, from their model vectors (never the stored, possibly '
  'projected vectors): intercept + sum_k w_k cos_k over the models the served vector keeps, with the served fit''s '
  'weights, a NULL or zero vector counting 0; ranks as the exact unprojected served score. For re-ranking the '
  'candidates of a projected model set''s index. Unknown model set 42704, nothing served 55000, key not found '
  'P0002. STABLE STRICT PARALLEL RESTRICTED.';
COMMENT ON FUNCTION embedstack.score(text, text, text) IS
  'score for keys given as text (quoted literals), read with the key type''s input function as query_vector reads '
  'them. STABLE STRICT PARALLEL RESTRICTED.';
COMMENT ON FUNCTION embedstack.block_multipliers(double precision[], text, double precision) IS
  'Per-model multipliers of the stored blocks for weights in a mode: symmetric sqrt(w_k/w_max) for '
  'w_k > threshold*w_max else 0 (no positive weight: 22023 with a hint); query_weighted 1 for every model. '
  'IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack.query_vector(text, vector[]) IS
  'Query-side vector of the active fit for one vector per model (NULL = missing model): rank the combined '
  'column with ORDER BY combined <#> query_vector(...). Symmetric mode: built like the stored vectors; '
  'query_weighted: blocks (w_k / max|w|) u_k. For halfvec model sets cast it ::halfvec. STABLE.';
COMMENT ON FUNCTION embedstack.query_vector(text, anyelement) IS
  'Query-side vector of the active fit for the stored row with this key (item-to-item search). '
  'No such row: P0002. STABLE.';
COMMENT ON FUNCTION embedstack.query_vector(text, text) IS
  'Query-side vector of the active fit for the stored row whose key is given as text (a quoted literal), read '
  'with the key type''s input function. No such row: P0002. STABLE.';
COMMENT ON FUNCTION embedstack._apply_as_owner(text, regclass, text) IS
  'Internal: applies changes no freshness trigger saw (partitions attached, detached or dropped; the keys a retained '
  'generation recorded) to the live generations, as the source''s owner; the caller must be a member of it.';
COMMENT ON COLUMN embedstack.status.model_set IS 'The model set''s name.';
COMMENT ON COLUMN embedstack.status.source IS 'Its source table.';
COMMENT ON COLUMN embedstack.status.combined_column IS 'The combined-vector column of the served view.';
COMMENT ON COLUMN embedstack.status.mode IS 'symmetric or query_weighted.';
COMMENT ON COLUMN embedstack.status.active_fit IS 'The fit being served (embedstack.fits.id); NULL before the first materialise.';
COMMENT ON COLUMN embedstack.status.active_fit_created_at IS 'When the active fit was computed.';
COMMENT ON COLUMN embedstack.status.served_index IS 'The HNSW index of the served generation.';
COMMENT ON COLUMN embedstack.status.job_id IS 'The latest materialize or refit job (embedstack.jobs.id).';
COMMENT ON COLUMN embedstack.status.job_kind IS 'materialize or refit.';
COMMENT ON COLUMN embedstack.status.job_state IS 'running, interrupted (marked running but its session no longer holds the job lock), succeeded, kept (refit: the new fit was not better), or failed.';
COMMENT ON COLUMN embedstack.status.phase IS 'The job''s step: fit, prepare, write, index, wait, cutover or done.';
COMMENT ON COLUMN embedstack.status.job_fit IS 'The fit the job materialises.';
COMMENT ON COLUMN embedstack.status.rows_done IS 'Rows written so far (committed batches).';
COMMENT ON COLUMN embedstack.status.rows_total IS 'Rows to write (counted when the job prepared).';
COMMENT ON COLUMN embedstack.status.started_at IS 'When the job started.';
COMMENT ON COLUMN embedstack.status.updated_at IS 'When the job last reported progress.';
COMMENT ON COLUMN embedstack.status.rows_per_second IS 'rows_done divided by the time between started_at and updated_at.';
COMMENT ON COLUMN embedstack.status.pid IS 'The backend running (or that ran) the job.';
COMMENT ON COLUMN embedstack.status.outcome IS 'What a finished job did (served fit, kept decision with both held-out MSEs).';
COMMENT ON COLUMN embedstack.status.last_error IS 'Message of the latest failed job of this model set.';
COMMENT ON COLUMN embedstack.status.last_error_sqlstate IS 'Its SQLSTATE.';
COMMENT ON COLUMN embedstack.status.last_error_at IS 'When it failed.';
COMMENT ON COLUMN embedstack.status.view IS 'The served view (in the source''s schema): query it joined to the source.';
COMMENT ON COLUMN embedstack.status.served_generation IS 'The generation the view reads.';
COMMENT ON COLUMN embedstack.status.previous_fit IS 'What rollback would serve: this fit ...';
COMMENT ON COLUMN embedstack.status.previous_generation IS '... from this generation.';
COMMENT ON COLUMN embedstack.status.held_since IS 'Since when a rollback holds the model set (refits keep the served fit until embedstack.release); NULL: not held.';
COMMENT ON COLUMN embedstack.status.held_reason IS 'Which rollback holds it.';
COMMENT ON COLUMN embedstack.status.retained_generations IS 'Generations kept besides the served one: what rollback(..., to_fit => id) can serve at once.';
COMMENT ON TABLE embedstack.jobs IS
  'One row per materialize / refit call: progress committed with each batch, outcome, error. '
  'Trimmed to embedstack.keep_history rows per model set; not dumped.';
COMMENT ON COLUMN embedstack.jobs.id IS 'Job id.';
COMMENT ON COLUMN embedstack.jobs.model_set IS 'The model set.';
COMMENT ON COLUMN embedstack.jobs.kind IS 'materialize or refit.';
COMMENT ON COLUMN embedstack.jobs.params IS 'Arguments of the call.';
COMMENT ON COLUMN embedstack.jobs.fit_id IS 'The fit being materialised (for a refit: the new fit, once made).';
COMMENT ON COLUMN embedstack.jobs.phase IS 'fit, prepare, write, index, wait (for transactions older than the new generation), cutover, done.';
COMMENT ON COLUMN embedstack.jobs.rows_done IS 'Rows written into the generation so far (committed batches).';
COMMENT ON COLUMN embedstack.jobs.rows_total IS 'Rows of the source table when the job started writing.';
COMMENT ON COLUMN embedstack.jobs.cursor_key IS 'Key of the last row of the last committed batch (text).';
COMMENT ON COLUMN embedstack.jobs.index_name IS 'The HNSW index of the generation being written.';
COMMENT ON COLUMN embedstack.jobs.generation IS 'The generation the job writes (embedstack.generations.id).';
COMMENT ON COLUMN embedstack.jobs.state IS 'running, succeeded, kept (refit decided not to cut over), failed, interrupted (its session ended).';
COMMENT ON COLUMN embedstack.jobs.outcome IS 'What the job did or decided, in words.';
COMMENT ON COLUMN embedstack.jobs.details IS 'Refit decision: holdout_pairs, new_mse, active_fit, active_mse, decision.';
COMMENT ON COLUMN embedstack.jobs.error IS 'A failed job''s error: sqlstate, message, detail, hint, context.';
COMMENT ON COLUMN embedstack.jobs.pid IS 'Backend that ran the job.';
COMMENT ON COLUMN embedstack.jobs.resumed_from IS 'The interrupted job this one continued.';
COMMENT ON COLUMN embedstack.jobs.started_at IS 'When the job started.';
COMMENT ON COLUMN embedstack.jobs.updated_at IS 'Last committed progress.';
COMMENT ON COLUMN embedstack.jobs.finished_at IS 'When it ended.';
COMMENT ON FUNCTION embedstack.prediction_mse(double precision[], double precision[], double precision) IS
  'Weighted mean squared error of intercept + weights . x over the rows a regression state summarises, exact '
  'from the state (no scan); NULL for an empty state. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack._check_owner(regclass) IS
  'Internal: 42501 unless both the current role and the session''s outer role are members of the table''s owner.';
COMMENT ON FUNCTION embedstack._may_read(regclass) IS
  'Internal: whether the current role may read the table (SELECT on it or a column, and not subject to its row security; or owner); '
  'the catalog''s row security for reads uses it.';
COMMENT ON FUNCTION embedstack._may_write(regclass) IS
  'Internal: whether the current role and the session''s outer role both own the table (not a temporary one); '
  'the catalog''s row security for writes uses it.';
COMMENT ON FUNCTION embedstack._job_lock(integer, boolean) IS 'Internal: takes a model set''s job lock (session advisory lock released on abort).';
COMMENT ON FUNCTION embedstack._job_unlock(integer) IS 'Internal: releases a model set''s job lock.';
COMMENT ON FUNCTION embedstack._require_no_transaction_block(text) IS
  'Internal: 2D000 with a hint when materialize or refit is called inside a transaction block (they commit per step).';
COMMENT ON FUNCTION embedstack._keep_history() IS 'Internal: the value of embedstack.keep_history.';
COMMENT ON FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): inserts a model set.';
COMMENT ON FUNCTION embedstack._w_delete_model_set(text) IS 'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): deletes a model set.';
COMMENT ON FUNCTION embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): records a fit and trims the history.';
COMMENT ON FUNCTION embedstack._w_insert_generation(text, bigint, double precision[], text, integer) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): registers a generation being written.';
COMMENT ON FUNCTION embedstack._w_generation_set(text, bigint, regclass, name, text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a generation''s table, index or progress.';
COMMENT ON FUNCTION embedstack._w_delete_generation(text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): forgets a generation.';
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): the served fit and generation.';
COMMENT ON FUNCTION embedstack._w_job_start(text, text, jsonb, text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): starts a job.';
COMMENT ON FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a job''s progress.';
COMMENT ON FUNCTION embedstack._w_job_finish(bigint, text, text, jsonb) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a job''s end.';
COMMENT ON FUNCTION embedstack._record_fit(text, double precision[], double precision, boolean, jsonb, jsonb) IS
  'Internal: solves a state and records it as a fit.';
COMMENT ON FUNCTION embedstack._derived_name(text, text, text) IS
  'Internal: a name for an object the extension creates, unique by construction (hash suffix when long or asked for).';
COMMENT ON FUNCTION embedstack._column(regclass, name) IS 'Internal: attnum, type and typmod of a column, or 42703.';
COMMENT ON FUNCTION embedstack._vector_schema() IS 'Internal: schema of the vector extension.';
COMMENT ON FUNCTION embedstack._model_set(text) IS 'Internal: a model set''s catalog row, or 42704.';
COMMENT ON FUNCTION embedstack._trigger_name(text) IS 'Internal: name of the row trigger releases 0.1-0.2 installed.';
COMMENT ON FUNCTION embedstack._trigger_names(text) IS 'Internal: names of a model set''s four freshness triggers.';
COMMENT ON FUNCTION embedstack._own_trigger(regclass, text, name) IS
  'Internal: is this trigger on the source the model set''s own (extension function, model set argument)?';
COMMENT ON FUNCTION embedstack._drop_triggers(embedstack.model_sets) IS 'Internal: drops a model set''s freshness triggers.';
COMMENT ON FUNCTION embedstack._served_view_name(name, text) IS 'Internal: the default served view name, <source>_<model set>.';
COMMENT ON FUNCTION embedstack._w_hold(text, text) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): holds a model set (a '
  'rollback) or releases it (reason NULL).';
