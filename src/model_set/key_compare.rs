//! Comparisons with a model set's key in the SQL this library builds, chosen here instead of by
//! the parser.
//!
//! `s.key = p.left_column` or `key = $1` lets the parser pick an operator `=` for the two types
//! through the search path: another role's `public.=(text, varchar)` or `public.=(int4, int8)`
//! is an exact match that wins over pg_catalog's. Instead, the operator is taken from the key's
//! btree operator family (its unique index's opclass, as `embedstack._source_info` does for
//! the SQL side; the type's default btree opclass when that index is gone), written as
//! `OPERATOR(schema.op)`, and both sides are cast to the operator's declared input types, so
//! that the lookup of the qualified name is an exact match. Casts are written with
//! schema-qualified type names and without a typmod (a cast to `varchar(10)` would truncate a
//! longer pair key into a match).
//!
//! Which comparison, for a key of type K and another side of type P (domains as their base
//! types), the same the parser would have chosen among pg_catalog's operators:
//! 1. an operator of the key's family for (K, P): `int4 = int8` stays the cross-type,
//!    indexable `int48eq`;
//! 2. else, when P casts implicitly to K: the key's own equality, P cast to K's input type;
//! 3. else, when K casts implicitly to P: P's default btree equality, the key cast to P (the
//!    key's index cannot serve it, as with the parser's choice);
//! 4. else none: the caller raises 42804.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::errors::{fail, OrInternal};

/// A comparison `<key side><key_cast> <op> <other side><other_cast>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCompare {
    /// `OPERATOR(schema.op)`.
    pub op: String,
    /// Appended to the key-side expression: `::schema.type`, or empty.
    pub key_cast: String,
    /// Appended to the other side's expression: `::schema.type`, or empty.
    pub other_cast: String,
}

impl KeyCompare {
    /// The SQL of the comparison; `key` and `other` are column references or parameters
    /// (`s."id"`, `$1`), to which a cast applies without parentheses.
    pub fn sql(&self, key: &str, other: &str) -> String {
        format!("{key}{} {} {other}{}", self.key_cast, self.op, self.other_cast)
    }
}

/// A key column: its type and the btree family and input type of its equality.
#[derive(Debug, Clone, Copy)]
pub struct KeyColumn {
    /// The column's declared type (a domain stays a domain).
    pub typid: pg_sys::Oid,
    family: pg_sys::Oid,
    intype: pg_sys::Oid,
}

