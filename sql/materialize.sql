-- Serving (0.3.0): the combined vectors live in generation tables of the extension's making
-- (key, combined vector; one table per materialisation, in the source's schema, owned by the
-- source's owner, with its HNSW index), and users query one stable view per model set that
-- selects from the served generation. Nothing here writes, locks or alters the source table: a
-- refit writes a new generation and redefines the view; the freshness triggers on the source
-- are statement-level and write only generation tables.

-- Row kernels (raw V1 functions in src/model_set/combine_fn.rs).
CREATE FUNCTION embedstack._combine_vector(multipliers double precision[], dims integer[], columns text[], VARIADIC "any")
RETURNS vector LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_combine_vector';
COMMENT ON FUNCTION embedstack._combine_vector(double precision[], integer[], text[], "any") IS
  'Internal row kernel: the combined vector of one row (key, then one value per model) for the given '
  'per-model multipliers and dimensions.';
CREATE FUNCTION embedstack._combine_halfvec(multipliers double precision[], dims integer[], columns text[], VARIADIC "any")
RETURNS halfvec LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_combine_halfvec';
COMMENT ON FUNCTION embedstack._combine_halfvec(double precision[], integer[], text[], "any") IS
  'Internal row kernel: as _combine_vector, as halfvec.';

-- The freshness trigger (src/model_set/freshness.rs): AFTER ... FOR EACH STATEMENT with
-- transition tables, on the source; runs the statements _freshness_sql builds as the source's
-- owner (a restricted operation, search_path pinned), so that a role that may write the source
-- but holds no grant on the generation tables keeps them fresh.
CREATE FUNCTION embedstack._refresh_generations() RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'embedstack_refresh_generations';
COMMENT ON FUNCTION embedstack._refresh_generations() IS
  'Internal statement-level trigger: applies the rows a statement inserted, updated, deleted or truncated in a '
  'model set''s source to its live generation tables.';

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
COMMENT ON FUNCTION embedstack._stored_multipliers(text, bigint) IS
  'Internal: per-model multipliers of the stored vector blocks for a fit.';

-- The stored layout of a fit: per-model multipliers, storage type and width, or 54000.
CREATE FUNCTION embedstack._layout(model_set text, fit_id bigint,
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

-- The model set's schema (where its view and generations live: the source's, or, once served,
-- the served generation's -- a source moved with ALTER TABLE ... SET SCHEMA keeps its model set
-- where it was), the source's owner, the key's type and its btree operators (strategy 3 is =,
-- 5 is >) as OPERATOR(schema.op): generated statements run with search_path = pg_catalog, so
-- every operator they use is named with its schema.
CREATE FUNCTION embedstack._source_info(ms embedstack.model_sets, OUT nsp name, OUT owner name, OUT persistence "char",
    OUT key_type text, OUT key_eq text, OUT key_gt text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT gn.nspname FROM embedstack.generations g JOIN pg_class gc ON gc.oid = g.relation
                       JOIN pg_namespace gn ON gn.oid = gc.relnamespace
                      WHERE g.id = ms.served_generation AND g.model_set = ms.name), n.nspname),
           pg_get_userbyid(c.relowner), c.relpersistence, format_type(a.atttypid, a.atttypmod),
           (SELECT format('OPERATOR(%I.%s)', onsp.nspname, o.oprname)
              FROM pg_index i JOIN pg_opclass oc ON oc.oid = i.indclass[0]
              JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3
                             AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
              JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_namespace onsp ON onsp.oid = o.oprnamespace
             WHERE i.indrelid = ms.source AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
             LIMIT 1),
           (SELECT format('OPERATOR(%I.%s)', onsp.nspname, o.oprname)
              FROM pg_index i JOIN pg_opclass oc ON oc.oid = i.indclass[0]
              JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 5
                             AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
              JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_namespace onsp ON onsp.oid = o.oprnamespace
             WHERE i.indrelid = ms.source AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
             LIMIT 1)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = ms.key_column AND NOT a.attisdropped
     WHERE c.oid = ms.source
$$;
COMMENT ON FUNCTION embedstack._source_info(embedstack.model_sets) IS
  'Internal: schema, owner and persistence of a model set''s source, its key type and the key''s = and > operators.';

-- The name of generation `generation`'s table: <view>_g<id>, hashed when long.
CREATE FUNCTION embedstack._generation_name(ms embedstack.model_sets, generation bigint) RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT embedstack._derived_name(ms.view_name, 'g' || generation,
                                    CASE WHEN octet_length(ms.view_name || '_g' || generation) > 63 THEN ms.view_name END)
$$;
COMMENT ON FUNCTION embedstack._generation_name(embedstack.model_sets, bigint) IS
  'Internal: the table name of a generation.';

-- Is `rel` a table the extension made for generation `generation` of model set `ms` (its
-- generation table, or with `pending` its pending-keys table)? A table, named as the jobs name
-- them (_generation_name, or with the random suffix a job adds when that name is taken; the
-- pending table after the generation's), and owned by `owner`. What the catalog records is
-- written by the model set's owner, who could record anything of its own: the relation must
-- also be owned by the source's owner (checked when it is recorded, by the generations' row
-- security, and here again).
CREATE FUNCTION embedstack._is_generation_table(ms embedstack.model_sets, generation bigint, rel regclass, pending boolean,
                                                owner oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_class c
         WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND c.relowner = owner
           AND CASE WHEN pending THEN c.relname ~ '_pending(_[0-9a-f]{6})?$'
                    ELSE c.relname = embedstack._generation_name(ms, generation)
                         OR c.relname ~ ('_g' || generation || '_[0-9a-f]{6}$') END)
$$;
COMMENT ON FUNCTION embedstack._is_generation_table(embedstack.model_sets, bigint, regclass, boolean, oid) IS
  'Internal: whether a relation is a generation table (or pending-keys table) of the model set, named so and '
  'owned by the given role.';

-- Is the relation generation g's catalog row records as its pending-keys table (g.pending) one
-- the extension made for g (0.4.1)? An existing plain table owned by the source's owner, as
-- _is_generation_table requires, named after g's generation table -- itself provably g's (a
-- table of that owner named as _is_generation_table requires) -- as _create_pending names it
-- (<generation>_pending, or with the random suffix it adds when that name is taken). The catalog
-- row is written by the model set's owner, who could record any table of its own there, and a
-- row can outlive its table (its OID then reused by another role's); what reads, writes,
-- truncates or drops a pending-keys table checks this first, as retention and the event trigger
-- check generation tables. False when g.pending is NULL or names no relation. PL/pgSQL with the
-- cheap tests first: the freshness trigger asks it on every write (about 20 us; the same test as
-- one SQL function over _is_generation_table took 185 us, a fifth of a one-row write).
CREATE FUNCTION embedstack._is_pending_table(ms embedstack.model_sets, g embedstack.generations) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pname name;
    rname name;
BEGIN
    IF g.pending IS NULL THEN
        RETURN false;
    END IF;
    SELECT p.relname, r.relname INTO pname, rname
      FROM pg_class p, pg_class r, pg_class s
     WHERE p.oid = g.pending AND r.oid = g.relation AND s.oid = ms.source
       AND p.relkind = 'r' AND p.relowner = s.relowner AND r.relkind IN ('r', 'p') AND r.relowner = s.relowner;
    IF NOT FOUND OR NOT (rname = embedstack._generation_name(ms, g.id) OR rname ~ ('_g' || g.id || '_[0-9a-f]{6}$')) THEN
        RETURN false;
    END IF;
    RETURN pname = rname || '_pending' OR pname = embedstack._derived_name(rname, 'pending')
        OR (left(pname, -6) = left(embedstack._derived_name(rname, 'pending_000000'), -6) AND right(pname, 6) ~ '^[0-9a-f]{6}$');
END $$;
COMMENT ON FUNCTION embedstack._is_pending_table(embedstack.model_sets, embedstack.generations) IS
  'Internal: whether the pending-keys table a generation''s catalog row names is one the extension made for it '
  '(a table of the source''s owner, named after the generation table).';

-- Drops the pending-keys table the catalog records for generation g and forgets it (the catalog
-- row is read again: not what a caller read earlier). Only a table that is provably g's
-- (_is_pending_table): this runs as whoever runs the job or the rollback, a superuser too, and
-- the row may name anything its owner wrote (0.4.0 dropped whatever it named). A relation that
-- is not g's is left in place with a WARNING and forgotten all the same, as _drop_generation and
-- the event trigger leave a generation table that is not provably theirs.
CREATE FUNCTION embedstack._drop_pending(ms embedstack.model_sets, g embedstack.generations) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur embedstack.generations;
BEGIN
    SELECT * INTO cur FROM embedstack.generations x WHERE x.id = g.id AND x.model_set = ms.name;
    IF cur.pending IS NULL THEN
        RETURN;
    END IF;
    IF embedstack._is_pending_table(ms, cur) THEN
        EXECUTE format('DROP TABLE %s', cur.pending);
    ELSIF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = cur.pending) THEN
        RAISE WARNING 'embedstack: model set "%": % is recorded as the pending-keys table of generation %, but it is not one: '
                      'left in place, no longer recorded', ms.name, cur.pending, cur.id
            USING HINT = format('the pending-keys tables of generation %s are owned by the owner of %s and named after %s',
                                cur.id, ms.source, cur.relation);
    END IF;
    PERFORM embedstack._w_generation_pending(ms.name, cur.id, NULL, false);
