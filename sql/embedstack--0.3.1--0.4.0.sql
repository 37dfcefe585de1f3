-- embedstack 0.3.1 -> 0.4.0: serving that holds up inside a real application (issue 19). Only
-- what changed; each change says why. The upgrade-equals-fresh-install test
-- (pgrx-tests/tests/operations_lifecycle.rs, from 0.3.0 through 0.3.1) compares the result with a
-- fresh 0.4.0 install, object by object.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.4.0'" to load this file. \quit

-- 1. A rollback holds its model set (refit keeps the served fit, a plain materialize refuses)
-- until embedstack.release: the hold is recorded with the model set.
ALTER TABLE embedstack.model_sets ADD COLUMN held_since timestamptz, ADD COLUMN held_reason text;
COMMENT ON COLUMN embedstack.model_sets.held_since IS
  'Since when a rollback holds the model set: refit records its fits but keeps the served one, a plain materialize '
  'refuses, until embedstack.release(name). NULL: not held.';
COMMENT ON COLUMN embedstack.model_sets.held_reason IS 'Which rollback holds the model set.';

-- 2. Partitioned sources (P1, F10): the freshness triggers sit on every table of the partition
-- tree; an event trigger installs them on partitions created or attached later and applies the
-- rows that join or leave the source; shapes whose changes cannot all be seen are refused (0A000).
-- _apply_as_owner applies what no trigger saw, as the source's owner.
CREATE FUNCTION embedstack."_apply_as_owner"("model_set" TEXT, "rel" regclass, "event" TEXT) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '_apply_as_owner_wrapper';
COMMENT ON FUNCTION embedstack._apply_as_owner(text, regclass, text) IS
  'Internal: applies changes no freshness trigger saw (partitions attached, detached or dropped; the keys a retained '
  'generation recorded) to the live generations, as the source''s owner; the caller must be a member of it.';
-- The tables of a source: itself, and, partitioned, every table of its partition tree
-- (pg_partition_tree alone lists nothing for a table that is not partitioned).
CREATE OR REPLACE FUNCTION embedstack._source_tables(source regclass) RETURNS TABLE (relid regclass, level integer)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT source, 0 UNION ALL SELECT p.relid, p.level FROM pg_partition_tree(source) p WHERE p.relid <> source
$$;
COMMENT ON FUNCTION embedstack._source_tables(regclass) IS
  'Internal: a source table and the tables of its partition tree.';

-- The tables that carry a freshness trigger of the model set (the extension's function with
-- the model set's name as argument, under one of its trigger names).
CREATE OR REPLACE FUNCTION embedstack._hooked_tables(model_set text) RETURNS SETOF regclass
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT t.tgrelid::regclass FROM pg_trigger t
     WHERE t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
                           AND p.proname = '_refresh_generations')
       AND t.tgname = ANY (embedstack._trigger_names(model_set))
       AND t.tgnargs = 1 AND t.tgargs = convert_to(model_set, getdatabaseencoding()) || '\x00'::bytea
$$;
COMMENT ON FUNCTION embedstack._hooked_tables(text) IS
  'Internal: the tables that carry a freshness trigger of the model set.';

-- The shapes of source whose every change the triggers see: a table, or a partitioned table
-- whose partitions are tables or partitioned tables of the same owner. Refused: a partition (a
-- write through its parent fires the parent's triggers, not its own), table inheritance (a
-- statement on a parent changes its children's rows without firing their triggers), a foreign
-- partition (its rows change elsewhere), a partition of another owner (the freshness trigger
-- runs as the owner of the table it is on, who must own the generations).
CREATE OR REPLACE FUNCTION embedstack._check_source_shape(source regclass) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = source);
BEGIN
    IF (SELECT c.relispartition FROM pg_class c WHERE c.oid = source) THEN
        RAISE EXCEPTION '% is a partition of %', source, (SELECT i.inhparent::regclass FROM pg_inherits i WHERE i.inhrelid = source)
            USING ERRCODE = '0A000',
            HINT = 'create the model set on the partitioned table at the root of the tree (a write through a parent '
                   'does not fire the triggers of its partitions)';
    END IF;
    SELECT i.inhrelid::regclass AS child, i.inhparent::regclass AS parent INTO r
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE NOT c.relispartition AND (i.inhparent = source OR i.inhrelid = source) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% inherits from % (table inheritance): the changes of % cannot all be seen', r.child, r.parent, source
            USING ERRCODE = '0A000',
            HINT = 'use declarative partitioning (PARTITION BY, PARTITION OF) or a table without inheritance';
    END IF;
    SELECT p.relid, c.relkind, c.relowner INTO r FROM pg_partition_tree(source) p JOIN pg_class c ON c.oid = p.relid
     WHERE p.relid <> source AND (c.relkind NOT IN ('r', 'p') OR c.relowner <> owner)
     ORDER BY p.level, p.relid LIMIT 1;
    IF FOUND AND r.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'partition % of % is a foreign table: its rows change where no trigger sees them', r.relid, source
            USING ERRCODE = '0A000', HINT = 'serve a table whose partitions are all local tables';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'partition % of % is owned by role %, the table by %', r.relid, source, pg_get_userbyid(r.relowner),
            pg_get_userbyid(owner) USING ERRCODE = '0A000',
            HINT = format('the served vectors are written as the table''s owner: ALTER TABLE %s OWNER TO %I', r.relid,
                          pg_get_userbyid(owner));
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._check_source_shape(regclass) IS
  'Internal: ERROR 0A000 unless every change of the table is seen by the freshness triggers (a table, or a '
  'partitioned table of local partitions with its owner; no partition, no table inheritance).';

