-- The only code that writes the catalog tables.
--
-- Since 0.3.1 no function of the extension switches to another role to write the catalog (0.3.0's
-- embedstack._write ran its statement as the catalog's owner, and what the caller controlled --
-- its search_path, its argument types and casts -- ran with those rights). The writers below are
-- SECURITY INVOKER and executable by PUBLIC: each checks that the calling role (current_user,
-- which inside a user's SECURITY DEFINER function is that function's owner) *and* the session's
-- outer role (SET ROLE) are members of the owner of the model set's source table (42501
-- otherwise), then writes as the caller. The catalog tables grant INSERT, UPDATE and DELETE to
-- PUBLIC under row-security policies with the same rule (catalog_access.sql), so a direct INSERT
-- or UPDATE reaches only the rows of model sets the role owns. An owner can therefore write any
-- value into its own rows: every reader of the catalog that acts with rights of its own (the
-- event trigger, retention, drop, the cut-over, the freshness trigger) validates what it reads.
-- search_path is pinned and every name is schema-qualified.

-- The model set's row, when the calling role may change it: 42704 / 42501 as _model_set, then
-- 42501 unless the current and the outer role own its source (_check_owner).
CREATE FUNCTION embedstack._owned_model_set(model_set text) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    PERFORM embedstack._check_owner(ms.source);
    RETURN ms;
END $$;
COMMENT ON FUNCTION embedstack._owned_model_set(text) IS
  'Internal: a model set''s catalog row when the calling role (and the outer role) own its source, else 42501 (42704: no such model set).';

-- The model set a job belongs to, when the calling role may change it (42704: no such job).
CREATE FUNCTION embedstack._owned_job(job_id bigint) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text;
BEGIN
    SELECT j.model_set INTO name FROM embedstack.jobs j WHERE j.id = job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = '42704';
    END IF;
    RETURN embedstack._owned_model_set(name);
END $$;
COMMENT ON FUNCTION embedstack._owned_job(bigint) IS
  'Internal: the model set of a job when the calling role may change it, else 42501 (42704: no such job).';

CREATE FUNCTION embedstack._w_insert_model_set(
    name text, source regclass, key_column name, model_columns name[], model_dims integer[],
    model_types regtype[], mode text, threshold double precision, combined_column name, storage text, view_name name)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.model_sets;
BEGIN
    PERFORM embedstack._check_owner(source);
    INSERT INTO embedstack.model_sets AS m (name, source, key_column, model_columns, model_dims, model_types,
                                            mode, threshold, combined_column, storage, view_name)
    VALUES (name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage,
            view_name)
    RETURNING m.* INTO r;
    RETURN r;
END $$;

CREATE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.generations g WHERE g.model_set = _w_delete_model_set.model_set;
    DELETE FROM embedstack.projections p WHERE p.model_set = _w_delete_model_set.model_set;   -- 0.5.0
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

-- Records a fit, then trims the history to embedstack.keep_history fits and jobs per model set
-- (never the active fit, the previous one, the fit of a generation, or the fit of a running job).
CREATE FUNCTION embedstack._w_insert_fit(
    model_set text, options jsonb, weights double precision[], intercept double precision,
    diagnostics jsonb, state double precision[], training_source jsonb)
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.fits;
    keep integer := embedstack._keep_history();
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    INSERT INTO embedstack.fits AS f (model_set, options, weights, intercept, diagnostics, state, training_source)
    VALUES (model_set, options, weights, intercept, diagnostics, state, training_source)
    RETURNING f.* INTO r;
    IF keep > 0 THEN
        DELETE FROM embedstack.fits f
         WHERE f.model_set = _w_insert_fit.model_set
           AND f.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.fits g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x)
           AND f.id NOT IN (SELECT v FROM embedstack.model_sets m, LATERAL (VALUES (m.active_fit), (m.previous_fit)) u(v)
                             WHERE m.name = _w_insert_fit.model_set AND v IS NOT NULL)
           AND f.id NOT IN (SELECT g.fit_id FROM embedstack.generations g WHERE g.model_set = _w_insert_fit.model_set)
           AND f.id NOT IN (SELECT j.fit_id FROM embedstack.jobs j
                             WHERE j.model_set = _w_insert_fit.model_set AND j.state = 'running' AND j.fit_id IS NOT NULL);
        DELETE FROM embedstack.jobs j
         WHERE j.model_set = _w_insert_fit.model_set AND j.state <> 'running'
           AND j.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.jobs g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x);
    END IF;
    RETURN r;
