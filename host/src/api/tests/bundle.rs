use axum::http::Method;
use serde_json::{Value, json};

use super::{Api, BASE, without_meta};

const PATIENT: &str = "urn:uuid:0b1c6a51-9f1d-4d3a-8a43-1d5b0b6f2f01";
const ENCOUNTER: &str = "urn:uuid:5f2e8d0c-7a43-4c8e-9b55-2a6d4c1e9a02";

fn entry(full_url: Option<&str>, method: &str, url: &str, resource: Option<Value>) -> Value {
    let mut e = json!({"request": {"method": method, "url": url}});
    if let Some(f) = full_url {
        e["fullUrl"] = json!(f);
    }
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

/// A Synthea-like transaction: resources created under urn:uuid fullUrls
/// that refer to each other.
fn linked() -> Vec<Value> {
    vec![
        entry(
            None,
            "POST",
            "Observation",
            Some(json!({"resourceType": "Observation", "status": "final",
                "subject": {"reference": PATIENT}, "encounter": {"reference": ENCOUNTER},
                "hasMember": [{"reference": "Observation/elsewhere"}],
                // Parsed from text: `json!` would turn 72.50 into the f64 72.5.
                "valueQuantity": serde_json::from_str::<Value>(r#"{"value": 72.50}"#).unwrap()})),
        ),
        entry(
            Some(ENCOUNTER),
            "POST",
            "Encounter",
            Some(
                json!({"resourceType": "Encounter", "status": "finished", "subject": {"reference": PATIENT}}),
            ),
        ),
        entry(
            Some(PATIENT),
            "POST",
            "Patient",
            Some(json!({"resourceType": "Patient", "id": "ignored"})),
        ),
    ]
}

/// `Type/id` from a response entry's location.
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let path = location.strip_prefix(&format!("{BASE}/")).unwrap();
    path.split("/_history/").next().unwrap().to_owned()
}

#[tokio::test]
async fn transaction_rewrites_urn_references() {
    let api = Api::new();
    let resp = api
        .post("/", &bundle("transaction", linked()))
        .await
        .ok(200)
        .json();
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["response"]["status"], "201 Created", "{e}");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert_eq!(
            e["resource"]["meta"]["versionId"], "1",
            "representation by default"
        );
    }
    let (observation, encounter, patient) = (
        located(&entries[0]),
        located(&entries[1]),
        located(&entries[2]),
    );
    assert!(observation.starts_with("Observation/") && encounter.starts_with("Encounter/"));
    assert!(patient.starts_with("Patient/") && patient != "Patient/ignored");

    let o = api.get(&format!("/{observation}")).await.ok(200).json();
    assert_eq!(o["subject"]["reference"], patient.as_str());
    assert_eq!(o["encounter"]["reference"], encounter.as_str());
    assert_eq!(o["hasMember"][0]["reference"], "Observation/elsewhere");
    assert_eq!(o["valueQuantity"]["value"].to_string(), "72.50");
    let e = api.get(&format!("/{encounter}")).await.ok(200).json();
    assert_eq!(e["subject"]["reference"], patient.as_str());

    // One commit: one instant.
    let instants: Vec<&Value> = entries
        .iter()
        .map(|e| &e["response"]["lastModified"])
        .collect();
    assert!(instants.iter().all(|i| *i == instants[0]), "{instants:?}");
}

#[tokio::test]
async fn transaction_orders_writes_and_answers_in_entry_order() {
    let api = Api::new();
    api.create_patient("old").await;
    api.create_patient("kept").await;
    let entries = vec![
        entry(None, "GET", "Patient/kept", None),
        entry(
            Some("urn:uuid:1"),
            "PUT",
            "Patient/new",
            Some(json!({"resourceType": "Patient", "id": "new"})),
        ),
        entry(None, "DELETE", "Patient/old", None),
        entry(
            None,
            "POST",
            "Observation",
            Some(json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:1"}})),
        ),
        entry(None, "GET", "Patient/missing", None),
        entry(
            None,
            "PUT",
            "Patient/kept",
            Some(json!({"resourceType": "Patient", "id": "kept", "active": true})),
        ),
    ];
    let resp = api
        .send_json(
            Method::POST,
            "/",
            &[("prefer", "return=minimal")],
            &bundle("transaction", entries),
        )
        .await;
    let resp = resp.ok(200).json();
    let statuses: Vec<&str> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "201 Created",
            "204 No Content",
            "201 Created",
            "404 Not Found",
            "200 OK"
        ]
    );
    // The read ran after the writes; minimal leaves writes without a resource.
    assert_eq!(resp["entry"][0]["resource"]["active"], true);
    assert!(resp["entry"][1].get("resource").is_none());
    assert_eq!(
        resp["entry"][4]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    let observation = api
        .get(&format!("/{}", located(&resp["entry"][3])))
        .await
        .ok(200)
        .json();
    assert_eq!(observation["subject"]["reference"], "Patient/new");
    api.get("/Patient/old").await.outcome(410);
}

#[tokio::test]
async fn a_failing_entry_fails_the_whole_transaction() {
    let api = Api::new();
    api.create_patient("existing").await;
    let before = api.stats();

    let mut stale = entry(
        None,
        "PUT",
        "Patient/existing",
        Some(json!({"resourceType": "Patient", "id": "existing", "active": true})),
    );
    stale["request"]["ifMatch"] = json!("W/\"7\"");
    let mut entries = linked();
    entries.push(stale);
    let issue = api
        .post("/", &bundle("transaction", entries))
        .await
        .outcome(412);
    assert_eq!(issue["expression"][0], "Bundle.entry[3]", "{issue}");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[3]: "),
        "{issue}"
    );

    let mut entries = linked();
    entries.push(entry(
        None,
        "PUT",
        "Observation/bad_id",
        Some(json!({"resourceType": "Observation", "id": "bad_id"})),
    ));
    assert_eq!(
        api.post("/", &bundle("transaction", entries))
            .await
            .outcome(400)["expression"][0],
        "Bundle.entry[3]"
    );

    let twice = vec![
        entry(
            None,
            "PUT",
            "Patient/twice",
            Some(json!({"resourceType": "Patient", "id": "twice"})),
        ),
        entry(None, "DELETE", "Patient/twice", None),
    ];
    let issue = api
        .post("/", &bundle("transaction", twice))
        .await
        .outcome(409);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[0]"),
        "{issue}"
    );

    let dangling = vec![entry(
        None,
        "POST",
        "Observation",
        Some(json!({"resourceType": "Observation", "subject": {"reference": PATIENT}})),
    )];
    let issue = api
        .post("/", &bundle("transaction", dangling))
        .await
        .outcome(400);
    assert!(
        issue["diagnostics"].as_str().unwrap().contains(PATIENT),
        "{issue}"
    );

    assert_eq!(api.stats(), before, "a failed transaction wrote something");
    assert_eq!(
        without_meta(&api.get("/Patient/existing").await.ok(200).json())["active"],
        Value::Null
    );
}

