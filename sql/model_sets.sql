-- Model sets: create, drop, fit. The materialise procedure is in materialize.sql.
-- These functions pin search_path and qualify every reference; user identifiers only ever
-- reach SQL as regclass values or through format('%I').

-- Attribute number, type and typmod of a user column, or ERROR 42703.
CREATE FUNCTION embedstack._column(rel regclass, col name, OUT attnum smallint, OUT typid oid, OUT typmod integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT a.attnum, a.atttypid, a.atttypmod INTO attnum, typid, typmod
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, rel USING ERRCODE = '42703';
    END IF;
END $$;

-- Schema of pgvector, to qualify its types and operator classes in generated DDL.
CREATE FUNCTION embedstack._vector_schema() RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector'
$$;

-- A name derived from `base` for an object the extension creates: base || '_' || tag when that
-- fits in 63 bytes and no hash is asked for, otherwise base cut (on a character boundary) to
-- make room for '_' || 8 hex digits of md5(hash_of, or base) || '_' || tag. The tag is never
-- cut, so names with different tags differ; bases that share their first ~50 bytes get
-- different hashes. Callers still check that the name is free before using it.
CREATE FUNCTION embedstack._derived_name(base text, tag text, hash_of text DEFAULT NULL) RETURNS name
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    suffix text := '_' || substr(md5(coalesce(hash_of, base)), 1, 8) || '_' || tag;
    b text := base;
BEGIN
    IF hash_of IS NULL AND octet_length(base || '_' || tag) <= 63 THEN
        RETURN (base || '_' || tag)::name;
    END IF;
    WHILE octet_length(b) > 63 - octet_length(suffix) LOOP
        b := left(b, -1);
    END LOOP;
    RETURN (b || suffix)::name;
END $$;

-- Six random hex digits: the suffix of a name someone else took (see _mat_prepare).
CREATE FUNCTION embedstack._random_hex6() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 6)
$$;
COMMENT ON FUNCTION embedstack._random_hex6() IS 'Internal: six random hex digits (suffix of a name that was taken).';

-- The tables of a source: itself, and, partitioned, every table of its partition tree
-- (pg_partition_tree alone lists nothing for a table that is not partitioned).
CREATE FUNCTION embedstack._source_tables(source regclass) RETURNS TABLE (relid regclass, level integer)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT source, 0 UNION ALL SELECT p.relid, p.level FROM pg_partition_tree(source) p WHERE p.relid <> source
$$;
COMMENT ON FUNCTION embedstack._source_tables(regclass) IS
  'Internal: a source table and the tables of its partition tree.';

-- The model set's row, or ERROR 42704 (or 42501 when it exists but the caller may not read its
-- source: the catalog's row security hides it).
CREATE FUNCTION embedstack._model_set(model_set text) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets;
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    IF NOT FOUND AND embedstack._model_set_exists(model_set) THEN
        RAISE EXCEPTION 'permission denied for model set "%"', model_set USING ERRCODE = '42501',
            HINT = 'a model set is visible to the roles that may read its source table';
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model set "%" does not exist', model_set USING ERRCODE = '42704',
            HINT = 'SELECT name FROM embedstack.model_sets lists them; embedstack.create_model_set creates one';
    END IF;
    RETURN ms;
END $$;

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

-- The default served view name: <source>_<model set> when it fits in 63 bytes, else cut with a
-- hash of both (see _derived_name).
CREATE FUNCTION embedstack._served_view_name(source_name name, model_set text) RETURNS name
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN octet_length(source_name || '_' || model_set) <= 63 THEN (source_name || '_' || model_set)::name
                ELSE embedstack._derived_name(source_name || '_' || model_set, 'served', source_name || '.' || model_set) END
$$;

-- Drops the model set: its freshness triggers, served view and generation tables (the
-- extension made them), then its catalog rows. A user's view built on the served view makes
-- this fail (2BP01) until the user drops it: objects of the user's making are never dropped.
-- drop_columns: also drop the combined column a 0.1/0.2 release served from the source table
-- (model_sets.legacy_column, recorded by the 0.3.0 upgrade; 0.3.0 never writes into the source).
CREATE FUNCTION embedstack.drop_model_set(name text, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(name);
    nsp name;
    g record;
    dependents text;
BEGIN
    -- Not while a materialize or refit of it runs (the lock is released at the end of this
    -- transaction by the abort callback, or explicitly below).
    PERFORM embedstack._lock_model_set(ms.name, false);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ms.source) THEN
        -- The source is gone (event trigger disabled): only the catalog rows remain, which
        -- a superuser may delete (the writers let no one else: _check_owner).
        PERFORM embedstack._w_delete_model_set(ms.name);
        PERFORM embedstack._job_unlock(hashtext(ms.name));
        RETURN;
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    PERFORM embedstack._drop_triggers(ms);
    nsp := (embedstack._source_info(ms)).nsp;
    BEGIN
        IF embedstack._is_served_view(ms) THEN
            EXECUTE format('DROP VIEW %I.%I', nsp, ms.view_name);
        END IF;
        FOR g IN SELECT x.id FROM embedstack.generations x WHERE x.model_set = ms.name LOOP
            PERFORM embedstack._drop_generation(ms, g.id);
        END LOOP;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        -- PostgreSQL's detail names the dependent objects (on the view or on a generation).
        GET STACKED DIAGNOSTICS dependents = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'cannot drop model set "%": other objects depend on its served view %.% or its generation tables',
            ms.name, nsp, ms.view_name USING ERRCODE = '2BP01', DETAIL = dependents,
            HINT = 'drop the objects named in the detail first (they are not the extension''s to drop)';
    END;
    IF drop_columns AND ms.legacy_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.legacy_column);
    END IF;
    PERFORM embedstack._w_delete_model_set(ms.name);
    PERFORM embedstack._job_unlock(hashtext(ms.name));
