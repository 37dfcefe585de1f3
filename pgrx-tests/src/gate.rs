//! Stopping a materialisation inside a chosen batch, without sleeps (0.3.0: the batches write a
//! generation table, not the source).
//!
//! [`install_generation_gate`] makes every generation table of a model set, as the extension
//! creates it, carry a user trigger (`BEFORE INSERT … FOR EACH ROW`, added by an event trigger on
//! `CREATE TABLE` in the same transaction) that takes the shared advisory lock `GATE + id` for
//! the rows with `id % 1500 = 1`. A session holding that key exclusively ([`close_gate`]) stops
//! the batch containing the row (ids 1501, 3001, 4501, …); the batches are keyset-ordered, so
//! the committed progress at that moment is known exactly. [`open_gate`] lets the run go on.
//! The freshness triggers' inserts into a generation pass the same gate.

use postgres::Client;

use crate::wait::wait_until;

/// The advisory-lock key space of the gates: `GATE + id`.
pub const GATE: i64 = 910_000_000;

/// Installs (once per database; the superuser must run it) the gate on every table created whose
/// name is `<view>_g<digits>` in schema `public` (generation tables of the model set served
/// through `view`; with `view` = `""`, every `…_g<digits>` table) that has a column `id` (the key
/// column must be `id`; a user's table of such a name without one is left alone).
pub fn install_generation_gate(c: &mut Client, view: &str) {
    let like = format!("{}\\_g%", view.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%"));
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION public.embedstack_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id % 1500 = 1 THEN
                 PERFORM pg_catalog.pg_advisory_xact_lock_shared({GATE} + NEW.id);
             END IF;
             RETURN NEW;
         END $$;
         CREATE OR REPLACE FUNCTION public.embedstack_test_gate_new_tables() RETURNS event_trigger
         LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
         DECLARE
             r record;
         BEGIN
             FOR r IN SELECT c.oid::regclass AS rel FROM pg_event_trigger_ddl_commands() d
                        JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'r'
                       WHERE d.command_tag = 'CREATE TABLE' AND d.classid = 'pg_class'::regclass
                         AND c.relnamespace = 'public'::regnamespace
                         AND c.relname LIKE {like} AND c.relname ~ '_g[0-9]+$'
                         AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'id'
                                        AND a.attnum > 0 AND NOT a.attisdropped) LOOP
                 EXECUTE format('CREATE TRIGGER embedstack_test_gate BEFORE INSERT ON %s FOR EACH ROW '
                                'EXECUTE FUNCTION public.embedstack_test_gate()', r.rel);
             END LOOP;
         END $$;
         DROP EVENT TRIGGER IF EXISTS embedstack_test_gate_new_tables;
         CREATE EVENT TRIGGER embedstack_test_gate_new_tables ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
           EXECUTE FUNCTION public.embedstack_test_gate_new_tables();",
        like = crate::sql::q(&like),
    ))
    .unwrap();
}

/// Closes the gate at `id` (a session-level lock: no transaction stays open).
pub fn close_gate(gate: &mut Client, id: i64) {
    gate.query_one("SELECT pg_advisory_lock($1)", &[&(GATE + id)]).unwrap();
}

/// Opens the gate at `id` (panics when it was not closed by this session).
pub fn open_gate(gate: &mut Client, id: i64) {
    let ok: bool = gate.query_one("SELECT pg_advisory_unlock($1)", &[&(GATE + id)]).unwrap().get(0);
    assert!(ok, "gate {id} was not closed");
}

/// The advisory lock a backend waits for: `(classid, objid, objsubid)`, or None.
pub fn awaited_advisory(c: &mut Client, pid: i32) -> Option<(i64, i64, i32)> {
    c.query_opt(
        "SELECT classid::bigint, objid::bigint, objsubid::int FROM pg_locks
          WHERE pid = $1 AND locktype = 'advisory' AND NOT granted",
        &[&pid],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Is `pid` stopped at the gate of `id`?
pub fn at_gate(c: &mut Client, pid: i32, id: i64) -> bool {
    let key = GATE + id;
    awaited_advisory(c, pid) == Some((key >> 32, key & 0xffff_ffff, 1))
}

/// Waits until `pid` is stopped at the gate of `id`.
pub fn wait_at_gate(c: &mut Client, pid: i32, id: i64) {
    wait_until(&format!("backend {pid} to stop at the gate of row {id}"), || at_gate(c, pid, id));
}
