-- embedstack 0.4.1 -> 0.5.0 (issue 21): learned projections (create_model_set(dims => N)), explain and the
-- ablation of evaluate. Only what changed since 0.4.1, each change commented; checked by
-- scripts/upgrade-delta.py --check and the upgrade-equals-fresh-install test.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.5.0'" to load this file. \quit

-- Catalog (tables first: the view and the SQL functions below read the new columns).
-- model_sets.projection_dims: create_model_set's dims (NULL: never projected).
ALTER TABLE embedstack.model_sets ADD COLUMN projection_dims integer CHECK (projection_dims BETWEEN 1 AND 4000);
-- generations.projection: the learned projection a generation's vectors are stored with.
ALTER TABLE embedstack.generations ADD COLUMN projection bigint;
GRANT INSERT (projection), UPDATE (projection) ON embedstack.generations TO PUBLIC;

-- The learned projections, as sql/projection.sql creates them.
CREATE TABLE embedstack.projections (
    id             bigserial PRIMARY KEY,
    model_set      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The stored layout it maps: per-model multipliers (0 = model left out) and the width of
    -- the unprojected vector.
    multipliers    double precision[] NOT NULL,
    input_width    integer NOT NULL CHECK (input_width >= 1),
    dims           integer NOT NULL CHECK (dims BETWEEN 1 AND 4000),
    -- dims rows of input_width values, row j = output coordinate j (orthonormal rows).
    basis          real[] NOT NULL,
    -- Variance of the served vectors along each row, its sum over the total (the share of the
    -- unprojected vectors' variance the projection keeps), and the rows it was learned from.
    eigenvalues    double precision[] NOT NULL,
    variance_kept  double precision NOT NULL CHECK (variance_kept BETWEEN 0 AND 1),
    total_variance double precision NOT NULL,
    sample_rows    bigint NOT NULL,
    source_rows    bigint NOT NULL
);
CREATE INDEX projections_model_set_idx ON embedstack.projections (model_set, id);
SELECT pg_catalog.pg_extension_config_dump('embedstack.projections', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.projections_id_seq', '');
COMMENT ON TABLE embedstack.projections IS
  'Learned projections of model sets created with dims: the basis a generation''s vectors are projected with '
  '(generations.projection), learned from the source''s rows; written once, dumped with the catalog.';

-- Read by the roles that see the model set (a basis is derived from the source's rows), written
-- by the owners of its source, as the other catalog tables (catalog_access.sql). Inserted and
-- deleted, never updated: a generation's vectors were projected with exactly these values.
ALTER TABLE embedstack.projections ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.projections FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
CREATE POLICY writers_own_the_source ON embedstack.projections FOR ALL
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m
                    WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)))
    WITH CHECK (EXISTS (SELECT 1 FROM embedstack.model_sets m
                         WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)));
COMMENT ON POLICY readers_of_the_source ON embedstack.projections IS
  'A projection is visible to the roles that see its model set.';
COMMENT ON POLICY writers_own_the_source ON embedstack.projections IS
  'A projection is written by the owners of its model set''s source table.';
REVOKE ALL ON embedstack.projections FROM PUBLIC;
GRANT SELECT, DELETE ON embedstack.projections TO PUBLIC;
GRANT INSERT (model_set, created_at, multipliers, input_width, dims, basis, eigenvalues, variance_kept, total_variance,
              sample_rows, source_rows)
   ON embedstack.projections TO PUBLIC;
GRANT USAGE, SELECT ON SEQUENCE embedstack.projections_id_seq TO PUBLIC;


-- create_model_set gains a trailing parameter dims (the served width of a learned projection): the old signature is dropped, the new one created below.
DROP FUNCTION embedstack.create_model_set(text,regclass,name,name[],text,double precision,name,text,integer[],name);

-- evaluate gains a trailing parameter ablation: the old signature is dropped, the new one created below.
DROP FUNCTION embedstack.evaluate(text,regclass,text,text,text,bigint);

-- a model set's learned projections are deleted with it.
CREATE OR REPLACE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.generations g WHERE g.model_set = _w_delete_model_set.model_set;
    DELETE FROM embedstack.projections p WHERE p.model_set = _w_delete_model_set.model_set;   -- 0.5.0
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

