//! `embedstack._refresh_combined()`: the row trigger releases 0.1.0-0.2.x installed on a model
//! set's source table (`BEFORE INSERT OR UPDATE OF <model columns> … FOR EACH ROW`, argument:
//! the model set's name), which wrote the combined vector into a column of the source. 0.3.0
//! serves from generation tables (src/model_set/freshness.rs) and its upgrade script replaces
//! this trigger; the symbol stays so that a database still on an older version's SQL keeps
//! working with this library until `ALTER EXTENSION embedstack UPDATE` (and so that the
//! upgrade tests can build a 0.2.0 served column with it). It reads the old catalog shape.

use pgrx::prelude::*;
use pgrx::{pg_sys, PgBox};

use embedstack_math::combine::layout_width;

use super::catalog::{self, Layout, ModelSetDef, Storage};
use super::output::{combined_datum, read_model};
use crate::datatype::model_value::{attribute_type, check_model_attributes, format_type};
use crate::datatype::pgvector_types::{pgvector_type, PgvectorType};
use crate::errors::{role_may_see_column, HIDDEN_KEY};
use crate::operations::pinned_path::with_pinned_search_path;

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_refresh_combined() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

fn protocol(msg: &str) -> ! {
    crate::errors::fail(PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, msg)
}

#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_refresh_combined(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            protocol("embedstack._refresh_combined() must be called as a trigger");
        }
        let td = PgBox::from_pg(ctx.cast::<pg_sys::TriggerData>());
        let event = td.tg_event;
        let before = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
        let row = event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let op = event & pg_sys::TRIGGER_EVENT_OPMASK;
        let is_update = op == pg_sys::TRIGGER_EVENT_UPDATE;
        if !before || !row || !(op == pg_sys::TRIGGER_EVENT_INSERT || is_update) {
            protocol("embedstack._refresh_combined() must run BEFORE INSERT OR UPDATE FOR EACH ROW");
        }
        let trigger = td.tg_trigger;
        if (*trigger).tgnargs != 1 {
            protocol("embedstack._refresh_combined() takes the model set's name as its only argument");
        }
        let name = std::ffi::CStr::from_ptr(*(*trigger).tgargs).to_string_lossy().into_owned();
        let tuple = if is_update { td.tg_newtuple } else { td.tg_trigtuple };
        let desc = (*td.tg_relation).rd_att;

        // The catalog is read with the search path pinned (src/operations/pinned_path.rs).
        let def: ModelSetDef =
            with_pinned_search_path(|| Spi::connect(|client| catalog::load_legacy(client, &name)));
        // Only on the table the extension installed it on: a trigger that a user points at
        // another model set (or at one of another table) would otherwise write that set's
        // vectors into whatever columns of this table carry its column names.
        let relid = (*td.tg_relation).rd_id;
        if relid != def.source_oid {
            crate::ereport_hint!(
                ERROR,
                PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                format!(
                    "embedstack._refresh_combined('{name}') fired on a table that is not the source of model set \"{name}\""
                ),
                "this trigger function is installed by embedstack.materialize on a model set's source table only; drop this trigger"
            );
        }
        let targets: Vec<_> = [def.served.as_ref(), def.staging.as_ref()].into_iter().flatten().collect();
        if targets.is_empty() {
            return pg_sys::Datum::from(tuple);
        }
        let attnum = |col: &str| -> i32 {
            let c = std::ffi::CString::new(col).expect("identifier without NUL");
            let n = pg_sys::SPI_fnumber(desc, c.as_ptr());
            if n <= 0 {
                ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("model set \"{name}\": column \"{col}\" does not exist in {}", def.source_sql)
                );
            }
            n
        };
        let key_att = attnum(&def.key_column);
        // A role that may write the model columns but not read the key never sees key values
        // in our errors (PostgreSQL's rule for row contents in errors, errors.rs).
        let key_shown = role_may_see_column(relid, key_att as i16, pg_sys::GetUserId());
        let key = || {
            if key_shown {
                super::spi_scan::key_text(tuple, desc, key_att)
            } else {
                HIDDEN_KEY.to_string()
            }
        };
        // The columns' types now, not as recorded in the catalog (ALTER TABLE may have
        // changed them since).
        let model_atts: Vec<i32> = def.model_columns.iter().map(|c| attnum(c)).collect();
        check_model_attributes(
            desc,
            &model_atts,
            &def.kinds,
            &def.dims,
            &name,
            &def.source_sql,
            &def.model_columns,
        );
        let values: Vec<_> = def
            .model_columns
            .iter()
            .zip(&def.kinds)
            .zip(&model_atts)
            .map(|((col, kind), &att)| {
                let mut null = false;
                let d = pg_sys::heap_getattr(tuple, att, desc, &mut null);
                read_model(d, null, *kind, &key, &|| col.clone())
            })
            .collect();
        let mut cols = Vec::new();
        let mut datums = Vec::new();
        let mut nulls = Vec::new();
        for layout in targets {
            // A column being dropped or not yet added (between catalog and DDL) is skipped.
            let c = std::ffi::CString::new(layout.column.as_str()).expect("identifier without NUL");
            let n = pg_sys::SPI_fnumber(desc, c.as_ptr());
            if n <= 0 {
                continue;
            }
            check_output_attribute(desc, n, layout, &def);
            datums.push(combined_datum(
                &values,
                &def.dims,
                &layout.multipliers,
                layout.storage,
                &key,
                &|m| def.model_columns[m].clone(),
            ));
            cols.push(n);
            nulls.push(false);
        }
        drop(values);
        if cols.is_empty() {
            return pg_sys::Datum::from(tuple);
        }
        let newtuple = pg_sys::heap_modify_tuple_by_cols(
            tuple,
            desc,
            cols.len() as i32,
            cols.as_mut_ptr(),
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        pg_sys::Datum::from(newtuple)
    }
}

/// The column a combined vector is written into must be pgvector's `vector(width)` or
/// `halfvec(width)` as the layout says (the extension creates it so): anything else carrying
/// the combined column's name would receive bytes of another type.
unsafe fn check_output_attribute(desc: pg_sys::TupleDesc, att: i32, layout: &Layout, def: &ModelSetDef) {
    let (typid, typmod) = unsafe { attribute_type(desc, att) };
    let width = layout_width(&def.dims, &layout.multipliers);
    let (wanted, name) = match layout.storage {
        Storage::Vector => (PgvectorType::Vector, "vector"),
        Storage::Halfvec => (PgvectorType::Halfvec, "halfvec"),
    };
    if pgvector_type(typid) != Some(wanted) || (typmod > 0 && typmod as usize != width) {
        crate::ereport_hint!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "column \"{}\" of {} has type {}, but model set \"{}\" writes {name}({width}) into it",
                layout.column,
                def.source_sql,
                format_type(typid, typmod),
                def.name
            ),
            "the column was altered or replaced after materialize created it: CALL embedstack.materialize again, \
             or drop the model set"
        );
    }
}