-- The four freshness triggers on one table of the source's partition tree.
CREATE OR REPLACE FUNCTION embedstack._install_triggers_on(ms embedstack.model_sets, rel regclass) RETURNS void
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

-- Installs the four freshness triggers (or keeps them) on the source and on every table of its
-- partition tree (a statement aimed at a partition fires that partition's statement triggers
-- only), checking that their names are free. On a partition, the TRUNCATE trigger runs BEFORE:
-- the partition's rows leave the source and are read before they go.
CREATE OR REPLACE FUNCTION embedstack._install_triggers(ms embedstack.model_sets) RETURNS void
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

-- The model set's triggers on one table (only its own: the extension's function, the model set
-- as argument, one of its trigger names).
CREATE OR REPLACE FUNCTION embedstack._drop_triggers_on(ms embedstack.model_sets, rel regclass) RETURNS void
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

-- Drops the model set's freshness triggers (and a 0.2.x row trigger), only its own: on the
-- source and on every table that carries them (its partitions, and one detached meanwhile).
CREATE OR REPLACE FUNCTION embedstack._drop_triggers(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT ms.source UNION SELECT h FROM embedstack._hooked_tables(ms.name) h LOOP
        PERFORM embedstack._drop_triggers_on(ms, rel);
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._drop_triggers(embedstack.model_sets) IS 'Internal: drops a model set''s freshness triggers.';

-- The statements that apply one source statement's changes to every live generation (called by
-- the trigger, with the transition tables embedstack_new / embedstack_old in scope; a generation
-- whose index is being built gets the changed keys in its pending table instead). STABLE: it
-- reads the catalog with the trigger's snapshot, the latest one (a generation registered by a
-- job that committed after the writing transaction began is seen). A generation's row is
-- replaced by DELETE + INSERT, never UPDATE: a HOT update would leave a broken HOT chain that
-- makes the generation's new HNSW index unusable (indcheckxmin) to every snapshot older than
-- the build in the whole cluster. UPDATE: only the keys whose model values changed (compared
-- inside the statement: a trigger with transition tables cannot have a column list).
CREATE OR REPLACE FUNCTION embedstack._freshness_sql(model_set text, relid oid, event text) RETURNS text[]
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
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained';
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
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained';
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

-- Brings a served model set's triggers and generations in line with its source's partition tree
-- after DDL: a table that joined the tree gets the triggers and its rows are applied (none when
-- it was created as a partition); a table that left it (detached) has its rows taken out and its
-- triggers dropped. Runs as the role that ran the DDL (a member of the source's owner: PostgreSQL
-- requires that for CREATE TABLE ... PARTITION OF, ATTACH and DETACH); the rows are applied as
-- the source's owner (_apply_as_owner).
CREATE OR REPLACE FUNCTION embedstack._sync_partitions(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets;
    rel regclass;
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    -- Not served yet (no trigger on the source): the first materialise installs them on every table.
    IF NOT FOUND OR NOT embedstack._own_trigger(ms.source, ms.name, (embedstack._trigger_names(ms.name))[1]) THEN
        RETURN;
    END IF;
    FOR rel IN SELECT p.relid FROM embedstack._source_tables(ms.source) p JOIN pg_class c ON c.oid = p.relid
                WHERE c.relkind IN ('r', 'p') AND p.relid NOT IN (SELECT h FROM embedstack._hooked_tables(ms.name) h)
                ORDER BY p.level, p.relid LOOP
        PERFORM embedstack._install_triggers_on(ms, rel);
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) = 'r' THEN
            PERFORM embedstack._apply_as_owner(ms.name, rel, 'ATTACH');
        END IF;
    END LOOP;
    FOR rel IN SELECT h FROM embedstack._hooked_tables(ms.name) h
                WHERE h NOT IN (SELECT p.relid FROM embedstack._source_tables(ms.source) p) LOOP
        IF (SELECT c.relkind FROM pg_class c WHERE c.oid = rel) = 'r' THEN
            PERFORM embedstack._apply_as_owner(ms.name, rel, 'DETACH');
        END IF;
        PERFORM embedstack._drop_triggers_on(ms, rel);
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._sync_partitions(text) IS
  'Internal: after DDL on a partitioned source, installs the freshness triggers on new partitions and applies '
  'the rows of partitions attached or detached to the live generations.';

