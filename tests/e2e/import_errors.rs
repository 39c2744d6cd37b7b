//! `$import` of hand-made NDJSON files, built here byte by byte, read in
//! byte ranges much smaller than their lines: every rejected line gives
//! exactly the expected error line (line number, byte offset, code,
//! expression, text), every accepted one exactly the expected versions
//! (number, `lastUpdated`, deleted or not, bytes), in both modes.

use std::collections::BTreeMap;
use std::path::Path;

use hearth::fhir::Instant;
use serde_json::{Value, json};

use crate::support::{
    HistoryVersion, IMPORT_SOURCES_ENV, RANGE_BYTES_ENV, Sandbox, Server, file_url, import_body,
    import_input,
};

/// Ranges far smaller than most lines: nearly every line straddles a
/// boundary, the long one several.
const RANGE_BYTES: &str = "64";

const DELETED_STATE: &str = "http://azurehealthcareapis.com/data-extensions/deleted-state";

/// An input file under construction: its bytes, and where each physical
/// line starts.
#[derive(Default)]
struct NdjsonFile {
    bytes: Vec<u8>,
    /// (1-based line number, byte offset) by label.
    lines: BTreeMap<&'static str, (u64, u64)>,
    next_line: u64,
}

impl NdjsonFile {
    /// Appends `text` as the next line, ended by `eol` (`"\n"`, `"\r\n"` or
    /// `""` for a last line without one), remembered as `label`.
    fn line(&mut self, label: &'static str, text: &str, eol: &str) -> &mut Self {
        self.next_line += 1;
        let at = (self.next_line, self.bytes.len() as u64);
        assert!(
            self.lines.insert(label, at).is_none(),
            "label {label} twice"
        );
        self.bytes.extend_from_slice(text.as_bytes());
        self.bytes.extend_from_slice(eol.as_bytes());
        self
    }

    fn resource(&mut self, label: &'static str, resource: &Value, eol: &str) -> &mut Self {
        self.line(label, &resource.to_string(), eol)
    }

    /// A line that holds nothing to import (blank).
    fn blank(&mut self, text: &str, eol: &str) -> &mut Self {
        self.next_line += 1;
        self.bytes.extend_from_slice(text.as_bytes());
        self.bytes.extend_from_slice(eol.as_bytes());
        self
    }

    fn at(&self, label: &str) -> (u64, u64) {
        self.lines[label]
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, &self.bytes).unwrap();
    }
}

fn patient(id: &str, version: Option<&str>, last_updated: Option<&str>, gender: &str) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": id});
    let mut meta = serde_json::Map::new();
    if let Some(v) = version {
        meta.insert("versionId".into(), json!(v));
    }
    if let Some(t) = last_updated {
        meta.insert("lastUpdated".into(), json!(t));
    }
    if !meta.is_empty() {
        p["meta"] = Value::Object(meta);
    }
    p["gender"] = json!(gender);
    p
}

fn soft_deleted(mut resource: Value) -> Value {
    resource["meta"]["extension"] = json!([{"url": DELETED_STATE, "valueString": "soft-deleted"}]);
    resource
}

