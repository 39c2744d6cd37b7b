//! The initial-load lock and cancel: while an `InitialLoad` is queued or
//! running every REST write answers 423 (and another import 409), reads,
//! `$export` and the import's status and cancel go on; the lock survives
//! a restart; a cancelled import (queued or running) stops, answers 404,
//! keeps what it imported and releases the lock; cancel after completion
//! is 409; an import whose input is rewritten (under a registered etag) or
//! deleted before it starts fails, its status answering 412 or 400 with
//! an OperationOutcome, and cancelling it is 409.
//!
//! Nothing here sleeps and hopes: each check that needs the job under way
//! is followed by a status poll that must still answer 202, which proves
//! the job was not finished when the check ran. The inputs are several
//! copies of synthea-100, read in small ranges, so the job lasts seconds.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    IMPORT_SOURCES_ENV, InputFile, RANGE_BYTES_ENV, Resp, Sandbox, Server, WORKERS_ENV, file_url,
    import_body, import_input, imported_count, local_etag, patient, typed_inputs,
    write_synthea_copies,
};

/// Copies of synthea-100 per import (38,472 resources each).
const COPIES: usize = 3;
/// Small ranges: many checkpoints, a longer job.
const RANGE_BYTES: &str = "65536";

async fn server(sandbox: &mut Sandbox, env: &[(&str, &str)]) -> Server {
    let dir = sandbox.dir("in");
    let sources = format!("[\"{}\"]", dir.display());
    let mut all = vec![
        (IMPORT_SOURCES_ENV, sources.as_str()),
        (RANGE_BYTES_ENV, RANGE_BYTES),
    ];
    all.extend_from_slice(env);
    sandbox.start_env(&[], &all).await
}

/// Asserts the job is still queued or running.
#[track_caller]
fn still_under_way(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        202,
        "the import ended before {what} was checked (make the input bigger): {}",
        resp.text()
    );
}