#[tokio::test]
async fn conditional_operations_are_refused_plainly() {
    let api = Api::new();
    let patient = json!({"resourceType": "Patient"});
    let mut create = entry(None, "POST", "Patient", Some(patient.clone()));
    create["request"]["ifNoneExist"] = json!("identifier=x|1");
    let cases = [
        (create, "conditional create"),
        (
            entry(None, "PUT", "Patient?identifier=x|1", Some(patient.clone())),
            "conditional update",
        ),
        (
            entry(None, "DELETE", "Patient?identifier=x|1", None),
            "conditional delete",
        ),
        (entry(None, "GET", "Patient?name=x", None), "search"),
        (
            entry(
                None,
                "POST",
                "Observation",
                Some(
                    json!({"resourceType": "Observation", "subject": {"reference": "Patient?identifier=x|1"}}),
                ),
            ),
            "conditional reference",
        ),
    ];
    for (entry, what) in cases {
        let issue = api
            .post("/", &bundle("transaction", vec![entry]))
            .await
            .outcome(400);
        assert_eq!(issue["code"], "not-supported", "{issue}");
        assert!(
            issue["diagnostics"].as_str().unwrap().contains(what),
            "{issue}"
        );
    }
    assert_eq!(api.stats().versions, 0);
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_alone() {
    let api = Api::new();
    let entries = vec![
        entry(
            None,
            "PUT",
            "Patient/ba",
            Some(json!({"resourceType": "Patient", "id": "ba"})),
        ),
        entry(
            None,
            "PUT",
            "Patient/wrong",
            Some(json!({"resourceType": "Observation", "id": "wrong"})),
        ),
        json!("not an entry"),
        entry(
            None,
            "POST",
            "Patient",
            Some(json!({"resourceType": "Patient"})),
        ),
        entry(None, "GET", "Patient/ba", None),
        entry(None, "DELETE", "Patient/nobody", None),
    ];
    let resp = api
        .post("/", &bundle("batch", entries))
        .await
        .ok(200)
        .json();
    assert_eq!(resp["type"], "batch-response");
    let out = resp["entry"].as_array().unwrap();
    let statuses: Vec<&str> = out
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "400 Bad Request",
            "400 Bad Request",
            "201 Created",
            "200 OK",
            "204 No Content"
        ]
    );
    assert_eq!(out[1]["response"]["outcome"]["issue"][0]["code"], "invalid");
    assert_eq!(out[4]["resource"]["id"], "ba");
    api.get("/Patient/wrong").await.outcome(404);
    api.get(&format!("/{}", located(&out[3]))).await.ok(200);
    assert_eq!(api.stats().versions, 2);
}

#[tokio::test]
async fn only_batch_and_transaction_bundles_are_processed() {
    let api = Api::new();
    api.post(
        "/",
        &json!({"resourceType": "Bundle", "type": "collection"}),
    )
    .await
    .outcome(400);
    api.post("/", &json!({"resourceType": "Bundle"}))
        .await
        .outcome(400);
    api.post("/", &json!({"resourceType": "Patient"}))
        .await
        .outcome(400);
    api.post(
        "/",
        &json!({"resourceType": "Bundle", "type": "batch", "entry": {}}),
    )
    .await
    .outcome(400);
    let empty = api
        .post(
            "/",
            &json!({"resourceType": "Bundle", "type": "transaction"}),
        )
        .await
        .ok(200)
        .json();
    assert_eq!(
        empty,
        json!({"resourceType": "Bundle", "type": "transaction-response"})
    );
}