-- a generation's learned projection is deleted with it unless another generation uses it.
CREATE OR REPLACE FUNCTION embedstack._w_delete_generation(model_set text, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    WITH gone AS (DELETE FROM embedstack.generations g WHERE g.id = generation AND g.model_set = _w_delete_generation.model_set
                  RETURNING g.projection)
    -- Its learned projection goes with it (0.5.0), unless another generation stores vectors with it.
    DELETE FROM embedstack.projections p USING gone
     WHERE p.id = gone.projection AND p.model_set = _w_delete_generation.model_set
       AND NOT EXISTS (SELECT 1 FROM embedstack.generations x WHERE x.projection = p.id AND x.id <> generation);
    UPDATE embedstack.model_sets m SET previous_fit = NULL, previous_generation = NULL
     WHERE m.name = _w_delete_generation.model_set AND m.previous_generation = generation;
END $$;

-- the basis of a learned projection from a covariance_stats state (src/model_set/projection.rs).
CREATE  FUNCTION "_fit_projection"(
	"state" double precision[], /* Array < '_, f64 > */
	"multipliers" double precision[], /* Array < '_, f64 > */
	"dims" INT, /* i32 */
	"seed" bigint /* i64 */
) RETURNS TABLE (
	"basis" real[],  /* Vec < f32 > */
	"eigenvalues" double precision[],  /* Vec < f64 > */
	"variance_kept" double precision,  /* f64 */
	"total_variance" double precision,  /* f64 */
	"sample_rows" bigint  /* i64 */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_fit_projection_wrapper';
COMMENT ON FUNCTION embedstack._fit_projection(double precision[], double precision[], integer, bigint) IS
  'Internal: the learned projection of a stored layout (multipliers) onto dims dimensions from a covariance_stats '
  'state: basis rows, variances, variance kept, total variance, rows.';

-- covariance_stats, the mergeable aggregate of the source's rows a projection is learned from.
CREATE FUNCTION embedstack._covariance_accum(internal, model_dims integer[], VARIADIC "any") RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_accum';
COMMENT ON FUNCTION embedstack._covariance_accum(internal, integer[], "any") IS
  'Internal: transition function of embedstack.covariance_stats.';

-- covariance_stats: combine function (parallel aggregation, partial aggregation on Citus workers).
CREATE FUNCTION embedstack._covariance_combine(internal, internal) RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_combine';
COMMENT ON FUNCTION embedstack._covariance_combine(internal, internal) IS
  'Internal: combine function of embedstack.covariance_stats.';

-- covariance_stats: serial function.
CREATE FUNCTION embedstack._covariance_serialize(internal) RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_serialize';
COMMENT ON FUNCTION embedstack._covariance_serialize(internal) IS
  'Internal: serial function of embedstack.covariance_stats.';

-- covariance_stats: deserial function.
CREATE FUNCTION embedstack._covariance_deserialize(bytea, internal) RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_deserialize';
COMMENT ON FUNCTION embedstack._covariance_deserialize(bytea, internal) IS
  'Internal: deserial function of embedstack.covariance_stats.';

-- covariance_stats: final function (the float8[] state).
CREATE FUNCTION embedstack._covariance_final(internal) RETURNS double precision[]
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_final';
COMMENT ON FUNCTION embedstack._covariance_final(internal) IS
  'Internal: final function of embedstack.covariance_stats.';

-- the covariance aggregate itself.
CREATE AGGREGATE embedstack.covariance_stats(model_dims integer[], VARIADIC "any") (
    SFUNC = embedstack._covariance_accum,
    STYPE = internal,
    FINALFUNC = embedstack._covariance_final,
    FINALFUNC_MODIFY = READ_WRITE,
    COMBINEFUNC = embedstack._covariance_combine,
    SERIALFUNC = embedstack._covariance_serialize,
    DESERIALFUNC = embedstack._covariance_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE embedstack.covariance_stats(integer[], "any") IS
  'Second-order statistics of rows of model vectors (model_dims, then one vector, real[] or double precision[] per '
  'model; NULL = missing): row count, sum and packed sum of outer products of the unit-normalised concatenation, '
  'as float8[]. NULL over no rows; a row with NULL model_dims is skipped.';

-- row kernel of projected generations (vector).
CREATE FUNCTION embedstack._project_vector(projection bigint, multipliers double precision[], dims integer[],
    columns text[], VARIADIC "any")
RETURNS vector LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_project_vector';
COMMENT ON FUNCTION embedstack._project_vector(bigint, double precision[], integer[], text[], "any") IS
  'Internal row kernel: the combined vector of one row projected onto a learned projection''s basis.';

-- row kernel of projected generations (halfvec).
CREATE FUNCTION embedstack._project_halfvec(projection bigint, multipliers double precision[], dims integer[],
    columns text[], VARIADIC "any")
RETURNS halfvec LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_project_halfvec';
COMMENT ON FUNCTION embedstack._project_halfvec(bigint, double precision[], integer[], text[], "any") IS
  'Internal row kernel: as _project_vector, as halfvec.';

-- the served width before projection (decides whether a fit is served projected).
CREATE FUNCTION embedstack._unprojected_width(ms embedstack.model_sets, multipliers double precision[]) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(d), 0)::integer FROM unnest(ms.model_dims, multipliers) u(d, m) WHERE m <> 0
$$;
COMMENT ON FUNCTION embedstack._unprojected_width(embedstack.model_sets, double precision[]) IS
  'Internal: the width of the served vector of a stored layout before projection.';

-- the model columns of a model set qualified with an alias, in order (covariance_stats' and the kernels' arguments).
CREATE FUNCTION embedstack._model_column_list(ms embedstack.model_sets, alias text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format('%I.%I', alias, c), ', ' ORDER BY o) FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)
$$;
COMMENT ON FUNCTION embedstack._model_column_list(embedstack.model_sets, text) IS
  'Internal: the model columns of a model set, qualified with an alias, in order.';

-- learns and records a projection from a sample of the source when a projected generation is created.
CREATE FUNCTION embedstack._learn_projection(ms embedstack.model_sets, multipliers double precision[], seed bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    total bigint;
    pct double precision;
    st double precision[];
    f record;
    id bigint;
    sample constant bigint := 10000;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO total;
    pct := least(100.0, 100.0 * sample / greatest(total, 1));
    -- BERNOULLI reads every page but detoasts only the sampled rows' vectors.
    EXECUTE format('SELECT embedstack.covariance_stats(%L::int4[], %s) FROM %s s%s', ms.model_dims,
                   embedstack._model_column_list(ms, 's'), ms.source, CASE WHEN pct < 100 THEN format(' TABLESAMPLE BERNOULLI (%s) REPEATABLE (%s)', pct, seed) ELSE '' END)
       INTO st;
    IF st IS NULL THEN
        RAISE EXCEPTION 'model set "%": % has no rows to learn a projection from', ms.name, ms.source
            USING ERRCODE = '55000', HINT = 'insert rows first, or create the model set without dims';
    END IF;
    SELECT * INTO f FROM embedstack._fit_projection(st, multipliers, ms.projection_dims, seed);
    id := embedstack._w_insert_projection(ms.name, multipliers, embedstack._unprojected_width(ms, multipliers),
                                          ms.projection_dims, f.basis, f.eigenvalues, f.variance_kept,
                                          f.total_variance, f.sample_rows, total);
    RETURN id;
END $$;
COMMENT ON FUNCTION embedstack._learn_projection(embedstack.model_sets, double precision[], bigint) IS
  'Internal: learns and records the projection of a stored layout from a sample of the source''s rows.';

-- catalog writer of embedstack.projections.
CREATE FUNCTION embedstack._w_insert_projection(model_set text, multipliers double precision[], input_width integer,
    dims integer, basis real[], eigenvalues double precision[], variance_kept double precision,
    total_variance double precision, sample_rows bigint, source_rows bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    INSERT INTO embedstack.projections AS p (model_set, multipliers, input_width, dims, basis, eigenvalues, variance_kept,
                                            total_variance, sample_rows, source_rows)
    VALUES (model_set, multipliers, input_width, dims, basis, eigenvalues, variance_kept, total_variance, sample_rows,
            source_rows)
    RETURNING p.id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION embedstack._w_insert_projection(text, double precision[], integer, integer, real[], double precision[],
    double precision, double precision, bigint, bigint) IS
  'Internal catalog writer: records a learned projection of a model set the caller owns.';

-- catalog writer: the projection a generation is stored with.
CREATE FUNCTION embedstack._w_generation_projection(model_set text, generation bigint, projection bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g SET projection = _w_generation_projection.projection
     WHERE g.id = generation AND g.model_set = _w_generation_projection.model_set;
END $$;
COMMENT ON FUNCTION embedstack._w_generation_projection(text, bigint, bigint) IS
  'Internal catalog writer: records the projection a generation''s vectors are stored with.';

-- catalog writer: create_model_set's dims.
CREATE FUNCTION embedstack._w_model_set_dims(model_set text, dims integer) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.model_sets m SET projection_dims = dims WHERE m.name = _w_model_set_dims.model_set;
END $$;
COMMENT ON FUNCTION embedstack._w_model_set_dims(text, integer) IS
  'Internal catalog writer: the number of served dimensions of a model set created with dims.';

-- the Spearman of the served (projected) and the fitted scores on the fit's pairs, measured at the cut-over.
CREATE FUNCTION embedstack._served_check(ms embedstack.model_sets, fit_id bigint) RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f embedstack.fits;
    pairs regclass;
    si record := embedstack._source_info(ms);
    vnsp name := embedstack._vector_schema();
    kt text := (SELECT format('%I.%I', n.nspname, t.typname) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE a.attrelid = ms.source AND a.attname = ms.key_column AND NOT a.attisdropped);
    fitted text;
    n bigint;
    rho double precision;
    r record;
    x double precision;
    served double precision[] := '{}';
    predicted double precision[] := '{}';
    cols text;
    train text := '';
BEGIN
    SELECT * INTO f FROM embedstack.fits x WHERE x.id = fit_id AND x.model_set = ms.name;
    SELECT c.oid::regclass INTO pairs FROM pg_class c WHERE c.oid = (f.training_source->>'pairs_oid')::oid;
    IF pairs IS NULL OR NOT has_table_privilege(pairs, 'SELECT')
       OR (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = pairs AND NOT a.attisdropped AND a.attnum > 0
              AND a.attname IN (f.training_source->>'left', f.training_source->>'right')) <> 2 THEN
        RETURN NULL;
    END IF;
    SELECT format('%s::float8 + %s', f.intercept,
                  string_agg(format('%s::float8 * embedstack.cosine(a.%I, b.%I)', w, c, c), ' + ' ORDER BY o))
      INTO fitted FROM unnest(ms.model_columns, f.weights) WITH ORDINALITY u(c, w, o);
    -- A refit trained on the pairs outside its held-out share (refit.sql): the same pairs here.
    IF f.training_source->>'split' = 'train' AND (f.training_source->>'holdout_fraction')::float8 > 0 THEN
        train := format('WHERE NOT embedstack._in_holdout(p.%I::text, p.%I::text, %L)', f.training_source->>'left',
                        f.training_source->>'right', f.training_source->>'holdout_fraction');
    END IF;
    IF embedstack._distributed_on(ms.source) IS NOT NULL THEN
        -- A distributed (Citus) source: the rows of the pairs' keys and b's served vectors are
        -- read on the shards (materialised CTEs, by key arrays), joined on the coordinator;
        -- query_vector runs here, pair by pair, never inside a query Citus might ship to a
        -- worker (the workers have no catalog).
        cols := embedstack._model_column_list(ms, 's');
        FOR r IN EXECUTE format(
            'WITH p AS MATERIALIZED (SELECT p.%1$I::%2$s AS a, p.%3$I::%2$s AS b FROM %4$s p %13$s LIMIT 2000),
                  ra AS MATERIALIZED (SELECT s.%5$I, %6$s FROM %7$s s WHERE s.%5$I %8$s ANY (ARRAY(SELECT p.a FROM p))),
                  rb AS MATERIALIZED (SELECT s.%5$I, %6$s FROM %7$s s WHERE s.%5$I %8$s ANY (ARRAY(SELECT p.b FROM p))),
                  vb AS MATERIALIZED (SELECT s.%5$I, s.%9$I FROM %10$I.%11$I s WHERE s.%5$I %8$s ANY (ARRAY(SELECT p.b FROM p)))
             SELECT p.a, v.%9$I AS c, %12$s AS f FROM p JOIN ra a ON a.%5$I %8$s p.a JOIN rb b ON b.%5$I %8$s p.b
               JOIN vb v ON v.%5$I %8$s p.b',
            f.training_source->>'left', kt, f.training_source->>'right', pairs, ms.key_column, cols, ms.source,
            si.key_eq, ms.combined_column, si.nsp, ms.view_name, fitted, train) LOOP
            CONTINUE WHEN r.f IS NULL;
            EXECUTE format('SELECT (embedstack.query_vector($1, $2) OPERATOR(%1$I.<#>) $3::%1$I.vector)::float8 * -1', vnsp)
               INTO x USING ms.name, r.a, r.c;
            served := served || x;
            predicted := predicted || r.f;
        END LOOP;
        SELECT count(*), corr(q.rs, q.rf) INTO n, rho FROM (
            SELECT rank() OVER (ORDER BY u.sv) + (count(*) OVER (PARTITION BY u.sv) - 1) / 2.0 AS rs,
                   rank() OVER (ORDER BY u.pr) + (count(*) OVER (PARTITION BY u.pr) - 1) / 2.0 AS rf
              FROM unnest(served, predicted) u(sv, pr)) q;
        RETURN jsonb_build_object('served_spearman', rho, 'pairs_checked', n);
    END IF;
    EXECUTE format(
        'SELECT count(*), corr(rs, rf) FROM (
           SELECT rank() OVER (ORDER BY s) + (count(*) OVER (PARTITION BY s) - 1) / 2.0 AS rs,
                  rank() OVER (ORDER BY f) + (count(*) OVER (PARTITION BY f) - 1) / 2.0 AS rf
             FROM (SELECT (embedstack.query_vector(%2$L, p.%3$I::%4$s) OPERATOR(%1$I.<#>) v.%5$I::%1$I.vector)::float8 * -1 AS s,
                          %6$s AS f
                     FROM (SELECT * FROM %7$s p %14$s LIMIT 2000) p
                     JOIN %8$s a ON a.%9$I %10$s p.%3$I::%4$s
                     JOIN %8$s b ON b.%9$I %10$s p.%11$I::%4$s
                     JOIN %12$I.%13$I v ON v.%9$I %10$s p.%11$I::%4$s
                   OFFSET 0) x  -- (not flattened: query_vector only for pairs whose rows exist)
            WHERE f IS NOT NULL) r',
        vnsp, ms.name, f.training_source->>'left', kt, ms.combined_column, fitted, pairs, ms.source, ms.key_column,
        si.key_eq, f.training_source->>'right', si.nsp, ms.view_name, train)
       INTO n, rho;
    RETURN jsonb_build_object('served_spearman', rho, 'pairs_checked', n);
END $$;
COMMENT ON FUNCTION embedstack._served_check(embedstack.model_sets, bigint) IS
  'Internal: Spearman between the served (projected) score and the fit''s prediction on up to 2,000 of the fit''s pairs.';

-- create_model_set with dims; a query-weighted set too wide to index is refused with a HINT naming dims, a symmetric one warned.
CREATE FUNCTION embedstack.create_model_set(
    name text,
    source regclass,
    key_column name,
    model_columns name[],
    mode text DEFAULT 'symmetric',
    threshold double precision DEFAULT 0.05,
    combined_column name DEFAULT NULL,
    storage text DEFAULT 'auto',
    model_dims integer[] DEFAULT NULL,
    view_name name DEFAULT NULL,
    dims integer DEFAULT NULL)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    v_relkind "char";
    v_col record;
    v_key record;
    v_dims integer[] := '{}';
    v_types regtype[] := '{}';
    v_dim integer;
    v_bad bigint;
    v_typname pg_catalog.name;
    v_combined pg_catalog.name;
    v_view pg_catalog.name;
    v_nsp pg_catalog.name;
    v_vnsp pg_catalog.name := embedstack._vector_schema();
BEGIN
    IF name IS NULL OR source IS NULL OR key_column IS NULL OR model_columns IS NULL
       OR mode IS NULL OR threshold IS NULL OR storage IS NULL THEN
        RAISE EXCEPTION 'name, source, key_column, model_columns, mode, threshold and storage must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 63 THEN
        RAISE EXCEPTION 'model set name must have 1 to 63 bytes, got %', octet_length(name) USING ERRCODE = '22023';
    END IF;
    IF embedstack._model_set_exists(name) THEN
        RAISE EXCEPTION 'model set "%" already exists', name USING ERRCODE = '42710';
    END IF;
    IF mode NOT IN ('symmetric', 'query_weighted') THEN
        RAISE EXCEPTION 'unknown mode "%"', mode USING ERRCODE = '22023',
            HINT = 'mode is ''symmetric'' (weighted stored vectors) or ''query_weighted'' (weights on the query side only)';
    END IF;
    IF NOT (threshold >= 0 AND threshold < 1) THEN
        RAISE EXCEPTION 'threshold must be in [0, 1), got %', threshold USING ERRCODE = '22023';
    END IF;
    IF storage NOT IN ('auto', 'vector', 'halfvec') THEN
        RAISE EXCEPTION 'unknown storage "%"', storage USING ERRCODE = '22023',
            HINT = 'storage is ''auto'' (vector up to 2000 dimensions, halfvec up to 4000), ''vector'' or ''halfvec''';
    END IF;
    -- dims (0.5.0): the served vector's width when the models' is larger (a learned projection).
    IF dims IS NOT NULL AND NOT (dims BETWEEN 1 AND CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END) THEN
        RAISE EXCEPTION 'dims must be between 1 and % for storage ''%'', got %', CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END,
            storage, dims USING ERRCODE = '22023',
            HINT = 'pgvector indexes up to 2000 dimensions of vector and 4000 of halfvec (storage => ''auto'' picks halfvec above 2000)';
    END IF;
    PERFORM embedstack._check_owner(source);
    SELECT c.relkind INTO v_relkind FROM pg_class c WHERE c.oid = source;
    IF v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', source USING ERRCODE = '42809';
    END IF;
    PERFORM embedstack._check_source_shape(source);
    -- A model set outlives the session; a temporary table does not (and its model set could
    -- never be dropped by anyone afterwards).
    IF (SELECT c.relpersistence FROM pg_class c WHERE c.oid = source) = 't' THEN
        RAISE EXCEPTION '% is a temporary table', source USING ERRCODE = '0A000',
            HINT = 'a model set outlives the session: use a permanent (or unlogged) table';
    END IF;
    IF cardinality(model_columns) < 1 OR array_position(model_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'model_columns must name at least one column and contain no NULL' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT c) FROM unnest(model_columns) c) <> cardinality(model_columns)
       OR key_column = ANY (model_columns) THEN
        RAISE EXCEPTION 'column "%" appears twice among the key and model columns',
            (SELECT c FROM unnest(key_column || model_columns) c GROUP BY c HAVING count(*) > 1 LIMIT 1)
            USING ERRCODE = '42701', HINT = 'name each model column once, and not the key';
    END IF;
    IF view_name IS NOT NULL AND position('.' IN view_name) > 0 THEN
        RAISE EXCEPTION 'view_name "%" contains a dot: it is the name of the served view in the source''s schema', view_name
            USING ERRCODE = '42602', HINT = 'pass the bare name (the view is created next to the source table)';
    END IF;
    IF model_dims IS NOT NULL AND cardinality(model_dims) <> cardinality(model_columns) THEN
        RAISE EXCEPTION 'model_dims has % entries for % model columns', cardinality(model_dims), cardinality(model_columns)
            USING ERRCODE = '22023';
    END IF;

    -- A Citus source: hash-distributed on its key (the generations are co-located with it).
    IF embedstack._distributed_on(source) IS DISTINCT FROM key_column AND embedstack._distributed_on(source) IS NOT NULL THEN
        RAISE EXCEPTION '% is distributed on column "%", not on its key "%"', source, embedstack._distributed_on(source),
            key_column USING ERRCODE = '0A000',
            HINT = 'the served vectors are co-located with the source by its key: distribute the table by its key column';
    END IF;
    -- The key: a NOT NULL column with a single-column unique index (the batches and the
    -- item-to-item query look rows up by it).
    SELECT * INTO v_key FROM embedstack._column(source, key_column);
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = v_key.attnum
         WHERE i.indrelid = source AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
           AND i.indkey[0] = v_key.attnum AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull) THEN
        RAISE EXCEPTION 'key column "%" of % is not a NOT NULL column with a unique index', key_column, source
            USING ERRCODE = '42P10', HINT = 'use the primary key, or add a unique index and NOT NULL on the column';
    END IF;

    FOR i IN 1 .. cardinality(model_columns) LOOP
        SELECT * INTO v_col FROM embedstack._column(source, model_columns[i]);
        SELECT t.typname INTO v_typname FROM pg_type t WHERE t.oid = v_col.typid;
        IF v_typname NOT IN ('vector', '_float4', '_float8')
           OR (v_typname = 'vector' AND (SELECT t.typnamespace FROM pg_type t WHERE t.oid = v_col.typid)
                                         <> (SELECT oid FROM pg_namespace WHERE nspname = v_vnsp)) THEN
            RAISE EXCEPTION 'column "%" of % has type %', model_columns[i], source, format_type(v_col.typid, v_col.typmod)
                USING ERRCODE = '42804', HINT = 'model columns must be vector(n), real[] or double precision[]';
        END IF;
        v_dim := NULL;
        IF v_typname = 'vector' AND v_col.typmod > 0 THEN
            v_dim := v_col.typmod;
            IF model_dims[i] IS NOT NULL AND model_dims[i] <> v_dim THEN
                RAISE EXCEPTION 'model_dims[%] is % but column "%" is %', i, model_dims[i], model_columns[i],
                    format_type(v_col.typid, v_col.typmod) USING ERRCODE = '22023';
            END IF;
        ELSIF model_dims[i] IS NOT NULL THEN
            v_dim := model_dims[i];
        ELSE
            -- Discovered from the first row that has a value; rows that disagree are
            -- reported (22000, naming their key) when they are read.
            EXECUTE format(CASE WHEN v_typname = 'vector' THEN 'SELECT %3$I.vector_dims(%1$I) FROM %2$s WHERE %1$I IS NOT NULL LIMIT 1'
                                ELSE 'SELECT cardinality(%1$I) FROM %2$s WHERE %1$I IS NOT NULL LIMIT 1' END,
                           model_columns[i], source, v_vnsp) INTO v_dim;
            IF v_dim IS NULL THEN
                RAISE EXCEPTION 'cannot discover the dimension of column "%": it has no values yet', model_columns[i]
                    USING ERRCODE = '22023', HINT = 'declare it as vector(n) or pass model_dims';
            END IF;
            -- Every row must agree with the first (0.3.0 took the first row's dimension silently, and
            -- each fit then failed on one bad row at a time).
            EXECUTE format(CASE WHEN v_typname = 'vector' THEN 'SELECT count(*) FROM %2$s WHERE %3$I.vector_dims(%1$I) <> %4$s'
                                ELSE 'SELECT count(*) FROM %2$s WHERE cardinality(%1$I) <> %4$s' END,
                           model_columns[i], source, v_vnsp, v_dim) INTO v_bad;
            IF v_bad > 0 THEN
                RAISE EXCEPTION 'column "%" of % has % rows whose dimension is not % (the dimension of its first row)',
                    model_columns[i], source, v_bad, v_dim USING ERRCODE = '22000',
                    HINT = format(CASE WHEN v_typname = 'vector'
                                       THEN 'SELECT %1$I, %4$I.vector_dims(%2$I) FROM %3$s WHERE %4$I.vector_dims(%2$I) <> %5$s lists them'
                                       ELSE 'SELECT %1$I, cardinality(%2$I) FROM %3$s WHERE cardinality(%2$I) <> %5$s lists them' END,
                                  key_column, model_columns[i], source, v_vnsp, v_dim)
                           || '; fix them (or set them NULL), or pass model_dims with the right dimension';
            END IF;
        END IF;
        IF v_dim < 1 OR v_dim > 16000 THEN
            RAISE EXCEPTION 'column "%" has % dimensions; a model has 1 to 16000', model_columns[i], v_dim
                USING ERRCODE = '22023';
        END IF;
        v_dims := v_dims || v_dim;
        v_types := v_types || v_col.typid::regtype;
    END LOOP;

    -- Query-weighted: every model is stored (multipliers all 1), so the width is known now; a set
    -- pgvector cannot index is refused here, not at the first materialise (P8).
    IF mode = 'query_weighted' AND dims IS NULL AND (SELECT sum(d) FROM unnest(v_dims) d)
                                   > (CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END) THEN
        RAISE EXCEPTION 'the combined vector of a query-weighted model set of these models has % dimensions, more than pgvector can index as % (at most %)',
            (SELECT sum(d) FROM unnest(v_dims) d), CASE storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END USING ERRCODE = '54000',
            HINT = CASE WHEN storage = 'vector' AND (SELECT sum(d) FROM unnest(v_dims) d) <= 4000
                        THEN 'use storage => ''auto'' or ''halfvec'' (halfvec indexes up to 4000 dimensions)'
                        ELSE format('pass dims => N (at most %s) to serve a learned projection of the %s dimensions onto N; '
                                    'or leave models out, or use mode => ''symmetric'' (its threshold leaves out low-weight models)',
                                    CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END,
                                    (SELECT sum(d) FROM unnest(v_dims) d)) END;
    END IF;
    -- Symmetric: the threshold may leave models out of a fit, so a wider set is not refused; but
    -- unless the fits leave enough out it cannot be served: say so now, naming dims.
    IF mode = 'symmetric' AND dims IS NULL AND (SELECT sum(d) FROM unnest(v_dims) d)
                                              > (CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END) THEN
        RAISE WARNING 'the combined vector of these models has % dimensions, more than pgvector can index as % (at most %): '
                      'a fit is served only if its threshold leaves enough models out',
            (SELECT sum(d) FROM unnest(v_dims) d), CASE storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END
            USING HINT = format('pass dims => N (at most %s) to serve every fit as a learned projection onto N dimensions',
                                CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END);
    END IF;
    v_combined := coalesce(combined_column, embedstack._derived_name(name, 'combined'));
    IF v_combined = key_column THEN
        RAISE EXCEPTION 'combined column "%" is the key column', v_combined USING ERRCODE = '42701',
            HINT = 'the served view has two columns, the key and the combined vector: name them differently';
    END IF;
    -- The served view: <source>_<model set> in the source's schema unless named; it is created by
    -- the first materialise, the name is checked (and reserved in the catalog) now.
    SELECT c.relname, n.nspname INTO v_typname, v_nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    v_view := coalesce(view_name, embedstack._served_view_name(v_typname, name));
    IF to_regclass(format('%I.%I', v_nsp, v_view)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation %.% already exists', v_nsp, v_view USING ERRCODE = '42P07',
            HINT = 'the model set serves its vectors through a view of that name: pass another view_name';
    END IF;
    IF EXISTS (SELECT 1 FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source
                WHERE m.view_name = v_view AND c.relnamespace = (SELECT x.relnamespace FROM pg_class x WHERE x.oid = source)) THEN
        RAISE EXCEPTION 'another model set serves its vectors through %.%', v_nsp, v_view USING ERRCODE = '42P07',
            HINT = 'pass another view_name';
    END IF;

    PERFORM embedstack._w_insert_model_set(name, source, key_column, model_columns, v_dims, v_types, mode,
                              threshold, v_combined, storage, v_view);
    IF dims IS NOT NULL THEN
        PERFORM embedstack._w_model_set_dims(name, dims);
    END IF;
    RETURN embedstack._model_set(name);
END $$;
COMMENT ON FUNCTION embedstack.create_model_set(text, regclass, name, name[], text, double precision, name, text, integer[], name, integer) IS
  'Registers a model set: source table, key column (NOT NULL, single-column unique index), model columns '
  '(vector(n), real[] or double precision[]; dims from the typmod, model_dims, or the first row), mode '
  'symmetric | query_weighted, threshold, combined column name (default <name>_combined), storage, served view '
  'name (default <source>_<name>), dims (serve a wider fit as a learned projection onto dims dimensions). '
  'Errors: 42703 unknown column, 42804 wrong type, 42P10 key not unique, 42710 duplicate name, 42701/42P07 name '
  'clash, 54000 too wide to index (query-weighted, without dims).';

-- the fit records the OID of its pairs table (training_source.pairs_oid), for _served_check.
CREATE OR REPLACE FUNCTION embedstack.fit(
    model_set text,
    pairs regclass,
    left_column name,
    right_column name,
    target_column name,
    ridge double precision DEFAULT 0,
    nonnegative boolean DEFAULT false,
    sample_weight_column name DEFAULT NULL)
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    IF ridge IS NULL OR nonnegative IS NULL OR NOT (ridge >= 0) OR ridge IN ('NaN', 'Infinity') THEN
        RAISE EXCEPTION 'ridge must be a finite number >= 0 and nonnegative a boolean' USING ERRCODE = '22023';
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    RETURN embedstack._record_fit(ms.name,
        embedstack._pair_state(ms.name, pairs, left_column, right_column, target_column, sample_weight_column),
        ridge, nonnegative,
        jsonb_build_object('pairs', pairs::text, 'pairs_oid', pairs::oid, 'left', left_column, 'right', right_column,
                           'target', target_column, 'sample_weight', sample_weight_column));
END $$;

-- the stored width is dims when the fit's served vector is wider; the 54000 HINT names dims.
CREATE OR REPLACE FUNCTION embedstack._layout(model_set text, fit_id bigint,
    OUT multipliers double precision[], OUT storage text, OUT width integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    multipliers := embedstack._stored_multipliers(ms.name, fit_id);
    width := embedstack._unprojected_width(ms, multipliers);
    -- A model set created with dims serves a wider fit projected onto dims learned dimensions.
    IF width > ms.projection_dims THEN
        width := ms.projection_dims;
    END IF;
    storage := CASE
        WHEN ms.storage IN ('auto', 'vector') AND width <= 2000 THEN 'vector'
        WHEN ms.storage IN ('auto', 'halfvec') AND width <= 4000 THEN 'halfvec'
    END;
    IF storage IS NULL THEN
        RAISE EXCEPTION 'the combined vector of model set "%" would have % dimensions, more than pgvector can index as % (at most %)',
            ms.name, width, CASE ms.storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE ms.storage WHEN 'vector' THEN 2000 ELSE 4000 END
            USING ERRCODE = '54000',
            HINT = 'vector indexes up to 2000 dimensions, halfvec up to 4000: create the model set with dims => N to '
                   'serve a learned projection onto N dimensions, raise the threshold to leave out low-weight models '
                   '(symmetric mode), or drop models from the set';
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._layout(text, bigint) IS
  'Internal: the stored layout (multipliers, vector or halfvec, width after any projection) of a fit, or ERROR 54000.';

-- a live generation is reused only with the same width too (projected or not).
CREATE OR REPLACE FUNCTION embedstack._generation_for(ms embedstack.model_sets, fit_id bigint) RETURNS embedstack.generations
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.* FROM embedstack.generations g, embedstack._layout(ms.name, _generation_for.fit_id) l
     WHERE g.model_set = ms.name AND g.state IN ('served', 'retained')
       AND g.multipliers = l.multipliers AND g.storage = l.storage AND g.width = l.width
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)
     ORDER BY g.state = 'served' DESC, g.id DESC LIMIT 1
$$;

-- a projected generation is written with _project_vector/_project_halfvec and its projection's id.
CREATE OR REPLACE FUNCTION embedstack._combine_expr(ms embedstack.model_sets, g embedstack.generations, r text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    -- (a generation with a learned projection: the projecting kernel, given the projection's id)
    SELECT format('embedstack.%I(%s%L::float8[], %L::int4[], %L::text[], %I.%I, %s)',
                  CASE WHEN g.projection IS NULL THEN '_combine_' ELSE '_project_' END || g.storage,
                  CASE WHEN g.projection IS NULL THEN '' ELSE g.projection || '::int8, ' END,
                  g.multipliers, ms.model_dims, ms.model_columns::text[], r, ms.key_column,
                  (SELECT string_agg(format('%I.%I', r, c), ', ' ORDER BY o) FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)))
$$;

-- learns the projection of a new projected generation (on Citus too) and records it in the job's details.
CREATE OR REPLACE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    si record;
    lay record;
    g embedstack.generations;
    gname name;
    total bigint;
    dist name;
    note text;
    proj bigint;
    kept double precision;
    sampled bigint;
    unprojected integer;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    lay := embedstack._layout(ms.name, j.fit_id);
    si := embedstack._source_info(ms);
    -- A live generation already holds what this fit would write (always so in query-weighted
    -- mode): no rows are written (unless a refresh asks for a new generation).
    IF embedstack._is_served_view(ms) AND NOT coalesce((j.params->>'refresh')::boolean, false) THEN
        g := embedstack._generation_for(ms, j.fit_id);
        IF g.id IS NOT NULL AND g.id = ms.served_generation AND (ms.mode = 'symmetric' OR j.fit_id = ms.active_fit
               OR (SELECT f.weights = a.weights AND f.intercept = a.intercept FROM embedstack.fits f, embedstack.fits a
                    WHERE f.id = j.fit_id AND a.id = ms.active_fit)) THEN
            -- Serves exactly what is served (the same stored vectors, and in query-weighted mode the
            -- same weights): nothing changes -- no new active fit, the rollback point stays (0.3.x
            -- made the active fit the rollback point, and the real earlier fit became unreachable).
            PERFORM embedstack._w_job_update(job_id, 'done');
            PERFORM embedstack._w_job_finish(job_id, 'succeeded',
                format('fit %s serves what fit %s serves (same stored vectors and scores): nothing changed', j.fit_id, ms.active_fit));
            RAISE NOTICE 'embedstack: model set "%": fit % serves what fit % serves: nothing changed', ms.name, j.fit_id,
                ms.active_fit;
            RETURN 'done';
        ELSIF g.id IS NOT NULL AND g.id IS DISTINCT FROM ms.served_generation AND g.pending IS NOT NULL
              AND NOT embedstack._is_pending_table(ms, g) AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
            -- A retained generation of this layout whose catalog row records its keys in a relation
            -- that is not provably its pending-keys table (0.4.1; 0.4.0 indexed, emptied and dropped
            -- whatever relation the row named): what changed since it was served is not known, so
            -- it is not served again. That relation is left alone (a WARNING), the generation
            -- dropped (its own table only), and the fit written into a new generation below.
            PERFORM embedstack._drop_pending(ms, g);
            PERFORM embedstack._drop_generation(ms, g.id);
            RAISE NOTICE 'embedstack: model set "%": generation % is not reused (its recorded keys are not in a table of '
                         'its own): writing fit % anew', ms.name, g.id, j.fit_id;
        ELSIF g.id IS NOT NULL THEN
            -- A retained generation of this layout that recorded keys: brought up to date the way
            -- a new generation's index catch-up is, before the switch -- its pending table closed
            -- (writers write the generation again from then on), the writers that recorded into
            -- it waited for, then the keys applied in batches of 0.1-0.5 s, each its own
            -- transaction under SHARE on the generation -- so the switch pauses no writer for the
            -- recorded rows (it did, all of them: a scheduled refit that came back to an earlier
            -- fit paused writers 10-20 s at 20,000 rows; and writing batches while writers kept
            -- recording did not converge under load). Only a pending table that is provably the
            -- generation's (above) is read, indexed and dropped.
            IF g.id IS DISTINCT FROM ms.served_generation AND embedstack._is_pending_table(ms, g) THEN
                IF g.pending_open THEN
                    PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, false);
                    PERFORM embedstack._w_job_update(job_id, 'prepare', NULL, NULL, NULL, NULL, NULL,
                        '{"reuse_synced": false}'::jsonb);
                    RETURN 'prepare';
                END IF;
                IF NOT coalesce((j.details->>'reuse_synced')::boolean, false) THEN
                    PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;
                    EXECUTE format('CREATE INDEX ON %s (%I)', g.pending, ms.key_column);
                    PERFORM embedstack._w_job_update(job_id, 'prepare', NULL, NULL, NULL, NULL, NULL,
                        '{"reuse_synced": true}'::jsonb);
                    RETURN 'prepare';
                END IF;
                IF embedstack._pending_batch(job_id, ms, g) THEN
                    RETURN 'prepare';
                END IF;
                PERFORM embedstack._drop_pending(ms, g);
                g.pending := NULL;
            END IF;
            -- The served generation with another fit's weights (query-weighted mode), or a retained
            -- generation of this layout, brought up to date: served at once.
            PERFORM embedstack._switch_to(ms, g, j.fit_id, clock_timestamp());
            PERFORM embedstack._retain(ms.name);
            PERFORM embedstack._w_job_update(job_id, 'done');
            note := CASE WHEN j.details ? 'reuse_synced'
                         THEN format('its %s recorded rows written in batches first', coalesce((j.details->>'catchup_applied')::bigint, 0))
                         ELSE 'no rows written' END;
            PERFORM embedstack._w_job_finish(job_id, 'succeeded',
                format('serving fit %s from generation %s (it holds this layout: %s)', j.fit_id, g.id, note));
            RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (it holds this layout: %)',
                ms.name, j.fit_id, g.id, note;
            RETURN 'done';
        END IF;
        g := NULL;
    END IF;
    -- A storage type change drops and recreates the view: refuse now, not after the writing.
    IF ms.served_storage IS DISTINCT FROM lay.storage AND embedstack._is_served_view(ms) AND EXISTS (
        SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass(format('%I.%I', si.nsp, ms.view_name))
           AND r.ev_class <> d.refobjid) THEN
        RAISE EXCEPTION 'fit % stores % vectors, the served view %.% of model set "%" has %, and objects depend on it',
            j.fit_id, lay.storage, si.nsp, ms.view_name, ms.name, ms.served_storage USING ERRCODE = '2BP01',
            HINT = 'drop the views built on it and materialise again, or create the model set with a fixed storage';
    END IF;

    IF embedstack._is_served_view(ms) = false THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served view of model set "%"', si.nsp, ms.view_name, ms.name
            USING ERRCODE = '42P07',
            HINT = 'rename or drop it; if it is the model set''s view and the source table was given to another role '
                   '(ALTER TABLE ... OWNER TO), give the view and the generation tables to that role too (REASSIGN OWNED)';
    END IF;
    PERFORM embedstack._check_source_shape(ms.source);
    dist := embedstack._distributed_on(ms.source);
    IF dist IS DISTINCT FROM ms.key_column AND dist IS NOT NULL THEN
        RAISE EXCEPTION '% is distributed on column "%", not on its key "%"', ms.source, dist, ms.key_column
            USING ERRCODE = '0A000', HINT = 'distribute the table by its key column';
    END IF;

    SELECT * INTO g FROM embedstack.generations x WHERE x.model_set = ms.name AND x.state = 'building' ORDER BY x.id DESC LIMIT 1;
    IF FOUND AND (g.fit_id <> j.fit_id OR g.multipliers <> lay.multipliers OR g.storage <> lay.storage
                  OR g.width <> lay.width OR g.relation IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)) THEN
        PERFORM embedstack._drop_generation(ms, g.id);
        g := NULL;
    END IF;
    IF g.id IS NULL THEN
        g.id := embedstack._w_insert_generation(ms.name, j.fit_id, lay.multipliers, lay.storage, lay.width);
        unprojected := embedstack._unprojected_width(ms, lay.multipliers);
        IF unprojected > lay.width THEN
            -- Served projected (dims, 0.5.0): the basis is learned now, from the source's rows, and
            -- kept with the generation (on Citus too: the sampled rows are aggregated on the
            -- coordinator, and _mat_write projects there).
            proj := embedstack._learn_projection(ms, lay.multipliers, g.id);
            PERFORM embedstack._w_generation_projection(ms.name, g.id, proj);
            SELECT p.variance_kept, p.sample_rows INTO kept, sampled FROM embedstack.projections p WHERE p.id = proj;
            RAISE NOTICE 'embedstack: model set "%": projection % learned from % rows: % of % dimensions keep % of the variance',
                ms.name, proj, sampled, lay.width, unprojected, round(kept::numeric, 4);
        END IF;
        gname := embedstack._generation_name(ms, g.id);
        -- Generation ids are predictable (one sequence for the database): a name someone else
        -- took in the schema gets a random suffix instead of failing every run.
        WHILE to_regclass(format('%I.%I', si.nsp, gname)) IS NOT NULL LOOP
            gname := embedstack._derived_name(ms.view_name, 'g' || g.id || '_' || embedstack._random_hex6(), ms.view_name);
        END LOOP;
        EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL PRIMARY KEY, %I %I.%s(%s))',
                       CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END, si.nsp, gname,
                       ms.key_column, si.key_type, ms.combined_column, embedstack._vector_schema(), lay.storage, lay.width);
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, gname, si.owner);
        IF dist IS NOT NULL THEN
            PERFORM embedstack._distribute_generation(ms, format('%I.%I', si.nsp, gname)::regclass);
        END IF;
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', si.nsp, gname,
                       format('embedstack: generation %s of model set "%s" (fit %s); read it through %I.%I', g.id, ms.name,
                              j.fit_id, si.nsp, ms.view_name));
        PERFORM embedstack._w_generation_set(ms.name, g.id, format('%I.%I', si.nsp, gname)::regclass,
                                             embedstack._derived_name(gname, 'hnsw'), NULL, NULL);
        SELECT * INTO g FROM embedstack.generations x WHERE x.id = g.id;
    END IF;
    IF dist IS NULL THEN
        PERFORM embedstack._install_triggers(ms);
    ELSE
        RAISE NOTICE 'embedstack: model set "%": % is distributed (Citus): changes to it are served after the next %',
            ms.name, ms.source, format('CALL embedstack.refresh(%L)', ms.name);
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO total;
    PERFORM embedstack._w_job_update(job_id, 'write', g.rows_written, total, g.cursor_key, NULL, NULL,
                              jsonb_build_object('writers_synced', false, 'resumed_rows', g.rows_written)
                              || CASE WHEN g.projection IS NULL THEN '{}'::jsonb ELSE
                                 (SELECT jsonb_build_object('projection', p.id, 'dims', p.dims, 'unprojected_width', p.input_width,
                                                            'variance_kept', p.variance_kept, 'sample_rows', p.sample_rows)
                                    FROM embedstack.projections p WHERE p.id = g.projection) END, g.id);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into generation % (%)%', ms.name, total,
        lay.storage, lay.width, g.id, g.relation,
        CASE WHEN g.cursor_key IS NOT NULL THEN format(', resuming after %s rows', g.rows_written) ELSE '' END;
    RETURN 'write';
