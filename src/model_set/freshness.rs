//! `embedstack._refresh_generations()`: the freshness trigger on a model set's source table,
//! `AFTER INSERT | UPDATE | DELETE | TRUNCATE … FOR EACH STATEMENT` with transition tables
//! (`embedstack_new`, `embedstack_old`), argument: the model set's name. A bulk `INSERT …
//! SELECT` or `COPY` of N rows costs a few statements per live generation, not N.
//!
//! The work is SQL that `embedstack._freshness_sql` builds from the catalog (one home for the
//! quoting of names); this glue only provides what SQL cannot:
//! - **identity**: the statements run as the source's owner (who owns the generation tables),
//!   as a restricted operation with `search_path = pg_catalog, pg_temp`, so that a role that may
//!   write the source but holds no grant on the generations keeps them fresh, and nothing it
//!   controls (its search_path, its temporary objects) reaches code running with those rights;
//! - **the latest snapshot**: the catalog is read, and the generations written, with a fresh
//!   snapshot even in a repeatable-read transaction (as PostgreSQL's foreign-key triggers do):
//!   a generation a job registered after this transaction began is written too, and a row a
//!   job's batch committed meanwhile is replaced, not duplicated;
//! - **no key values for a role that may not read them**: the row kernels the statements call
//!   name a row's key in their errors; unless the statement's role may SELECT the key column
//!   (or the table, and row security does not apply to it), they say
//!   `row with key (hidden: no SELECT privilege on the key)` instead (errors.rs).
//!
//! `_wait_for_writers(source)` is the job's side of the same hand-shake (see
//! `_mat_write` in sql/materialize.sql).

use pgrx::prelude::*;
use pgrx::{pg_sys, PgBox};

use crate::datatype::regclass::RegClass;
use crate::errors::{role_may_see_column, with_keys_hidden};
use crate::operations::pinned_path::with_pinned_search_path;

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_embedstack_refresh_generations() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

fn protocol(msg: &str) -> ! {
    crate::errors::fail(PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, msg)
}

#[no_mangle]
#[doc(hidden)]
#[pg_guard]
pub unsafe extern "C-unwind" fn embedstack_refresh_generations(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            protocol("embedstack._refresh_generations() must be called as a trigger");
        }
        let td = PgBox::from_pg(ctx.cast::<pg_sys::TriggerData>());
        let event = td.tg_event;
        let after = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
        let statement = event & pg_sys::TRIGGER_EVENT_ROW == 0;
        let op = match event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT => "INSERT",
            pg_sys::TRIGGER_EVENT_UPDATE => "UPDATE",
            pg_sys::TRIGGER_EVENT_DELETE => "DELETE",
            pg_sys::TRIGGER_EVENT_TRUNCATE => "TRUNCATE",
            _ => protocol("embedstack._refresh_generations(): unknown trigger event"),
        };
        // BEFORE TRUNCATE on a partition (its rows leave the source; they are read before they
        // go), AFTER ... FOR EACH STATEMENT otherwise.
        if !statement || !(after || op == "TRUNCATE") {
            protocol("embedstack._refresh_generations() must run AFTER ... FOR EACH STATEMENT (or BEFORE TRUNCATE)");
        }
        let trigger = td.tg_trigger;
        if (*trigger).tgnargs != 1 {
            protocol("embedstack._refresh_generations() takes the model set's name as its only argument");
        }
        let name = std::ffi::CStr::from_ptr(*(*trigger).tgargs).to_string_lossy().into_owned();
        let relation = td.tg_relation;
        let relid = (*relation).rd_id;
        // As the owner of the tree's root (the source: a partition cannot be one), who owns the
        // generations; `_freshness_sql` refuses a partition of another owner (0A000).
        let owner = if (*(*relation).rd_rel).relispartition {
            root_owner(relid)
        } else {
            (*(*relation).rd_rel).relowner
        };

        let tdp = td.as_ptr();
        as_owner(owner, |caller| apply(tdp, &name, relid, op, caller));
        pg_sys::Datum::from(0usize)
    }
}