/// Type `typid`, schema-qualified (pg_catalog's too, except the SQL-standard names such as
/// `integer` that the grammar maps to pg_catalog itself), without a typmod. "Typmod given"
/// (as -1) matters: without it `bpchar` and `bit` print as `character` and `bit`, which the
/// grammar reads as `character(1)` and `bit(1)`, and a cast to them would truncate.
pub fn qualified_type(typid: pg_sys::Oid) -> String {
    let flags = pg_sys::FORMAT_TYPE_TYPEMOD_GIVEN | pg_sys::FORMAT_TYPE_FORCE_QUALIFY;
    // SAFETY: a type OID from the catalogs; the result is a palloc'd C string.
    unsafe {
        let p = pg_sys::format_type_extended(typid, -1, flags as pg_sys::bits16);
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn is_pseudo(typid: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookup.
    unsafe { pg_sys::get_typtype(typid) as u8 == pg_sys::TYPTYPE_PSEUDO }
}

fn base_type(typid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: syscache lookup (the type itself when it is not a domain).
    unsafe { pg_sys::getBaseType(typid) }
}

fn casts_implicitly(from: pg_sys::Oid, to: pg_sys::Oid) -> bool {
    // SAFETY: pg_cast lookups by OID (no name resolution).
    from == to
        || unsafe { pg_sys::can_coerce_type(1, &from, &to, pg_sys::CoercionContext::COERCION_IMPLICIT) }
}

/// The equality (strategy 3) of btree family `family` for (left, right), if any.
fn equality(family: pg_sys::Oid, left: pg_sys::Oid, right: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: syscache lookup.
    let op =
        unsafe { pg_sys::get_opfamily_member(family, left, right, pg_sys::BTEqualStrategyNumber as i16) };
    (op != pg_sys::InvalidOid).then_some(op)
}

/// The family and input type of the default btree opclass of `typid`.
fn default_btree(typid: pg_sys::Oid) -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    // SAFETY: catalog lookups.
    unsafe {
        let opclass = pg_sys::GetDefaultOpClass(base_type(typid), pg_sys::BTREE_AM_OID);
        (opclass != pg_sys::InvalidOid)
            .then(|| (pg_sys::get_opclass_family(opclass), pg_sys::get_opclass_input_type(opclass)))
    }
}

/// `OPERATOR(schema.name)` of operator `op`, and its declared input types.
fn operator_sql(op: pg_sys::Oid) -> (String, pg_sys::Oid, pg_sys::Oid) {
    // SAFETY: syscache lookup of an operator a family lookup just returned.
    unsafe {
        let tup =
            pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::OPEROID as i32, pg_sys::Datum::from(op));
        if tup.is_null() {
            error!("cache lookup failed for operator {op:?}");
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tup);
        let name = std::ffi::CStr::from_ptr((*form).oprname.data.as_ptr()).to_string_lossy().into_owned();
        let (nsp, left, right) = ((*form).oprnamespace, (*form).oprleft, (*form).oprright);
        pg_sys::ReleaseSysCache(tup);
        let nsp_name = pg_sys::get_namespace_name(nsp);
        if nsp_name.is_null() {
            error!("cache lookup failed for namespace {nsp:?}");
        }
        let nsp_name = std::ffi::CStr::from_ptr(nsp_name).to_string_lossy().into_owned();
        // An operator's name is a symbol (never quoted); its schema is an identifier.
        (format!("OPERATOR({}.{name})", pgrx::spi::quote_identifier(&nsp_name)), left, right)
    }
}

/// `::type` to bring an expression of type `from` to `to` (empty when it already has it, and
/// for a pseudo-type such as `anyenum`, which no value can be cast to: the operator's schema
/// then resolves it among its own operators).
fn cast(from: pg_sys::Oid, to: pg_sys::Oid) -> String {
    if from == to || is_pseudo(to) {
        String::new()
    } else {
        format!("::{}", qualified_type(to))
    }
}