/// A 423 with an OperationOutcome of code `lock-error`.
#[track_caller]
fn locked(resp: &Resp, what: &str) {
    if let Some(problem) = resp.outcome_problem(423) {
        panic!("{what}: {problem}");
    }
    assert_eq!(resp.json()["issue"][0]["code"], "lock-error", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_load_locks_rest_writes_until_it_ends() {
    let mut sandbox = Sandbox::new();
    let srv = server(&mut sandbox, &[]).await;
    let files = write_synthea_copies(&sandbox.dir("in"), COPIES);
    srv.put("/Patient/before", &patient("before")).await.ok(201);

    let initial = import_body(Some("InitialLoad"), &[], &typed_inputs(&files));
    let status = srv.start_import(&initial).await;
    let status = srv.local(&status);

    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("t1"), "request": {"method": "PUT", "url": "Patient/t1"}}]});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/before"}}]});
    let writes: Vec<(&str, Method, &str, Option<Value>)> = vec![
        ("create", Method::POST, "/Patient", Some(patient("x"))),
        (
            "update",
            Method::PUT,
            "/Patient/before",
            Some(patient("before")),
        ),
        (
            "create on update",
            Method::PUT,
            "/Patient/new",
            Some(patient("new")),
        ),
        ("delete", Method::DELETE, "/Patient/before", None),
        ("transaction", Method::POST, "/", Some(transaction)),
        ("batch", Method::POST, "/", Some(batch)),
        (
            "conditional update",
            Method::PUT,
            "/Patient?identifier=http://example.org|1",
            Some(patient("c")),
        ),
        (
            "conditional delete",
            Method::DELETE,
            "/Patient?identifier=http://example.org|1",
            None,
        ),
    ];
    for (what, method, path, body) in &writes {
        let resp = srv.send(method.clone(), path, body.as_ref(), &[]).await;
        locked(&resp, what);
    }
    // Reads, export and the import's own endpoints go on.
    srv.get("/Patient/before").await.ok(200);
    srv.get("/Patient/before/_history").await.ok(200);
    srv.get("/metadata").await.ok(200);
    srv.send_raw(
        Method::POST,
        "/Patient/_search",
        Some(b"gender=female".to_vec()),
        Some("application/x-www-form-urlencoded"),
        &[],
    )
    .await
    .ok(200);
    let export = srv.start_export("/$export?_type=Patient").await;
    srv.get("/_operations/import").await.ok(200);
    // The same registration is the same job; any other import waits.
    assert_eq!(srv.local(&srv.start_import(&initial).await), status);
    let other = sandbox.dir("in").join("other.ndjson");
    std::fs::write(&other, format!("{}\n", patient("o"))).unwrap();
    for mode in ["InitialLoad", "IncrementalLoad"] {
        let resp = srv
            .kickoff_import(&import_body(
                Some(mode),
                &[],
                &[import_input(None, &file_url(&other), None)],
            ))
            .await;
        let outcome = resp.outcome(409);
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("initial import"),
            "{outcome}"
        );
    }
    still_under_way(&srv.get(&status).await, "the writes");

    let done = srv.await_import(&status).await;
    let total: u64 = files.iter().map(|f| f.lines).sum();
    let imported = imported_count(&done);
    assert_eq!(imported, total, "{done}");
    // Nothing the lock refused was written.
    for id in ["x", "new", "t1", "c"] {
        srv.get(&format!("/Patient/{id}")).await.outcome(404);
    }
    assert_eq!(
        srv.get("/Patient/before/_history").await.ok(200).json()["entry"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Writes are accepted again.
    srv.put("/Patient/after", &patient("after")).await.ok(201);
    srv.delete("/Patient/before").await.ok(204);
    srv.await_manifest(&export, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_survives_a_restart() {
    let mut sandbox = Sandbox::new();
    let srv = server(&mut sandbox, &[]).await;
    let files = write_synthea_copies(&sandbox.dir("in"), COPIES);
    let status = srv
        .start_import(&import_body(
            Some("InitialLoad"),
            &[],
            &typed_inputs(&files),
        ))
        .await;
    let id = status.rsplit('/').next().unwrap().to_owned();
    let killed = srv.kill().await;
    assert!(!killed.success());

    let srv = server(&mut sandbox, &[]).await;
    let status = format!("/_operations/import/{id}");
    locked(
        &srv.put("/Patient/p", &patient("p")).await,
        "a write after the restart",
    );
    still_under_way(&srv.get(&status).await, "the write after the restart");
    srv.await_import(&status).await;
    srv.put("/Patient/p", &patient("p")).await.ok(201);
}

/// One worker: an import registered while another runs waits, queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_and_queued_imports() {
    let mut sandbox = Sandbox::new();
    let srv = server(&mut sandbox, &[(WORKERS_ENV, "1")]).await;
    let files = write_synthea_copies(&sandbox.dir("in"), COPIES);
    let (first, second): (Vec<InputFile>, Vec<InputFile>) = files
        .iter()
        .cloned()
        .partition(|f| f.path.to_string_lossy().ends_with("-0.ndjson"));

    let running = srv
        .start_import(&import_body(
            Some("InitialLoad"),
            &[],
            &typed_inputs(&files),
        ))
        .await;
    let running = srv.local(&running);
    // Cancelled once it has imported something, which stays; the lock goes
    // with the job.
    srv.await_progress(&running).await;
    let resp = srv.delete(&running).await.ok(202);
    assert_eq!(resp.json()["resourceType"], "OperationOutcome");
    let gone = srv.poll_export(&running).await.outcome(404);
    assert!(
        gone["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{gone}"
    );
    srv.delete(&running).await.outcome(404);
    let kept = srv.get("/_history?_count=1").await.ok(200).json();
    assert!(
        kept["entry"].as_array().is_some_and(|e| !e.is_empty()),
        "{kept}"
    );
    srv.put("/Patient/w", &patient("w")).await.ok(201);
    let list = srv.get("/_operations/import").await.ok(200).json();
    assert_eq!(list["imports"][0]["state"], "cancelled", "{list}");

    // Two incremental imports on one worker: the second waits, queued.
    let a = srv
        .start_import(&import_body(None, &[], &typed_inputs(&first)))
        .await;
    let b = srv
        .start_import(&import_body(None, &[], &typed_inputs(&second)))
        .await;
    let (a, b) = (srv.local(&a), srv.local(&b));
    let queued = srv.get(&b).await;
    still_under_way(&queued, "the cancel of the queued import");
    srv.delete(&b).await.ok(202);
    still_under_way(&srv.get(&a).await, "the cancel of the queued import");
    srv.get(&b).await.outcome(404);

    // Two more wait behind `a`; their inputs change before they start: one
    // is rewritten (its registration named its etag), one deleted. Both
    // jobs fail, each answering its status URL with the failure.
    let dir = sandbox.dir("in");
    let (changed, deleted) = (dir.join("changed.ndjson"), dir.join("deleted.ndjson"));
    for path in [&changed, &deleted] {
        std::fs::write(path, format!("{}\n", patient("late"))).unwrap();
    }
    let tag = local_etag(&changed);
    let c = srv
        .start_import(&import_body(
            None,
            &[],
            &[import_input(
                Some("Patient"),
                &file_url(&changed),
                Some(&tag),
            )],
        ))
        .await;
    let d = srv
        .start_import(&import_body(
            None,
            &[],
            &[import_input(Some("Patient"), &file_url(&deleted), None)],
        ))
        .await;
    let (c, d) = (srv.local(&c), srv.local(&d));
    std::fs::write(
        &changed,
        format!("{}\n{}\n", patient("late"), patient("later")),
    )
    .unwrap();
    std::fs::remove_file(&deleted).unwrap();
    still_under_way(&srv.get(&a).await, "the inputs changed");

    let done = srv.await_import(&a).await;
    let expected: u64 = first.iter().map(|f| f.lines).sum();
    let imported = imported_count(&done);
    assert_eq!(imported, expected);
    srv.delete(&a).await.outcome(409);
    // The queued one never started.
    let list = srv.get("/_operations/import").await.ok(200).json();
    let jobs = list["imports"].as_array().unwrap();
    let cancelled = jobs
        .iter()
        .find(|j| srv.local(j["status"].as_str().unwrap()) == b)
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["started"], Value::Null, "{cancelled}");

    for (status, code, what) in [(&c, 412, "entity tag"), (&d, 400, "does not exist")] {
        let failed = srv.poll_export(status).await.outcome(code);
        let text = failed["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains(what), "{status}: {failed}");
        let conflict = srv.delete(status).await.outcome(409);
        assert!(conflict.to_string().contains("failed"), "{conflict}");
    }
    srv.get("/Patient/late").await.outcome(404);
}