END $$;
COMMENT ON FUNCTION embedstack._drop_pending(embedstack.model_sets, embedstack.generations) IS
  'Internal: drops a generation''s pending-keys table, only when it is provably the generation''s (WARNING '
  'otherwise), and forgets it.';

-- Is relation <schema>.<view_name> this model set's served view (a view of the source's owner
-- whose rule reads one of its generation tables)? NULL when no such relation exists; false when something else has the name.
CREATE FUNCTION embedstack._is_served_view(ms embedstack.model_sets) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN v.oid IS NULL THEN NULL
                ELSE v.relkind = 'v' AND v.relowner = x.owner AND EXISTS (
                    SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      JOIN embedstack.generations g ON g.relation::oid = d.refobjid AND g.model_set = ms.name
                     WHERE r.ev_class = v.oid) END
      FROM (SELECT to_regclass(format('%I.%I', (embedstack._source_info(ms)).nsp, ms.view_name)) AS oid, c.relowner AS owner
              FROM pg_class c WHERE c.oid = ms.source) x
      LEFT JOIN pg_class v ON v.oid = x.oid
$$;
COMMENT ON FUNCTION embedstack._is_served_view(embedstack.model_sets) IS
  'Internal: whether the model set''s view name is its served view (NULL: no such relation).';

-- Drops a generation's table (with its index) and its catalog row. Only the relation recorded
-- for it; with `nowait`, one whose lock is not free within 1 s is left for a later job.
CREATE FUNCTION embedstack._drop_generation(ms embedstack.model_sets, generation bigint, nowait boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
    prev_timeout text;
    owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = ms.source);
BEGIN
    -- Only a table that is provably this generation's (see _is_generation_table): the catalog
    -- row may say anything its owner wrote, and this may run as a superuser (pg_cron).
    SELECT g.relation INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND embedstack._is_generation_table(ms, generation, rel, false, owner) THEN
        IF nowait THEN
            -- Not NOWAIT: the freshness triggers write a retained generation with every write
            -- to the source, so under a steady write load it is never free at an instant; wait
            -- at most 1 s (new writers queue behind the request for that long at worst).
            prev_timeout := current_setting('lock_timeout');
            BEGIN
                PERFORM set_config('lock_timeout', '1s', true);
                EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', rel);
                PERFORM set_config('lock_timeout', prev_timeout, true);
            EXCEPTION WHEN lock_not_available THEN
                RAISE NOTICE 'embedstack: model set "%": generation % (%) is in use, dropped by a later job', ms.name,
                    generation, rel;
                RETURN false;
            END;
        END IF;
        IF nowait THEN
            -- Retention: a generation another role built a view on (PostgreSQL allows that
            -- without any privilege on it) is kept, not a reason to fail the cut-over.
            BEGIN
                EXECUTE format('DROP TABLE %s', rel);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'embedstack: model set "%": generation % (%) is kept: other objects depend on it', ms.name,
                    generation, rel USING HINT = 'drop them; a later job drops the generation';
                RETURN false;
            END;
        ELSE
            EXECUTE format('DROP TABLE %s', rel);
        END IF;
    END IF;
    SELECT g.pending INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND embedstack._is_generation_table(ms, generation, rel, true, owner) THEN
        EXECUTE format('DROP TABLE %s', rel);
    END IF;
    PERFORM embedstack._w_delete_generation(ms.name, generation);
    RETURN true;
END $$;
COMMENT ON FUNCTION embedstack._drop_generation(embedstack.model_sets, bigint, boolean) IS
  'Internal: drops a generation table and its catalog row (nowait: skip it when in use).';

-- A pending-keys table for generation g, opened (the freshness triggers record the keys they
-- change in it instead of writing the generation): for the index build, and for a generation that
-- is no longer served. Named after the generation (a random suffix when taken), owned by the
-- source's owner.
CREATE FUNCTION embedstack._create_pending(ms embedstack.model_sets, g embedstack.generations) RETURNS regclass
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    si record := embedstack._source_info(ms);
    pname name := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation), 'pending');
BEGIN
    WHILE to_regclass(format('%I.%I', si.nsp, pname)) IS NOT NULL LOOP
        pname := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation),
                                          'pending_' || embedstack._random_hex6());
    END LOOP;
    EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL)', CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                   si.nsp, pname, ms.key_column, si.key_type);
    EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, pname, si.owner);
    PERFORM embedstack._w_generation_pending(ms.name, g.id, format('%I.%I', si.nsp, pname)::regclass, true);
    RETURN format('%I.%I', si.nsp, pname)::regclass;
END $$;
COMMENT ON FUNCTION embedstack._create_pending(embedstack.model_sets, embedstack.generations) IS
  'Internal: creates and opens the pending-keys table of a generation.';

