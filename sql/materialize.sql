-- Row kernels and the freshness trigger (raw V1 functions in src/model_set/).
CREATE FUNCTION embedstack._combine_vector(multipliers double precision[], dims integer[], columns text[], VARIADIC "any")
RETURNS vector LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_combine_vector';
CREATE FUNCTION embedstack._combine_halfvec(multipliers double precision[], dims integer[], columns text[], VARIADIC "any")
RETURNS halfvec LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_combine_halfvec';
CREATE FUNCTION embedstack._refresh_combined() RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'embedstack_refresh_combined';

-- Per-model multipliers of the stored blocks for a fit (0 = block left out), or an error
-- (22023 with a hint when symmetric mode has no positive weight).
CREATE FUNCTION embedstack._stored_multipliers(model_set text, fit_id bigint) RETURNS double precision[]
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    w double precision[];
BEGIN
    SELECT f.weights INTO w FROM embedstack.fits f WHERE f.id = fit_id AND f.model_set = ms.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fit % of model set "%" does not exist', fit_id, ms.name USING ERRCODE = '42704';
    END IF;
    RETURN embedstack.block_multipliers(w, ms.mode, ms.threshold);
END $$;

-- Materialising is a job (sql/operations.sql runs it): a sequence of steps, each one short
-- transaction, committed by the driver. All state lives in the table and the catalog (the
-- staging column, the staging index, the job row), so a run killed at any point is continued
-- by the next call, and the served column, its index and the active fit change only in the
-- cut-over step.
--   prepare -> write (one batch per step) -> index -> wait -> cutover -> done