END $$;

-- A new generation being written (its table is created and recorded next, by _w_generation_set).
CREATE FUNCTION embedstack._w_insert_generation(model_set text, fit_id bigint, multipliers double precision[],
                                                storage text, width integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    INSERT INTO embedstack.generations AS g (model_set, fit_id, multipliers, storage, width, state)
    VALUES (model_set, fit_id, multipliers, storage, width, 'building')
    RETURNING g.id INTO id;
    RETURN id;
END $$;

-- A generation's table and index, or its writing progress: NULL arguments leave a column as is.
CREATE FUNCTION embedstack._w_generation_set(model_set text, generation bigint, relation regclass,
    index_name name, cursor_key text, rows_written bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g
       SET relation = coalesce(_w_generation_set.relation, g.relation),
           index_name = coalesce(_w_generation_set.index_name, g.index_name),
           cursor_key = coalesce(_w_generation_set.cursor_key, g.cursor_key),
           rows_written = coalesce(_w_generation_set.rows_written, g.rows_written)
     WHERE g.id = generation AND g.model_set = _w_generation_set.model_set;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'generation % of model set "%" does not exist', generation, model_set USING ERRCODE = '42704';
    END IF;
END $$;

-- Forgets a generation; when it was what rollback would serve, there is nothing to roll back to.
CREATE FUNCTION embedstack._w_delete_generation(model_set text, generation bigint) RETURNS void
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

-- The pending-keys table of a generation whose index is being built, and whether the freshness
-- triggers record into it (open) or write the generation (see catalog.sql).
CREATE FUNCTION embedstack._w_generation_pending(model_set text, generation bigint, pending regclass, open boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g SET pending = _w_generation_pending.pending, pending_open = open
     WHERE g.id = generation AND g.model_set = _w_generation_pending.model_set;
END $$;

-- Holds the model set (a rollback: `reason` says which), or releases it (`reason` NULL).
CREATE FUNCTION embedstack._w_hold(model_set text, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.model_sets x
       SET held_since = CASE WHEN reason IS NULL THEN NULL ELSE clock_timestamp() END, held_reason = reason
     WHERE x.name = _w_hold.model_set;
END $$;

-- What is served: fit `fit_id` from generation `generation`. The generation served so far is
-- retained (with its fit, as what a rollback serves again); called in the cut-over
-- transaction, by a rollback, or alone when only the active fit changes (query-weighted mode).
CREATE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g embedstack.generations;
    m embedstack.model_sets;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    IF NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = fit_id AND f.model_set = _w_serve.model_set) THEN
        RAISE EXCEPTION 'fit % of model set "%" does not exist', fit_id, model_set USING ERRCODE = '42704';
    END IF;
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = generation AND x.model_set = _w_serve.model_set;
    IF NOT FOUND OR g.relation IS NULL THEN
        RAISE EXCEPTION 'generation % of model set "%" does not exist', generation, model_set USING ERRCODE = '42704';
    END IF;
    SELECT * INTO m FROM embedstack.model_sets x WHERE x.name = _w_serve.model_set FOR UPDATE;
    UPDATE embedstack.generations x SET state = 'retained'
     WHERE x.model_set = _w_serve.model_set AND x.state = 'served' AND x.id <> generation;
    UPDATE embedstack.generations x SET state = 'served', served_at = clock_timestamp() WHERE x.id = generation;
    UPDATE embedstack.model_sets x
       SET active_fit = _w_serve.fit_id, served_generation = generation, served_multipliers = g.multipliers,
           served_storage = g.storage, served_index = g.index_name,
           -- (The same fit from another generation -- a refresh -- keeps the rollback point.)
           previous_fit = CASE WHEN m.active_fit IS DISTINCT FROM _w_serve.fit_id THEN m.active_fit ELSE x.previous_fit END,
           previous_generation = CASE WHEN m.active_fit IS DISTINCT FROM _w_serve.fit_id THEN m.served_generation
                                      ELSE x.previous_generation END
     WHERE x.name = _w_serve.model_set;
END $$;

CREATE FUNCTION embedstack._w_job_start(model_set text, kind text, params jsonb, phase text, resumed_from bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    -- A job still marked running was interrupted (its session is gone: the caller holds the lock).
    UPDATE embedstack.jobs j SET state = 'interrupted', finished_at = j.updated_at
     WHERE j.model_set = _w_job_start.model_set AND j.state = 'running';
    INSERT INTO embedstack.jobs AS j (model_set, kind, params, phase, state, pid, resumed_from)
    VALUES (model_set, kind, params, phase, 'running', pg_backend_pid(), resumed_from)
    RETURNING j.id INTO id;
    RETURN id;
END $$;

-- Progress of a running job: NULL arguments leave the column as it is.
CREATE FUNCTION embedstack._w_job_update(job_id bigint, phase text, rows_done bigint DEFAULT NULL,
    rows_total bigint DEFAULT NULL, cursor_key text DEFAULT NULL, fit_id bigint DEFAULT NULL,
    index_name name DEFAULT NULL, details jsonb DEFAULT NULL, generation bigint DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_job(job_id);
    UPDATE embedstack.jobs j
       SET phase = coalesce(_w_job_update.phase, j.phase),
           rows_done = coalesce(_w_job_update.rows_done, j.rows_done),
           rows_total = coalesce(_w_job_update.rows_total, j.rows_total),
           cursor_key = coalesce(_w_job_update.cursor_key, j.cursor_key),
           fit_id = coalesce(_w_job_update.fit_id, j.fit_id),
           index_name = coalesce(_w_job_update.index_name, j.index_name),
           details = j.details || coalesce(_w_job_update.details, '{}'),
           generation = coalesce(_w_job_update.generation, j.generation),
           updated_at = clock_timestamp()
     WHERE j.id = job_id AND j.state = 'running';
END $$;

CREATE FUNCTION embedstack._w_job_finish(job_id bigint, state text, outcome text, error jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_job(job_id);
    IF state NOT IN ('succeeded', 'kept', 'failed') THEN
        RAISE EXCEPTION 'invalid final job state "%"', state USING ERRCODE = '22023';
    END IF;
    UPDATE embedstack.jobs j
       SET state = _w_job_finish.state, outcome = _w_job_finish.outcome, error = _w_job_finish.error,
           phase = CASE WHEN _w_job_finish.state = 'failed' THEN j.phase ELSE 'done' END,
           updated_at = clock_timestamp(), finished_at = clock_timestamp()
     WHERE j.id = job_id;
END $$;


-- Every role may call the writers (each checks ownership, and row security decides what it may
-- write). Written out as REVOKE + GRANT, so that the functions' ACL is the same explicit one in a
-- fresh install and in a database upgraded from 0.2.1 / 0.3.0, where they were revoked.
REVOKE EXECUTE ON FUNCTION
    embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name),
    embedstack._w_delete_model_set(text),
    embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb),
    embedstack._w_insert_generation(text, bigint, double precision[], text, integer),
    embedstack._w_generation_set(text, bigint, regclass, name, text, bigint),
    embedstack._w_delete_generation(text, bigint),
    embedstack._w_generation_pending(text, bigint, regclass, boolean),
    embedstack._w_serve(text, bigint, bigint),
    embedstack._w_job_start(text, text, jsonb, text, bigint),
    embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint),
    embedstack._w_job_finish(bigint, text, text, jsonb),
    embedstack._w_hold(text, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name),
    embedstack._w_delete_model_set(text),
    embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb),
    embedstack._w_insert_generation(text, bigint, double precision[], text, integer),
    embedstack._w_generation_set(text, bigint, regclass, name, text, bigint),
    embedstack._w_delete_generation(text, bigint),
    embedstack._w_generation_pending(text, bigint, regclass, boolean),
    embedstack._w_serve(text, bigint, bigint),
    embedstack._w_job_start(text, text, jsonb, text, bigint),
    embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint),
    embedstack._w_job_finish(bigint, text, text, jsonb),
    embedstack._w_hold(text, text)
  TO PUBLIC;