-- A generation that is no longer served (cut-over, rollback): from now on the freshness triggers
-- record the keys they change for it instead of writing it (an HNSW insert per write and
-- retained generation was most of a write's cost in 0.3.x); the rollback that serves it again
-- writes those keys first. Not for a distributed (Citus) source: nothing is recorded there.
CREATE FUNCTION embedstack._retire(ms embedstack.model_sets, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g embedstack.generations;
BEGIN
    SELECT * INTO g FROM embedstack.generations x
     WHERE x.id = generation AND x.model_set = ms.name AND x.state = 'retained' AND x.pending IS NULL
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.relation);
    IF FOUND AND embedstack._distributed_on(ms.source) IS NULL THEN
        PERFORM embedstack._create_pending(ms, g);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._retire(embedstack.model_sets, bigint) IS
  'Internal: a generation no longer served records the keys written meanwhile instead of being written.';

-- SHARE on the source (and, LOCK recursing, its partitions): no writer runs while it is held, and
-- every writer that ran before has committed. As the cut-over locks the view: 50 ms attempts
-- (writers queue behind a waiting lock), 55P03 naming the holders after
-- embedstack.cutover_wait_timeout since `started`.
CREATE FUNCTION embedstack._lock_source(ms embedstack.model_sets, started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prev_timeout text := current_setting('lock_timeout');
    timeout_ms integer := embedstack._cutover_wait_timeout();
BEGIN
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '50ms', true);
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', ms.source);
            PERFORM set_config('lock_timeout', prev_timeout, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', prev_timeout, true);
            IF timeout_ms > 0 AND clock_timestamp() - started > timeout_ms * interval '1 ms' THEN
                RAISE EXCEPTION 'model set "%": gave up after % waiting for the writers of % (pids %)', ms.name,
                    date_trunc('second', clock_timestamp() - started), ms.source,
                    coalesce((SELECT string_agg(DISTINCT l.pid::text, ', ') FROM pg_locks l
                               WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
                                 AND l.relation IN (SELECT t.relid FROM embedstack._source_tables(ms.source) t)
                                 AND l.mode IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareRowExclusiveLock',
                                                'ExclusiveLock', 'AccessExclusiveLock')), 'unknown')
                    USING ERRCODE = '55P03',
                    HINT = 'the writes recorded for the generation are applied with the source''s writers paused: end '
                           'the long transactions named, or raise embedstack.cutover_wait_timeout';
            END IF;
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._lock_source(embedstack.model_sets, timestamptz) IS
  'Internal: SHARE on the source (its writers paused), in 50 ms attempts, 55P03 after embedstack.cutover_wait_timeout.';

-- Serves fit `fit_id` from the live generation g (served or retained) at once: a retained one
-- first gets the keys written since it was served (with the source's writers paused: SHARE on
-- it, the pending table is complete; as the source's owner), then the view is pointed at it
-- (50 ms attempts, 55P03 after embedstack.cutover_wait_timeout since `started`) and the one
-- served so far records its changed keys from now on. One transaction; returns the number of
-- rows written again.
CREATE FUNCTION embedstack._switch_to(ms embedstack.model_sets, g embedstack.generations, fit_id bigint, started timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint := 0;
    was bigint := ms.served_generation;
BEGIN
    IF g.id IS DISTINCT FROM was THEN
        -- Recorded keys in a relation that is not provably its pending-keys table: what changed
        -- since the generation was served is not known, and that relation is never read, locked
        -- or dropped (0.4.0 dropped it); a materialise of the fit replaces the generation.
        IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g)
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
            RAISE EXCEPTION 'generation % of model set "%" cannot be brought up to date: % is recorded as its pending-keys '
                            'table, but it is not one', g.id, ms.name, g.pending
                USING ERRCODE = '55000',
                HINT = format('nothing was changed; CALL embedstack.materialize(%L, fit_id => %s) writes that fit anew '
                              '(and drops the generation)', ms.name, fit_id);
        END IF;
        IF embedstack._is_pending_table(ms, g) THEN
            PERFORM embedstack._lock_source(ms, started);
            EXECUTE format('SELECT count(DISTINCT p.%I) FROM %s p', ms.key_column, g.pending) INTO n;
            IF n > 0 THEN
                PERFORM embedstack._apply_as_owner(ms.name, g.relation, 'CATCHUP');
            END IF;
        END IF;
        PERFORM embedstack._drop_pending(ms, g);
        LOOP
            BEGIN
                PERFORM embedstack._point_view(ms, g, 50);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM embedstack._give_up_locking_view(ms, started);
                PERFORM pg_sleep(0.2);
            END;
        END LOOP;
    END IF;
    PERFORM embedstack._w_serve(ms.name, fit_id, g.id);
    IF was IS NOT NULL AND was IS DISTINCT FROM g.id THEN
        PERFORM embedstack._retire(ms, was);
    END IF;
    RETURN n;
END $$;
COMMENT ON FUNCTION embedstack._switch_to(embedstack.model_sets, embedstack.generations, bigint, timestamptz) IS
  'Internal: serves a fit from a live generation at once (a retained one is brought up to date first).';

-- The live generation (served first, else the newest retained) whose stored layout is the one of
-- fit `fit_id`, if any: serving that fit needs no rows written.
CREATE FUNCTION embedstack._generation_for(ms embedstack.model_sets, fit_id bigint) RETURNS embedstack.generations
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.* FROM embedstack.generations g, embedstack._layout(ms.name, _generation_for.fit_id) l
     WHERE g.model_set = ms.name AND g.state IN ('served', 'retained')
       AND g.multipliers = l.multipliers AND g.storage = l.storage AND g.width = l.width
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)
     ORDER BY g.state = 'served' DESC, g.id DESC LIMIT 1
$$;
COMMENT ON FUNCTION embedstack._generation_for(embedstack.model_sets, bigint) IS
  'Internal: the live generation that holds a fit''s stored layout (served first), if any.';

-- The live generations of a model set: the ones the freshness triggers keep up to date (the
-- served one, the ones retained for rollback, the one being written), with an existing table.
CREATE FUNCTION embedstack._live_generations(model_set text) RETURNS SETOF embedstack.generations
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.* FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation
     WHERE g.model_set = _live_generations.model_set ORDER BY g.id
$$;
COMMENT ON FUNCTION embedstack._live_generations(text) IS
  'Internal: the generations whose tables exist (served, retained, being written).';

-- The combined-vector expression over a row alias `r` for a generation's layout.
CREATE FUNCTION embedstack._combine_expr(ms embedstack.model_sets, g embedstack.generations, r text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    -- (a generation with a learned projection: the projecting kernel, given the projection's id)
    SELECT format('embedstack.%I(%s%L::float8[], %L::int4[], %L::text[], %I.%I, %s)',
                  CASE WHEN g.projection IS NULL THEN '_combine_' ELSE '_project_' END || g.storage,
                  CASE WHEN g.projection IS NULL THEN '' ELSE g.projection || '::int8, ' END,
                  g.multipliers, ms.model_dims, ms.model_columns::text[], r, ms.key_column,
                  (SELECT string_agg(format('%I.%I', r, c), ', ' ORDER BY o) FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)))
$$;
COMMENT ON FUNCTION embedstack._combine_expr(embedstack.model_sets, embedstack.generations, text) IS
  'Internal: SQL of the combined vector of row alias r for a generation''s layout.';

-- The statements that apply one source statement's changes to every live generation (called by
-- the trigger, with the transition tables embedstack_new / embedstack_old in scope; a generation
-- whose index is being built gets the changed keys in its pending table instead). STABLE: it
-- reads the catalog with the trigger's snapshot, the latest one (a generation registered by a
-- job that committed after the writing transaction began is seen). A generation's row is
-- replaced by DELETE + INSERT, never UPDATE: a HOT update would leave a broken HOT chain that
-- makes the generation's new HNSW index unusable (indcheckxmin) to every snapshot older than
-- the build in the whole cluster. UPDATE: only the keys whose model values changed (compared
-- inside the statement: a trigger with transition tables cannot have a column list).
CREATE FUNCTION embedstack._freshness_sql(model_set text, relid oid, event text) RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets;
    si record;
    g embedstack.generations;
    vnsp name := embedstack._vector_schema();
    k text;
    differ text;
    changed_old text;
    changed_new text;
    part boolean := false;
    leaving text;
    out text[] := '{}';
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    IF FOUND AND event = 'CATCHUP_BATCH' THEN
        -- relid: a retained generation that records keys; up to 1,000 recorded entries taken out of
        -- its pending table and written again from the source, in one statement, while writers go
        -- on recording (embedstack.catch_up): the entries are deleted before the source is read,
        -- so a key a writer records meanwhile stays recorded for a later batch. A key the source no
        -- longer has is deleted; the others are upserted (never HOT: the vector is indexed).
        SELECT * INTO g FROM embedstack.generations x
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained'
           AND embedstack._is_pending_table(ms, x);
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a retained generation of model set "%" with recorded keys', relid::regclass, ms.name
                USING ERRCODE = '22023';
        END IF;
        si := embedstack._source_info(ms);
        k := format('%I', ms.key_column);
        RETURN ARRAY[format(
            'WITH batch AS (DELETE FROM %1$s p WHERE p.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT q.ctid FROM %1$s q LIMIT 1000)) '
            'RETURNING p.%2$s), keys AS (SELECT DISTINCT b.%2$s AS k FROM batch b), '
            'gone AS (DELETE FROM %3$s g USING keys WHERE g.%2$s %4$s keys.k '
            'AND NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %4$s keys.k) RETURNING 1) '
            'INSERT INTO %3$s AS g (%2$s, %6$I) SELECT s.%2$s, %7$s FROM %5$s s JOIN keys ON s.%2$s %4$s keys.k '
            'ON CONFLICT (%2$s) DO UPDATE SET %6$I = EXCLUDED.%6$I',
            g.pending, k, g.relation, si.key_eq, ms.source, ms.combined_column, embedstack._combine_expr(ms, g, 's'))];
    END IF;
    IF FOUND AND event = 'CATCHUP' THEN
        -- relid: a retained generation of the model set; the keys its pending table recorded while
        -- it was not served are written again from the source (the rollback holds SHARE on it).
        SELECT * INTO g FROM embedstack.generations x
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained'
           AND embedstack._is_pending_table(ms, x);
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a retained generation of model set "%" with recorded keys', relid::regclass, ms.name
                USING ERRCODE = '22023';
        END IF;
        si := embedstack._source_info(ms);
        k := format('%I', ms.key_column);
        RETURN ARRAY[
            format('DELETE FROM %1$s g USING (SELECT DISTINCT p.%2$s AS k FROM %3$s p) p WHERE g.%2$s %4$s p.k',
                   g.relation, k, g.pending, si.key_eq),
            format('INSERT INTO %1$s (%2$s, %3$I) SELECT s.%2$s, %4$s FROM %5$s s JOIN (SELECT DISTINCT p.%2$s AS k FROM %6$s p) p '
                   'ON s.%2$s %7$s p.k', g.relation, k, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                   g.pending, si.key_eq)];
    END IF;
    -- relid: the source, or one of its partitions (a statement aimed at the partition fires the
    -- partition's triggers only); for DETACH, a table that was one (it still has the model
    -- set's triggers: sql/partitions.sql drops them afterwards).
    IF FOUND AND ms.source::oid <> relid THEN
        part := CASE WHEN event = 'DETACH' THEN embedstack._own_trigger(relid::regclass, ms.name, (embedstack._trigger_names(ms.name))[1])
                     ELSE ms.source::oid = ANY (ARRAY(SELECT a.relid::oid FROM pg_partition_ancestors(relid) a)) END;
        IF NOT part THEN
            ms := NULL;
        ELSIF (SELECT c.relowner FROM pg_class c WHERE c.oid = relid) <> (SELECT c.relowner FROM pg_class c WHERE c.oid = ms.source) THEN
            -- The trigger runs as the partition's owner, who may not write the generations.
            RAISE EXCEPTION 'partition % of % has another owner than the table, so model set "%" cannot keep its rows served',
                relid::regclass, ms.source, ms.name USING ERRCODE = '0A000',
                HINT = format('ALTER TABLE %s OWNER TO %I', relid::regclass, (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = ms.source));
        END IF;
    END IF;
    IF ms.name IS NULL THEN
        -- Not this table's model set (a pg_dump -n of the schema restored without the catalog
        -- rows, or the name now belongs to another table): nothing to keep fresh here, and the
        -- table stays writable; the catalog row of another table is never touched.
        RAISE WARNING 'embedstack: trigger on % names model set "%", which is not a model set of this table: nothing done',
            relid::regclass, model_set
            USING HINT = 'the model set is gone: drop the embedstack_* triggers of this table';
        RETURN '{}';
    END IF;
    si := embedstack._source_info(ms);
    k := format('%I', ms.key_column);
    -- Model values of o and n differ (NULL = NULL counts as the same).
    SELECT string_agg(format('NOT coalesce(o.%1$I %2$s n.%1$I, o.%1$I IS NULL AND n.%1$I IS NULL)', c,
                             CASE WHEN t::oid IN (SELECT ty.oid FROM pg_type ty WHERE ty.typnamespace =
                                                    (SELECT x.oid FROM pg_namespace x WHERE x.nspname = vnsp))
                                  THEN format('OPERATOR(%I.=)', vnsp) ELSE 'OPERATOR(pg_catalog.=)' END), ' OR ')
      INTO differ FROM unnest(ms.model_columns, ms.model_types) u(c, t);
    changed_old := format('SELECT o.%1$s FROM embedstack_old o LEFT JOIN embedstack_new n ON n.%1$s %2$s o.%1$s '
                          'WHERE n.%1$s IS NULL OR %3$s', k, si.key_eq, differ);
    changed_new := format('SELECT n.* FROM embedstack_new n LEFT JOIN embedstack_old o ON o.%1$s %2$s n.%1$s '
                          'WHERE o.%1$s IS NULL OR %3$s', k, si.key_eq, differ);
    -- Rows that leave the source with no transition table: a partition truncated (BEFORE
    -- TRUNCATE: they are still there) or detached (still in the detached table), or, PRUNE, a
    -- dropped partition's (gone: every key the source no longer has).
    IF event IN ('DETACH', 'TRUNCATE') AND part THEN
        leaving := format('SELECT p.%s FROM %s p', k, relid::regclass);
    ELSIF event = 'PRUNE' THEN
        IF relid <> ms.source::oid THEN
            RAISE EXCEPTION 'PRUNE applies to the source of model set "%"', ms.name USING ERRCODE = '22023';
        END IF;
    END IF;
    FOR g IN SELECT * FROM embedstack._live_generations(ms.name) LOOP
        IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g) THEN
            -- The catalog row names a relation that is not provably the generation's pending-keys
            -- table (or none any more): nothing is recorded into or truncated in it (0.4.1), the
            -- generation is written instead.
            g.pending := NULL;
            g.pending_open := false;
        END IF;
        IF event = 'PRUNE' THEN
            out := out || format(CASE WHEN g.pending_open
                                      THEN 'INSERT INTO %4$s (%2$s) SELECT g.%2$s FROM %1$s g WHERE NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %3$s g.%2$s)'
                                      ELSE 'DELETE FROM %1$s g WHERE NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %3$s g.%2$s)' END,
                                 g.relation, k, si.key_eq, g.pending, ms.source);
        ELSIF leaving IS NOT NULL THEN
            out := out || CASE WHEN g.pending_open THEN format('INSERT INTO %s (%s) %s', g.pending, k, leaving)
                               ELSE format('DELETE FROM %1$s g USING (%2$s) p WHERE g.%3$s %4$s p.%3$s', g.relation, leaving, k, si.key_eq) END;
        ELSIF event = 'ATTACH' THEN
            -- A partition's rows join the source (replacing whatever a generation held for them).
            IF NOT part THEN
                RAISE EXCEPTION '% is not a partition of the source of model set "%"', relid::regclass, ms.name USING ERRCODE = '22023';
            END IF;
            out := out || CASE WHEN g.pending_open THEN ARRAY[format('INSERT INTO %s (%s) SELECT p.%2$s FROM %s p', g.pending, k, relid::regclass)]
                               ELSE ARRAY[format('DELETE FROM %1$s g USING %2$s p WHERE g.%3$s %4$s p.%3$s', g.relation, relid::regclass, k, si.key_eq),
                                          format('INSERT INTO %1$s (%2$s, %3$I) SELECT p.%2$s, %4$s FROM %5$s p', g.relation, k,
                                                 ms.combined_column, embedstack._combine_expr(ms, g, 'p'), relid::regclass)] END;
        ELSIF event = 'DETACH' THEN
            RAISE EXCEPTION '% is not a detached partition of the source of model set "%"', relid::regclass, ms.name USING ERRCODE = '22023';
        ELSIF g.pending_open AND event <> 'TRUNCATE' THEN
            -- Its index is being built: record the keys, the job applies them afterwards.
            out := out || format('INSERT INTO %s (%s) %s', g.pending, k, CASE event
                WHEN 'INSERT' THEN format('SELECT n.%s FROM embedstack_new n', k)
                WHEN 'DELETE' THEN format('SELECT o.%s FROM embedstack_old o', k)
                ELSE format('SELECT d.%1$s FROM (%2$s) d UNION ALL SELECT n.%1$s FROM (%3$s) n', k, changed_old, changed_new) END);
        ELSIF event = 'TRUNCATE' THEN
            out := out || format('TRUNCATE %s', g.relation);
            IF g.pending IS NOT NULL THEN
                out := out || format('TRUNCATE %s', g.pending);
            END IF;
        ELSIF event = 'DELETE' THEN
            out := out || format('DELETE FROM %1$s g USING embedstack_old o WHERE g.%2$s %3$s o.%2$s', g.relation, k, si.key_eq);
        ELSIF event = 'INSERT' THEN
            out := out || format('INSERT INTO %1$s (%2$s, %3$I) SELECT n.%2$s, %4$s FROM embedstack_new n', g.relation, k,
                                 ms.combined_column, embedstack._combine_expr(ms, g, 'n'));
        ELSIF event = 'UPDATE' THEN
            out := out || format('DELETE FROM %1$s g USING (%2$s) d WHERE g.%3$s %4$s d.%3$s', g.relation, changed_old, k, si.key_eq)
                       || format('INSERT INTO %1$s (%2$s, %3$I) SELECT n.%2$s, %4$s FROM (%5$s) n', g.relation, k, ms.combined_column,
                                 embedstack._combine_expr(ms, g, 'n'), changed_new);
        ELSE
            RAISE EXCEPTION 'unknown trigger event %', event USING ERRCODE = '39P01';
        END IF;
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION embedstack._freshness_sql(text, oid, text) IS
  'Internal: the statements that apply a source statement''s transition tables to the live generations.';

