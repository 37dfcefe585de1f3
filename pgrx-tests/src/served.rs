//! Where 0.3.0 serves a model set's vectors (docs/design.md §7), read back through SQL: the
//! served view, the generation tables and their HNSW indexes, the statement-level freshness
//! triggers on the source, and the source table's own state (which nothing may touch).
//!
//! The documented names are computed here independently of the extension: `_derived_name`'s
//! rule (md5 of the UTF-8 text, cut on a character boundary), the default view name
//! `<source>_<set>`, the generation table `<view>_g<id>`, its index `<table>_hnsw`, the
//! triggers `embedstack_<set>_ins/_upd/_del/_trunc`.

use std::collections::BTreeMap;

use postgres::types::FromSqlOwned;
use postgres::Client;

use crate::sql::quote_ident;

// ---------------------------------------------------------------------------------------
// Names, by the documented rules
// ---------------------------------------------------------------------------------------

fn md5_8(s: &str) -> String {
    format!("{:x}", md5::compute(s.as_bytes()))[..8].to_string()
}

/// A name the extension derives from `base` for one of its objects: `base_tag` when that fits in
/// 63 bytes and no hash is asked for; otherwise `base` cut (on a character boundary) to make room
/// for `_<8 hex digits of md5(hash_of, or base)>_<tag>`.
pub fn derived_name(base: &str, tag: &str, hash_of: Option<&str>) -> String {
    let plain = format!("{base}_{tag}");
    if hash_of.is_none() && plain.len() <= 63 {
        return plain;
    }
    let suffix = format!("_{}_{tag}", md5_8(hash_of.unwrap_or(base)));
    let mut b = base.to_string();
    while b.len() > 63 - suffix.len() {
        b.pop();
    }
    format!("{b}{suffix}")
}

/// The default served view name of model set `set` over a table named `source` (unqualified):
/// `<source>_<set>` when it fits in 63 bytes, else cut with a hash of `<source>.<set>`.
pub fn default_view_name(source: &str, set: &str) -> String {
    let base = format!("{source}_{set}");
    if base.len() <= 63 {
        base
    } else {
        derived_name(&base, "served", Some(&format!("{source}.{set}")))
    }
}

/// The table name of generation `id` of a model set served through view `view`: `<view>_g<id>`,
/// hashed (md5 of the view name) when longer than 63 bytes.
pub fn generation_table_name(view: &str, id: i64) -> String {
    let tag = format!("g{id}");
    let long = format!("{view}_{tag}").len() > 63;
    derived_name(view, &tag, long.then_some(view))
}

/// The HNSW index name of a generation table: `<table>_hnsw` (hashed when long).
pub fn generation_index_name(table: &str) -> String {
    derived_name(table, "hnsw", None)
}

/// The four freshness triggers of model set `set` (insert, update, delete, truncate):
/// `embedstack_<set>_ins` … `_trunc`, all four hashed (md5 of `embedstack_<set>`) when the
/// longest would not fit in 63 bytes.
pub fn trigger_names(set: &str) -> [String; 4] {
    let base = format!("embedstack_{set}");
    let long = format!("{base}_trunc").len() > 63;
    ["ins", "upd", "del", "trunc"].map(|t| derived_name(&base, t, long.then_some(base.as_str())))
}

// ---------------------------------------------------------------------------------------
// The catalog's view of a model set
// ---------------------------------------------------------------------------------------

/// The catalog's `view_name` of a model set (unqualified, unquoted).
pub fn view_name(c: &mut Client, set: &str) -> String {
    c.query_one("SELECT view_name::text FROM embedstack.model_sets WHERE name = $1", &[&set]).unwrap().get(0)
}

/// The served view of a model set as SQL: `schema.view`, each part quoted when it needs it.
pub fn view_sql(c: &mut Client, set: &str) -> String {
    let r = c
        .query_one(
            "SELECT n.nspname::text, m.view_name::text FROM embedstack.model_sets m
               JOIN pg_class s ON s.oid = m.source JOIN pg_namespace n ON n.oid = s.relnamespace
              WHERE m.name = $1",
            &[&set],
        )
        .unwrap();
    format!("{}.{}", quote_ident(&r.get::<_, String>(0)), quote_ident(&r.get::<_, String>(1)))
}