END $$;

-- a projected generation of a distributed (Citus) source: each batch is read on the shards and projected on the
-- coordinator (a materialised CTE), where the basis is.
CREATE OR REPLACE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
    -- The resume cursor is the last key written, as text: written and read back here only, always
    -- with these settings, so a run resumed in a session with another DateStyle, IntervalStyle,
    -- TimeZone, extra_float_digits or lc_monetary reads back exactly the key it wrote (0.3.0 used
    -- the session's: a timestamp cursor resumed under another DateStyle skipped rows, and with
    -- extra_float_digits < 0 float8 keys printed alike and the job never advanced).
    SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 3
    SET lc_monetary = 'C' SET bytea_output = 'hex' AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    si record;
    n bigint;
    last_key text;
    done bigint;
    range text;
    pulled boolean;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation AND x.model_set = ms.name;
    IF NOT FOUND OR g.relation IS NULL THEN
        RAISE EXCEPTION 'the generation job % writes is gone', job_id USING ERRCODE = '55000',
            HINT = 'CALL the procedure again: it starts a new generation';
    END IF;
    IF NOT coalesce((j.details->>'writers_synced')::boolean, true) THEN
        PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;  -- each partition: a writer aimed at one locks only it
        PERFORM embedstack._w_job_update(job_id, 'write', NULL, NULL, NULL, NULL, NULL, '{"writers_synced": true}'::jsonb);
        RETURN 'write';
    END IF;
    si := embedstack._source_info(ms);
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', g.relation);
    -- The batch's last key from the keys alone, then the key range written by one INSERT ...
    -- SELECT (a range of a distributed source is pushed down to its shards as a whole).
    EXECUTE format('SELECT count(*), (array_agg(b.k::text ORDER BY b.k DESC))[1] FROM ('
                   'SELECT s.%1$I AS k FROM %2$s s %3$s ORDER BY s.%1$I LIMIT %4$s) b',
                   ms.key_column, ms.source,
                   CASE WHEN g.cursor_key IS NULL THEN '' ELSE format('WHERE s.%I %s %L::%s', ms.key_column, si.key_gt,
                                                                      g.cursor_key, si.key_type) END,
                   (j.params->>'batch_size')::integer)
       INTO n, last_key;
    IF last_key IS NOT NULL THEN
        -- (s.key <= last_key as NOT s.key > last_key: the btree's > is named with its schema, and
        -- the planner turns the negation into its negator for the index scan.)
        range := format('WHERE %s NOT (s.%I %s %L::%s)',
                        CASE WHEN g.cursor_key IS NULL THEN ''
                             ELSE format('s.%I %s %L::%s AND', ms.key_column, si.key_gt, g.cursor_key, si.key_type) END,
                        ms.key_column, si.key_gt, last_key, si.key_type);
        pulled := g.projection IS NOT NULL AND embedstack._distributed_on(ms.source) IS NOT NULL;
        -- A projected generation of a distributed source (Citus): the batch's rows are read on
        -- the shards into the coordinator (a materialised CTE: Citus pulls it, and runs the
        -- INSERT ... SELECT over it on the coordinator), where the kernel reads the basis from
        -- embedstack.projections as the calling role; the workers have no catalog. The
        -- projected rows are routed back to the generation's shards.
        EXECUTE format('%sINSERT INTO %s (%I, %I) SELECT s.%I, %s FROM %s s %s ON CONFLICT DO NOTHING',
                       CASE WHEN pulled THEN format('WITH raw AS MATERIALIZED (SELECT s.%I, %s FROM %s s %s) ',
                                                    ms.key_column, embedstack._model_column_list(ms, 's'),
                                                    ms.source, range)
                            ELSE '' END,
                       g.relation, ms.key_column, ms.combined_column, ms.key_column, embedstack._combine_expr(ms, g, 's'),
                       CASE WHEN pulled THEN 'raw' ELSE ms.source::text END, CASE WHEN pulled THEN '' ELSE range END);
    END IF;
    IF last_key IS NULL THEN
        PERFORM embedstack._w_job_update(job_id, 'index');
        RETURN 'index';
    END IF;
    -- The batch's keys are all greater than the cursor: the same text again means the key type's
    -- text form does not tell its values apart, and the job would never advance.
    IF last_key = g.cursor_key THEN
        RAISE EXCEPTION 'model set "%": the key column "%" (%) prints two different keys alike (%), so the job cannot '
                        'remember where it stopped', ms.name, ms.key_column, si.key_type, last_key
            USING ERRCODE = '22000', HINT = 'use a key whose text form is unique (an integer, text, uuid, timestamp, ...)';
    END IF;
    done := g.rows_written + n;
    PERFORM embedstack._w_generation_set(ms.name, g.id, NULL, NULL, last_key, done);
    PERFORM embedstack._w_job_update(job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round((done - coalesce((j.details->>'resumed_rows')::bigint, 0))
              / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;

-- the job's outcome names the projection's width, the variance it keeps and the served Spearman (_served_check).
CREATE OR REPLACE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    started timestamptz;
    check_ jsonb;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    -- ACCESS EXCLUSIVE on the view waits for running queries on it, and queries queue behind a
    -- waiting lock: wait at most 50 ms per attempt (readers stall that long at worst), then let
    -- them through and try again in the next step; give up after embedstack.cutover_wait_timeout
    -- (the view is readable by PUBLIC: any role may hold a lock on it for as long as it likes).
    BEGIN
        PERFORM embedstack._point_view(ms, g, 50);
    EXCEPTION WHEN lock_not_available THEN
        started := coalesce((j.details->>'cutover_started')::timestamptz, clock_timestamp());
        IF j.details->>'cutover_started' IS NULL THEN
            RAISE NOTICE 'embedstack: model set "%": the cut-over waits for queries on its view (retrying)', ms.name;
            PERFORM embedstack._w_job_update(job_id, 'cutover', NULL, NULL, NULL, NULL, NULL,
                                             jsonb_build_object('cutover_started', started));
        END IF;
        PERFORM embedstack._give_up_locking_view(ms, started);
        PERFORM pg_sleep(0.2);
        RETURN 'cutover';
    END;
    PERFORM embedstack._w_serve(ms.name, j.fit_id, g.id);
    PERFORM embedstack._retain(ms.name);
    IF ms.served_generation IS DISTINCT FROM g.id THEN
        PERFORM embedstack._retire(ms, ms.served_generation);
    END IF;
    -- A learned projection (0.5.0): how the served ranking agrees with the fit's prediction.
    IF g.projection IS NOT NULL THEN
        check_ := embedstack._served_check(ms, j.fit_id);
    END IF;
    PERFORM embedstack._w_job_update(job_id, 'done', NULL, NULL, NULL, NULL, NULL, check_);
    PERFORM embedstack._w_job_finish(job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from generation %s (%s, %s), view %s.%I', j.fit_id, g.id, g.relation, g.storage,
                  (embedstack._source_info(ms)).nsp, ms.view_name)
        -- A learned projection (0.5.0): its width and the variance it keeps.
        || coalesce((SELECT format('; projected: %s of %s dimensions, %s of the variance kept (learned from %s rows)',
                                   p.dims, p.input_width, round(p.variance_kept::numeric, 4), p.sample_rows)
                       FROM embedstack.projections p WHERE p.id = g.projection), '')
        || coalesce(format('; Spearman of the served and the fitted scores on %s of the fit''s pairs: %s',
                           check_->>'pairs_checked', round((check_->>'served_spearman')::numeric, 4)), ''));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (%) through %.%', ms.name, j.fit_id, g.id,
        g.relation, (embedstack._source_info(ms)).nsp, ms.view_name;
    RETURN 'done';
END $$;

-- a refit's fit records the OID of its pairs table (training_source.pairs_oid), for _served_check.
CREATE OR REPLACE FUNCTION embedstack._refit_fit(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    p jsonb;
    pairs regclass;
    frac double precision;
    st_train double precision[];
    st_hold double precision[];
    f embedstack.fits;
    act embedstack.fits;
    n_hold bigint := 0;
    new_mse double precision;
    act_mse double precision;
    cut boolean;
    decision text;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    p := j.params;
    pairs := (p->>'pairs_oid')::oid::regclass;
    frac := (p->>'holdout_fraction')::double precision;
    IF to_regclass('pg_temp.embedstack_refit_train') IS NOT NULL THEN
        DROP VIEW embedstack_refit_train;
    END IF;
    IF to_regclass('pg_temp.embedstack_refit_holdout') IS NOT NULL THEN
        DROP VIEW embedstack_refit_holdout;
    END IF;
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_train AS SELECT * FROM %s p '
                   'WHERE NOT embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_holdout AS SELECT * FROM %s p '
                   'WHERE embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    st_train := embedstack._pair_state(ms.name, 'pg_temp.embedstack_refit_train'::regclass, p->>'left', p->>'right',
                                           p->>'target', p->>'sample_weight');
    IF frac > 0 THEN
        st_hold := embedstack._pair_state(ms.name, 'pg_temp.embedstack_refit_holdout'::regclass, p->>'left', p->>'right',
                                              p->>'target', p->>'sample_weight');
        n_hold := st_hold[4]::bigint;
    END IF;
    -- (Unqualified: pg_temp is on the pinned search_path, and Citus's DROP VIEW handler fails on
    -- the pg_temp. prefix.)
    DROP VIEW embedstack_refit_train, embedstack_refit_holdout;

    SELECT * INTO act FROM embedstack.fits x WHERE x.id = ms.active_fit;
    IF p->>'cutover' = 'if_not_worse' AND act.id IS NOT NULL AND n_hold = 0 THEN
        RAISE EXCEPTION 'no usable held-out pairs to compare a new fit with the active fit %', act.id
            USING ERRCODE = '22023',
            HINT = 'raise holdout_fraction (it is ' || frac || '), or pass cutover => ''always''';
    END IF;
    f := embedstack._record_fit(ms.name, st_train, (p->>'ridge')::double precision, (p->>'nonnegative')::boolean,
        jsonb_build_object('pairs', p->>'pairs', 'pairs_oid', p->'pairs_oid', 'left', p->>'left', 'right', p->>'right', 'target', p->>'target',
                           'sample_weight', p->>'sample_weight', 'holdout_fraction', frac, 'split', 'train'));
    IF n_hold > 0 THEN
        new_mse := embedstack.prediction_mse(st_hold, f.weights, f.intercept);
        IF act.id IS NOT NULL THEN
            act_mse := embedstack.prediction_mse(st_hold, act.weights, act.intercept);
        END IF;
    END IF;

    IF ms.held_since IS NOT NULL THEN
        -- A rollback holds the model set: the fit is recorded, the served one stays.
        cut := false;
        decision := format('fit %s recorded; the model set is held since %s (%s): SELECT embedstack.release(%L) ends the hold',
                           f.id, ms.held_since, ms.held_reason, ms.name);
    ELSIF p->>'cutover' = 'never' THEN
        cut := false;
        decision := format('fit %s recorded, cutover => never', f.id);
    ELSIF act.id IS NULL THEN
        cut := true;
        decision := format('fit %s: no active fit to compare with', f.id);
    ELSIF p->>'cutover' = 'always' THEN
        cut := true;
        decision := format('fit %s: cutover => always (held-out MSE on %s pairs: new %s, active fit %s %s)',
                           f.id, n_hold, coalesce(new_mse::text, '-'), act.id, coalesce(act_mse::text, '-'));
    ELSE
        cut := new_mse <= act_mse * (1 + (p->>'tolerance')::double precision);
        decision := format('held-out MSE on %s pairs: new fit %s %s, active fit %s %s', n_hold, f.id, new_mse,
                           act.id, act_mse);
    END IF;
    PERFORM embedstack._w_job_update(job_id, CASE WHEN cut THEN 'prepare' ELSE 'done' END, NULL, NULL, NULL, f.id,
        NULL, jsonb_build_object('holdout_pairs', n_hold, 'new_mse', new_mse, 'active_fit', act.id,
                                      'active_mse', act_mse, 'decision', decision));
    IF NOT cut THEN
        PERFORM embedstack._w_job_finish(job_id, 'kept', decision || '; the active fit stays');
        RAISE NOTICE 'embedstack: model set "%": %; the active fit stays', ms.name, decision;
        RETURN 'done';
    END IF;
    RAISE NOTICE 'embedstack: model set "%": %; cutting over', ms.name, decision;
    RETURN 'prepare';
END $$;

-- new columns dims, served_projection, unprojected_width, variance_kept, served_spearman (at the end).
CREATE OR REPLACE VIEW embedstack.status WITH (security_invoker = true) AS
SELECT m.name AS model_set,
       m.source,
       m.combined_column,
       m.mode,
       m.active_fit,
       af.created_at AS active_fit_created_at,
       m.served_index,
       j.id AS job_id,
       j.kind AS job_kind,
       CASE WHEN j.state = 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                 WHERE l.locktype = 'advisory' AND l.pid = j.pid AND l.granted AND l.objsubid = 2
                   AND l.classid = 1701667443::oid AND l.objid::bigint = (pg_catalog.hashtext(m.name)::bigint & 4294967295)
                   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
            THEN 'interrupted' ELSE j.state END AS job_state,
       j.phase,
       j.fit_id AS job_fit,
       j.rows_done,
       j.rows_total,
       j.started_at,
       j.updated_at,
       CASE WHEN j.rows_done > 0 AND j.updated_at > j.started_at
            THEN round(j.rows_done / extract(epoch FROM j.updated_at - j.started_at)) END AS rows_per_second,
       j.pid,
       j.outcome,
       e.error ->> 'message' AS last_error,
       e.error ->> 'sqlstate' AS last_error_sqlstate,
       e.finished_at AS last_error_at,
       m.view_name AS view,
       m.served_generation,
       m.previous_fit,
       m.previous_generation,
       m.held_since,
       m.held_reason,
       (SELECT pg_catalog.count(*) FROM embedstack.generations g WHERE g.model_set = m.name AND g.state = 'retained')
           AS retained_generations,
       -- (0.5.0) create_model_set's dims, and the learned projection of the served generation:
       -- its id, the width it maps from and the share of the variance it keeps.
       m.projection_dims AS dims,
       sp.id AS served_projection,
       sp.input_width AS unprojected_width,
       sp.variance_kept,
       -- (0.5.0) the Spearman of the served and the fitted scores on the fit's pairs, as the job
       -- that wrote the served generation measured it (_served_check).
       (SELECT (x.details ->> 'served_spearman')::double precision FROM embedstack.jobs x
         WHERE x.model_set = m.name AND x.generation = m.served_generation AND x.details ? 'served_spearman'
         ORDER BY x.id DESC LIMIT 1) AS served_spearman
  FROM embedstack.model_sets m
  LEFT JOIN embedstack.fits af ON af.id = m.active_fit
  LEFT JOIN embedstack.generations sg ON sg.id = m.served_generation
  LEFT JOIN embedstack.projections sp ON sp.id = sg.projection
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name ORDER BY x.id DESC LIMIT 1) j ON true
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name AND x.state = 'failed'
                      ORDER BY x.id DESC LIMIT 1) e ON true;