-- CREATE [FOREIGN] TABLE ... PARTITION OF, ALTER TABLE ... ATTACH / DETACH PARTITION (and any
-- other ALTER or CREATE TABLE: the checks are cheap when nothing changed). For the model sets whose
-- source is in the tree of a table the command touched: refuse a shape whose changes cannot all
-- be seen (the command fails), then sync. As the role that ran the command.
CREATE OR REPLACE FUNCTION embedstack._on_table_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT DISTINCT s.name, s.source
               FROM pg_event_trigger_ddl_commands() d
               JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relkind IN ('r', 'p', 'f')
               CROSS JOIN LATERAL (SELECT c.oid::regclass AS relid
                                   UNION SELECT a.relid FROM pg_partition_ancestors(c.oid) a
                                   UNION SELECT t.relid FROM pg_partition_tree(c.oid) t
                                   UNION SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid) r
               JOIN embedstack.model_sets s ON s.source = r.relid
              ORDER BY s.name LOOP
        PERFORM embedstack._check_source_shape(m.source);
        PERFORM embedstack._sync_partitions(m.name);
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._on_table_ddl() IS
  'Internal event trigger function: keeps the served vectors of partitioned sources exact through CREATE TABLE '
  '... PARTITION OF, ATTACH and DETACH PARTITION, and refuses DDL that would make a source unservable (0A000).';

-- DROP TABLE of a source drops its model sets with it (their fits, jobs and generations): the
-- freshness triggers went with the table; the served view and the generation tables are dropped
-- here when nothing else depends on them (a user's view built on the served view keeps them,
-- with a WARNING: they are then the user's to drop), and the name becomes free. Runs as the
-- extension's owner, on the model sets of the tables the statement dropped only, and drops only
-- what is provably the model set's own, never a relation merely because a catalog row names it
-- (an owner can write anything into its own rows): generation tables that
-- _is_generation_table accepts, all of one owner (the source's, whose row is gone by now), and
-- the view of the recorded name in the source's schema when it is a view of that owner whose
-- rule reads one of those tables.
CREATE OR REPLACE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
    ms embedstack.model_sets;
    r record;
    owners oid[];
    tables oid[];
    view_oid oid;
BEGIN
    FOR m IN SELECT s.name, d.schema_name
               FROM embedstack.model_sets s JOIN pg_event_trigger_dropped_objects() d
                 ON d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = s.source::oid LOOP
        SELECT * INTO ms FROM embedstack.model_sets x WHERE x.name = m.name;
        -- The owner of the model set's generation tables (the served one's first).
        SELECT array_agg(DISTINCT c.relowner) INTO owners
          FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation WHERE g.model_set = ms.name;
        IF cardinality(owners) > 1 THEN
            RAISE WARNING 'embedstack: model set "%" is dropped with its source table; its generation tables have '
                          'different owners, so none of them is dropped', ms.name
                USING HINT = 'drop the ones that are yours yourself';
            owners := '{}';
        END IF;
        SELECT coalesce(array_agg(c.oid), '{}') INTO tables
          FROM embedstack.generations g JOIN pg_class c ON c.oid IN (g.relation, g.pending)
         WHERE g.model_set = ms.name
           AND embedstack._is_generation_table(ms, g.id, c.oid::regclass, c.oid = g.pending::oid, owners[1]);
        -- The view is in the schema of the model set's generations (a source moved with ALTER
        -- TABLE ... SET SCHEMA left them where they were), else in the source's.
        view_oid := to_regclass(format('%I.%I', coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n
                                                              ON n.oid = c.relnamespace WHERE c.oid = ANY (tables) LIMIT 1),
                                                             m.schema_name), ms.view_name));
        IF view_oid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_class v JOIN pg_rewrite rw ON rw.ev_class = v.oid
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                              AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (tables)
             WHERE v.oid = view_oid AND v.relkind = 'v' AND v.relowner = owners[1]) THEN
            view_oid := NULL;
        END IF;
        FOR r IN SELECT format('%I.%I', n.nspname, c.relname) AS rel, CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END AS kind
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = view_oid OR c.oid = ANY (tables)
                  ORDER BY c.relkind = 'v' DESC, c.oid LOOP
            BEGIN
                EXECUTE format('DROP %s %s', r.kind, r.rel);
            EXCEPTION WHEN dependent_objects_still_exist OR undefined_table THEN
                RAISE WARNING 'embedstack: model set "%" is dropped with its source table, but % is left in place: other objects depend on it',
                    ms.name, r.rel USING HINT = 'drop it yourself once nothing needs it';
            END;
        END LOOP;
        DELETE FROM embedstack.fits f WHERE f.model_set = ms.name;
        DELETE FROM embedstack.generations g WHERE g.model_set = ms.name;
        DELETE FROM embedstack.model_sets x WHERE x.name = ms.name;
    END LOOP;
    -- A partition of a served source dropped (its freshness triggers went with it): its rows left
    -- the source without any trigger seeing them, and they cannot be read any more; the keys the
    -- source no longer has are taken out of the live generations (0.4.0, _apply_as_owner PRUNE,
    -- run as the source's owner).
    FOR m IN SELECT DISTINCT s.name
               FROM embedstack.model_sets s JOIN pg_event_trigger_dropped_objects() d
                 ON d.object_type = 'trigger' AND d.address_names[3] = ANY (embedstack._trigger_names(s.name))
              WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source AND c.relkind = 'p')
              ORDER BY s.name LOOP
        PERFORM embedstack._apply_as_owner(m.name, (SELECT x.source FROM embedstack.model_sets x WHERE x.name = m.name), 'PRUNE');
    END LOOP;
