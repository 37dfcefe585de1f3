-- Learned projections (0.5.0): create_model_set(..., dims => N) serves a fit whose combined
-- vector is wider than N as its projection onto N learned dimensions, so that any number of
-- models fits under pgvector's index limit (2,000 dimensions of vector, 4,000 of halfvec).
--
-- The basis is PCA of the served combined vector [m_k u_k] (m_k the stored multipliers of the
-- fit: sqrt(w_k / w_max) in symmetric mode, 1 in query-weighted mode), learned from the source's
-- rows: the top N-1 principal directions plus the part of the mean they miss (README, "Serving
-- more dimensions than the index takes"). The covariance comes from the aggregate
-- embedstack.covariance_stats over a sample of at most 10,000 rows (every row of a smaller
-- source), the basis from a randomized range finder (crates/embedstack-math). A projection is
-- written once, with the generation that stores vectors projected by it, and never changed: a
-- refit with other multipliers learns a new one for its new generation, a rollback serves the
-- old generation with its old projection, and pg_dump dumps them (a configuration table).

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

-- The covariance aggregate (raw V1 functions in src/model_set/projection.rs): the row count,
-- sum and sum of outer products of the unit-normalised concatenation of a row's model vectors
-- (a NULL or zero vector counts as a zero block, as it is served), as a float8[] state;
-- mergeable (parallel aggregation; Citus splits only aggregates whose state type is not a
-- pseudo-type, so over a distributed source it runs on the coordinator over the sampled rows).
CREATE FUNCTION embedstack._covariance_accum(internal, model_dims integer[], VARIADIC "any") RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_accum';
COMMENT ON FUNCTION embedstack._covariance_accum(internal, integer[], "any") IS
  'Internal: transition function of embedstack.covariance_stats.';
CREATE FUNCTION embedstack._covariance_combine(internal, internal) RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_combine';
COMMENT ON FUNCTION embedstack._covariance_combine(internal, internal) IS
  'Internal: combine function of embedstack.covariance_stats.';
CREATE FUNCTION embedstack._covariance_serialize(internal) RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_serialize';
COMMENT ON FUNCTION embedstack._covariance_serialize(internal) IS
  'Internal: serial function of embedstack.covariance_stats.';
CREATE FUNCTION embedstack._covariance_deserialize(bytea, internal) RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_deserialize';
COMMENT ON FUNCTION embedstack._covariance_deserialize(bytea, internal) IS
  'Internal: deserial function of embedstack.covariance_stats.';
CREATE FUNCTION embedstack._covariance_final(internal) RETURNS double precision[]
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'embedstack_covariance_final';
COMMENT ON FUNCTION embedstack._covariance_final(internal) IS
  'Internal: final function of embedstack.covariance_stats.';
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

-- Row kernels of projected generations (src/model_set/combine_fn.rs): as _combine_vector /
-- _combine_halfvec, then projected with the basis of projection `projection`, read as the
-- calling role (once per statement). STABLE: they read the catalog.
CREATE FUNCTION embedstack._project_vector(projection bigint, multipliers double precision[], dims integer[],
    columns text[], VARIADIC "any")
RETURNS vector LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_project_vector';
COMMENT ON FUNCTION embedstack._project_vector(bigint, double precision[], integer[], text[], "any") IS
  'Internal row kernel: the combined vector of one row projected onto a learned projection''s basis.';
CREATE FUNCTION embedstack._project_halfvec(projection bigint, multipliers double precision[], dims integer[],
    columns text[], VARIADIC "any")
RETURNS halfvec LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_project_halfvec';
COMMENT ON FUNCTION embedstack._project_halfvec(bigint, double precision[], integer[], text[], "any") IS
  'Internal row kernel: as _project_vector, as halfvec.';

-- The width of a fit's served vector before any projection: the dimensions of the models with
-- a positive multiplier.
CREATE FUNCTION embedstack._unprojected_width(ms embedstack.model_sets, multipliers double precision[]) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(d), 0)::integer FROM unnest(ms.model_dims, multipliers) u(d, m) WHERE m <> 0
$$;
COMMENT ON FUNCTION embedstack._unprojected_width(embedstack.model_sets, double precision[]) IS
  'Internal: the width of the served vector of a stored layout before projection.';

-- The model columns of a model set read through the alias `alias`, in the model set's order:
-- "s.m1, s.m2, ..." (the arguments of covariance_stats and of the projection kernels).
CREATE FUNCTION embedstack._model_column_list(ms embedstack.model_sets, alias text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(format('%I.%I', alias, c), ', ' ORDER BY o) FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)
$$;
COMMENT ON FUNCTION embedstack._model_column_list(embedstack.model_sets, text) IS
  'Internal: the model columns of a model set, qualified with an alias, in order.';

-- Learns the projection of a stored layout (multipliers) to ms.projection_dims dimensions from
-- a sample of the source's rows, records it, and returns its id. As the calling role (the
-- owner of the source: materialize checked it).
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

-- Writers (as catalog_writers.sql: the caller must own the source).
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

CREATE FUNCTION embedstack._w_generation_projection(model_set text, generation bigint, projection bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g SET projection = _w_generation_projection.projection
     WHERE g.id = generation AND g.model_set = _w_generation_projection.model_set;
END $$;
COMMENT ON FUNCTION embedstack._w_generation_projection(text, bigint, bigint) IS
  'Internal catalog writer: records the projection a generation''s vectors are stored with.';

CREATE FUNCTION embedstack._w_model_set_dims(model_set text, dims integer) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.model_sets m SET projection_dims = dims WHERE m.name = _w_model_set_dims.model_set;
END $$;
COMMENT ON FUNCTION embedstack._w_model_set_dims(text, integer) IS
  'Internal catalog writer: the number of served dimensions of a model set created with dims.';

-- What a learned projection costs the served ranking (0.5.0): on up to 2,000 of the fit's
-- training pairs (its pairs table, found by the OID the fit recorded: NULL when it is gone, or
-- lacks the columns, or the caller may not read it; a refit's held-out pairs are left out, as
-- its training left them out), the Spearman correlation (average ranks) between the
-- served score -- query_vector(a) against b's served vector, as the index ranks -- and the fit's
-- prediction intercept + sum w_k cos_k (pairs with every cosine). Run by the cut-over once the
-- generation is served, as the caller.
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
