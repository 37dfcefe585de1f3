//! Rollback a DBA can rely on (issue 19, item 3; P2 of the 0.3.0 new-user trial), against the real
//! project cluster, with `embedstack.keep_generations = 2`:
//! * a retained generation is not written by the source's writes (its rows keep their versions:
//!   no HNSW insert per write) — the keys are recorded and written again when a rollback serves it,
//!   or by `catch_up`, which leaves it exact with nothing recorded;
//! * `rollback(set, to_fit => id)` serves any retained generation's fit, exactly (the kernel over
//!   the source now), `rollback(set)` toggles with the previous fit;
//! * a rollback holds the model set: a refit records its fit and keeps the served one (job `kept`,
//!   saying why), a plain `materialize` refuses (55000 naming `release`), status shows the hold;
//!   `release` ends it; `materialize(fit_id => …)` ends it too;
//! * `materialize(fit_id => <retained fit>)` reuses its generation (no new generation);
//! * a refit whose fit serves what is served changes nothing (no new active fit, no new
//!   generation, the rollback point stays); `refresh` keeps the rollback point;
//! * a fit whose vectors no generation holds: 55000 with a hint.

use embedstack_client_tests::exact::{
    assert_same, assert_view_exact, create_pairs, expected, label, read, rows,
};
use embedstack_client_tests::fresh_db;
use embedstack_client_tests::sql::expect_code;
use postgres::Client;

const VIEW: &str = "items_s";

fn fit(c: &mut Client) -> i64 {
    c.query_one("SELECT id FROM embedstack.fit('s', 'pairs', 'a', 'b', 'y')", &[]).unwrap().get(0)
}