END $$;
COMMENT ON FUNCTION embedstack._on_sql_drop() IS
  'Internal event trigger function: deletes the model sets (fits, jobs, generations) of dropped source tables '
  'and drops their served views and generation tables when nothing else depends on them.';


CREATE OR REPLACE FUNCTION embedstack.create_model_set(
    name text,
    source regclass,
    key_column name,
    model_columns name[],
    mode text DEFAULT 'symmetric',
    threshold double precision DEFAULT 0.05,
    combined_column name DEFAULT NULL,
    storage text DEFAULT 'auto',
    model_dims integer[] DEFAULT NULL,
    view_name name DEFAULT NULL)
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
    IF mode = 'query_weighted' AND (SELECT sum(d) FROM unnest(v_dims) d)
                                   > (CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END) THEN
        RAISE EXCEPTION 'the combined vector of a query-weighted model set of these models has % dimensions, more than pgvector can index as % (at most %)',
            (SELECT sum(d) FROM unnest(v_dims) d), CASE storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE storage WHEN 'vector' THEN 2000 ELSE 4000 END USING ERRCODE = '54000',
            HINT = CASE WHEN storage = 'vector' AND (SELECT sum(d) FROM unnest(v_dims) d) <= 4000
                        THEN 'use storage => ''auto'' or ''halfvec'' (halfvec indexes up to 4000 dimensions)'
                        ELSE 'a query-weighted set stores every model: leave models out, use lower-dimensional ones, or use '
                             'mode => ''symmetric'' (its threshold leaves out low-weight models)' END;
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
    RETURN embedstack._model_set(name);
END $$;
COMMENT ON FUNCTION embedstack.create_model_set(text, regclass, name, name[], text, double precision, name, text, integer[], name) IS
  'Registers a model set: source table, key column (NOT NULL, single-column unique index), model columns '
  '(vector(n), real[] or double precision[]; dims from the typmod, model_dims, or the first row), mode '
  'symmetric | query_weighted, threshold, combined column name (default <name>_combined), storage, served view '
  'name (default <source>_<name>). Errors: 42703 unknown column, 42804 wrong type, 42P10 key not unique, '
  '42710 duplicate name, 42701/42P07 name clash.';

CREATE EVENT TRIGGER embedstack_partitions_changed ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE FOREIGN TABLE', 'ALTER TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION embedstack._on_table_ddl();
COMMENT ON EVENT TRIGGER embedstack_partitions_changed IS
  'Keeps the served vectors of partitioned sources exact when partitions are created, attached or detached (embedstack).';

-- 3. The writers of a partition lock only it: the jobs wait for the writers of every table of the
-- source. The catch-up after the index build runs in committed batches (writers stalled for
-- minutes behind one long lock); the index build gets parallel workers. Retained generations
-- record the keys written instead of being written (an HNSW insert per write and generation).
-- A pending-keys table for generation g, opened (the freshness triggers record the keys they
-- change in it instead of writing the generation): for the index build, and for a generation that
-- is no longer served. Named after the generation (a random suffix when taken), owned by the
-- source's owner.
CREATE OR REPLACE FUNCTION embedstack._create_pending(ms embedstack.model_sets, g embedstack.generations) RETURNS regclass
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
CREATE OR REPLACE FUNCTION embedstack._retire(ms embedstack.model_sets, generation bigint) RETURNS void
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
CREATE OR REPLACE FUNCTION embedstack._lock_source(ms embedstack.model_sets, started timestamptz) RETURNS void
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
CREATE OR REPLACE FUNCTION embedstack._switch_to(ms embedstack.model_sets, g embedstack.generations, fit_id bigint, started timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint := 0;
    was bigint := ms.served_generation;
BEGIN
    IF g.id IS DISTINCT FROM was THEN
        IF g.pending IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
            PERFORM embedstack._lock_source(ms, started);
            EXECUTE format('SELECT count(DISTINCT p.%I) FROM %s p', ms.key_column, g.pending) INTO n;
            IF n > 0 THEN
                PERFORM embedstack._apply_as_owner(ms.name, g.relation, 'CATCHUP');
            END IF;
            EXECUTE format('DROP TABLE %s', g.pending);
        END IF;
        IF g.pending IS NOT NULL THEN
            PERFORM embedstack._w_generation_pending(ms.name, g.id, NULL, false);
        END IF;
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
CREATE OR REPLACE FUNCTION embedstack._generation_for(ms embedstack.model_sets, fit_id bigint) RETURNS embedstack.generations
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.* FROM embedstack.generations g, embedstack._layout(ms.name, _generation_for.fit_id) l
     WHERE g.model_set = ms.name AND g.state IN ('served', 'retained')
       AND g.multipliers = l.multipliers AND g.storage = l.storage
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)
     ORDER BY g.state = 'served' DESC, g.id DESC LIMIT 1