-- The stored layout of a fit: per-model multipliers, storage type and width, or 54000.
CREATE FUNCTION embedstack._layout(model_set text, fit_id bigint,
    OUT multipliers double precision[], OUT storage text, OUT width integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    multipliers := embedstack._stored_multipliers(ms.name, fit_id);
    SELECT coalesce(sum(d), 0) INTO width FROM unnest(ms.model_dims, multipliers) u(d, m) WHERE m <> 0;
    storage := CASE
        WHEN ms.storage IN ('auto', 'vector') AND width <= 2000 THEN 'vector'
        WHEN ms.storage IN ('auto', 'halfvec') AND width <= 4000 THEN 'halfvec'
    END;
    IF storage IS NULL THEN
        RAISE EXCEPTION 'the combined vector of model set "%" would have % dimensions, more than pgvector can index as % (at most %)',
            ms.name, width, CASE ms.storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE ms.storage WHEN 'vector' THEN 2000 ELSE 4000 END
            USING ERRCODE = '54000',
            HINT = 'vector indexes up to 2000 dimensions, halfvec up to 4000: raise the threshold to leave out '
                   'low-weight models (symmetric mode), drop models from the set, or use lower-dimensional models';
    END IF;
END $$;

-- Names of the served (final => true) and the staging HNSW index. Index names share the
-- schema's namespace with every table and index in it, so they are derived from the table and
-- the combined column with a hash of both (two model sets of one schema never compute the
-- same name; the steps still check that a name is free or theirs before using it).
CREATE FUNCTION embedstack._index_name(model_set text, final boolean) RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT embedstack._derived_name(c.relname || '_' || m.combined_column, CASE WHEN final THEN 'hnsw' ELSE 'hnsw_next' END,
                                    format('%I.%I.%I', n.nspname, c.relname, m.combined_column))
      FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE m.name = model_set
$$;

-- Is relation `nsp.idx` an index of `source` on column `col` (or absent: NULL)? Used before
-- dropping or keeping an index by name.
CREATE FUNCTION embedstack._index_of(nsp name, idx name, source regclass, col name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN to_regclass(format('%I.%I', nsp, idx)) IS NULL THEN NULL
                ELSE EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                              WHERE i.indexrelid = to_regclass(format('%I.%I', nsp, idx)) AND i.indrelid = source
                                AND a.attname = col) END
$$;

-- (Both checks below call pg_backend_pid(): PARALLEL RESTRICTED, as it is.)
-- May the cut-over happen? Not while a transaction older than the last batch still runs: the
-- cut-over renames columns, which is not MVCC-safe, so such a transaction would afterwards read
-- the new column through its old snapshot as NULL (its rows' versions predate the batches). And
-- when the batches were HOT updates, CREATE INDEX marks the new index indcheckxmin: the planner
-- ignores it in those transactions. So, as CREATE INDEX CONCURRENTLY does, wait for them:
--   horizon: an xid taken after the last batch committed (in the index step's transaction);
--   every session of this database whose xid or snapshot xmin we can see must be newer than it;
--   sessions whose details we may not see (other roles', without pg_read_all_stats) must have
--   ended the transaction they were in when the index step ran (hidden: their virtual xids).
-- Autovacuum plans no query and is not waited for; nor are sessions blocked by this one (a
-- materialize or refit queued with wait => true holds its statement's snapshot while it waits
-- for the job lock: waiting for it would deadlock).
CREATE FUNCTION embedstack._cutover_ready(horizon xid8, hidden text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    horizon_age integer := age((horizon::text::numeric % 4294967296)::text::xid);
BEGIN
    IF pg_snapshot_xmin(pg_current_snapshot()) <= horizon THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_stat_activity a
                WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
                  AND a.backend_type IN ('client backend', 'background worker')
                  AND greatest(age(a.backend_xid), age(a.backend_xmin)) >= horizon_age
                  AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))) THEN
        RETURN false;
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (hidden));
END $$;

-- The virtual xids of this database's other sessions whose details the caller may not see.
CREATE FUNCTION embedstack._hidden_transactions() RETURNS text[]
LANGUAGE sql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'virtualxid' AND l.granted AND a.pid <> pg_backend_pid()
       AND a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
       AND a.state IS NULL AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;

-- prepare: the layout; when the vectors are already stored in it, switching the active fit is
-- all there is to do. Otherwise the staging column (resumed when it belongs
-- to this fit and layout, replaced otherwise) and the freshness trigger, which also keeps the
-- staging column right for rows written while the job runs.
CREATE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    lay record;
    vnsp name := embedstack._vector_schema();
    stg name;
    collist text;
    total bigint;
    done bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    lay := embedstack._layout(ms.name, j.fit_id);
    -- Same multipliers and storage: the stored vectors are already exactly what this fit would
    -- write (always so in query-weighted mode, where they do not depend on the weights).
    IF ms.served_multipliers = lay.multipliers AND ms.served_storage = lay.storage THEN
        PERFORM embedstack._write('serve', ms.name, j.fit_id, lay.multipliers, lay.storage, ms.served_index);
        PERFORM embedstack._write('job_update', job_id, 'done');
        PERFORM embedstack._write('job_finish', job_id, 'succeeded',
            format('stored vectors unchanged; fit %s is active', j.fit_id));
        RAISE NOTICE 'embedstack: model set "%": stored vectors unchanged, active fit is now %', ms.name, j.fit_id;
        RETURN 'done';
    END IF;

    stg := ms.staging_column;
    IF stg IS NOT NULL AND (ms.staging_fit IS DISTINCT FROM j.fit_id OR ms.staging_multipliers IS DISTINCT FROM lay.multipliers
                            OR ms.staging_storage IS DISTINCT FROM lay.storage) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, stg);
        stg := NULL;
    END IF;
    IF stg IS NULL THEN
        stg := embedstack._derived_name(ms.combined_column, 'next');
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = stg AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % is in the way of the staging column', stg, ms.source USING ERRCODE = '42701',
                HINT = 'rename or drop it, or create the model set with another combined_column';
        END IF;
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %I.%s(%s)', ms.source, stg, vnsp, lay.storage, lay.width);
        PERFORM embedstack._write('set_staging', ms.name, stg, j.fit_id, lay.multipliers, lay.storage);
    END IF;
    SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO collist FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    IF NOT embedstack._own_trigger(ms.source, ms.name) AND EXISTS (
        SELECT 1 FROM pg_trigger t WHERE t.tgrelid = ms.source AND t.tgname = embedstack._trigger_name(ms.name)) THEN
        RAISE EXCEPTION 'trigger "%" on % is in the way of model set "%"', embedstack._trigger_name(ms.name), ms.source, ms.name
            USING ERRCODE = '42710', HINT = 'rename or drop that trigger';
    END IF;
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION embedstack._refresh_combined(%L)',
                   embedstack._trigger_name(ms.name), collist, ms.source, ms.name);
    EXECUTE format('SELECT count(*), count(%I) FROM %s', stg, ms.source) INTO total, done;
    PERFORM embedstack._write('job_update', job_id, 'write', done, total);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into %.% (% already done)',
        ms.name, total - done, lay.storage, lay.width, ms.source, stg, done;
    RETURN 'write';
END $$;