-- Installs the four freshness triggers (or keeps them) on the source and on every table of its
-- partition tree (a statement aimed at a partition fires that partition's statement triggers
-- only), checking that their names are free. On a partition, the TRUNCATE trigger runs BEFORE:
-- the partition's rows leave the source and are read before they go.
CREATE FUNCTION embedstack._install_triggers(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT p.relid FROM embedstack._source_tables(ms.source) p JOIN pg_class c ON c.oid = p.relid
                WHERE c.relkind IN ('r', 'p') ORDER BY p.level, p.relid LOOP
        PERFORM embedstack._install_triggers_on(ms, rel);
    END LOOP;
    -- The row trigger of 0.2.x, if a model set upgraded from it still has one.
    IF embedstack._own_trigger(ms.source, ms.name, embedstack._trigger_name(ms.name)) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', embedstack._trigger_name(ms.name), ms.source);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._install_triggers(embedstack.model_sets) IS
  'Internal: creates the model set''s statement-level freshness triggers on its source and its partitions.';

-- The four freshness triggers on one table of the source's partition tree.
CREATE FUNCTION embedstack._install_triggers_on(ms embedstack.model_sets, rel regclass) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names name[] := embedstack._trigger_names(ms.name);
    events text[] := ARRAY['AFTER INSERT', 'AFTER UPDATE', 'AFTER DELETE',
                           CASE WHEN rel = ms.source THEN 'AFTER TRUNCATE' ELSE 'BEFORE TRUNCATE' END];
    refs text[] := ARRAY['REFERENCING NEW TABLE AS embedstack_new',
                         'REFERENCING OLD TABLE AS embedstack_old NEW TABLE AS embedstack_new',
                         'REFERENCING OLD TABLE AS embedstack_old', ''];
BEGIN
    FOR i IN 1 .. 4 LOOP
        CONTINUE WHEN embedstack._own_trigger(rel, ms.name, names[i]);
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = names[i]) THEN
            RAISE EXCEPTION 'trigger "%" on % is in the way of model set "%"', names[i], rel, ms.name
                USING ERRCODE = '42710', HINT = 'rename or drop that trigger';
        END IF;
        EXECUTE format('CREATE TRIGGER %I %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION embedstack._refresh_generations(%L)',
                       names[i], events[i], rel, refs[i], ms.name);
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._install_triggers_on(embedstack.model_sets, regclass) IS
  'Internal: creates the model set''s four freshness triggers on one table of its source''s partition tree.';