/// Runs `f` (given the calling role) as `owner`, as a restricted operation, with search_path
/// pinned: both undone by the (sub)transaction abort on error, as for a SECURITY DEFINER
/// function. The one way this file switches role.
fn as_owner(owner: pg_sys::Oid, f: impl FnOnce(pg_sys::Oid)) {
    unsafe {
        let (mut saved_user, mut saved_ctx) = (pg_sys::InvalidOid, 0i32);
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_ctx
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        with_pinned_search_path(|| f(saved_user));
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
    }
}

/// The owner of the root of partition `relid`'s tree (read as the caller: pg_class is public).
fn root_owner(relid: pg_sys::Oid) -> pg_sys::Oid {
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT c.relowner FROM pg_catalog.pg_class c
          WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.pg_partition_root($1::pg_catalog.regclass)::pg_catalog.oid",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| error!("embedstack._refresh_generations: the root of partition {} is gone", relid.to_u32()))
}

/// `embedstack._apply_as_owner(model_set, rel, event)`: changes no freshness trigger applied,
/// applied as the freshness trigger applies a statement -- by the statements `_freshness_sql`
/// builds, run as the source's owner (restricted, search_path pinned), with the latest snapshot:
/// on a partitioned source, a partition's rows joining it (`ATTACH`, also a table created as a
/// partition) or leaving it (`DETACH`), or a dropped partition's rows gone (`PRUNE`, `rel` = the
/// source), for the event triggers (sql/partitions.sql); the keys a retained generation `rel`
/// recorded while it was not served (`CATCHUP`, for the rollback that serves it again; or 1,000 of
/// them at a time while writers go on, `CATCHUP_BATCH`, for `embedstack.catch_up`). The
/// caller must be a member of the source's owner (42501 otherwise), as the DDL or job it serves
/// requires, so it lets nobody do what they could not do themselves; a superuser's DDL or
/// rollback on another role's tables runs nothing of that role's (triggers, index expressions
/// on its generation tables) with superuser rights.
#[pg_extern(volatile, parallel_unsafe)]
fn _apply_as_owner(model_set: &str, rel: RegClass, event: &str) {
    if !matches!(event, "ATTACH" | "DETACH" | "PRUNE" | "CATCHUP" | "CATCHUP_BATCH") {
        crate::errors::fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown event {event:?} (ATTACH, DETACH, PRUNE, CATCHUP or CATCHUP_BATCH)"),
        );
    }
    let found = Spi::get_two_with_args::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT c.oid, c.relowner FROM embedstack.model_sets m
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.source::pg_catalog.oid
          WHERE m.name OPERATOR(pg_catalog.=) $1",
        &[model_set.into()],
    );
    let Ok((Some(source), Some(owner))) = found else {
        crate::errors::fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("model set \"{model_set}\" does not exist"),
        );
    };
    if !crate::pg_version::relation_owner_check(source, unsafe { pg_sys::GetUserId() }) {
        crate::errors::fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be a member of the owner of the source of model set \"{model_set}\""),
        );
    }
    as_owner(owner, |caller| unsafe { apply(std::ptr::null_mut(), model_set, rel.0, event, caller) });
}

/// Runs the statements `_freshness_sql` builds (with the trigger's transition tables when `td`
/// is not null), each with the latest snapshot, with the row
/// keys hidden from their errors unless `role` (whose statement fired the trigger) may read the
/// key column (errors.rs, `with_keys_hidden`).
unsafe fn apply(td: *mut pg_sys::TriggerData, name: &str, relid: pg_sys::Oid, op: &str, role: pg_sys::Oid) {
    unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            error!("embedstack._refresh_generations: SPI_connect failed");
        }
        if !td.is_null() && pg_sys::SPI_register_trigger_data(td) != pg_sys::SPI_OK_TD_REGISTER as i32 {
            error!("embedstack._refresh_generations: SPI_register_trigger_data failed");
        }
        // The table-level SELECT (and row security) decides without the key column, so the
        // catalog is read for it only when that is not enough (the usual writer may read the
        // table: no extra query per statement). Unknown key column (no such model set of this
        // table): the table-level answer stands.
        let hide = !role_may_see_column(relid, 0, role)
            && !key_column(name, relid)
                .map(|c| super::catalog::attnum(relid, &c))
                .is_some_and(|att| role_may_see_column(relid, att, role));
        with_keys_hidden(hide, || run_statements(name, relid, op));
        pg_sys::SPI_finish();
    }
}

