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

-- Writes the model set's combined column for a fit: into a staging column, in batches of
-- batch_size rows each committed, then builds the HNSW index (inner product) and cuts over
-- in one short transaction. The served column, its index and the active fit stay as they
-- were until that last transaction. Must be called outside an explicit transaction block
-- (it COMMITs); re-running it after an interruption continues with the rows not done yet.
CREATE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    fid bigint := fit_id;
    mult double precision[];
    width integer;
    stor text;
    vnsp name := embedstack._vector_schema();
    stg name;
    src text;
    nsp name;
    keytype text;
    cols text;
    collist text;
    total bigint;
    done bigint := 0;
    n bigint;
    last_key text;
    t0 timestamptz := clock_timestamp();
    idx_final name;
    idx_stg name;
    index_xid xid8;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF fid IS NULL THEN
        SELECT max(f.id) INTO fid FROM embedstack.fits f WHERE f.model_set = ms.name;
        IF fid IS NULL THEN
            RAISE EXCEPTION 'model set "%" has no fit', ms.name USING ERRCODE = '55000',
                HINT = 'run embedstack.fit first';
        END IF;
    END IF;
    mult := embedstack._stored_multipliers(ms.name, fid);
    SELECT coalesce(sum(d), 0) INTO width FROM unnest(ms.model_dims, mult) u(d, m) WHERE m <> 0;
    stor := CASE
        WHEN ms.storage IN ('auto', 'vector') AND width <= 2000 THEN 'vector'
        WHEN ms.storage IN ('auto', 'halfvec') AND width <= 4000 THEN 'halfvec'
    END;
    IF stor IS NULL THEN
        RAISE EXCEPTION 'the combined vector of model set "%" would have % dimensions, more than pgvector can index as % (at most %)',
            ms.name, width, CASE ms.storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE ms.storage WHEN 'vector' THEN 2000 ELSE 4000 END
            USING ERRCODE = '54000',
            HINT = 'vector indexes up to 2000 dimensions, halfvec up to 4000: raise the threshold to leave out '
                   'low-weight models (symmetric mode), drop models from the set, or use lower-dimensional models';
    END IF;
    src := ms.source::text;
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    SELECT format_type(a.atttypid, a.atttypmod) INTO keytype FROM pg_attribute a
     WHERE a.attrelid = ms.source AND a.attname = ms.key_column AND NOT a.attisdropped;

    -- Query-weighted mode: the stored vectors do not depend on the weights. If they are in
    -- place with this layout, switching the fit is all there is to do.
    IF ms.served_multipliers = mult AND ms.served_storage = stor
       AND (ms.mode = 'query_weighted' OR ms.active_fit = fid) THEN
        UPDATE embedstack.model_sets m SET active_fit = fid WHERE m.name = ms.name;
        RAISE NOTICE 'embedstack: model set "%": stored vectors unchanged, active fit is now %', ms.name, fid;
        RETURN;
    END IF;

    -- The staging column: resumed when it belongs to this fit and layout, otherwise replaced.
    stg := ms.staging_column;
    IF stg IS NOT NULL AND (ms.staging_fit IS DISTINCT FROM fid OR ms.staging_multipliers IS DISTINCT FROM mult
                            OR ms.staging_storage IS DISTINCT FROM stor) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', src, stg);
        stg := NULL;
    END IF;
    IF stg IS NULL THEN
        stg := left(ms.combined_column, 58) || '_next';
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = stg AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % is in the way of the staging column', stg, src USING ERRCODE = '42701',
                HINT = 'rename or drop it, or create the model set with another combined_column';
        END IF;
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %I.%s(%s)', src, stg, vnsp, stor, width);
        UPDATE embedstack.model_sets m
           SET staging_column = stg, staging_fit = fid, staging_multipliers = mult, staging_storage = stor
         WHERE m.name = ms.name;
    END IF;
    -- The freshness trigger (also keeps the staging column right for rows written meanwhile).
    SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO collist FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION embedstack._refresh_combined(%L)',
                   embedstack._trigger_name(ms.name), collist, src, ms.name);
    COMMIT;

    SELECT string_agg(format('t.%I', c), ', ' ORDER BY o) INTO cols FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    EXECUTE format('SELECT count(*) FROM %s', src) INTO total;
    EXECUTE format('SELECT count(*) FROM %s WHERE %I IS NOT NULL', src, stg) INTO done;
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into %.% (% already done)',
        ms.name, total - done, stor, width, src, stg, done;
    LOOP
        EXECUTE format(
            'WITH b AS (SELECT %1$I AS k FROM %2$s WHERE ($1::text IS NULL OR %1$I > $1::text::%3$s) AND %4$I IS NULL '
            '           ORDER BY %1$I LIMIT $2), '
            '     u AS (UPDATE %2$s t SET %4$I = embedstack.%5$I($3, $4, $5, t.%1$I, %6$s) FROM b WHERE t.%1$I = b.k RETURNING t.%1$I AS k) '
            'SELECT count(*), (SELECT k::text FROM b ORDER BY k DESC LIMIT 1) FROM u',
            ms.key_column, src, keytype, stg, '_combine_' || stor, cols)
        INTO n, last_key
        USING last_key, batch_size, mult, ms.model_dims, ms.model_columns::text[];
        EXIT WHEN last_key IS NULL;
        done := done + n;
        COMMIT;
        RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, total,
            CASE WHEN total > 0 THEN round(100.0 * done / total, 1) ELSE 100 END,
            round(done / greatest(extract(epoch FROM clock_timestamp() - t0), 0.001));
    END LOOP;

    -- The index on the staging column (inner product: exact weighted-sum ranking even with
    -- missing blocks). Built before the cut-over, so queries keep using the old one meanwhile.
    idx_final := left(ms.combined_column, 58) || '_hnsw';
    idx_stg := left(ms.combined_column, 53) || '_hnsw_next';
    IF to_regclass(format('%I.%I', nsp, idx_stg)) IS NOT NULL THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx_stg);
    END IF;
    RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.%', ms.name, nsp, idx_stg;
    EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', idx_stg, src, stg, vnsp, stor || '_ip_ops');
    index_xid := pg_current_xact_id();
    COMMIT;

    -- The batches were HOT updates (the staging column had no index), so the build marks the
    -- index indcheckxmin: snapshots that could still see the pre-batch row versions must not
    -- use it, and the planner skips it while any transaction older than the index runs.
    -- Cutting over now would serve the new column without its index; wait instead (the old
    -- column keeps serving meanwhile), as CREATE INDEX CONCURRENTLY waits for old snapshots.
    IF (SELECT i.indcheckxmin FROM pg_index i WHERE i.indexrelid = format('%I.%I', nsp, idx_stg)::regclass) THEN
        IF pg_snapshot_xmin(pg_current_snapshot()) <= index_xid THEN
            RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new index to finish (pids %)',
                ms.name, (SELECT string_agg(a.pid::text, ', ') FROM pg_stat_activity a
                           WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid());
        END IF;
        WHILE pg_snapshot_xmin(pg_current_snapshot()) <= index_xid LOOP
            PERFORM pg_sleep(0.1);
        END LOOP;
    END IF;

    -- Cut-over: one short transaction.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', src);
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = ms.combined_column
                  AND NOT a.attisdropped) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', src, ms.combined_column);
    END IF;
    IF to_regclass(format('%I.%I', nsp, idx_final)) IS NOT NULL THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx_final);
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', src, stg, ms.combined_column);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', nsp, idx_stg, idx_final);
    UPDATE embedstack.model_sets m
       SET active_fit = fid, served_multipliers = mult, served_storage = stor, served_index = idx_final,
           staging_column = NULL, staging_fit = NULL, staging_multipliers = NULL, staging_storage = NULL
     WHERE m.name = ms.name;
    COMMIT;
    RAISE NOTICE 'embedstack: model set "%": serving fit % from %.% (%(%)), index %.%', ms.name, fid, src,
        ms.combined_column, stor, width, nsp, idx_final;
END $$;