-- The served view over generation g: key and combined vector, the vector cast to its type
-- without a dimension (so that a refit that changes the width can redefine the view in place,
-- and views users built on it keep working), gated by _may_read_served (a scalar subquery:
-- evaluated once per query, on the node that plans it -- with Citus, the coordinator).
CREATE FUNCTION embedstack._view_sql(ms embedstack.model_sets, g embedstack.generations, replace boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('CREATE %sVIEW %I.%I AS SELECT g.%I, g.%I::%I.%I AS %I FROM %s g WHERE (SELECT embedstack._may_read_served(%L, %L::pg_catalog.regclass))',
                  CASE WHEN replace THEN 'OR REPLACE ' ELSE '' END, (embedstack._source_info(ms)).nsp, ms.view_name,
                  ms.key_column, ms.combined_column, embedstack._vector_schema(), g.storage, ms.combined_column,
                  g.relation, ms.name, g.relation::text)
$$;
COMMENT ON FUNCTION embedstack._view_sql(embedstack.model_sets, embedstack.generations, boolean) IS
  'Internal: the definition of a model set''s served view over a generation.';

-- A new served view: owned by the source's owner, readable by PUBLIC behind its gate, and
-- read-only (a simple view is auto-updatable: its owner could otherwise change a generation
-- through it by accident; the freshness triggers and jobs write the generation tables).
CREATE FUNCTION embedstack._view_privileges(ms embedstack.model_sets, nsp name, owner name) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %I', nsp, ms.view_name, owner);
    -- (TRUNCATE stays: a view cannot be truncated, and it is the privilege that lets the cut-over
    -- LOCK the view in ACCESS EXCLUSIVE mode.)
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %I.%I FROM %I', nsp, ms.view_name, owner);
    EXECUTE format('GRANT SELECT ON %I.%I TO PUBLIC', nsp, ms.view_name);
END $$;
COMMENT ON FUNCTION embedstack._view_privileges(embedstack.model_sets, name, name) IS
  'Internal: owner, read-only and PUBLIC SELECT of a new served view.';

-- Points the served view at generation g: created the first time (owned by the source's owner,
-- readable by PUBLIC behind its gate), redefined in place after that; dropped and created again
-- only when the storage type changes (vector <-> halfvec), which views built on it prevent
-- (2BP01). Takes the view's lock with at most lock_timeout_ms of waiting (55P03 otherwise;
-- NULL: the session's lock_timeout). The lock is the one CREATE OR REPLACE VIEW (or DROP VIEW)
-- takes on the view alone, never LOCK TABLE: on a view, LOCK recurses into the tables it reads,
-- i.e. ACCESS EXCLUSIVE on the served generation, which every writer's trigger writes and
-- autovacuum vacuums -- under a steady write load a 50 ms attempt rarely won (a refit's cut-over
-- took 73 s at 20,000 rows), and while autovacuum vacuumed it (minutes, for an HNSW index) none
-- did: autovacuum yields only to a lock wait longer than deadlock_timeout.
CREATE FUNCTION embedstack._point_view(ms embedstack.model_sets, g embedstack.generations, lock_timeout_ms integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    si record := embedstack._source_info(ms);
    ours boolean := embedstack._is_served_view(ms);
    prev_timeout text := current_setting('lock_timeout');
BEGIN
    IF ours IS NULL THEN
        EXECUTE embedstack._view_sql(ms, g, false);
        PERFORM embedstack._view_privileges(ms, si.nsp, si.owner);
        RETURN;
    END IF;
    IF NOT ours THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served view of model set "%"', si.nsp, ms.view_name, ms.name
            USING ERRCODE = '42P07',
            HINT = 'rename or drop it; if it is the model set''s view and the source table was given to another role '
                   '(ALTER TABLE ... OWNER TO), give the view and the generation tables to that role too (REASSIGN OWNED)';
    END IF;
    IF lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', lock_timeout_ms || 'ms', true);
    END IF;
    IF ms.served_storage IS NOT DISTINCT FROM g.storage THEN
        EXECUTE embedstack._view_sql(ms, g, true);
        PERFORM set_config('lock_timeout', prev_timeout, true);
    ELSE
        BEGIN
            EXECUTE format('DROP VIEW %I.%I', si.nsp, ms.view_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE EXCEPTION 'the served view %.% of model set "%" changes type from % to %, and objects depend on it',
                si.nsp, ms.view_name, ms.name, ms.served_storage, g.storage USING ERRCODE = '2BP01',
                HINT = 'drop the views built on it and materialise again, or create the model set with a fixed storage';
        END;
        PERFORM set_config('lock_timeout', prev_timeout, true);
        EXECUTE embedstack._view_sql(ms, g, false);
        PERFORM embedstack._view_privileges(ms, si.nsp, si.owner);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._point_view(embedstack.model_sets, embedstack.generations, integer) IS
  'Internal: creates or redefines the served view to read a generation.';

-- Materialising is a job (sql/jobs.sql runs it): a sequence of steps, each one short
-- transaction, committed by the driver. All state lives in the catalog and the generation
-- table, so a run killed at any point is continued by the next call, and the view, the served
-- generation and the active fit change only in the cut-over step.
--   prepare -> write (one batch per step) -> index -> wait -> cutover -> done

-- prepare: the layout; when the served generation already holds it, switching the active fit
-- is all there is to do (always so in query-weighted mode). Otherwise the generation being
-- written: resumed when it is this fit's and layout's, replaced otherwise; created (table with
-- its key's primary key, owned by the source's owner) and registered, with the triggers.
CREATE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
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
COMMENT ON FUNCTION embedstack._mat_prepare(bigint) IS
  'Internal materialise step: layout, generation table (new or resumed), freshness triggers.';

-- write: one batch of batch_size source rows in key order after the last one (keyset
-- pagination), inserted into the generation (ON CONFLICT DO NOTHING: see below). Before the first batch: wait for the transactions
-- that were writing the source when the generation was registered (their triggers may not have
-- seen it; later ones do). Each batch holds SHARE on the generation table, so a trigger's
-- change to it waits for the batch and then replaces what the batch wrote (the trigger reads
-- with the latest snapshot); a row a trigger wrote first is left alone (ON CONFLICT DO NOTHING).
CREATE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
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
COMMENT ON FUNCTION embedstack._mat_write(bigint) IS
  'Internal materialise step: one batch of rows into the generation being written.';

-- One step of job `job_id` that applies the keys a generation's (closed) pending table recorded:
-- one batch, in the step's transaction, under SHARE on the generation (its writers wait for this
-- batch only). The first `catchup_batch` distinct keys in key order (the job's details; 32 at
-- first: a first batch of 256 held writers 3 s under load at 1,408 dimensions) are re-read from
-- the source, then deleted from the pending table; the batch size adapts so that a batch takes
-- 0.1-0.5 s, and `catchup_applied` counts the rows written. False when nothing was left.
CREATE FUNCTION embedstack._pending_batch(job_id bigint, ms embedstack.model_sets, g embedstack.generations)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d jsonb := (SELECT j.details FROM embedstack.jobs j WHERE j.id = job_id);
    batch integer := coalesce((d->>'catchup_batch')::integer, 32);
    si record := embedstack._source_info(ms);
    keys text := format('(SELECT DISTINCT q.%1$I AS k FROM %2$s q ORDER BY 1 LIMIT %3$s)', ms.key_column, g.pending, batch);
    t0 timestamptz := clock_timestamp();
    elapsed double precision;
    written bigint;
    removed bigint;
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', g.relation);
    EXECUTE format('DELETE FROM %1$s g USING %2$s p WHERE g.%3$I %4$s p.k', g.relation, keys, ms.key_column, si.key_eq);
    EXECUTE format('INSERT INTO %1$s (%2$I, %3$I) SELECT s.%2$I, %4$s FROM %5$s s JOIN %6$s p ON s.%2$I %7$s p.k',
                   g.relation, ms.key_column, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                   keys, si.key_eq);
    GET DIAGNOSTICS written = ROW_COUNT;
    EXECUTE format('DELETE FROM %1$s q USING %2$s p WHERE q.%3$I %4$s p.k', g.pending, keys, ms.key_column, si.key_eq);
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed = 0 THEN
        RETURN false;
    END IF;
    elapsed := extract(epoch FROM clock_timestamp() - t0);
    PERFORM embedstack._w_job_update(job_id, NULL, NULL, NULL, NULL, NULL, NULL,
        jsonb_build_object('catchup_batch', CASE WHEN elapsed > 0.5 THEN greatest(batch / 2, 16)
                                                 WHEN elapsed < 0.1 THEN least(batch * 2, 65536) ELSE batch END,
                           'catchup_applied', coalesce((d->>'catchup_applied')::bigint, 0) + written));
    RETURN true;
END $$;
COMMENT ON FUNCTION embedstack._pending_batch(bigint, embedstack.model_sets, embedstack.generations) IS
  'Internal job step: applies one batch of a generation''s recorded keys under SHARE on it (0.1-0.5 s, adapted).';

-- index: the HNSW index (inner product: exact weighted-sum ranking even with missing blocks)
-- on the generation, built without stalling the source's writers, as CREATE INDEX
-- CONCURRENTLY would (which a procedure cannot run): CREATE INDEX holds SHARE on the generation,
-- so for the build the freshness triggers record the keys they change in a pending table
-- instead of writing the generation; then the triggers write it again and the job applies the
-- pending keys. Each step below is one committed transaction (the job returns to 'index'):
--   1. create (or reopen) the pending table;       2. wait for writers that missed it;
--   3. build the index (kept when an interrupted run left it valid);
--   4. close the pending table;                    5. wait for writers still recording into it;
--   6. apply the pending keys in batches (each under SHARE on the generation, one transaction)
--      and drop the table; the horizon for the cut-over wait is that last transaction.
CREATE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    si record;
    idx regclass;
    n bigint;
    workers integer;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    -- The keys written during the build recorded in a relation that is not provably the
    -- generation's pending-keys table (0.4.1; 0.4.0 reopened, indexed, emptied and dropped whatever
    -- relation the catalog row named): they are not known, so the generation is written anew --
    -- that relation left alone (a WARNING), the generation dropped (its own table only), the job
    -- back at prepare with the index steps' state reset.
    IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g)
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
        PERFORM embedstack._drop_pending(ms, g);
        PERFORM embedstack._drop_generation(ms, g.id);
        RAISE NOTICE 'embedstack: model set "%": generation % is written anew (the keys written during its index build are '
                     'not in a table of its own)', ms.name, g.id;
        PERFORM embedstack._w_job_update(job_id, 'prepare', 0, NULL, NULL, NULL, NULL,
            '{"index_synced": false, "catchup_synced": false, "catchup_indexed": false, "catchup_keys": 0,
              "catchup_applied": 0, "catchup_batch": null}'::jsonb);
        RETURN 'prepare';
    END IF;
    si := embedstack._source_info(ms);
    idx := to_regclass(format('%I.%I', si.nsp, g.index_name));
    IF idx IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = idx AND i.indrelid = g.relation) THEN
        -- Someone else took the name: another one, with a random suffix.
        g.index_name := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation),
                                                 'hnsw_' || embedstack._random_hex6());
        PERFORM embedstack._w_generation_set(ms.name, g.id, NULL, g.index_name, NULL, NULL);
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF idx IS NOT NULL AND NOT (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = idx) THEN
        EXECUTE format('DROP INDEX %s', idx);
        idx := NULL;
    END IF;
    IF idx IS NULL AND embedstack._distributed_on(ms.source) IS NOT NULL THEN
        -- No freshness triggers on a distributed source: nothing to record meanwhile.
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.% (one per shard)', ms.name, si.nsp, g.index_name;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name,
                                  '{"index_synced": true}'::jsonb);
        RETURN 'index';
    END IF;
    IF idx IS NULL THEN
        IF g.pending IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN     -- 1
            PERFORM embedstack._create_pending(ms, g);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT g.pending_open THEN
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, true);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'index_synced')::boolean, false) THEN                              -- 2
            PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;  -- each partition: a writer aimed at one locks only it
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        -- 3. With parallel workers: the planner sizes them from the main fork, which TOASTed
        -- vectors leave tiny (0.3.x built every index with none); the table's parallel_workers
        -- decides instead, capped by max_parallel_maintenance_workers as PostgreSQL caps it.
        workers := greatest(current_setting('max_parallel_maintenance_workers')::integer, 0);
        EXECUTE format('ALTER TABLE %s SET (parallel_workers = %s)', g.relation, workers);
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.% (up to % parallel workers)', ms.name, si.nsp,
            g.index_name, workers;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF embedstack._is_pending_table(ms, g) THEN
        IF g.pending_open THEN                                                                          -- 4
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, false);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'catchup_synced')::boolean, false) THEN                            -- 5
            PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;  -- each partition: a writer aimed at one locks only it
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        -- 6. The pending keys, in batches: each its own transaction under SHARE on the generation,
        -- so a writer waits for one batch at most (0.3.x applied them all under one lock, and at
        -- 100,000 rows writers stalled for 348 s). A batch is the first `catchup_batch` distinct
        -- keys in key order (an index on the pending table, made once: it no longer changes),
        -- re-read from the source, then deleted from the pending table in the same transaction;
        -- the batch size adapts to take 0.1-0.5 s.
        IF NOT coalesce((j.details->>'catchup_indexed')::boolean, false) THEN
            EXECUTE format('CREATE INDEX ON %s (%I)', g.pending, ms.key_column);
            EXECUTE format('SELECT count(DISTINCT p.%I) FROM %s p', ms.key_column, g.pending) INTO n;
            IF n > 0 THEN
                RAISE NOTICE 'embedstack: model set "%": applying % rows written meanwhile to generation %', ms.name, n, g.id;
            END IF;
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL,
                jsonb_build_object('catchup_indexed', true, 'catchup_applied', 0, 'catchup_keys', n));
            RETURN 'index';
        END IF;
        IF embedstack._pending_batch(job_id, ms, g) THEN
            RETURN 'index';
        END IF;
        PERFORM embedstack._drop_pending(ms, g);
        IF coalesce((j.details->>'catchup_keys')::bigint, 0) > 0 THEN
            RAISE NOTICE 'embedstack: model set "%": % rows written meanwhile applied to generation %', ms.name,
                (j.details->>'catchup_applied')::bigint, g.id;
        END IF;
    ELSIF idx IS NOT NULL AND NOT coalesce((j.details->>'index_synced')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": the HNSW index %.% of an interrupted run is complete, keeping it',
            ms.name, si.nsp, g.index_name;
    END IF;
    -- Transactions whose snapshot predates this one could read the generation without these
    -- rows; the cut-over waits for them (see _cutover_ready).
    PERFORM embedstack._w_job_update(job_id, 'wait', NULL, NULL, NULL, NULL, g.index_name,
        jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions()),
                           'wait_started', clock_timestamp()));
    RETURN 'wait';
