-- Jobs: one materialize or refit per model set at a time (the job lock), run as a sequence of
-- short steps, each committed by the driver (_run_job), with the progress and the outcome in
-- embedstack.jobs. The steps are in materialize.sql and refit.sql.

-- The job lock of a model set (src/operations/job_lock.rs), or 55P03 naming the holder.
CREATE FUNCTION embedstack._lock_model_set(model_set text, wait boolean) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    holder integer;
BEGIN
    IF NOT embedstack._job_lock(hashtext(model_set), wait) THEN
        SELECT l.pid INTO holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND l.classid = 1701667443::oid AND l.objid::bigint = (hashtext(model_set)::bigint & 4294967295)
           AND l.objsubid = 2 AND l.granted;
        RAISE EXCEPTION 'model set "%" is busy: a materialize or refit of it runs in another session (pid %)',
            model_set, coalesce(holder::text, 'unknown') USING ERRCODE = '55P03',
            HINT = 'wait for it to finish (embedstack.status shows its progress), or call with wait => true to queue behind it';
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._lock_model_set(text, boolean) IS 'Internal: a model set''s job lock, or 55P03 naming the holder.';

-- Raises an error again after the driver recorded it (RAISE cannot take NULL options).
CREATE FUNCTION embedstack._reraise(sqlstate text, message text, detail text, hint text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(detail, '') <> '' AND coalesce(hint, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail, HINT = hint;
    ELSIF coalesce(detail, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
    ELSIF coalesce(hint, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._reraise(text, text, text, text) IS 'Internal: raises a recorded error again.';

CREATE FUNCTION embedstack._job_step(job_id bigint, phase text) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF phase = 'fit' THEN RETURN embedstack._refit_fit(job_id);
    ELSIF phase = 'prepare' THEN RETURN embedstack._mat_prepare(job_id);
    ELSIF phase = 'write' THEN RETURN embedstack._mat_write(job_id);
    ELSIF phase = 'index' THEN RETURN embedstack._mat_index(job_id);
    ELSIF phase = 'wait' THEN RETURN embedstack._mat_wait(job_id);
    ELSIF phase = 'cutover' THEN RETURN embedstack._mat_cutover(job_id);
    END IF;
    RAISE EXCEPTION 'job % is in unknown phase "%"', job_id, phase USING ERRCODE = 'XX000';
END $$;
COMMENT ON FUNCTION embedstack._job_step(bigint, text) IS 'Internal: runs one step of a job.';

-- Runs a job's steps, committing after each. A failing step is recorded in the job row
-- (committed) and its error raised again; the job lock ends with the call either way.
-- No exception block may contain a COMMIT, hence the step-by-step structure. The steps run
-- in READ COMMITTED whatever the session's default (a write step takes its snapshot after it
-- locked the generation; a repeatable-read transaction would have taken it before): the
-- default is set for the job's transactions and put back at the end.
CREATE PROCEDURE embedstack._run_job(job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    isolation pg_catalog.text := pg_catalog.current_setting('default_transaction_isolation');
    phase pg_catalog.text;
    key integer;
    failed boolean;
    e_state pg_catalog.text;
    e_msg pg_catalog.text;
    e_detail pg_catalog.text;
    e_hint pg_catalog.text;
    e_ctx pg_catalog.text;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT pg_catalog.hashtext(j.model_set), j.phase INTO key, phase FROM embedstack.jobs j WHERE j.id = job_id;
    PERFORM pg_catalog.set_config('default_transaction_isolation', 'read committed', false);
    LOOP
        failed := false;
        BEGIN
            phase := embedstack._job_step(job_id, phase);
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT, e_detail = PG_EXCEPTION_DETAIL,
                                    e_hint = PG_EXCEPTION_HINT, e_ctx = PG_EXCEPTION_CONTEXT;
            failed := true;
        END;
        IF failed THEN
            PERFORM embedstack._w_job_finish(job_id, 'failed', e_msg,
                pg_catalog.jsonb_build_object('sqlstate', e_state, 'message', e_msg, 'detail', nullif(e_detail, ''),
                                              'hint', nullif(e_hint, ''), 'context', nullif(e_ctx, '')));
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
            PERFORM embedstack._job_unlock(key);
            PERFORM embedstack._reraise(e_state, e_msg, e_detail, e_hint);
        END IF;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN phase = 'done';
    END LOOP;
    PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
    PERFORM embedstack._job_unlock(key);
END $$;
COMMENT ON PROCEDURE embedstack._run_job(bigint) IS 'Internal: runs a job''s steps, committing after each; records a failure.';

-- Who may run a job: a job writes the owner's generation tables and reads its source, so
-- whatever the owner attached to them (a trigger, a rule, an index expression or a column default
-- on a generation table) runs with the rights of the role running the job. A superuser -- also one
-- underneath a SET ROLE, which the owner's code could RESET -- does not run jobs on the tables of
-- a role that is not one (42501): the job is run as the owner, which is also what pg_cron's
-- username => does. (PostgreSQL's own maintenance commands switch to the table's owner for the
-- same reason; a procedure that commits cannot.)
CREATE FUNCTION embedstack._check_job_runner(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner name := (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = ms.source);
BEGIN
    IF owner IS NULL OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = owner) THEN
        RETURN;
    END IF;
    IF (SELECT bool_or(r.rolsuper) FROM pg_roles r WHERE r.rolname IN (current_user, session_user)) THEN
        RAISE EXCEPTION 'a superuser does not run the jobs of model set "%": its tables belong to role %', ms.name, owner
            USING ERRCODE = '42501',
            DETAIL = 'code that role attached to them (triggers, rules, index expressions) would run with superuser rights',
            HINT = format('run it as %I: connect as that role, or schedule it with cron.schedule_in_database(..., username => %L)',
                          owner, owner);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._check_job_runner(embedstack.model_sets) IS
  'Internal: 42501 when a superuser (also under SET ROLE) would run a job on the tables of a role that is not one.';

-- Checks shared by materialize and refit; returns the model set.
CREATE FUNCTION embedstack._check_writer(model_set text, batch_size integer, wait boolean) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF wait IS NULL THEN
        RAISE EXCEPTION 'wait must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- The generation tables and the view are created in the source's schema and given to the
    -- source's owner: its owners (members of the owning role) run these.
    PERFORM embedstack._check_owner(ms.source);
    RETURN ms;
END $$;
COMMENT ON FUNCTION embedstack._check_writer(text, integer, boolean) IS 'Internal: checks shared by materialize and refit.';