-- write: one batch of batch_size rows whose staging value is missing, in key order after the
-- last batch (keyset pagination; rows written meanwhile are kept right by the trigger).
CREATE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    keytype text;
    cols text;
    n bigint;
    last_key text;
    done bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT format_type(a.atttypid, a.atttypmod) INTO keytype FROM pg_attribute a
     WHERE a.attrelid = ms.source AND a.attname = ms.key_column AND NOT a.attisdropped;
    SELECT string_agg(format('t.%I', c), ', ' ORDER BY o) INTO cols FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    EXECUTE format(
        'WITH b AS (SELECT %1$I AS k FROM %2$s WHERE ($1::text IS NULL OR %1$I > $1::text::%3$s) AND %4$I IS NULL '
        '           ORDER BY %1$I LIMIT $2), '
        '     u AS (UPDATE %2$s t SET %4$I = embedstack.%5$I($3, $4, $5, t.%1$I, %6$s) FROM b WHERE t.%1$I = b.k RETURNING t.%1$I AS k) '
        'SELECT count(*), (SELECT k::text FROM b ORDER BY k DESC LIMIT 1) FROM u',
        ms.key_column, ms.source, keytype, ms.staging_column, '_combine_' || ms.staging_storage, cols)
    INTO n, last_key
    USING j.cursor_key, (j.params->>'batch_size')::integer, ms.staging_multipliers, ms.model_dims, ms.model_columns::text[];
    IF last_key IS NULL THEN
        PERFORM embedstack._write('job_update', job_id, 'index');
        RETURN 'index';
    END IF;
    done := j.rows_done + n;
    PERFORM embedstack._write('job_update', job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round(done / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;

-- index: the HNSW index (inner product: exact weighted-sum ranking even with missing blocks)
-- on the staging column, built before the cut-over so queries keep using the old one. An
-- index left by an interrupted run on the same staging column is kept (the trigger and the
-- batches maintained it like any index).
CREATE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    nsp name;
    idx name;
    idx_oid regclass;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    idx := embedstack._index_name(ms.name, false);
    IF NOT embedstack._index_of(nsp, idx, ms.source, ms.staging_column) THEN
        RAISE EXCEPTION 'relation %.% is in the way of the staging index of model set "%"', nsp, idx, ms.name
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
    END IF;
    idx_oid := to_regclass(format('%I.%I', nsp, idx));
    IF idx_oid IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indexrelid = idx_oid AND i.indrelid = ms.source AND i.indisvalid AND a.attname = ms.staging_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx);
        idx_oid := NULL;
    END IF;
    IF idx_oid IS NULL THEN
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.%', ms.name, nsp, idx;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', idx, ms.source, ms.staging_column,
                       embedstack._vector_schema(), ms.staging_storage || '_ip_ops');
    ELSE
        RAISE NOTICE 'embedstack: model set "%": the HNSW index %.% of an interrupted run is complete, keeping it', ms.name, nsp, idx;
    END IF;
    PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, idx,
        jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions())));
    RETURN 'wait';
END $$;

-- wait: until no transaction older than the last batch runs (see _cutover_ready); the old
-- column serves meanwhile. Sleeps 0.1 s per step; the driver commits between steps.
CREATE FUNCTION embedstack._mat_wait(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    nsp name;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    SELECT n.nspname INTO nsp FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE m.name = j.model_set;
    IF embedstack._cutover_ready((j.details->>'horizon')::xid8,
                                 ARRAY(SELECT jsonb_array_elements_text(j.details->'hidden'))) THEN
        PERFORM embedstack._write('job_update', job_id, 'cutover');
        RETURN 'cutover';
    END IF;
    IF NOT coalesce((j.details->>'waiting')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new column to finish (pids %)',
            j.model_set, (SELECT string_agg(a.pid::text, ', ') FROM pg_stat_activity a
                           WHERE (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AND a.pid <> pg_backend_pid()
                             AND a.datname = current_database()
                             AND a.backend_type IN ('client backend', 'background worker'));
        PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, NULL, '{"waiting": true}'::jsonb);
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;

-- cutover: one short transaction under ACCESS EXCLUSIVE on the source: the old column and index
-- go, the staging ones take their names, the catalog says what is served.
CREATE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    nsp name;
    idx_final name;
    prev_timeout text;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    idx_final := embedstack._index_name(ms.name, true);
    IF NOT embedstack._index_of(nsp, idx_final, ms.source, ms.combined_column)
       AND idx_final IS DISTINCT FROM ms.served_index THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served index of model set "%"', nsp, idx_final, ms.name
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
    END IF;
    -- ACCESS EXCLUSIVE waits for running queries, and queries queue behind a waiting lock:
    -- wait at most 2 s, then let them through and try again in the next step.
    prev_timeout := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', '2s', true);
    BEGIN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', ms.source);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'embedstack: model set "%": the cut-over waits for queries on % (retrying)', ms.name, ms.source;
        PERFORM pg_sleep(0.5);
        RETURN 'cutover';
    END;
    PERFORM set_config('lock_timeout', prev_timeout, true);
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = ms.combined_column
                  AND NOT a.attisdropped) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', ms.source, ms.combined_column);
    END IF;
    -- The index served so far (by its recorded name: 0.2.0 named it differently), and one
    -- left under the final name, each only when it is this table's index on the column.
    IF ms.served_index IS NOT NULL AND embedstack._index_of(nsp, ms.served_index, ms.source, ms.combined_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, ms.served_index);
    END IF;
    IF embedstack._index_of(nsp, idx_final, ms.source, ms.combined_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx_final);
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', ms.source, ms.staging_column, ms.combined_column);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', nsp, j.index_name, idx_final);
    PERFORM embedstack._write('serve', ms.name, j.fit_id, ms.staging_multipliers, ms.staging_storage, idx_final);
    PERFORM embedstack._write('job_update', job_id, 'done');
    PERFORM embedstack._write('job_finish', job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from %s.%I (%s), index %I.%I', j.fit_id, ms.source, ms.combined_column,
                  ms.staging_storage, nsp, idx_final));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from %.% (%), index %.%', ms.name, j.fit_id, ms.source,
        ms.combined_column, ms.staging_storage, nsp, idx_final;
    RETURN 'done';
END $$;