END $$;
COMMENT ON FUNCTION embedstack._mat_index(bigint) IS
  'Internal materialise step: the HNSW index of the generation, built while the triggers record changed keys '
  'in a pending table, which is applied afterwards.';

-- (Both checks below call pg_backend_pid(): PARALLEL RESTRICTED, as it is.)
-- May the cut-over happen? Not while a transaction of this database older than the last write
-- to the new generation still runs: through the redefined view it would read the generation with
-- a snapshot that predates its rows, i.e. as (partly) empty. So, as CREATE INDEX CONCURRENTLY
-- does, wait:
--   horizon: the xid of the index step's last transaction (after every batch and catch-up);
--   every session of this database whose xid or snapshot xmin we can see must be newer;
--   sessions whose details we may not see (other roles', without pg_read_all_stats) must have
--   ended the transaction they were in when the writing finished (hidden: their virtual xids).
-- Sessions of other databases cannot read this database's tables and are not waited for (the
-- generation's index never needs an old-snapshot wait: its table is only ever inserted into and
-- deleted from, so CREATE INDEX never marks it indcheckxmin). Autovacuum plans no query; and
-- sessions blocked by this one are not waited for (a materialize or refit queued with
-- wait => true holds its statement's snapshot while it waits for the job lock).
CREATE FUNCTION embedstack._cutover_ready(horizon xid8, hidden text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN NOT EXISTS (SELECT 1 FROM embedstack._old_transactions(horizon))
       AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (hidden));
END $$;
COMMENT ON FUNCTION embedstack._cutover_ready(xid8, text[]) IS
  'Internal: true when no transaction of this database that predates the horizon is still running.';

-- The pids of this database's client sessions whose transaction or snapshot predates `horizon`.
CREATE FUNCTION embedstack._old_transactions(horizon xid8) RETURNS SETOF integer
LANGUAGE sql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.pid FROM pg_stat_activity a
     WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
       AND a.backend_type IN ('client backend', 'background worker')
       AND greatest(age(a.backend_xid), age(a.backend_xmin)) >= age((horizon::text::numeric % 4294967296)::text::xid)
       AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;
COMMENT ON FUNCTION embedstack._old_transactions(xid8) IS
  'Internal: pids of this database''s sessions whose transaction or snapshot is older than the horizon.';

-- The virtual xids of this database's other sessions whose details the caller may not see.
CREATE FUNCTION embedstack._hidden_transactions() RETURNS text[]
LANGUAGE sql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'virtualxid' AND l.granted AND a.pid <> pg_backend_pid()
       AND a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
       AND a.state IS NULL AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;
COMMENT ON FUNCTION embedstack._hidden_transactions() IS
  'Internal: virtual xids of this database''s sessions the caller may not inspect.';

-- wait: until no transaction older than the last batch runs (see _cutover_ready); the old
-- generation serves meanwhile. Sleeps 0.1 s per step; the driver commits between steps. Gives
-- up after embedstack.cutover_wait_timeout (55000; a new call resumes here).
CREATE FUNCTION embedstack._mat_wait(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    timeout_ms integer := embedstack._cutover_wait_timeout();
    waited interval;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    IF embedstack._cutover_ready((j.details->>'horizon')::xid8,
                                 ARRAY(SELECT jsonb_array_elements_text(j.details->'hidden'))) THEN
        PERFORM embedstack._w_job_update(job_id, 'cutover');
        RETURN 'cutover';
    END IF;
    waited := clock_timestamp() - coalesce((j.details->>'wait_started')::timestamptz, clock_timestamp());
    IF timeout_ms > 0 AND waited > timeout_ms * interval '1 ms' THEN
        RAISE EXCEPTION 'model set "%": gave up waiting after % for transactions older than the new generation (pids %)',
            j.model_set, date_trunc('second', waited),
            coalesce((SELECT string_agg(p::text, ', ') FROM embedstack._old_transactions((j.details->>'horizon')::xid8) p), 'not visible to you')
            USING ERRCODE = '55000',
            HINT = 'the new generation is complete and indexed, the old one still serves: CALL the procedure again to '
                   'resume the wait, end those transactions, or raise embedstack.cutover_wait_timeout';
    END IF;
    IF NOT coalesce((j.details->>'waiting')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new generation to finish (pids %)',
            j.model_set, coalesce((SELECT string_agg(p::text, ', ') FROM embedstack._old_transactions((j.details->>'horizon')::xid8) p),
                                  'not visible to you');
        PERFORM embedstack._w_job_update(job_id, 'wait', NULL, NULL, NULL, NULL, NULL, '{"waiting": true}'::jsonb);
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;
COMMENT ON FUNCTION embedstack._mat_wait(bigint) IS
  'Internal materialise step: waits for older transactions of this database, bounded by embedstack.cutover_wait_timeout.';

-- Drops the retained generations beyond embedstack.keep_generations (newest served first; the
-- previous one, which rollback serves, is kept while the setting is at least 1), and any with the
-- served generation's layout, skipping those still in use.
CREATE FUNCTION embedstack._retain(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    keep integer := embedstack._keep_generations();
    g record;
BEGIN
    -- A retained generation with the served one's layout serves nothing the served one does not
    -- (the one a refresh replaced): dropped, not counted.
    FOR g IN SELECT x.id FROM embedstack.generations x JOIN embedstack.generations s ON s.id = ms.served_generation
              WHERE x.model_set = ms.name AND x.state = 'retained' AND x.multipliers = s.multipliers
                AND x.storage = s.storage LOOP
        PERFORM embedstack._drop_generation(ms, g.id, true);
    END LOOP;
    FOR g IN SELECT x.id FROM embedstack.generations x
              WHERE x.model_set = ms.name AND x.state = 'retained'
              ORDER BY x.id = ms.previous_generation DESC, x.served_at DESC NULLS LAST, x.id DESC OFFSET keep LOOP
        PERFORM embedstack._drop_generation(ms, g.id, true);
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._retain(text) IS
  'Internal: drops retained generations beyond embedstack.keep_generations.';

-- 55P03 naming the sessions that hold a lock on the served view, once the cut-over (or a
-- rollback) has tried to lock it for longer than embedstack.cutover_wait_timeout since `started`.
CREATE FUNCTION embedstack._give_up_locking_view(ms embedstack.model_sets, started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    timeout_ms integer := embedstack._cutover_wait_timeout();
    nsp name := (embedstack._source_info(ms)).nsp;
BEGIN
    IF timeout_ms > 0 AND clock_timestamp() - started > timeout_ms * interval '1 ms' THEN
        RAISE EXCEPTION 'model set "%": gave up after % trying to lock its served view %.% (held by pids %)', ms.name,
            date_trunc('second', clock_timestamp() - started), nsp, ms.view_name,
            coalesce((SELECT string_agg(DISTINCT l.pid::text, ', ') FROM pg_locks l
                       WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
                         AND l.relation = to_regclass(format('%I.%I', nsp, ms.view_name))), 'unknown')
            USING ERRCODE = '55P03',
            HINT = 'the sessions named hold a lock on the view (e.g. a long transaction that read it): end them, then CALL '
                   'the procedure again (a materialize or refit resumes at the cut-over), or raise embedstack.cutover_wait_timeout';
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._give_up_locking_view(embedstack.model_sets, timestamptz) IS
  'Internal: 55P03 naming the lock holders once locking the served view took longer than embedstack.cutover_wait_timeout.';

-- cutover: one short transaction that locks only the served view: the view reads the new
-- generation, the catalog says what is served, older generations beyond the retention go.
CREATE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
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
COMMENT ON FUNCTION embedstack._mat_cutover(bigint) IS
  'Internal materialise step: points the served view at the new generation and records it.';

-- Writes the model set's combined vectors for a fit into a new generation table, in batches of
-- batch_size rows each committed, then builds its HNSW index (inner product) and cuts over in
-- one short transaction that redefines the served view. The view, what it serves and the
-- active fit stay as they were until that last transaction; the source table is only read.
-- Must be called outside an explicit transaction block (it COMMITs); re-running it after an
-- interruption continues with the rows not written yet. One materialize, refit or rollback per
-- model set at a time: another caller gets 55P03 at once, or with wait => true queues behind it.
CREATE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000,
                                        wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    fid bigint := fit_id;
    job bigint;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, batch_size, wait);
    PERFORM embedstack._check_job_runner(ms);
    IF fid IS NULL AND ms.held_since IS NOT NULL THEN
        RAISE EXCEPTION 'model set "%" is held since % (%)', ms.name, ms.held_since, ms.held_reason USING ERRCODE = '55000',
            HINT = pg_catalog.format('SELECT embedstack.release(%L) ends the hold, or pass fit_id => the fit to serve', ms.name);
    END IF;
    IF fid IS NULL THEN
        -- The latest fit that no refit rejected (a refit that kept the active fit recorded the
        -- new one as kept: serving it by default would undo that decision).
        SELECT max(f.id) INTO fid FROM embedstack.fits f
         WHERE f.model_set = ms.name AND NOT coalesce((f.diagnostics->>'underdetermined')::boolean, false)
           AND NOT EXISTS (SELECT 1 FROM embedstack.jobs j
                            WHERE j.model_set = ms.name AND j.kind = 'refit' AND j.state = 'kept' AND j.fit_id = f.id);
        IF fid IS NULL THEN
            RAISE EXCEPTION 'model set "%" has no fit to serve', ms.name USING ERRCODE = '55000',
                HINT = CASE WHEN EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.model_set = ms.name)
                            THEN 'its fits had fewer pairs than weights + intercept (underdetermined) or a refit rejected them: '
                                 'fit with more pairs, or pass fit_id'
                            ELSE 'run embedstack.fit first' END;
        END IF;
    END IF;
    PERFORM embedstack._layout(ms.name, fid);   -- 42704, 22023, 54000 before anything changes
    PERFORM embedstack._lock_model_set(ms.name, wait);
    IF ms.held_since IS NOT NULL THEN
        -- A fit named explicitly ends a rollback's hold (the DBA chose what to serve).
        PERFORM embedstack._w_hold(ms.name, NULL);
        RAISE NOTICE 'embedstack: model set "%": the hold of the rollback (%) ends: serving fit % was asked for', ms.name,
            ms.held_reason, fid;
    END IF;
    -- (After the lock, like the COMMIT it stands for: a failure here releases the lock as any.)
    PERFORM embedstack._require_no_transaction_block('materialize');
    job := embedstack._w_job_start(ms.name, 'materialize', pg_catalog.jsonb_build_object('batch_size', batch_size), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._w_job_update(job, 'prepare', NULL, NULL, NULL, fid);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL embedstack._run_job(job);
END $$;
COMMENT ON PROCEDURE embedstack.materialize(text, bigint, integer, boolean) IS
  'Writes the combined vectors of a fit (default: the newest fit no refit rejected) into a new generation table '
  'in committed batches, builds its HNSW index and switches the served view to it in one short transaction. '
  'Resumable; one job per model set at a time (55P03, or wait => true). Outside a transaction block only (2D000).';

-- Writes the active fit's vectors into a new generation (a materialise that does not take the
-- shortcut of an unchanged layout): for a distributed (Citus) source, which has no freshness
-- triggers, this is how changes to it reach the served vectors; elsewhere it rebuilds the served
-- generation and its index from scratch (e.g. after bulk changes, to compact them).
CREATE PROCEDURE embedstack.refresh(model_set text, batch_size integer DEFAULT 10000, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    job bigint;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, batch_size, wait);
    PERFORM embedstack._check_job_runner(ms);
    IF ms.active_fit IS NULL THEN
        RAISE EXCEPTION 'model set "%" is not served yet', ms.name USING ERRCODE = '55000',
            HINT = 'CALL embedstack.materialize first';
    END IF;
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('refresh');
    ms := embedstack._model_set(ms.name);
    job := embedstack._w_job_start(ms.name, 'materialize',
        pg_catalog.jsonb_build_object('batch_size', batch_size, 'refresh', true), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._w_job_update(job, 'prepare', NULL, NULL, NULL, ms.active_fit);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL embedstack._run_job(job);
END $$;
COMMENT ON PROCEDURE embedstack.refresh(text, integer, boolean) IS
  'Writes the active fit''s vectors into a new generation and switches to it (as materialize, without the '
  'unchanged-layout shortcut): how changes to a distributed (Citus) source are served.';

-- Serves an earlier fit again, at once: the previous one (undoes the last switch; calling it
-- again switches back), or `to_fit`, any fit whose stored layout a live generation holds (the
-- served one, or one of the embedstack.keep_generations retained). No rewrite, no index build: a
-- retained generation gets the rows written since it was served (the source's writers pause for
-- that: SHARE on it, as the source's owner). The model set is then held: refit records its fits
-- but keeps this one, and a plain materialize refuses, until embedstack.release. One
-- transaction; takes the model set's job lock like materialize (55P03 or wait).
CREATE PROCEDURE embedstack.rollback(model_set text, wait boolean DEFAULT false, to_fit bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    g embedstack.generations;
    target bigint;
    n bigint;
    caller_path pg_catalog.text := pg_catalog.current_setting('search_path');
    started pg_catalog.timestamptz := pg_catalog.clock_timestamp();
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path, so it is pinned here (this procedure does not COMMIT; it may run inside the
    -- caller's transaction block, whose search_path is put back at the end).
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, 1, wait);
    PERFORM embedstack._lock_model_set(ms.name, wait);
    ms := embedstack._model_set(ms.name);
    target := coalesce(to_fit, ms.previous_fit);
    IF target IS NULL OR NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = target AND f.model_set = ms.name) THEN
        PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
        IF to_fit IS NOT NULL THEN
            RAISE EXCEPTION 'fit % of model set "%" does not exist', to_fit, ms.name USING ERRCODE = '42704',
                HINT = 'SELECT id FROM embedstack.fits WHERE model_set = ... lists them';
        END IF;
        RAISE EXCEPTION 'model set "%" has nothing to roll back to', ms.name USING ERRCODE = '55000',
            HINT = 'rollback serves the fit served before the last switch (or to_fit => id); none was served before';
    END IF;
    g := embedstack._generation_for(ms, target);
    IF g.id IS NULL THEN
        PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
        RAISE EXCEPTION 'no generation of model set "%" holds the stored vectors of fit %', ms.name, target
            USING ERRCODE = '55000',
            HINT = pg_catalog.format('embedstack.keep_generations (now %s) retained none for it: CALL embedstack.materialize(%L, fit_id => %s) '
                                     'writes one', embedstack._keep_generations(), ms.name, target);
    END IF;
    n := embedstack._switch_to(ms, g, target, started);
    PERFORM embedstack._retain(ms.name);
    PERFORM embedstack._w_hold(ms.name, pg_catalog.format('rollback to fit %s at %s', target, started));
    RAISE NOTICE '%', pg_catalog.format('embedstack: model set "%s": serving fit %s from generation %s again (%s rows changed '
        'since it was served written again); the model set is held: refits keep this fit until embedstack.release(%L)',
        ms.name, target, g.id, n, ms.name);
    PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
    PERFORM pg_catalog.set_config('search_path', caller_path, true);
END $$;
COMMENT ON PROCEDURE embedstack.rollback(text, boolean, bigint) IS
  'Serves an earlier fit again at once (the previous one, or to_fit => id) from a live generation that holds its '
  'vectors, brought up to date (no rewrite, no index build), and holds the model set until embedstack.release. '
  '55000 when no generation holds it.';

-- Ends the hold a rollback put on the model set: refits may switch again, a plain materialize
-- serves the newest fit no refit rejected.
CREATE FUNCTION embedstack.release(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    PERFORM embedstack._check_owner(ms.source);
    IF ms.held_since IS NULL THEN
        RAISE NOTICE 'embedstack: model set "%" is not held', ms.name;
        RETURN;
    END IF;
    PERFORM embedstack._w_hold(ms.name, NULL);
    RAISE NOTICE 'embedstack: model set "%" released (held since %: %)', ms.name, ms.held_since, ms.held_reason;
END $$;
COMMENT ON FUNCTION embedstack.release(text) IS
  'Ends the hold a rollback put on a model set: refits may switch the served fit again.';

-- Brings the generations kept for rollback up to date, in committed batches of up to 1,000
-- recorded keys, without pausing the source's writers (they go on recording): what a rollback
-- then has to write is only what changed since. Schedule it (pg_cron) to bound rollback time.
-- As the source's owner (_apply_as_owner); takes the model set's job lock like materialize.
CREATE PROCEDURE embedstack.catch_up(model_set text, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    g embedstack.generations;
    left_ bigint;
    rounds bigint;
    before_ bigint;
    total bigint := 0;
BEGIN
    -- (search_path pinned as in materialize, at entry and after every COMMIT.)
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, 1, wait);
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('catch_up');
    FOR g IN SELECT * FROM embedstack.generations x
              WHERE x.model_set = ms.name AND x.state = 'retained' AND x.pending_open AND x.pending IS NOT NULL
              ORDER BY x.id LOOP
        -- Only a pending-keys table that is provably the generation's is read and emptied (0.4.1).
        IF NOT embedstack._is_pending_table(ms, g) THEN
            RAISE WARNING 'embedstack: model set "%": generation % is not brought up to date: % is recorded as its '
                          'pending-keys table, but it is not one (or is gone)', ms.name, g.id, g.pending
                USING HINT = 'nothing was read or written there';
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('SELECT count(*) FROM %s', g.pending) INTO before_;
        -- At most as many batches as there were entries at the start (writers keep recording).
        rounds := before_ / 1000 + 1;
        FOR i IN 1 .. rounds LOOP
            PERFORM embedstack._apply_as_owner(ms.name, g.relation, 'CATCHUP_BATCH');
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        END LOOP;
        EXECUTE pg_catalog.format('SELECT count(*) FROM %s', g.pending) INTO left_;
        total := total + before_;
        RAISE NOTICE 'embedstack: model set "%": generation % brought up to date (% recorded entries applied, % recorded meanwhile)',
            ms.name, g.id, before_, left_;
    END LOOP;
    PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
END $$;
COMMENT ON PROCEDURE embedstack.catch_up(text, boolean) IS
  'Writes the rows changed since they were served into the generations kept for rollback, in committed batches, '
  'without pausing writers, so that a rollback has only the changes since to write. Outside a transaction block only.';
