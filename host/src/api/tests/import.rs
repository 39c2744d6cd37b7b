//! `$import` at the HTTP edge with the jobs held in the queue (no worker
//! runs them): the initial-load lock, the rule that an initial load runs
//! alone, idempotent registration (not onto a job being cancelled), and
//! the status of a queued job.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Api, BASE, Jobs};

fn body(mode: &str, url: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "mode", "valueString": mode},
        {"name": "input", "part": [{"name": "url", "valueUri": url}]},
    ]})
}

/// An API whose jobs stay queued, with one input file; its URL.
fn queued_api() -> (Api, String) {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    let dir = api.import_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("Patient.ndjson");
    std::fs::write(&path, "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n").unwrap();
    (api, format!("file://{}", path.display()))
}

async fn kickoff(api: &Api, body: &Value) -> super::Resp {
    api.send_json(
        Method::POST,
        "/$import",
        &[("prefer", "respond-async")],
        body,
    )
    .await
}

fn status_path(resp: &super::Resp) -> String {
    let location = resp.header("content-location").unwrap();
    location.strip_prefix(super::BASE).unwrap().to_owned()
}

#[tokio::test]
async fn a_queued_initial_load_locks_writes_until_cancelled() {
    let (api, url) = queued_api();
    api.create_patient("a").await;
    let resp = kickoff(&api, &body("InitialLoad", &url)).await.ok(202);
    let status = status_path(&resp);

    let patient = json!({"resourceType": "Patient", "id": "a", "gender": "male"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": []});
    let refused = [
        api.put("/Patient/a", &patient).await,
        api.post("/Patient", &patient).await,
        api.delete("/Patient/a").await,
        api.post("/", &bundle).await,
    ];
    for resp in refused {
        assert_eq!(resp.status, StatusCode::LOCKED);
        let outcome = resp.json();
        assert_eq!(outcome["issue"][0]["code"], "lock-error", "{outcome}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("initial import"),
            "{outcome}"
        );
    }
    api.get("/Patient/a").await.ok(200);
    let search = api
        .send(
            Method::POST,
            "/Patient/_search",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"_count=1".to_vec()),
        )
        .await;
    assert_ne!(search.status, StatusCode::LOCKED);

    // Queued: 202 with X-Progress and Retry-After.
    let polled = api.get(&status).await;
    assert_eq!(polled.status, StatusCode::ACCEPTED);
    assert_eq!(polled.header("x-progress"), Some("queued"));
    assert!(polled.header("retry-after").is_some());

    // The operator's list shows it, with its mode and inputs.
    let list = api.get("/_operations/import").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-type"), Some("application/json"));
    let job = &list.json()["imports"][0];
    assert_eq!(job["status"], format!("{BASE}{status}"));
    assert_eq!(
        (&job["state"], &job["mode"], &job["inputs"]),
        (&json!("queued"), &json!("InitialLoad"), &json!(1))
    );

    // The same registration is the same job; another import must wait.
    let again = kickoff(&api, &body("InitialLoad", &url)).await.ok(202);
    assert_eq!(status_path(&again), status);
    let other = kickoff(&api, &body("IncrementalLoad", &url)).await;
    assert_eq!(other.status, StatusCode::CONFLICT);

    // Cancelling the queued job ends it at once, and the lock with it.
    api.delete(&status).await.ok(202);
    assert_eq!(api.get(&status).await.status, StatusCode::NOT_FOUND);
    api.put("/Patient/a", &patient).await.ok(200);
}

#[tokio::test]
async fn an_incremental_load_locks_nothing_and_blocks_initial_loads() {
    let (api, url) = queued_api();
    let resp = kickoff(&api, &body("IncrementalLoad", &url)).await.ok(202);
    api.create_patient("b").await;
    let initial = kickoff(&api, &body("InitialLoad", &url)).await;
    assert_eq!(initial.status, StatusCode::CONFLICT);
    // Incremental loads may run side by side.
    let mut other = body("IncrementalLoad", &url);
    other["parameter"][2]["part"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "type", "valueString": "Patient"}));
    let second = kickoff(&api, &other).await.ok(202);
    assert_ne!(status_path(&second), status_path(&resp));
}

#[tokio::test]
async fn a_registration_being_cancelled_is_not_reused() {
    use crate::jobs::{JobKind, JobStore};
    let (api, url) = queued_api();
    let resp = kickoff(&api, &body("IncrementalLoad", &url)).await.ok(202);
    // A worker takes it, then a client asks to cancel: it still runs.
    let now = crate::fhir::Instant::now();
    let job = JobStore::claim(
        api.store.as_ref(),
        &[JobKind::Import],
        "w",
        now,
        std::time::Duration::from_secs(60),
    )
    .unwrap()
    .unwrap();
    api.delete(&status_path(&resp)).await.ok(202);
    assert!(api.job(job.id.as_str()).cancel_requested);
    let again = kickoff(&api, &body("IncrementalLoad", &url)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("being cancelled")
    );
}
