-- Partitioned sources (0.4.0). A statement aimed at a partition fires the statement triggers of
-- that partition only, so the freshness triggers sit on every table of the source's partition
-- tree (materialize.sql, _install_triggers); what no trigger sees is handled here: a partition
-- created or attached (its rows join the source), detached (they leave it) or dropped (they are
-- gone). Shapes whose changes cannot all be seen are refused (0A000), at create_model_set and
-- when DDL would make a source one.

-- The shapes of source whose every change the triggers see: a table, or a partitioned table
-- whose partitions are tables or partitioned tables of the same owner. Refused: a partition (a
-- write through its parent fires the parent's triggers, not its own), table inheritance (a
-- statement on a parent changes its children's rows without firing their triggers), a foreign
-- partition (its rows change elsewhere), a partition of another owner (the freshness trigger
-- runs as the owner of the table it is on, who must own the generations).
CREATE FUNCTION embedstack._check_source_shape(source regclass) RETURNS void
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

-- Brings a served model set's triggers and generations in line with its source's partition tree
-- after DDL: a table that joined the tree gets the triggers and its rows are applied (none when
-- it was created as a partition); a table that left it (detached) has its rows taken out and its
-- triggers dropped. Runs as the role that ran the DDL (a member of the source's owner: PostgreSQL
-- requires that for CREATE TABLE ... PARTITION OF, ATTACH and DETACH); the rows are applied as
-- the source's owner (_apply_as_owner).
CREATE FUNCTION embedstack._sync_partitions(model_set text) RETURNS void
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
CREATE FUNCTION embedstack._on_table_ddl() RETURNS event_trigger
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
CREATE EVENT TRIGGER embedstack_partitions_changed ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'CREATE FOREIGN TABLE', 'ALTER TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION embedstack._on_table_ddl();
COMMENT ON EVENT TRIGGER embedstack_partitions_changed IS
  'Keeps the served vectors of partitioned sources exact when partitions are created, attached or detached (embedstack).';