$$;
COMMENT ON FUNCTION embedstack._generation_for(embedstack.model_sets, bigint) IS
  'Internal: the live generation that holds a fit''s stored layout (served first), if any.';

-- prepare: the layout; when the served generation already holds it, switching the active fit
-- is all there is to do (always so in query-weighted mode). Otherwise the generation being
-- written: resumed when it is this fit's and layout's, replaced otherwise; created (table with
-- its key's primary key, owned by the source's owner) and registered, with the triggers.
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
        ELSIF g.id IS NOT NULL THEN
            -- A retained generation of this layout that recorded keys: brought up to date the way
            -- a new generation's index catch-up is, before the switch -- its pending table closed
            -- (writers write the generation again from then on), the writers that recorded into
            -- it waited for, then the keys applied in batches of 0.1-0.5 s, each its own
            -- transaction under SHARE on the generation -- so the switch pauses no writer for the
            -- recorded rows (it did, all of them: a scheduled refit that came back to an earlier
            -- fit paused writers 10-20 s at 20,000 rows; and writing batches while writers kept
            -- recording did not converge under load).
            IF g.id IS DISTINCT FROM ms.served_generation AND g.pending IS NOT NULL
               AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
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
                EXECUTE format('DROP TABLE %s', g.pending);
                PERFORM embedstack._w_generation_pending(ms.name, g.id, NULL, false);
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
                  OR g.relation IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)) THEN
        PERFORM embedstack._drop_generation(ms, g.id);
        g := NULL;
    END IF;
    IF g.id IS NULL THEN
        g.id := embedstack._w_insert_generation(ms.name, j.fit_id, lay.multipliers, lay.storage, lay.width);
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
                              jsonb_build_object('writers_synced', false, 'resumed_rows', g.rows_written), g.id);
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
        EXECUTE format('INSERT INTO %1$s (%2$I, %3$I) SELECT s.%2$I, %4$s FROM %5$s s WHERE %6$s NOT (s.%2$I %7$s %8$L::%9$s) '
                       'ON CONFLICT DO NOTHING',
                       g.relation, ms.key_column, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                       CASE WHEN g.cursor_key IS NULL THEN ''
                            ELSE format('s.%I %s %L::%s AND', ms.key_column, si.key_gt, g.cursor_key, si.key_type) END,
                       si.key_gt, last_key, si.key_type);
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

-- (4b. The batch of recorded keys, shared by the index catch-up and by a materialise that reuses a
-- retained generation.)
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
CREATE OR REPLACE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
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
    IF g.pending IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
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
        EXECUTE format('DROP TABLE %s', g.pending);
        PERFORM embedstack._w_generation_pending(ms.name, g.id, NULL, false);
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

-- cutover: one short transaction that locks only the served view: the view reads the new
-- generation, the catalog says what is served, older generations beyond the retention go.
CREATE OR REPLACE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    started timestamptz;
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
    PERFORM embedstack._w_job_update(job_id, 'done');
    PERFORM embedstack._w_job_finish(job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from generation %s (%s, %s), view %s.%I', j.fit_id, g.id, g.relation, g.storage,
                  (embedstack._source_info(ms)).nsp, ms.view_name));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (%) through %.%', ms.name, j.fit_id, g.id,
        g.relation, (embedstack._source_info(ms)).nsp, ms.view_name;
    RETURN 'done';
END $$;
COMMENT ON FUNCTION embedstack._mat_cutover(bigint) IS
  'Internal materialise step: points the served view at the new generation and records it.';

-- Drops the retained generations beyond embedstack.keep_generations (newest served first; the
-- previous one, which rollback serves, is kept while the setting is at least 1), and any with the
-- served generation's layout, skipping those still in use.
CREATE OR REPLACE FUNCTION embedstack._retain(model_set text) RETURNS void
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