/// The error line expected for the line at `at`: one issue.
fn error_line(at: (u64, u64), code: &str, expression: Option<&str>, text: &str) -> Value {
    let mut issue = json!({
        "severity": "error",
        "code": code,
        "details": {"text": text},
        "diagnostics": format!(
            "Failed to process resource at line: {} with stream start offset: {}",
            at.0, at.1
        ),
    });
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// `at` is an instant no earlier than the import's `transactionTime`, and
/// not in the future.
#[track_caller]
fn within_import(at: &str, transaction_time: &str) {
    let at = Instant::parse(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    let start = Instant::parse(transaction_time).unwrap();
    assert!(
        start <= at && at <= Instant::now(),
        "{at} is not within the import (transactionTime {start})"
    );
}

async fn server(sandbox: &mut Sandbox) -> (Server, std::path::PathBuf) {
    let dir = sandbox.dir("in");
    let sources = format!("[\"{}\"]", dir.display());
    let srv = sandbox
        .start_env(
            &[],
            &[
                (IMPORT_SOURCES_ENV, &sources),
                (RANGE_BYTES_ENV, RANGE_BYTES),
            ],
        )
        .await;
    (srv, dir)
}

fn v(version: u64, last_updated: &str, deleted: bool) -> HistoryVersion {
    HistoryVersion {
        version,
        last_updated: last_updated.into(),
        deleted,
    }
}

/// Asserts the error file lines equal `expected`, in line order.
#[track_caller]
fn assert_errors(got: &[Value], expected: &[Value]) {
    let show = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        got,
        expected,
        "error lines\n--- got:\n{}\n--- expected:\n{}",
        show(got),
        show(expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_load_of_a_hand_made_file() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    let long_name = "x".repeat(3_000);
    let mut f = NdjsonFile::default();
    f.resource("p1v1", &patient("p1", Some("1"), Some("2020-01-01T00:00:00.000Z"), "male"), "\n")
        // Version 3 before version 2, with a CRLF.
        .resource("p1v3", &patient("p1", Some("3"), Some("2020-03-01T00:00:00.000Z"), "female"), "\r\n")
        .blank("", "\n")
        .line("broken", r#"{"resourceType":"Patient","id":"b1","gender":"#, "\n")
        .resource("observation", &json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "t"}}), "\n")
        .line("bad-id", r#"{"resourceType":"Patient","id":"bad id!","gender":"male"}"#, "\r\n")
        .resource(
            "conditional",
            &json!({"resourceType": "Patient", "id": "p2",
                "generalPractitioner": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9941339108"}]}),
            "\n",
        )
        .resource("p1v2", &patient("p1", Some("2"), Some("2020-02-01T00:00:00.000Z"), "male"), "\n")
        .resource("p1v2-again", &patient("p1", Some("2"), Some("2020-02-01T00:00:00.000Z"), "other"), "\n")
        .resource(
            "p1v4-deleted",
            &soft_deleted(patient("p1", Some("4"), Some("2020-04-01T00:00:00.000Z"), "female")),
            "\r\n",
        )
        .blank(" \t ", "\n")
        .blank("", "\r\n")
        .resource(
            "long",
            &json!({"resourceType": "Patient", "id": "p4", "name": [{"text": long_name}]}),
            "\n",
        )
        .line("no-id", r#"{"resourceType":"Patient","gender":"male"}"#, "\n")
        .resource("bad-version", &patient("p6", Some("abc"), None, "male"), "\n")
        .resource("future", &patient("p7", Some("1"), Some("2999-01-01T00:00:00.000Z"), "male"), "\n")
        // lastUpdated going backwards along the versions.
        .resource("p3v1", &patient("p3", Some("1"), Some("2021-01-01T00:00:00.000Z"), "male"), "\n")
        .resource("p3v2-earlier", &patient("p3", Some("2"), Some("2020-12-01T00:00:00.000Z"), "male"), "\n")
        // An element R4 does not have: the validator plugin's verdict.
        .line("unknown-element", r#"{"resourceType":"Patient","id":"p9","gendre":"male"}"#, "\n")
        .resource("p5", &patient("p5", None, None, "unknown"), "\n")
        // The last line has no line end.
        .resource("p8", &patient("p8", Some("7"), Some("2021-06-01T12:30:00.250Z"), "male"), "");
    let path = dir.join("Patient.ndjson");
    f.write(&path);
    let url = file_url(&path);

    let (_, done) = srv
        .import(&import_body(
            Some("IncrementalLoad"),
            &[],
            &[import_input(Some("Patient"), &url, None)],
        ))
        .await;
    let transaction_time = done["transactionTime"].as_str().unwrap().to_owned();
    // p1 ×4, p2, p3, p4, p5, p8.
    assert_eq!(
        done["output"],
        json!([{"type": "Patient", "count": 9, "inputUrl": url}]),
        "{done}"
    );
    let errors = srv.import_errors(&done).await;
    // The line in the future is compared with the instant of the batch that
    // held it, which the error names; it must be within the import.
    let future_at = errors[&url]
        .iter()
        .find_map(|e| {
            e["issue"][0]["details"]["text"]
                .as_str()?
                .strip_prefix(
                    "Patient/p7 has meta.lastUpdated 2999-01-01T00:00:00.000Z, later than the import's instant ",
                )?
                .strip_suffix('.')
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no error for the line in the future: {:?}", errors[&url]));
    within_import(&future_at, &transaction_time);
    let expected = vec![
        error_line(
            f.at("broken"),
            "structure",
            None,
            "the body is not valid JSON: EOF while parsing a value at line 1 column 45.",
        ),
        error_line(
            f.at("observation"),
            "invalid",
            Some("Observation"),
            "The input holds Patient resources; this line is a Observation.",
        ),
        error_line(
            f.at("bad-id"),
            "value",
            Some("id"),
            "'bad id!' is not a valid resource id (1-64 of A-Z a-z 0-9 - .).",
        ),
        error_line(
            f.at("p1v2-again"),
            "duplicate",
            Some("Patient.id"),
            "Patient/p1 version 2 is also on another line of this import, which is the one imported (the earliest meta.lastUpdated wins, then the first line).",
        ),
        error_line(
            f.at("no-id"),
            "required",
            Some("Patient.id"),
            "The Patient has no id; import keeps ids, so every resource needs one.",
        ),
        error_line(
            f.at("bad-version"),
            "value",
            Some("meta.versionId"),
            "meta.versionId \"abc\" is not a positive integer.",
        ),
        error_line(
            f.at("future"),
            "value",
            Some("Patient.meta.lastUpdated"),
            &format!(
                "Patient/p7 has meta.lastUpdated 2999-01-01T00:00:00.000Z, later than the import's instant {future_at}."
            ),
        ),
        // Of two versions whose lastUpdated goes backwards, the higher
        // version stays, whichever range writes first.
        error_line(
            f.at("p3v1"),
            "conflict",
            Some("Patient.meta.lastUpdated"),
            "Patient/p3 version 1 at 2021-01-01T00:00:00.000Z is out of order with version 2 at 2020-12-01T00:00:00.000Z: meta.lastUpdated must increase with meta.versionId.",
        ),
        error_line(
            f.at("unknown-element"),
            "structure",
            Some("Patient.gendre"),
            "unknown element 'gendre'",
        ),
    ];
    assert_errors(&errors[&url], &expected);

    // The store: each id's history, and the bytes of every live version.
    let history = srv.type_history("Patient").await;
    let mut expected_history: BTreeMap<String, Vec<HistoryVersion>> = BTreeMap::new();
    expected_history.insert(
        "p1".into(),
        vec![
            v(1, "2020-01-01T00:00:00.000Z", false),
            v(2, "2020-02-01T00:00:00.000Z", false),
            v(3, "2020-03-01T00:00:00.000Z", false),
            v(4, "2020-04-01T00:00:00.000Z", true),
        ],
    );
    // No meta: version 1, at the instant of the batch that wrote it.
    let mut assigned = BTreeMap::new();
    for id in ["p2", "p4", "p5"] {
        let at = history
            .get(id)
            .map(|h| h[0].last_updated.clone())
            .unwrap_or_else(|| panic!("Patient/{id} was not imported"));
        within_import(&at, &transaction_time);
        expected_history.insert(id.into(), vec![v(1, &at, false)]);
        assigned.insert(id, at);
    }
    expected_history.insert("p8".into(), vec![v(7, "2021-06-01T12:30:00.250Z", false)]);
    expected_history.insert("p3".into(), vec![v(2, "2020-12-01T00:00:00.000Z", false)]);
    assert_eq!(history, expected_history);

    let read = |path: String| {
        let srv = &srv;
        async move { srv.get(&path).await }
    };
    let body = |id: &str, version: u64, last_updated: &str, rest: &str| {
        format!(
            r#"{{"resourceType":"Patient","id":"{id}","meta":{{"versionId":"{version}","lastUpdated":"{last_updated}"}}{rest}}}"#
        )
    };
    let expected_bytes = [
        (
            "p1",
            1,
            body("p1", 1, "2020-01-01T00:00:00.000Z", r#","gender":"male""#),
        ),
        (
            "p1",
            2,
            body("p1", 2, "2020-02-01T00:00:00.000Z", r#","gender":"male""#),
        ),
        (
            "p1",
            3,
            body("p1", 3, "2020-03-01T00:00:00.000Z", r#","gender":"female""#),
        ),
        (
            "p2",
            1,
            body(
                "p2",
                1,
                &assigned["p2"],
                r#","generalPractitioner":[{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9941339108"}]"#,
            ),
        ),
        (
            "p4",
            1,
            body(
                "p4",
                1,
                &assigned["p4"],
                &format!(r#","name":[{{"text":"{long_name}"}}]"#),
            ),
        ),
        (
            "p5",
            1,
            body("p5", 1, &assigned["p5"], r#","gender":"unknown""#),
        ),
        (
            "p8",
            7,
            body("p8", 7, "2021-06-01T12:30:00.250Z", r#","gender":"male""#),
        ),
    ];
    for (id, version, bytes) in expected_bytes {
        let resp = read(format!("/Patient/{id}/_history/{version}"))
            .await
            .ok(200);
        assert_eq!(resp.text(), bytes, "Patient/{id}/_history/{version}");
    }
    read("/Patient/p1/_history/4".into()).await.outcome(410);
    read("/Patient/p1".into()).await.outcome(410);
    read("/Observation/o1".into()).await.outcome(404);
    read("/Patient/p7".into()).await.outcome(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_load_of_a_hand_made_file() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    // Written through the API before the import: an initial load only creates.
    srv.put(
        "/Patient/existing",
        &patient("existing", None, None, "male"),
    )
    .await
    .ok(201);
    let mut f = NdjsonFile::default();
    f.resource("a-plain", &patient("a", None, None, "male"), "\n")
        // The highest meta.versionId wins.
        .resource("a-v5", &patient("a", Some("5"), Some("2020-01-01T00:00:00.000Z"), "female"), "\r\n")
        .resource("a-v2", &patient("a", Some("2"), Some("2023-01-01T00:00:00.000Z"), "other"), "\n")
        // Same version: the latest meta.lastUpdated wins.
        .resource("b-early", &patient("b", Some("1"), Some("2020-01-01T00:00:00.000Z"), "male"), "\n")
        .resource("b-late", &patient("b", Some("1"), Some("2021-01-01T00:00:00.000Z"), "female"), "\n")
        // Same claim: the first line wins.
        .resource("c-first", &patient("c", None, None, "male"), "\n")
        .resource("c-second", &patient("c", None, None, "female"), "\n")
        .blank("", "\n")
        .resource(
            "conditional",
            &json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "t"},
                "subject": {"reference": "Patient?identifier=http://example.org|42"}}),
            "\r\n",
        )
        .resource("deleted", &soft_deleted(patient("d", Some("1"), Some("2020-01-01T00:00:00.000Z"), "male")), "\n")
        .resource("existing", &patient("existing", None, None, "female"), "\n")
        .resource(
            "search-parameter",
            &json!({"resourceType": "SearchParameter", "id": "sp1", "url": "http://example.org/sp",
                "name": "x", "status": "active", "description": "x", "code": "x",
                "base": ["Patient"], "type": "token"}),
            "\n",
        )
        .resource(
            "observation",
            &json!({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "t"},
                "subject": {"reference": "Patient/a"}}),
            "",
        );
    let path = dir.join("mixed.ndjson");
    f.write(&path);
    let url = file_url(&path);
    let (_, done) = srv
        .import(&import_body(
            Some("InitialLoad"),
            &[],
            &[import_input(None, &url, None)],
        ))
        .await;
    // a, b, c, o2.
    assert_eq!(
        done["output"],
        json!([{"type": null, "count": 4, "inputUrl": url}]),
        "{done}"
    );
    let errors = srv.import_errors(&done).await;
    // Which line won shows in the store (below).
    let lost = |label: &'static str, id: &str| {
        error_line(
            f.at(label),
            "duplicate",
            Some("Patient.id"),
            &format!(
                "Patient/{id} is also on another line of this import, which is the one imported (the highest meta.versionId wins, then the latest meta.lastUpdated, then the first line)."
            ),
        )
    };
    let expected = vec![
        lost("a-plain", "a"),
        lost("a-v2", "a"),
        lost("b-early", "b"),
        lost("c-second", "c"),
        error_line(
            f.at("conditional"),
            "not-supported",
            None,
            "Given conditional reference 'Patient?identifier=http://example.org|42' doesn't resolve to a resource: an initial load does not resolve conditional references.",
        ),
        error_line(
            f.at("deleted"),
            "not-supported",
            Some("meta.extension"),
            "Soft-deleted resources are only imported by an IncrementalLoad; an InitialLoad only creates.",
        ),
        error_line(
            f.at("existing"),
            "duplicate",
            Some("Patient.id"),
            "Patient/existing already exists; an initial load only creates resources.",
        ),
        error_line(
            f.at("search-parameter"),
            "not-supported",
            Some("SearchParameter"),
            "SearchParameter resources cannot be processed by import.",
        ),
    ];
    assert_errors(&errors[&url], &expected);

    // Every winner is version 1, created by the load; the loser's content
    // is nowhere.
    let history = srv.type_history("Patient").await;
    let ids: Vec<&String> = history.keys().collect();
    assert_eq!(ids, ["a", "b", "c", "existing"]);
    for id in ["a", "b", "c"] {
        let versions = &history[id];
        assert_eq!(versions.len(), 1, "{id}: {versions:?}");
        assert_eq!(
            (versions[0].version, versions[0].deleted),
            (1, false),
            "{id}"
        );
        assert!(
            versions[0].last_updated.as_str() >= done["transactionTime"].as_str().unwrap(),
            "{id}: {versions:?} before the import started"
        );
    }
    assert_eq!(
        history["existing"].len(),
        1,
        "the existing one is untouched"
    );
    let gender = |id: &'static str| {
        let srv = &srv;
        async move { srv.get(&format!("/Patient/{id}")).await.ok(200).json()["gender"].clone() }
    };
    assert_eq!(gender("a").await, "female");
    assert_eq!(gender("b").await, "female");
    assert_eq!(gender("c").await, "male");
    assert_eq!(gender("existing").await, "male");
    srv.get("/Patient/d").await.outcome(404);
    srv.get("/Observation/o1").await.outcome(404);
    let o2 = srv.get("/Observation/o2").await.ok(200).json();
    assert_eq!(o2["subject"]["reference"], "Patient/a");
    srv.get("/SearchParameter/sp1").await.outcome(404);
}
