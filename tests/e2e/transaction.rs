//! Transaction and batch Bundles posted to the base.

use serde_json::{Value, json};

use crate::support::{Http, Sandbox, history_key, without_server_meta};

const PATIENT_URN: &str = "urn:uuid:0b1c6a51-9f1d-4d3a-8a43-1d5b0b6f2f01";
const ENCOUNTER_URN: &str = "urn:uuid:5f2e8d0c-7a43-4c8e-9b55-2a6d4c1e9a02";

fn entry(full_url: Option<&str>, resource: Value, method: &str, url: &str) -> Value {
    let mut e = json!({"resource": resource, "request": {"method": method, "url": url}});
    if let Some(f) = full_url {
        e["fullUrl"] = json!(f);
    }
    e
}

/// An entry updating `resource` at its own `Type/id`.
fn put_entry(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    entry(None, resource, "PUT", &url)
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn observation(code: &str, subject: &str, encounter: &str) -> Value {
    // Parsed, not `json!`: the macro would turn 72.50 into the f64 72.5.
    let value: Value = serde_json::from_str("72.50").unwrap();
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": code},
        "subject": {"reference": subject},
        "encounter": {"reference": encounter},
        "valueQuantity": {"value": value, "unit": "kg"}
    })
}

/// A Patient, an Encounter and two Observations, linked by urn:uuid.
fn linked_entries() -> Vec<Value> {
    vec![
        entry(
            Some(PATIENT_URN),
            json!({"resourceType": "Patient", "name": [{"family": "Urn"}]}),
            "POST",
            "Patient",
        ),
        entry(
            Some(ENCOUNTER_URN),
            json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": PATIENT_URN}}),
            "POST",
            "Encounter",
        ),
        entry(
            None,
            observation("weight", PATIENT_URN, ENCOUNTER_URN),
            "POST",
            "Observation",
        ),
        entry(
            None,
            observation("height", PATIENT_URN, ENCOUNTER_URN),
            "POST",
            "Observation",
        ),
    ]
}

/// `Type/id` from an entry's `response.location` (absolute or relative,
/// with or without `/_history/n`).
fn located(entry: &Value) -> String {
    let loc = entry["response"]["location"]
        .as_str()
        .unwrap_or_else(|| panic!("no response.location: {entry}"));
    let parts: Vec<&str> = loc.split('/').collect();
    let at = parts
        .iter()
        .rposition(|p| hearth::fhir::ResourceType::parse(p).is_some())
        .unwrap_or_else(|| panic!("no type in location {loc}"));
    format!("{}/{}", parts[at], parts[at + 1])
}