/// The catalog's `(key_column, combined_column)` of a model set.
pub fn key_and_combined(c: &mut Client, set: &str) -> (String, String) {
    let r = c
        .query_one(
            "SELECT key_column::text, combined_column::text FROM embedstack.model_sets WHERE name = $1",
            &[&set],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// Does relation `name` (SQL text, e.g. `public.items_st` or `"we ird"`) exist?
pub fn relation_exists(c: &mut Client, name: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).unwrap().get(0)
}

/// Does the model set's served view exist (a view, in the source's schema)?
pub fn view_exists(c: &mut Client, set: &str) -> bool {
    let v = view_sql(c, set);
    c.query_one(
        "SELECT coalesce((SELECT relkind = 'v' FROM pg_class WHERE oid = to_regclass($1)), false)",
        &[&v],
    )
    .unwrap()
    .get(0)
}

/// A row of `embedstack.generations`, with its table as SQL text (`regclass::text`: quoted and
/// schema-qualified as needed) and its table's bare name.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub id: i64,
    /// `relation::text`, None when the row has no table (yet).
    pub relation: Option<String>,
    /// The table's name (`pg_class.relname`), None when it does not exist.
    pub table: Option<String>,
    pub index_name: Option<String>,
    pub fit_id: i64,
    pub multipliers: Vec<f64>,
    pub storage: String,
    pub width: i32,
    pub state: String,
    pub rows_written: i64,
}

const GEN_COLS: &str =
    "g.id, g.relation::text, c.relname::text, g.index_name::text, g.fit_id, g.multipliers, \
                        g.storage, g.width, g.state, g.rows_written";

fn generation_from(r: &postgres::Row) -> Generation {
    Generation {
        id: r.get(0),
        relation: r.get(1),
        table: r.get(2),
        index_name: r.get(3),
        fit_id: r.get(4),
        multipliers: r.get(5),
        storage: r.get(6),
        width: r.get(7),
        state: r.get(8),
        rows_written: r.get(9),
    }
}

/// Every generation of a model set, by id.
pub fn generations(c: &mut Client, set: &str) -> Vec<Generation> {
    c.query(
        &format!(
            "SELECT {GEN_COLS} FROM embedstack.generations g LEFT JOIN pg_class c ON c.oid = g.relation
              WHERE g.model_set = $1 ORDER BY g.id"
        ),
        &[&set],
    )
    .unwrap()
    .iter()
    .map(generation_from)
    .collect()
}

/// The generation the catalog says is served (`model_sets.served_generation`), if any.
pub fn served_generation(c: &mut Client, set: &str) -> Option<Generation> {
    c.query_opt(
        &format!(
            "SELECT {GEN_COLS} FROM embedstack.model_sets m JOIN embedstack.generations g ON g.id = m.served_generation
               LEFT JOIN pg_class c ON c.oid = g.relation WHERE m.name = $1"
        ),
        &[&set],
    )
    .unwrap()
    .map(|r| generation_from(&r))
}