END $$;
-- The row trigger of releases 0.1.0-0.2.x on the source: 'embedstack_' || name when it fits,
-- else with a hash of the name. The 0.3.0 upgrade replaces it by the statement triggers below.
CREATE FUNCTION embedstack._trigger_name(model_set text) RETURNS name
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN octet_length('embedstack_' || model_set) <= 63 THEN ('embedstack_' || model_set)::name
                ELSE embedstack._derived_name('embedstack_' || model_set, 'trg') END
$$;

-- The four freshness triggers' names (insert, update, delete, truncate): PostgreSQL allows
-- transition tables only on triggers of a single event. Hashed like the others when long.
CREATE FUNCTION embedstack._trigger_names(model_set text) RETURNS name[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT embedstack._derived_name('embedstack_' || model_set, t,
                                                 CASE WHEN octet_length('embedstack_' || model_set || '_trunc') > 63
                                                      THEN 'embedstack_' || model_set END)
                   FROM unnest(ARRAY['ins', 'upd', 'del', 'trunc']) WITH ORDINALITY u(t, o) ORDER BY o)
$$;

-- Is trigger `tgname` on the source this model set's (the extension's function, this model set
-- as argument)? A trigger of that name that is not it is left alone.
CREATE FUNCTION embedstack._own_trigger(source regclass, model_set text, tgname name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = source AND t.tgname = _own_trigger.tgname
                      AND t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
                                          AND p.proname IN ('_refresh_generations', '_refresh_combined'))
                      AND t.tgnargs = 1
                      AND t.tgargs = convert_to(model_set, getdatabaseencoding()) || '\x00'::bytea)
$$;

-- Drops the model set's freshness triggers (and a 0.2.x row trigger), only its own: on the
-- source and on every table that carries them (its partitions, and one detached meanwhile).
CREATE FUNCTION embedstack._drop_triggers(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT ms.source UNION SELECT h FROM embedstack._hooked_tables(ms.name) h LOOP
        PERFORM embedstack._drop_triggers_on(ms, rel);
    END LOOP;
END $$;

-- The model set's triggers on one table (only its own: the extension's function, the model set
-- as argument, one of its trigger names).
CREATE FUNCTION embedstack._drop_triggers_on(ms embedstack.model_sets, rel regclass) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
BEGIN
    FOREACH t IN ARRAY embedstack._trigger_names(ms.name) || embedstack._trigger_name(ms.name) LOOP
        IF embedstack._own_trigger(rel, ms.name, t) THEN
            EXECUTE format('DROP TRIGGER %I ON %s', t, rel);
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._drop_triggers_on(embedstack.model_sets, regclass) IS
  'Internal: drops the model set''s freshness triggers from one table.';

-- The tables that carry a freshness trigger of the model set (the extension's function with
-- the model set's name as argument, under one of its trigger names).
CREATE FUNCTION embedstack._hooked_tables(model_set text) RETURNS SETOF regclass
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT t.tgrelid::regclass FROM pg_trigger t
     WHERE t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
                           AND p.proname = '_refresh_generations')
       AND t.tgname = ANY (embedstack._trigger_names(model_set))
       AND t.tgnargs = 1 AND t.tgargs = convert_to(model_set, getdatabaseencoding()) || '\x00'::bytea
$$;
COMMENT ON FUNCTION embedstack._hooked_tables(text) IS
  'Internal: the tables that carry a freshness trigger of the model set.';

-- Solves a regression state and records it as a fit of the model set (22023 with a hint when
-- no pair was usable).
CREATE FUNCTION embedstack._record_fit(model_set text, st double precision[], ridge double precision,
    nonnegative boolean, training_source jsonb, extra_diagnostics jsonb DEFAULT '{}')
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f embedstack.fit;
    fid bigint;
    r embedstack.fits;
BEGIN
    IF st[4] = 0 THEN
        RAISE EXCEPTION 'no usable pairs in % (% skipped)', training_source->>'pairs', st[5]::bigint USING ERRCODE = '22023',
            HINT = 'a pair is used when both keys exist in the source table, every model vector of both is '
                   'present and non-zero, and the target (and weight) are not NULL';
    END IF;
    f := embedstack.solve(st, ridge, nonnegative, true);
    -- (solve warned when there are fewer pairs than weights + intercept: such a fit is recorded,
    -- marked underdetermined, and a plain materialize does not pick it.)
    IF f.r2 < 0.01 AND f.n_used > cardinality(f.weights) + 1 THEN
        RAISE WARNING 'the fit of model set "%" explains almost nothing of the target (r2 = %)', model_set, round(f.r2::numeric, 4)
            USING HINT = 'check the target column (is it the similarity label?) and the pairs'' keys; embedstack.check lists common causes';
    END IF;
    fid := (embedstack._w_insert_fit(model_set,
        jsonb_build_object('ridge', ridge, 'nonnegative', nonnegative, 'fit_intercept', true),
        f.weights, f.intercept,
        jsonb_build_object('r2', f.r2, 'rmse', f.rmse, 'n_used', f.n_used, 'n_skipped', f.n_skipped,
                           'condition_number', CASE WHEN f.condition_number = 'Infinity' THEN NULL ELSE f.condition_number END,
                           'std_errors', to_jsonb(f.std_errors), 'rank', f.rank,
                           'collinear', to_jsonb(f.collinear),
                           'underdetermined', f.n_used < cardinality(f.weights) + 1 AND ridge = 0) || extra_diagnostics,
        st, training_source)).id;
    SELECT * INTO r FROM embedstack.fits x WHERE x.id = fid;
    RETURN r;
END $$;

CREATE FUNCTION embedstack.fit(
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