-- 4. Rollback a DBA can rely on (P2): rollback(set, to_fit => id) serves any live generation's fit
-- and holds the model set; release ends the hold; refit keeps a held model set's fit; materialize
-- refuses to pick a fit for a held model set (and does not pick an underdetermined fit); refresh
-- keeps the rollback point.
DROP PROCEDURE embedstack.rollback(text, boolean);
-- Serves an earlier fit again, at once: the previous one (undoes the last switch; calling it
-- again switches back), or `to_fit`, any fit whose stored layout a live generation holds (the
-- served one, or one of the embedstack.keep_generations retained). No rewrite, no index build: a
-- retained generation gets the rows written since it was served (the source's writers pause for
-- that: SHARE on it, as the source's owner). The model set is then held: refit records its fits
-- but keeps this one, and a plain materialize refuses, until embedstack.release. One
-- transaction; takes the model set's job lock like materialize (55P03 or wait).
CREATE OR REPLACE PROCEDURE embedstack.rollback(model_set text, wait boolean DEFAULT false, to_fit bigint DEFAULT NULL)
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
CREATE OR REPLACE FUNCTION embedstack.release(model_set text) RETURNS void
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
CREATE OR REPLACE PROCEDURE embedstack.catch_up(model_set text, wait boolean DEFAULT false)
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

-- Holds the model set (a rollback: `reason` says which), or releases it (`reason` NULL).
CREATE OR REPLACE FUNCTION embedstack._w_hold(model_set text, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.model_sets x
       SET held_since = CASE WHEN reason IS NULL THEN NULL ELSE clock_timestamp() END, held_reason = reason
     WHERE x.name = _w_hold.model_set;
END $$;
COMMENT ON FUNCTION embedstack._w_hold(text, text) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): holds a model set (a '
  'rollback) or releases it (reason NULL).';

-- (The writers' ACL is written out as REVOKE + GRANT, as in a fresh install.)
REVOKE EXECUTE ON FUNCTION embedstack._w_hold(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION embedstack._w_hold(text, text) TO PUBLIC;
-- What is served: fit `fit_id` from generation `generation`. The generation served so far is
-- retained (with its fit, as what a rollback serves again); called in the cut-over
-- transaction, by a rollback, or alone when only the active fit changes (query-weighted mode).
CREATE OR REPLACE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, generation bigint) RETURNS void
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
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): the served fit and generation.';

-- fit (refit's first step): train on the pairs not held out, score the new and the active fit
-- on the held-out ones (prediction MSE, exact from the held-out regression state), and decide.
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
        jsonb_build_object('pairs', p->>'pairs', 'left', p->>'left', 'right', p->>'right', 'target', p->>'target',
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
COMMENT ON FUNCTION embedstack._refit_fit(bigint) IS 'Internal refit step: fit on the training pairs, compare on the held-out ones, decide.';

-- Writes the model set's combined vectors for a fit into a new generation table, in batches of
-- batch_size rows each committed, then builds its HNSW index (inner product) and cuts over in
-- one short transaction that redefines the served view. The view, what it serves and the
-- active fit stay as they were until that last transaction; the source table is only read.
-- Must be called outside an explicit transaction block (it COMMITs); re-running it after an
-- interruption continues with the rows not written yet. One materialize, refit or rollback per
-- model set at a time: another caller gets 55P03 at once, or with wait => true queues behind it.
CREATE OR REPLACE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000,
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
           AS retained_generations
  FROM embedstack.model_sets m
  LEFT JOIN embedstack.fits af ON af.id = m.active_fit
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name ORDER BY x.id DESC LIMIT 1) j ON true
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name AND x.state = 'failed'
                      ORDER BY x.id DESC LIMIT 1) e ON true;
GRANT SELECT ON embedstack.status TO PUBLIC;
-- security_invoker: the catalog's row security applies to the role querying the view (a view
-- otherwise reads its tables as the view's owner, who sees every row).
COMMENT ON VIEW embedstack.status IS
  'One row per visible model set: its served view, active fit and generation, what rollback would serve, the '
  'latest job (interrupted when its session is gone) with progress, the latest error, the hold of a rollback '
  'and how many generations rollback can reach.';
COMMENT ON COLUMN embedstack.status.held_since IS 'Since when a rollback holds the model set (refits keep the served fit until embedstack.release); NULL: not held.';
COMMENT ON COLUMN embedstack.status.held_reason IS 'Which rollback holds it.';
COMMENT ON COLUMN embedstack.status.retained_generations IS 'Generations kept besides the served one: what rollback(..., to_fit => id) can serve at once.';

-- 5. Messages that name the fix (P8): _record_fit warns when a fit explains nothing and marks a fit
-- of fewer pairs than weights + intercept; query_vector takes a key given as text; check() is the
-- pre-flight.
-- Solves a regression state and records it as a fit of the model set (22023 with a hint when
-- no pair was usable).
CREATE OR REPLACE FUNCTION embedstack._record_fit(model_set text, st double precision[], ridge double precision,
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
COMMENT ON FUNCTION embedstack._record_fit(text, double precision[], double precision, boolean, jsonb, jsonb) IS
  'Internal: solves a state and records it as a fit.';

CREATE FUNCTION embedstack."query_vector"("model_set" TEXT, "key" TEXT) RETURNS vector
STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'query_vector_from_text_key_wrapper';
COMMENT ON FUNCTION embedstack.query_vector(text, text) IS
  'Query-side vector of the active fit for the stored row whose key is given as text (a quoted literal), read '
  'with the key type''s input function. No such row: P0002. STABLE.';

CREATE OR REPLACE FUNCTION embedstack.check(model_set text, pairs regclass DEFAULT NULL, left_column name DEFAULT NULL,
                                 right_column name DEFAULT NULL, target_column name DEFAULT NULL)
RETURNS TABLE (severity text, finding text, model_column name, count bigint, detail text, query text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    vnsp name := embedstack._vector_schema();
    col name;
    d integer;
    is_vector boolean;
    dims_expr text;
    r record;
    n_rows bigint;
    n_pairs bigint;
    key_of text := format('s.%I', ms.key_column);
    lk text;
    rk text;
    y text;
    usable bigint;
BEGIN
    IF (pairs IS NULL) <> (left_column IS NULL) OR (pairs IS NULL) <> (right_column IS NULL)
       OR (pairs IS NULL) <> (target_column IS NULL) THEN
        RAISE EXCEPTION 'pass the pairs with their left, right and target columns, or none of them' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO n_rows;
    FOR i IN 1 .. cardinality(ms.model_columns) LOOP
        col := ms.model_columns[i];
        d := ms.model_dims[i];
        is_vector := (SELECT t.typname = 'vector' FROM pg_type t WHERE t.oid = ms.model_types[i]);
        dims_expr := CASE WHEN is_vector THEN format('%I.vector_dims(s.%I)', vnsp, col) ELSE format('cardinality(s.%I)', col) END;
        EXECUTE format(
            'SELECT count(*) FILTER (WHERE s.%1$I IS NULL) AS nulls,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %2$s <> %3$s) AS bad_dims,
                    string_agg(DISTINCT CASE WHEN s.%1$I IS NOT NULL AND %2$s <> %3$s THEN %2$s::text END, '', '') AS found_dims,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %4$s) AS zeros,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %5$s) AS nonfinite,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %6$s) AS nested
               FROM %7$s s',
            col, dims_expr, d,
            CASE WHEN is_vector THEN format('%I.vector_norm(s.%I) = 0', vnsp, col)
                 ELSE format('NOT EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x <> 0)', col) END,
            CASE WHEN is_vector THEN 'false'
                 ELSE format('EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x IS NULL OR x IN (''NaN'', ''Infinity'', ''-Infinity''))', col) END,
            CASE WHEN is_vector THEN 'false' ELSE format('array_ndims(s.%I) > 1', col) END,
            ms.source) INTO r;
        IF r.bad_dims > 0 THEN
            RETURN QUERY SELECT 'error', 'dimension mismatch', col, r.bad_dims,
                format('the model set expects %s dimensions; rows have %s: fit and materialise stop at the first', d, r.found_dims),
                format('SELECT %s, %s FROM %s s WHERE %s <> %s', key_of, dims_expr, ms.source, dims_expr, d);
        END IF;
        IF r.nested > 0 THEN
            RETURN QUERY SELECT 'error', 'multi-dimensional array', col, r.nested,
                'an array of arrays is read as one flat vector: store one vector per row'::text,
                format('SELECT %s FROM %s s WHERE array_ndims(s.%I) > 1', key_of, ms.source, col);
        END IF;
        IF r.nonfinite > 0 THEN
            RETURN QUERY SELECT 'error', 'NULL, NaN or infinite element', col, r.nonfinite,
                'a vector with such an element has no direction: fit and materialise refuse it'::text,
                format('SELECT %s FROM %s s WHERE EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x IS NULL OR x IN (''NaN'', ''Infinity'', ''-Infinity''))',
                       key_of, ms.source, col);
        END IF;
        IF r.zeros > 0 THEN
            RETURN QUERY SELECT 'warning', 'zero vector', col, r.zeros,
                'a zero vector has no direction: its block is served as zeros and pairs with it are skipped'::text,
                format('SELECT %s FROM %s s WHERE s.%I IS NOT NULL AND %s', key_of, ms.source, col,
                       CASE WHEN is_vector THEN format('%I.vector_norm(s.%I) = 0', vnsp, col)
                            ELSE format('NOT EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x <> 0)', col) END);
        END IF;
        IF r.nulls > 0 THEN
            RETURN QUERY SELECT 'info', 'NULL vector', col, r.nulls,
                'served with this model''s block as zeros; pairs with it are skipped'::text,
                format('SELECT %s FROM %s s WHERE s.%I IS NULL', key_of, ms.source, col);
        END IF;
    END LOOP;
    EXECUTE format('SELECT count(*) FROM %s s WHERE %s', ms.source,
                   (SELECT string_agg(format('s.%I IS NULL', c), ' AND ') FROM unnest(ms.model_columns) c)) INTO usable;
    IF usable > 0 THEN
        RETURN QUERY SELECT 'warning', 'no model vector', NULL::name, usable,
            'served as a zero vector (score 0 with every query); query_vector refuses its key'::text,
            format('SELECT %s FROM %s s WHERE %s', key_of, ms.source,
                   (SELECT string_agg(format('s.%I IS NULL', c), ' AND ') FROM unnest(ms.model_columns) c));
    END IF;

    IF pairs IS NOT NULL THEN
        PERFORM embedstack._column(pairs, left_column);
        PERFORM embedstack._column(pairs, right_column);
        PERFORM embedstack._column(pairs, target_column);
        lk := format('p.%I', left_column);
        rk := format('p.%I', right_column);
        y := format('p.%I', target_column);
        EXECUTE format('SELECT count(*) FROM %s p', pairs) INTO n_pairs;
        BEGIN
            EXECUTE format(
                'SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = %3$s)
                                            OR NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = %4$s)) AS unknown,
                        count(*) FILTER (WHERE %5$s IS NULL) AS null_target,
                        count(DISTINCT %5$s) AS targets
                   FROM %6$s p', ms.source, ms.key_column, lk, rk, y, pairs) INTO r;
        EXCEPTION WHEN undefined_function THEN
            RETURN QUERY SELECT 'error', 'key types', NULL::name, n_pairs,
                format('the pairs'' columns %I, %I cannot be compared with the key %I of %s: cast them to its type',
                       left_column, right_column, ms.key_column, ms.source), NULL::text;
            RETURN;
        END;
        IF r.unknown > 0 THEN
            RETURN QUERY SELECT 'warning', 'pair key not in the source', NULL::name, r.unknown,
                'these pairs are skipped by fit, refit and evaluate'::text,
                format('SELECT p.* FROM %1$s p WHERE NOT EXISTS (SELECT 1 FROM %2$s s WHERE s.%3$I = %4$s) '
                       'OR NOT EXISTS (SELECT 1 FROM %2$s s WHERE s.%3$I = %5$s)', pairs, ms.source, ms.key_column, lk, rk);
        END IF;
        IF r.null_target > 0 THEN
            RETURN QUERY SELECT 'warning', 'NULL target', NULL::name, r.null_target, 'these pairs are skipped'::text,
                format('SELECT p.* FROM %s p WHERE %s IS NULL', pairs, y);
        END IF;
        IF r.targets = 1 THEN
            RETURN QUERY SELECT 'error', 'constant target', NULL::name, n_pairs - r.null_target,
                'every pair has the same target: a fit explains nothing (r2 = 0)'::text,
                format('SELECT %s, count(*) FROM %s p GROUP BY 1', y, pairs);
        END IF;
        EXECUTE format('SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) AS c FROM %s p GROUP BY least(%s, %s), greatest(%s, %s) '
                       'HAVING count(*) > 1) x', pairs, lk, rk, lk, rk) INTO usable;
        IF usable > 0 THEN
            RETURN QUERY SELECT 'warning', 'duplicate pair', NULL::name, usable,
                'a pair given more than once (either order) weighs more in the fit'::text,
                format('SELECT least(%1$s, %2$s), greatest(%1$s, %2$s), count(*) FROM %3$s p GROUP BY 1, 2 HAVING count(*) > 1',
                       lk, rk, pairs);
        END IF;
        usable := n_pairs - r.null_target - r.unknown;
        IF usable < cardinality(ms.model_columns) + 1 THEN
            RETURN QUERY SELECT 'error', 'too few pairs', NULL::name, greatest(usable, 0),
                format('a fit of %s models and an intercept needs at least %s usable pairs (more in practice)',
                       cardinality(ms.model_columns), cardinality(ms.model_columns) + 1), NULL::text;
        END IF;
    END IF;
    RETURN QUERY SELECT 'info', 'summary', NULL::name, n_rows,
        format('%s rows in %s%s', n_rows, ms.source, CASE WHEN pairs IS NULL THEN '' ELSE format(', %s pairs in %s', n_pairs, pairs) END),
        NULL::text;