/// The key column of model set `name` if its source is `relid` or one of its ancestors (`relid`
/// a partition; read as the owner, with the latest snapshot, inside the trigger's SPI
/// connection).
unsafe fn key_column(name: &str, relid: pg_sys::Oid) -> Option<String> {
    unsafe {
        let mut types = [pg_sys::TEXTOID, pg_sys::OIDOID];
        let plan = pg_sys::SPI_prepare(
            c"SELECT m.key_column::pg_catalog.text FROM embedstack.model_sets m
               WHERE m.name OPERATOR(pg_catalog.=) $1
                 AND (m.source::pg_catalog.oid OPERATOR(pg_catalog.=) $2
                      OR m.source::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (ARRAY(
                         SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($2) a)))"
                .as_ptr(),
            2,
            types.as_mut_ptr(),
        );
        if plan.is_null() {
            error!("embedstack._refresh_generations: SPI_prepare failed");
        }
        let mut values = [name.into_datum().expect("text datum"), pg_sys::Datum::from(relid)];
        let nulls = c"  ";
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            1,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            error!("embedstack._refresh_generations: reading the catalog failed ({rc})");
        }
        let tt = pg_sys::SPI_tuptable;
        let column = if pg_sys::SPI_processed == 1 {
            let p = pg_sys::SPI_getvalue(*(*tt).vals, (*tt).tupdesc, 1);
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        } else {
            None
        };
        pg_sys::SPI_freetuptable(tt);
        pg_sys::SPI_freeplan(plan);
        column
    }
}

/// The statements `_freshness_sql` builds for this event, run in the trigger's SPI connection.
unsafe fn run_statements(name: &str, relid: pg_sys::Oid, op: &str) {
    unsafe {
        let mut types = [pg_sys::TEXTOID, pg_sys::OIDOID, pg_sys::TEXTOID];
        let plan = pg_sys::SPI_prepare(
            c"SELECT embedstack._freshness_sql($1, $2, $3)".as_ptr(),
            3,
            types.as_mut_ptr(),
        );
        if plan.is_null() {
            error!("embedstack._refresh_generations: SPI_prepare failed");
        }
        let mut values = [
            name.into_datum().expect("text datum"),
            pg_sys::Datum::from(relid),
            op.into_datum().expect("text datum"),
        ];
        let nulls = c"   ";
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            1,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed != 1 {
            error!("embedstack._refresh_generations: reading the catalog failed ({rc})");
        }
        let tt = pg_sys::SPI_tuptable;
        let mut isnull = false;
        let d = pg_sys::SPI_getbinval(*(*tt).vals, (*tt).tupdesc, 1, &mut isnull);
        let statements: Vec<String> = Vec::<String>::from_datum(d, isnull).unwrap_or_default();
        pg_sys::SPI_freeplan(plan);
        for sql in statements {
            let c = std::ffi::CString::new(sql).expect("generated SQL has no NUL");
            let plan = pg_sys::SPI_prepare(c.as_ptr(), 0, std::ptr::null_mut());
            if plan.is_null() {
                error!("embedstack._refresh_generations: SPI_prepare failed");
            }
            let rc = pg_sys::SPI_execute_snapshot(
                plan,
                std::ptr::null_mut(),
                std::ptr::null(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                false,
                true,
                0,
            );
            if rc < 0 {
                error!("embedstack._refresh_generations: statement failed ({rc})");
            }
            pg_sys::SPI_freeplan(plan);
        }
    }
}

/// Waits until every transaction that holds a lock on `source` conflicting with SHARE (every
/// transaction writing it) has ended, without taking a lock itself (as CREATE INDEX
/// CONCURRENTLY does): run after a new generation is registered, it makes sure that no writer
/// whose freshness trigger read the catalog before the registration is still uncommitted when
/// the job starts reading the source.
#[pg_extern(volatile, parallel_unsafe)]
fn _wait_for_writers(source: RegClass) {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: source.0.to_u32(),
        locktag_field3: 0,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    unsafe { pg_sys::WaitForLockers(tag, pg_sys::ShareLock as pg_sys::LOCKMODE, false) };
}