/// The generation a model set's view reads (from the view's dependencies, not the catalog).
pub fn view_reads(c: &mut Client, set: &str) -> Option<String> {
    let v = view_sql(c, set);
    c.query_opt(
        "SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
           JOIN pg_class t ON t.oid = d.refobjid AND t.relkind = 'r'
          WHERE r.ev_class = to_regclass($1)",
        &[&v],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// Every relation the rule of view `view` (SQL text) reads, other than the view itself, sorted.
pub fn relations_read_by_view(c: &mut Client, view: &str) -> Vec<String> {
    c.query(
        "SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
          WHERE r.ev_class = $1::text::regclass ORDER BY 1",
        &[&view],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Served vectors
// ---------------------------------------------------------------------------------------

/// `key -> column::real[]` of every row of `relation` (SQL text) by key column `key` (an
/// identifier, quoted here as needed).
pub fn vectors_by_key<K: FromSqlOwned + Ord>(
    c: &mut Client,
    relation: &str,
    key: &str,
    column: &str,
) -> BTreeMap<K, Option<Vec<f32>>> {
    let (k, col) = (quote_ident(key), quote_ident(column));
    c.query(&format!("SELECT {k}, {col}::real[] FROM {relation} ORDER BY 1"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `key -> combined::real[]` read through the model set's served view (any key type).
pub fn served_by_key<K: FromSqlOwned + Ord>(c: &mut Client, set: &str) -> BTreeMap<K, Option<Vec<f32>>> {
    let v = view_sql(c, set);
    let (k, col) = key_and_combined(c, set);
    vectors_by_key(c, &v, &k, &col)
}

/// `id -> combined::real[]` read through the model set's served view (an int key).
pub fn served_by_id(c: &mut Client, set: &str) -> BTreeMap<i32, Option<Vec<f32>>> {
    served_by_key(c, set)
}

/// `(key, ctid, xmin)` of every row of a generation table (SQL text) with an int key `key`:
/// unchanged iff no row of it was rewritten.
pub fn generation_row_versions(c: &mut Client, relation: &str, key: &str) -> Vec<(i32, String, String)> {
    let k = quote_ident(key);
    c.query(&format!("SELECT {k}, ctid::text, xmin::text FROM {relation} ORDER BY 1"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Triggers and the source's own state
// ---------------------------------------------------------------------------------------

/// A trigger on a table, decoded from `pg_trigger`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: String,
    /// `schema.function` of the trigger function.
    pub function: String,
    /// FOR EACH ROW (false: FOR EACH STATEMENT).
    pub row: bool,
    /// BEFORE / AFTER / INSTEAD OF.
    pub timing: &'static str,
    /// Events, in the order INSERT, UPDATE, DELETE, TRUNCATE.
    pub events: Vec<&'static str>,
    /// The trigger's arguments.
    pub args: Vec<String>,
}

/// Every trigger on `table` (SQL text), by name (internal ones excluded).
pub fn triggers(c: &mut Client, table: &str) -> Vec<Trigger> {
    c.query(
        "SELECT t.tgname::text, p.pronamespace::regnamespace::text || '.' || p.proname, t.tgtype::int, t.tgargs
           FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal ORDER BY t.tgname",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let ty: i32 = r.get(2);
        let timing = if ty & 64 != 0 {
            "INSTEAD OF"
        } else if ty & 2 != 0 {
            "BEFORE"
        } else {
            "AFTER"
        };
        let events = [(4, "INSERT"), (16, "UPDATE"), (8, "DELETE"), (32, "TRUNCATE")]
            .iter()
            .filter(|(bit, _)| ty & bit != 0)
            .map(|(_, e)| *e)
            .collect();
        // tgargs: each argument NUL-terminated, in the database encoding (UTF-8 here).
        let raw: Vec<u8> = r.get(3);
        let args = match raw.strip_suffix(&[0]) {
            Some(body) => body
                .split(|&b| b == 0)
                .map(|a| String::from_utf8(a.to_vec()).expect("a UTF-8 trigger argument"))
                .collect(),
            None => Vec::new(),
        };
        Trigger { name: r.get(0), function: r.get(1), row: ty & 1 != 0, timing, events, args }
    })
    .collect()
}

/// Asserts that `table` carries exactly the four documented freshness triggers of `set` (names,
/// AFTER … FOR EACH STATEMENT, one event each, `embedstack._refresh_generations(set)`) among its
/// triggers, and no other trigger of the extension (no 0.2 row trigger).
pub fn assert_freshness_triggers(c: &mut Client, table: &str, set: &str) {
    let names = trigger_names(set);
    let all = triggers(c, table);
    for (name, event) in names.iter().zip(["INSERT", "UPDATE", "DELETE", "TRUNCATE"]) {
        let t = all
            .iter()
            .find(|t| &t.name == name)
            .unwrap_or_else(|| panic!("{table}: no trigger {name} of model set {set:?}: {all:#?}"));
        assert_eq!(
            (t.function.as_str(), t.row, t.timing, t.events.as_slice(), t.args.as_slice()),
            ("embedstack._refresh_generations", false, "AFTER", &[event][..], &[set.to_string()][..]),
            "{table}: trigger {name}"
        );
    }
}

/// The triggers on `table` that call the extension's functions (its freshness triggers, or a
/// 0.2 row trigger): `(name, argument)`.
pub fn extension_triggers(c: &mut Client, table: &str) -> Vec<(String, String)> {
    triggers(c, table)
        .into_iter()
        .filter(|t| t.function.starts_with("embedstack."))
        .map(|t| (t.name, t.args.first().cloned().unwrap_or_default()))
        .collect()
}

/// Every attribute of a table, dropped ones included: `(attnum, name, type, dropped)`. Equal
/// before and after iff no column was added, dropped, renamed or retyped.
pub fn attributes(c: &mut Client, table: &str) -> Vec<(i16, String, String, bool)> {
    c.query(
        "SELECT attnum, attname::text, format_type(atttypid, atttypmod), attisdropped FROM pg_attribute
          WHERE attrelid = to_regclass($1) AND attnum > 0 ORDER BY attnum",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// What a model set must never change in its source table: its attributes (dropped ones
/// included), its storage (relfilenode: no rewrite), its indexes, and every row's
/// `(id, ctid, xmin)` (an int key named `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceState {
    pub attributes: Vec<(i16, String, String, bool)>,
    pub relfilenode: u32,
    pub indexes: Vec<String>,
    pub rows: Vec<(i32, String, String)>,
}

pub fn source_state(c: &mut Client, table: &str) -> SourceState {
    let relfilenode: u32 = c
        .query_one("SELECT relfilenode::text::int8 FROM pg_class WHERE oid = to_regclass($1)", &[&table])
        .unwrap()
        .get::<_, i64>(0) as u32;
    let indexes = c
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass($1) ORDER BY 1",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    SourceState {
        attributes: attributes(c, table),
        relfilenode,
        indexes,
        rows: crate::catalog::row_versions(c, table),
    }
}

/// The lock modes session `pid` holds (granted) on relation `relation` (SQL text).
pub fn locks_held(c: &mut Client, pid: i32, relation: &str) -> Vec<String> {
    c.query(
        "SELECT mode FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND granted
            AND relation = to_regclass($2) AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY mode",
        &[&pid, &relation],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_plain() {
        assert_eq!(default_view_name("items", "stack"), "items_stack");
        assert_eq!(generation_table_name("items_stack", 12), "items_stack_g12");
        assert_eq!(generation_index_name("items_stack_g12"), "items_stack_g12_hnsw");
        assert_eq!(
            trigger_names("st"),
            ["embedstack_st_ins", "embedstack_st_upd", "embedstack_st_del", "embedstack_st_trunc"]
        );
    }

    #[test]
    fn long_names_are_cut_on_characters_and_hashed() {
        let view = "é".repeat(31); // 62 bytes
        let g = generation_table_name(&view, 7);
        assert!(g.len() <= 63 && g.ends_with(&format!("_{}_g7", md5_8(&view))), "{g}");
        assert!(g.starts_with(&"é".repeat(25)), "{g}");
        let set = "s".repeat(50);
        let t = trigger_names(&set);
        let h = md5_8(&format!("embedstack_{set}"));
        assert!(t.iter().all(|n| n.len() <= 63), "{t:?}");
        assert!(t[0].ends_with(&format!("_{h}_ins")) && t[3].ends_with(&format!("_{h}_trunc")), "{t:?}");
        let v = default_view_name(&"t".repeat(40), &"s".repeat(30));
        assert!(v.len() <= 63 && v.ends_with("_served"), "{v}");
    }
}