END $$;
COMMENT ON FUNCTION embedstack.check(text, regclass, name, name, name) IS
  'Pre-flight check of a model set''s source (and pairs): one row per finding (dimension mismatches, NaN, nested '
  'arrays, zero and NULL vectors, rows without any vector, pair keys not in the source, NULL or constant targets, '
  'duplicate pairs, too few pairs) with its severity, count and the query that lists the rows; a summary row last.';

-- 5b. The cut-over (and a rollback) locked the served view with LOCK TABLE, which on a view
-- recurses into the tables it reads: ACCESS EXCLUSIVE on the served generation, which every
-- writer's trigger writes and autovacuum vacuums. Under a steady write load the 50 ms attempts
-- rarely won (a refit's cut-over took 73 s at 20,000 rows), and while autovacuum vacuumed the
-- generation none did (autovacuum yields only to a lock wait longer than deadlock_timeout): the
-- view is now locked alone, by the CREATE OR REPLACE VIEW (or DROP VIEW) that redefines it.
CREATE OR REPLACE FUNCTION embedstack._point_view(ms embedstack.model_sets, g embedstack.generations, lock_timeout_ms integer)
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

-- 6. Model sets served by 0.3.x from a partitioned source had triggers on the parent only: writes
-- aimed at a partition were not served. Install them on every partition now, and say that a
-- refresh brings the served vectors up to date.
DO $$
DECLARE
    ms embedstack.model_sets;
BEGIN
    FOR ms IN SELECT m.* FROM embedstack.model_sets m JOIN pg_catalog.pg_class c ON c.oid = m.source
               WHERE c.relkind = 'p' AND m.served_generation IS NOT NULL LOOP
        PERFORM embedstack._install_triggers(ms);
        RAISE WARNING 'embedstack: model set "%" serves the partitioned table %: writes aimed at its partitions were not served before 0.4.0',
            ms.name, ms.source USING HINT = pg_catalog.format('CALL embedstack.refresh(%L) rewrites its served vectors', ms.name);
    END LOOP;
END $$;