impl KeyColumn {
    /// Column `column` of relation `relid` (a model set's key): its type and the btree
    /// equality its unique index uses, or the type's default one. Raises 42703 for a missing
    /// column and 42883 for a type without btree equality.
    pub fn load(client: &SpiClient<'_>, relid: pg_sys::Oid, relation: &str, column: &str) -> KeyColumn {
        let attnum = super::catalog::attnum(relid, column);
        if attnum <= 0 {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of relation {relation} does not exist"),
            );
        }
        // SAFETY: an attribute just found.
        let typid = unsafe { pg_sys::get_atttype(relid, attnum) };
        // The opclass of the key's unique single-column btree index (the primary key first).
        let indexed: Option<(pg_sys::Oid, pg_sys::Oid)> = client
            .select(
                "SELECT oc.opcfamily, oc.opcintype
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_opclass oc ON oc.oid OPERATOR(pg_catalog.=) i.indclass[0]
                  WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid
                    AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 AND i.indkey[0] OPERATOR(pg_catalog.=) $2
                    AND oc.opcmethod OPERATOR(pg_catalog.=) $3
                  ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1",
                Some(1),
                &[relid.into(), attnum.into(), pg_sys::BTREE_AM_OID.into()],
            )
            .and_then(|t| {
                if t.is_empty() {
                    Ok((None, None))
                } else {
                    t.first().get_two::<pg_sys::Oid, pg_sys::Oid>()
                }
            })
            .map(|(f, t)| f.zip(t))
            .or_internal();
        let Some((family, intype)) = indexed.or_else(|| default_btree(typid)) else {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
                format!(
                    "the key \"{column}\" of {relation} has type {}, which has no btree equality operator",
                    qualified_type(typid)
                ),
            );
        };
        KeyColumn { typid, family, intype }
    }

    /// A key argument (`datum` of type `oid`) as a value this key compares with: as given when its
    /// type compares with the key's, else, for text, read with the key type's input function (as
    /// a quoted literal compared with the key column would be: 22P02 for an integer key given as
    /// 'abc'), else 42804 naming the argument as `label` ("a key", "a_key"). The one home of this
    /// rule for query_vector and explain.
    pub fn resolve_argument(
        &self,
        model_set: &str,
        source_sql: &str,
        key_column: &str,
        label: &str,
        datum: pg_sys::Datum,
        oid: pg_sys::Oid,
    ) -> (pg_sys::Datum, pg_sys::Oid) {
        let (datum, oid) = match self.compare_with(oid) {
            None if oid == pg_sys::TEXTOID => (text_as(datum, self.typid), self.typid),
            _ => (datum, oid),
        };
        if self.compare_with(oid).is_none() {
            crate::errors::fail_hint(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "model set \"{model_set}\": {label} of type {} cannot be compared with the key \"{key_column}\" of {source_sql} ({})",
                    crate::datatype::model_value::format_type(oid, -1),
                    crate::datatype::model_value::format_type(self.typid, -1)
                ),
                format!(
                    "pass the key as a value of the key column's type (a quoted literal, or a cast: ...::{})",
                    crate::datatype::model_value::format_type(self.typid, -1)
                ),
            );
        }
        (datum, oid)
    }

    /// How to compare this key with a value of type `other` (see the module's rules), or
    /// `None` when the two types do not compare.
    pub fn compare_with(&self, other: pg_sys::Oid) -> Option<KeyCompare> {
        let (kb, pb) = (base_type(self.typid), base_type(other));
        let build = |op: pg_sys::Oid, key_to: Option<pg_sys::Oid>, other_to: Option<pg_sys::Oid>| {
            let (op_sql, left, right) = operator_sql(op);
            KeyCompare {
                op: op_sql,
                key_cast: cast(self.typid, key_to.unwrap_or(left)),
                other_cast: cast(other, other_to.unwrap_or(right)),
            }
        };
        // 1. The key's family has an operator for the two types.
        let direct = if is_pseudo(self.intype) {
            // anyenum, anyarray, …: only the key's own type compares.
            if pb == kb {
                equality(self.family, self.intype, self.intype)
            } else {
                None
            }
        } else {
            equality(self.family, self.intype, pb)
        };
        if let Some(op) = direct {
            return Some(build(op, None, None));
        }
        // 2. The other side casts implicitly to the key's type: the key's equality.
        let key_side = if is_pseudo(self.intype) { kb } else { self.intype };
        if casts_implicitly(pb, kb) {
            if let Some(op) = equality(self.family, self.intype, self.intype) {
                return Some(build(op, Some(key_side), Some(key_side)));
            }
        }
        // 3. The key casts implicitly to the other side's type: that type's equality.
        if casts_implicitly(kb, pb) {
            if let Some((family, intype)) = default_btree(pb) {
                let other_side = if is_pseudo(intype) { pb } else { intype };
                if let Some(op) = equality(family, intype, intype) {
                    return Some(build(op, Some(other_side), Some(other_side)));
                }
            }
        }
        None
    }
}

/// A text value read as type `typid` by its input function (errors as the input function raises
/// them, e.g. 22P02 for an integer key given as 'abc').
fn text_as(text: pg_sys::Datum, typid: pg_sys::Oid) -> pg_sys::Datum {
    unsafe {
        let cstr = pg_sys::text_to_cstring(text.cast_mut_ptr());
        let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo(typid, &mut input, &mut ioparam);
        pg_sys::OidInputFunctionCall(input, cstr, ioparam, -1)
    }
}