/// Every version the server holds, as `Type/id` + version, via system history.
async fn all_versions(srv: &Http) -> Vec<(String, u64)> {
    let mut keys: Vec<_> = srv
        .all_pages("/_history?_count=100")
        .await
        .iter()
        .flatten()
        .map(history_key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn transaction_resolves_urn_references() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    let resp = srv
        .post("/", &bundle("transaction", linked_entries()))
        .await
        .ok(200)
        .json();
    assert_eq!(resp["resourceType"], "Bundle");
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 4);
    for e in entries {
        let status = e["response"]["status"].as_str().unwrap_or_default();
        assert!(status.starts_with("201"), "{e}");
    }
    let patient = located(&entries[0]);
    let encounter = located(&entries[1]);
    assert!(patient.starts_with("Patient/") && encounter.starts_with("Encounter/"));

    let p = srv.get(&format!("/{patient}")).await.ok(200).json();
    assert_eq!(p["name"][0]["family"], "Urn");
    let e = srv.get(&format!("/{encounter}")).await.ok(200).json();
    assert_eq!(e["subject"]["reference"], patient);
    let mut codes = Vec::new();
    for entry in &entries[2..] {
        let o = srv
            .get(&format!("/{}", located(entry)))
            .await
            .ok(200)
            .json();
        assert_eq!(o["subject"]["reference"], patient, "{o}");
        assert_eq!(o["encounter"]["reference"], encounter, "{o}");
        assert_eq!(
            o["valueQuantity"]["value"].to_string(),
            "72.50",
            "numbers keep their text"
        );
        codes.push(o["code"]["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes, ["weight", "height"]);

    // All four were committed together: one lastUpdated.
    let instants: Vec<Value> = srv
        .all_pages("/_history")
        .await
        .iter()
        .flatten()
        .map(|e| e["resource"]["meta"]["lastUpdated"].clone())
        .collect();
    assert_eq!(instants.len(), 4);
    assert!(
        instants.iter().all(|i| i == &instants[0] && i.is_string()),
        "{instants:?}"
    );
}

#[tokio::test]
async fn failed_transaction_writes_nothing() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;
    let existing = json!({"resourceType": "Patient", "id": "existing", "active": true});
    srv.put("/Patient/existing", &existing).await.ok(201);
    let before = all_versions(&srv).await;
    assert_eq!(before, [("Patient/existing".to_string(), 1)]);

    // A transaction that would write Patient/kept-id and the linked
    // entries, then fail on `last`.
    let failing_at = |last: Value| {
        let mut entries = vec![put_entry(
            json!({"resourceType": "Patient", "id": "kept-id"}),
        )];
        entries.extend(linked_entries());
        entries.push(last);
        bundle("transaction", entries)
    };

    // (a) The last entry is not a valid resource.
    let bad = put_entry(json!({"resourceType": "Observation", "id": "bad_id"}));
    srv.post("/", &failing_at(bad)).await.outcome(400);

    // (b) The last entry is a valid resource whose If-Match fails in the store.
    let mut stale =
        put_entry(json!({"resourceType": "Patient", "id": "existing", "active": false}));
    stale["request"]["ifMatch"] = json!("W/\"7\"");
    let resp = srv.post("/", &failing_at(stale)).await;
    assert!(
        matches!(resp.status, 409 | 412),
        "stale If-Match in a transaction: {}",
        resp.status
    );
    resp.outcome(resp.status);

    // (c) Two entries write the same resource.
    let twice = vec![
        put_entry(json!({"resourceType": "Patient", "id": "twice"})),
        put_entry(json!({"resourceType": "Patient", "id": "twice", "active": true})),
    ];
    let resp = srv.post("/", &bundle("transaction", twice)).await;
    assert!(
        matches!(resp.status, 400 | 409),
        "duplicate in a transaction: {}",
        resp.status
    );
    resp.outcome(resp.status);

    assert_eq!(
        all_versions(&srv).await,
        before,
        "a failed transaction left writes behind"
    );
    srv.get("/Patient/kept-id").await.outcome(404);
    srv.get("/Patient/twice").await.outcome(404);
    assert_eq!(
        without_server_meta(&srv.get("/Patient/existing").await.ok(200).json()),
        existing
    );
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_alone() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    let good_a = json!({"resourceType": "Patient", "id": "ba", "gender": "female"});
    let good_b = json!({"resourceType": "Observation", "id": "bo", "status": "final", "code": {"text": "c"}, "subject": {"reference": "Patient/ba"}});
    let entries = vec![
        entry(None, good_a.clone(), "PUT", "Patient/ba"),
        entry(
            None,
            json!({"resourceType": "Observation", "id": "wrong"}),
            "PUT",
            "Patient/wrong",
        ),
        entry(None, good_b.clone(), "PUT", "Observation/bo"),
        entry(None, json!({"resourceType": "Patient"}), "POST", "Patient"),
    ];
    let resp = srv
        .post("/", &bundle("batch", entries))
        .await
        .ok(200)
        .json();
    assert_eq!(resp["type"], "batch-response");
    let out = resp["entry"].as_array().expect("entries");
    assert_eq!(out.len(), 4);
    let status = |i: usize| {
        out[i]["response"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(status(0).starts_with("201"), "{}", out[0]);
    assert!(status(1).starts_with("400"), "{}", out[1]);
    assert_eq!(
        out[1]["response"]["outcome"]["resourceType"], "OperationOutcome",
        "{}",
        out[1]
    );
    assert!(status(2).starts_with("201"), "{}", out[2]);
    assert!(status(3).starts_with("201"), "{}", out[3]);

    assert_eq!(
        without_server_meta(&srv.get("/Patient/ba").await.ok(200).json()),
        good_a
    );
    assert_eq!(
        without_server_meta(&srv.get("/Observation/bo").await.ok(200).json()),
        good_b
    );
    srv.get(&format!("/{}", located(&out[3]))).await.ok(200);
    srv.get("/Patient/wrong").await.outcome(404);
    srv.get("/Observation/wrong").await.outcome(404);
}