/// `(active_fit, previous_fit, served_generation, held)`.
fn served(c: &mut Client) -> (i64, Option<i64>, i64, bool) {
    let r = c
        .query_one(
            "SELECT active_fit, previous_fit, served_generation, held_since IS NOT NULL FROM embedstack.model_sets
              WHERE name = 's'",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// `(id, fit_id, state, table)` of the generations.
fn generations(c: &mut Client) -> Vec<(i64, i64, String, String)> {
    c.query(
        "SELECT id, fit_id, state, relation::text FROM embedstack.generations WHERE model_set = 's' ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn row_versions(c: &mut Client, rel: &str) -> Vec<(i32, String, String)> {
    c.query(&format!("SELECT id, ctid::text, xmin::text FROM {rel} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn generation_pending_or_none(c: &mut Client, id: i64) -> Option<String> {
    c.query_one("SELECT pending::text FROM embedstack.generations WHERE id = $1", &[&id]).unwrap().get(0)
}

fn generation_pending(c: &mut Client, id: i64) -> String {
    c.query_one("SELECT pending::text FROM embedstack.generations WHERE id = $1", &[&id]).unwrap().get(0)
}

fn last_job(c: &mut Client) -> (String, String) {
    let r = c
        .query_one(
            "SELECT state, outcome FROM embedstack.jobs WHERE model_set = 's' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// A database `es_<name>` with `items` (ids 1..=`n`), model set `s`, the pairs, the session
/// `settings`, and one fit materialised per `(w1, w2)` labelling in turn: the fits' ids.
fn served_set(name: &str, n: i32, settings: &str, labellings: &[(f64, f64)]) -> (Client, Vec<i64>) {
    let mut c = fresh_db(name);
    c.batch_execute(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, m1 vector(3), m2 real[], note text);
         INSERT INTO items {};
         SELECT embedstack.create_model_set('s', 'items', 'id', ARRAY['m1', 'm2']);
         SET client_min_messages = warning; {settings}",
        rows(1, n, 0.0)
    ))
    .unwrap();
    create_pairs(&mut c, "items");
    let mut fits = Vec::new();
    for &(w1, w2) in labellings {
        label(&mut c, w1, w2);
        fits.push(fit(&mut c));
        c.batch_execute("CALL embedstack.materialize('s')").unwrap();
    }
    (c, fits)
}

#[test]
fn rollback_serves_retained_fits_exactly_and_holds_the_model_set() {
    let (mut c, fits) = served_set(
        "rollback",
        400,
        "SET embedstack.keep_generations = 2;",
        &[(0.3, 1.0), (1.0, 0.3), (1.0, 1.0)],
    );
    let (f1, f2, f3) = (fits[0], fits[1], fits[2]);
    let gens = generations(&mut c);
    assert_eq!(
        gens.iter().map(|g| (g.1, g.2.as_str())).collect::<Vec<_>>(),
        [(f1, "retained"), (f2, "retained"), (f3, "served")],
        "keep_generations = 2 keeps both earlier generations"
    );
    assert_view_exact(&mut c, "items", "s", VIEW, "after three materialisations");

    // Writes reach the served generation; the retained ones only record keys.
    let retained_before: Vec<_> = gens[..2].iter().map(|g| row_versions(&mut c, &g.3)).collect();
    c.batch_execute(&format!(
        "UPDATE items SET m1 = '[0.5,2,1]' WHERE id % 7 = 0;
         DELETE FROM items WHERE id > 390;
         INSERT INTO items {};
         UPDATE items SET note = 'n' WHERE id < 20",
        rows(401, 420, 0.4)
    ))
    .unwrap();
    for (k, g) in gens[..2].iter().enumerate() {
        assert_eq!(row_versions(&mut c, &g.3), retained_before[k], "retained generation {} was written", g.0);
    }
    assert_view_exact(&mut c, "items", "s", VIEW, "after writes");

    // catch_up writes the recorded rows into the retained generations without pausing writers:
    // they are exact afterwards, with nothing left recorded.
    c.batch_execute("CALL embedstack.catch_up('s')").unwrap();
    for g in &gens[..2] {
        let want = expected(&mut c, "items", g.1);
        assert_same(
            &read(&mut c, &format!("SELECT id, s_combined::real[] FROM {}", g.3)),
            &want,
            &format!("caught up {}", g.3),
        );
        let pending = generation_pending(&mut c, g.0);
        let left: i64 = c.query_one(&format!("SELECT count(*) FROM {pending}"), &[]).unwrap().get(0);
        assert_eq!(left, 0, "nothing left recorded for generation {}", g.0);
    }
    c.batch_execute("UPDATE items SET m1 = '[1,1,1]' WHERE id IN (3, 4)").unwrap();

    // rollback to any retained fit: exact, and held.
    c.batch_execute(&format!("CALL embedstack.rollback('s', to_fit => {f1})")).unwrap();
    assert_eq!(served(&mut c), (f1, Some(f3), gens[0].0, true), "rollback to fit {f1}");
    assert_view_exact(&mut c, "items", "s", VIEW, "rolled back to the oldest fit");
    let (held, retained): (bool, i64) = {
        let r = c
            .query_one("SELECT held_since IS NOT NULL, retained_generations FROM embedstack.status WHERE model_set = 's'", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((held, retained), (true, 2), "status shows the hold and the reachable generations");
    // The generation left behind records from now on; a write, then toggling back serves it exactly.
    c.batch_execute("UPDATE items SET m2 = '{1,2,3,4}' WHERE id BETWEEN 100 AND 140").unwrap();
    c.batch_execute("CALL embedstack.rollback('s')").unwrap();
    assert_eq!(served(&mut c).0, f3, "rollback toggles back to the previous fit");
    assert_view_exact(&mut c, "items", "s", VIEW, "toggled back");
    c.batch_execute(&format!("CALL embedstack.rollback('s', to_fit => {f2})")).unwrap();
    assert_view_exact(&mut c, "items", "s", VIEW, "rolled back to the middle fit");
    assert_eq!(served(&mut c).0, f2);

    // Held: a refit records and keeps; a plain materialize refuses.
    label(&mut c, 0.2, 1.0);
    c.batch_execute("CALL embedstack.refit('s', 'pairs', 'a', 'b', 'y', cutover => 'always')").unwrap();
    let (state, outcome) = last_job(&mut c);
    assert_eq!(state, "kept", "{outcome}");
    assert!(outcome.contains("held") && outcome.contains("release"), "the refit says why: {outcome}");
    assert_eq!(served(&mut c).0, f2, "the held fit stays");
    let e = expect_code(&mut c, "CALL embedstack.materialize('s')", "55000");
    assert!(format!("{e:?}").contains("release"), "{e:?}");
    c.batch_execute("SELECT embedstack.release('s')").unwrap();
    assert!(!served(&mut c).3, "released");

    // materialize(fit_id => a retained fit) reuses its generation.
    let n_gens = generations(&mut c).iter().map(|g| g.0).max().unwrap();
    c.batch_execute(&format!("CALL embedstack.materialize('s', fit_id => {f1})")).unwrap();
    assert_eq!(served(&mut c).0, f1);
    assert_eq!(
        generations(&mut c).iter().map(|g| g.0).max().unwrap(),
        n_gens,
        "no generation written for a fit a retained generation holds"
    );
    assert_view_exact(&mut c, "items", "s", VIEW, "materialize of a retained fit");

    // A fit that serves what is served changes nothing: the same labels on the same rows, fitted
    // twice.
    label(&mut c, 0.3, 1.0);
    let first = fit(&mut c);
    c.batch_execute(&format!("CALL embedstack.materialize('s', fit_id => {first})")).unwrap();
    let same = fit(&mut c);
    let w: (Vec<f64>, Vec<f64>) = {
        let r = c
            .query_one(
                "SELECT a.weights, b.weights FROM embedstack.fits a, embedstack.fits b WHERE a.id = $1 AND b.id = $2",
                &[&first, &same],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(w.0, w.1, "test precondition: the same pairs and rows give the same weights");
    let before = served(&mut c);
    let gens_before = generations(&mut c);
    c.batch_execute(&format!("CALL embedstack.materialize('s', fit_id => {same})")).unwrap();
    assert_eq!(served(&mut c), before, "an identical fit changes nothing (active, previous, generation)");
    assert_eq!(generations(&mut c), gens_before, "and writes no generation");
    assert!(last_job(&mut c).1.contains("nothing changed"), "{:?}", last_job(&mut c));

    // refresh writes a new generation of the served fit and keeps the rollback point.
    let (active, previous, _, _) = served(&mut c);
    c.batch_execute("CALL embedstack.refresh('s')").unwrap();
    let after = served(&mut c);
    assert_eq!((after.0, after.1), (active, previous), "refresh keeps the active fit and the rollback point");
    c.batch_execute("CALL embedstack.rollback('s')").unwrap();
    assert_eq!(served(&mut c).0, previous.unwrap(), "rollback after a refresh reaches the real earlier fit");
    assert_view_exact(&mut c, "items", "s", VIEW, "rollback after refresh");
    // Every retained generation still holds its fit's vectors once served: serve each in turn.
    for g in generations(&mut c) {
        c.batch_execute(&format!("CALL embedstack.rollback('s', to_fit => {})", g.1)).unwrap();
        let want = expected(&mut c, "items", g.1);
        assert_same(
            &read(&mut c, &format!("SELECT id, s_combined::real[] FROM {VIEW}")),
            &want,
            &format!("fit {}", g.1),
        );
    }

    // A fit no generation holds.
    label(&mut c, 1.0, 0.05);
    let lone = fit(&mut c);
    let e = expect_code(&mut c, &format!("CALL embedstack.rollback('s', to_fit => {lone})"), "55000");
    assert!(format!("{e:?}").contains("materialize"), "{e:?}");
    expect_code(&mut c, "CALL embedstack.rollback('s', to_fit => 999999)", "42704");
}

/// The cut-over and a rollback lock the served view, not the generation it reads. LOCK TABLE on a
/// view recurses into its tables: up to 0.4.0's first cut that was ACCESS EXCLUSIVE on the
/// served generation, which autovacuum holds in SHARE UPDATE EXCLUSIVE while it vacuums it
/// (minutes with an HNSW index; a 50 ms attempt never makes it yield) and every writer's trigger
/// writes: the bench's refit under load waited 73 s in its cut-over, and a rollback waited for
/// ever behind an autovacuum. Here another session holds what VACUUM holds on the served
/// generation for the whole test: the rollback and a materialise's cut-over still complete well
/// inside `cutover_wait_timeout` (they gave up with 55P03 before the fix).
#[test]
fn cut_over_and_rollback_do_not_wait_for_a_vacuum_of_the_served_generation() {
    let (mut c, fits) = served_set(
        "rollback_vacuum",
        200,
        "SET embedstack.cutover_wait_timeout = '3s';",
        &[(0.3, 1.0), (1.0, 0.3)],
    );
    let (f1, f2) = (fits[0], fits[1]);
    let gens = generations(&mut c);
    let (served_rel, retained_rel) = (gens[1].3.clone(), gens[0].3.clone());

    // A VACUUM's lock on both generations, held by another session until the end.
    let mut vacuum = embedstack_client_tests::connect("rollback_vacuum", "postgres");
    vacuum
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {served_rel} IN SHARE UPDATE EXCLUSIVE MODE;
             LOCK TABLE {retained_rel} IN SHARE UPDATE EXCLUSIVE MODE"
        ))
        .unwrap();
    c.batch_execute("UPDATE items SET m1 = '[0.5,2,1]' WHERE id % 5 = 0").unwrap();

    c.batch_execute("CALL embedstack.rollback('s')")
        .unwrap_or_else(|e| panic!("rollback while the served generation is vacuumed: {e:?}"));
    assert_eq!(served(&mut c).0, f1, "rolled back to fit {f1}");
    assert_view_exact(&mut c, "items", "s", VIEW, "rollback while vacuumed");

    // A new fit's materialise: its cut-over points the view away from a vacuumed generation.
    label(&mut c, 1.0, 1.0);
    let f3 = fit(&mut c);
    c.batch_execute(&format!("CALL embedstack.materialize('s', fit_id => {f3})"))
        .unwrap_or_else(|e| panic!("materialize while the served generation is vacuumed: {e:?}"));
    assert_eq!(served(&mut c).0, f3, "serving fit {f3}");
    assert_view_exact(&mut c, "items", "s", VIEW, "cut-over while vacuumed");
    // And back to a retained fit whose generation is being vacuumed.
    c.batch_execute(&format!("CALL embedstack.rollback('s', to_fit => {f2})"))
        .unwrap_or_else(|e| panic!("rollback to a vacuumed generation: {e:?}"));
    assert_eq!(served(&mut c).0, f2);
    assert_view_exact(&mut c, "items", "s", VIEW, "rolled back to a vacuumed generation");
    vacuum.batch_execute("COMMIT").unwrap();
}

/// A materialise (or scheduled refit) that comes back to the fit of a retained generation with
/// many recorded keys writes them in committed batches first, without pausing the writers, and
/// switches with only the remainder under the writers' pause (the bench's refit that came back
/// to the earlier fit paused writers 10.5 s at 20,000 rows when it was all written in the switch).
#[test]
fn reusing_a_retained_generation_catches_up_in_batches_before_the_switch() {
    let (mut c, fits) = served_set("rollback_reuse", 2600, "", &[(0.3, 1.0), (1.0, 0.3)]);
    let (f1, _f2) = (fits[0], fits[1]);
    let g1 = generations(&mut c)[0].clone();
    assert_eq!((g1.1, g1.2.as_str()), (f1, "retained"));
    // 2,500 changed rows recorded for the retained generation of fit f1.
    c.batch_execute("UPDATE items SET m1 = '[0.5,2,1]' WHERE id <= 2500").unwrap();
    let pending = generation_pending(&mut c, g1.0);
    let recorded: i64 = c.query_one(&format!("SELECT count(*) FROM {pending}"), &[]).unwrap().get(0);
    assert!(recorded >= 2500, "{recorded} recorded entries");

    c.batch_execute(&format!("CALL embedstack.materialize('s', fit_id => {f1})")).unwrap();
    assert_eq!(served(&mut c).2, g1.0, "fit {f1} served from its retained generation");
    assert_view_exact(&mut c, "items", "s", VIEW, "after the batched catch-up and the switch");
    let (details, outcome): (String, String) = {
        let r = c
            .query_one(
                "SELECT details::text, outcome FROM embedstack.jobs WHERE model_set = 's' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    // The recorded keys were applied in committed batches before the switch (its pending table
    // closed first, the writers that recorded into it waited for), so the switch itself wrote
    // none: all 2,500 rows were written by the batches.
    assert!(details.contains("\"reuse_synced\": true"), "{details}");
    assert!(outcome.contains("its 2500 recorded rows written in batches first"), "{outcome}");
    assert_eq!(generation_pending_or_none(&mut c, g1.0), None, "the pending table is gone");
    // Writes after the switch reach the generation served again, exactly.
    c.batch_execute("UPDATE items SET m1 = '[1,0.5,2]' WHERE id % 3 = 0; DELETE FROM items WHERE id > 2590")
        .unwrap();
    assert_view_exact(&mut c, "items", "s", VIEW, "writes after the reuse");
}