COMMENT ON VIEW embedstack.status IS
  'One row per visible model set: its served view, active fit and generation, what rollback would serve, the '
  'latest job (interrupted when its session is gone) with progress, the latest error, the hold of a rollback, '
  'how many generations rollback can reach, and the learned projection it serves (dims, variance kept, served '
  'Spearman).';

-- evaluate(..., ablation => true): per model, the held-out metrics of the stack refitted without it from the stored statistics.
CREATE  FUNCTION "evaluate"(
	"model_set" TEXT, /* Option < & str > */
	"pairs" regclass, /* Option < RegClass > */
	"left_column" TEXT, /* Option < & str > */
	"right_column" TEXT, /* Option < & str > */
	"target_column" TEXT, /* Option < & str > */
	"fit_id" bigint DEFAULT NULL, /* Option < i64 > */
	"ablation" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"model" TEXT,  /* String */
	"n" bigint,  /* i64 */
	"pearson" double precision,  /* Option < f64 > */
	"spearman" double precision  /* Option < f64 > */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'evaluate_wrapper';
COMMENT ON FUNCTION embedstack.evaluate(text, regclass, text, text, text, bigint, boolean) IS
  'Held-out evaluation on labelled pairs: one row per model (its cosine alone), (stack) = the served score '
  'sum_k s_k x_k (missing blocks count 0), and (fit) = intercept + sum_k w_k x_k on pairs with every feature; '
  'n, Pearson, Spearman (average ranks). fit_id defaults to the active fit, else the latest. ablation => true adds '
  '(without <model>) per model: the fit refitted without that model from its stored statistics (fits.state, same '
  'options), scored on the pairs whose other features are present, in the same pass (none for a single model).';

-- explain: one row per model (cosine, weight, contribution, share), the intercept and the total with the served score.
CREATE  FUNCTION "explain"(
	"model_set" TEXT, /* Option < & str > */
	"a_key" anyelement, /* Option < AnyElement > */
	"b_key" anyelement, /* Option < AnyElement > */
	"fit_id" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"model" TEXT,  /* String */
	"cosine" double precision,  /* Option < f64 > */
	"weight" double precision,  /* Option < f64 > */
	"contribution" double precision,  /* Option < f64 > */
	"share" double precision,  /* Option < f64 > */
	"note" TEXT  /* Option < String > */
)
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'explain_keys_wrapper';
COMMENT ON FUNCTION embedstack.explain(text, anyelement, anyelement, bigint) IS
  'Why two stored rows score what they score under a fit (fit_id, else the active fit, else the latest): per model '
  'its cosine (NULL for a NULL or zero vector), weight, contribution = weight * cosine and share = contribution / '
  'sum of |contributions|; (intercept); (total) with the prediction as contribution and, as cosine, the served '
  'score -(query_vector(a) <#> b''s served vector) (NULL when not materialised); note says what is served and '
  'what the threshold left out. Unknown model set 42704, key not found P0002, no fit 55000, NULL 22004. STABLE.';

-- explain with keys given as text.
CREATE  FUNCTION "explain"(
	"model_set" TEXT, /* Option < & str > */
	"a_key" TEXT, /* Option < & str > */
	"b_key" TEXT, /* Option < & str > */
	"fit_id" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"model" TEXT,  /* String */
	"cosine" double precision,  /* Option < f64 > */
	"weight" double precision,  /* Option < f64 > */
	"contribution" double precision,  /* Option < f64 > */
	"share" double precision,  /* Option < f64 > */
	"note" TEXT  /* Option < String > */
)
STABLE PARALLEL RESTRICTED 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'explain_text_keys_wrapper';
COMMENT ON FUNCTION embedstack.explain(text, text, text, bigint) IS
  'explain for keys given as text (quoted literals), read with the key type''s input function as query_vector '
  'reads them. STABLE.';

-- score: the served score of two stored rows at full precision, for re-ranking a projected set's candidates.
CREATE  FUNCTION "score"(
	"model_set" TEXT, /* & str */
	"a_key" anyelement, /* AnyElement */
	"b_key" anyelement /* AnyElement */
) RETURNS double precision /* f64 */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'score_keys_wrapper';
COMMENT ON FUNCTION embedstack.score(text, anyelement, anyelement) IS
  'The served score of two stored rows at full precision, from their model vectors (never the stored, possibly '
  'projected vectors): intercept + sum_k w_k cos_k over the models the served vector keeps, with the served fit''s '
  'weights, a NULL or zero vector counting 0; ranks as the exact unprojected served score. For re-ranking the '
  'candidates of a projected model set''s index. Unknown model set 42704, nothing served 55000, key not found '
  'P0002. STABLE STRICT PARALLEL RESTRICTED.';

-- score with keys given as text.
CREATE  FUNCTION "score"(
	"model_set" TEXT, /* & str */
	"a_key" TEXT, /* & str */
	"b_key" TEXT /* & str */
) RETURNS double precision /* f64 */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'score_text_keys_wrapper';
COMMENT ON FUNCTION embedstack.score(text, text, text) IS
  'score for keys given as text (quoted literals), read with the key type''s input function as query_vector reads '
  'them. STABLE STRICT PARALLEL RESTRICTED.';

-- the comments of every new or changed object, as a fresh install sets them.
COMMENT ON TABLE embedstack.projections IS
  'Learned projections of model sets created with dims: the basis a generation''s vectors are projected with '
  '(generations.projection), learned from the source''s rows; written once, dumped with the catalog.';
COMMENT ON POLICY readers_of_the_source ON embedstack.projections IS
  'A projection is visible to the roles that see its model set.';
COMMENT ON POLICY writers_own_the_source ON embedstack.projections IS
  'A projection is written by the owners of its model set''s source table.';
