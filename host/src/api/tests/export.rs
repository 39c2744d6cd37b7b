//! `$export` over the router: kick-off checks, the status URL, DELETE,
//! downloads, the listing and the janitor, with the real job engine and
//! export handler (or, for the queue tests, an engine without workers).

use std::io::Read;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use super::{Api, BASE, Jobs, Resp};

const KICKOFF: [(&str, &str); 2] = [
    ("accept", "application/fhir+json"),
    ("prefer", "respond-async"),
];
const LENIENT: [(&str, &str); 2] = [
    ("accept", "application/fhir+json"),
    ("prefer", "respond-async, handling=lenient"),
];

/// `application/x-www-form-urlencoded` encoding of one query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parameters(params: &[(&str, Value)]) -> Value {
    let parameter: Vec<Value> = params
        .iter()
        .map(|(name, value)| {
            let mut p = json!({ "name": name });
            let (key, value) = match value {
                Value::Object(o) if o.contains_key("reference") => ("valueReference", value),
                _ => ("valueString", value),
            };
            p[key] = value.clone();
            p
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

impl Api {
    async fn kickoff(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &KICKOFF, None).await
    }

    async fn kickoff_post(&self, uri: &str, params: &Value) -> Resp {
        self.send_json(Method::POST, uri, &KICKOFF, params).await
    }

    /// Kicks off and returns the status URL's path.
    async fn start(&self, uri: &str) -> String {
        accepted(&self.kickoff(uri).await)
    }

    /// Polls until the export is no longer under way.
    async fn finished(&self, status: &str) -> Resp {
        for _ in 0..600 {
            let resp = self.get(status).await;
            if resp.status != 202 {
                return resp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{status} did not finish");
    }

    /// A small data set: two patients with an observation each, a practitioner.
    async fn small_world(&self) {
        for p in ["p1", "p2"] {
            self.put(
                &format!("/Patient/{p}"),
                &json!({"resourceType": "Patient", "id": p, "gender": "female"}),
            )
            .await
            .ok(201);
            self.put(
                &format!("/Observation/o-{p}"),
                &json!({"resourceType": "Observation", "id": format!("o-{p}"), "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}}),
            )
            .await
            .ok(201);
        }
        self.put(
            "/Practitioner/d1",
            &json!({"resourceType": "Practitioner", "id": "d1"}),
        )
        .await
        .ok(201);
    }
}

impl Resp {
    /// Asserts a 200 plain-JSON answer (a manifest) and returns its body.
    #[track_caller]
    fn ok_json(self) -> Value {
        assert_eq!(
            self.status.as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.json()
    }
}

/// Asserts a 202 kick-off answer and returns its status URL as a path.
#[track_caller]
fn accepted(resp: &Resp) -> String {
    assert_eq!(
        resp.status.as_u16(),
        202,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let location = resp.header("content-location").expect("Content-Location");
    let path = location
        .strip_prefix(BASE)
        .expect("an absolute Content-Location");
    let id = path.strip_prefix("/_operations/export/").expect(path);
    assert!(crate::jobs::JobId::parse(id).is_some(), "{location}");
    let outcome = resp.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");
    path.to_owned()
}

/// The parameter (or header) a 400's OperationOutcome names.
#[track_caller]
fn names(resp: &Resp) -> String {
    let issue = resp.outcome(400);
    issue["expression"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no expression in {issue}"))
        .to_owned()
}

#[tokio::test]
async fn kickoff_headers_are_required() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    let send = |headers: &'static [(&'static str, &'static str)]| {
        api.send(Method::GET, "/$export", headers, None)
    };
    assert_eq!(names(&send(&[("prefer", "respond-async")]).await), "Accept");
    const XML: [(&str, &str); 2] = [
        ("accept", "application/fhir+xml"),
        ("prefer", "respond-async"),
    ];
    assert_eq!(names(&send(&XML).await), "Accept");
    assert_eq!(
        names(&send(&[("accept", "application/fhir+json")]).await),
        "Prefer"
    );
    const NO_ASYNC: [(&str, &str); 2] = [
        ("accept", "application/fhir+json"),
        ("prefer", "return=minimal"),
    ];
    assert_eq!(names(&send(&NO_ASYNC).await), "Prefer");
    accepted(&send(&KICKOFF).await);
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_naming_it() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    api.small_world().await;
    let future = enc("2999-01-01T00:00:00Z");
    let get_cases: Vec<(String, &str)> = vec![
        ("/$export?_outputFormat=text%2Fcsv".into(), "_outputFormat"),
        ("/$export?_since=yesterday".into(), "_since"),
        (format!("/$export?_since={future}"), "_since"),
        ("/$export?_till=2024-13-01".into(), "_till"),
        (format!("/$export?_till={future}"), "_till"),
        (format!("/$export?_until={future}"), "_until"),
        (
            "/$export?_since=2024-02-01&_until=2024-01-01".into(),
            "_since",
        ),
        ("/$export?_type=Pateint".into(), "_type"),
        ("/$export?_type=Patient,Pateint".into(), "_type"),
        ("/Patient/$export?_type=Practitioner".into(), "_type"),
        (
            format!(
                "/$export?_type=Patient&_typeFilter={}",
                enc("Observation?status=final")
            ),
            "_typeFilter",
        ),
        (
            format!("/$export?_typeFilter={}", enc("status=final")),
            "_typeFilter",
        ),
        (
            format!("/$export?_typeFilter={}", enc("Pateint?gender=female")),
            "_typeFilter",
        ),
        (
            format!(
                "/Patient/$export?_typeFilter={}",
                enc("Practitioner?_id=d1")
            ),
            "_typeFilter",
        ),
        ("/$export?_elements=Foo.id".into(), "_elements"),
        (
            "/$export?includeAssociatedData=LatestProvenanceResources".into(),
            "includeAssociatedData",
        ),
        (
            format!("/$export?_container={}", enc("../escape")),
            "_container",
        ),
        (format!("/$export?_container={}", enc("a/b")), "_container"),
        (format!("/$export?_container={}", enc("a\\b")), "_container"),
        (format!("/$export?_container={}", enc("/abs")), "_container"),
        ("/$export?_container=..".into(), "_container"),
        ("/$export?_isparallel=maybe".into(), "_isparallel"),
        ("/$export?_foo=bar".into(), "_foo"),
        ("/Patient/$export?patient=Patient%2Fp1".into(), "patient"),
        ("/Group/a%20b/$export".into(), "Group.id"),
    ];
    for (uri, parameter) in &get_cases {
        assert_eq!(names(&api.kickoff(uri).await), *parameter, "GET {uri}");
    }
    let post_cases: Vec<(&str, Value, &str)> = vec![
        (
            "/$export",
            parameters(&[("patient", json!({"reference": "Patient/p1"}))]),
            "patient",
        ),
        (
            "/Patient/$export",
            parameters(&[("patient", json!({"reference": "Group/g"}))]),
            "patient",
        ),
        (
            "/$export",
            parameters(&[("_since", json!("2999-01-01T00:00:00Z"))]),
            "_since",
        ),
        (
            "/$export",
            json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}),
            "Parameters.parameter[0]",
        ),
        (
            "/$export",
            json!({"resourceType": "Patient"}),
            "resourceType",
        ),
    ];
    for (uri, body, parameter) in &post_cases {
        let resp = api.kickoff_post(uri, body).await;
        assert_eq!(names(&resp), *parameter, "POST {uri} {body}");
    }
    // Parameters of a POST go in its body.
    let resp = api
        .kickoff_post("/Patient/$export?_type=Patient", &parameters(&[]))
        .await;
    resp.outcome(400);
    // Nothing was registered.
    let list = api.get("/_operations/export").await;
    assert_eq!(list.json(), json!({"exports": []}));
}

#[tokio::test]
async fn refused_type_filters_are_400_with_the_plugins_issues_or_dropped_when_lenient() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    // The default engine refuses value-set membership: it needs terminology.
    let uri = format!(
        "/$export?_typeFilter={}",
        enc("Patient?language:in=http://hl7.org/fhir/ValueSet/languages")
    );
    let resp = api.kickoff(&uri).await;
    let first = resp.outcome(400);
    assert_eq!(first["expression"][0], "_typeFilter");
    let outcome = resp.json();
    let issues = outcome["issue"].as_array().unwrap();
    assert!(issues.len() >= 2, "{outcome}");
    assert!(
        issues[1]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("language"),
        "{outcome}"
    );

    let lenient = api.send(Method::GET, &uri, &LENIENT, None).await;
    let status = accepted(&lenient);
    let jobs = api.get("/_operations/export").await.json();
    assert_eq!(jobs["exports"][0]["status"], format!("{BASE}{status}"));
    // The warning travels with the job's request, for the error file.
    let id = status.rsplit('/').next().unwrap();
    let job = api.job(id);
    let request: crate::export::ExportRequest = serde_json::from_value(job.request).unwrap();
    assert!(request.type_filters.is_empty());
    assert_eq!(request.warnings.len(), 1);
    assert_eq!(request.warnings[0].parameter, "_typeFilter");

    // A supported filter compiles and is kept.
    let ok = format!("/$export?_typeFilter={}", enc("Patient?gender=female,male"));
    accepted(&api.kickoff(&ok).await);
}

#[tokio::test]
async fn groups_must_exist_at_kickoff() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    api.kickoff("/Group/missing/$export").await.outcome(404);
    let group = json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true});
    api.put("/Group/g1", &group).await.ok(201);
    accepted(&api.kickoff("/Group/g1/$export").await);
    accepted(&api.kickoff("/Group/g1/$export?_type=Patient").await);
    // Deleted at the snapshot: it does not exist then.
    api.delete("/Group/g1").await;
    api.kickoff("/Group/g1/$export").await.outcome(404);
    // Time travel to when it existed is fine.
    let group = json!({"resourceType": "Group", "id": "g2", "type": "person", "actual": true});
    api.put("/Group/g2", &group).await.ok(201);
    let then = api.get("/Group/g2").await.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    api.delete("/Group/g2").await;
    accepted(
        &api.kickoff(&format!("/Group/g2/$export?_till={}", enc(&then)))
            .await,
    );
    // One the group resolver cannot evaluate is refused now, naming why.
    let group = json!({"resourceType": "Group", "id": "g3", "type": "person", "actual": false,
        "characteristic": [{"code": {"text": "smoker"}, "valueBoolean": true, "exclude": false}]});
    api.put("/Group/g3", &group).await.ok(201);
    let refused = api.kickoff("/Group/g3/$export").await;
    refused.outcome(400);
    let text = refused.json().to_string();
    assert!(
        text.contains("Group.characteristic[0]") && text.contains("not-supported"),
        "{text}"
    );
}

#[tokio::test]
async fn identical_kickoffs_share_a_job_and_the_limit_is_429() {
    let api = Api::with_jobs(Jobs {
        run: false,
        max_concurrent: 2,
        ..Jobs::default()
    });
    let first = api.start("/$export?_type=Patient").await;
    assert_eq!(api.start("/$export?_type=Patient").await, first);
    let post = api
        .kickoff_post("/$export", &parameters(&[("_type", json!("Patient"))]))
        .await;
    let second = accepted(&post);
    assert_ne!(second, first, "the request URL differs: another export");
    let refused = api.kickoff("/$export?_type=Observation").await;
    let issue = refused.outcome(429);
    assert_eq!(issue["code"], "throttled");
    assert_eq!(refused.header("retry-after"), Some("30"));
    // At the limit, a repeat of a queued export still gets its job.
    assert_eq!(api.start("/$export?_type=Patient").await, first);
    // A cancelled one frees its slot and is not matched any more.
    api.delete(&first).await.ok(202);
    api.get(&first).await.outcome(404);
    let third = api.start("/$export?_type=Patient").await;
    assert_ne!(third, first);
}

#[tokio::test]
async fn status_while_queued_and_of_unknown_jobs() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    let status = api.start("/$export").await;
    let resp = api.get(&status).await;
    assert_eq!(resp.status.as_u16(), 202);
    assert_eq!(resp.header("x-progress"), Some("queued"));
    assert_eq!(resp.header("retry-after"), Some("2"));
    for unknown in [
        "/_operations/export/00000000-0000-4000-8000-000000000000",
        "/_operations/export/not-a-job",
        "/_operations/export/..",
    ] {
        api.get(unknown).await.outcome(404);
        api.delete(unknown).await.outcome(404);
    }
    api.get(&format!("{status}/files/Patient-1-1.ndjson"))
        .await
        .outcome(404);
    let list = api.get("/_operations/export").await;
    assert_eq!(list.status.as_u16(), 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    let job = &list.json()["exports"][0];
    assert_eq!(job["status"], format!("{BASE}{status}"));
    assert_eq!(job["state"], "queued");
    assert_eq!(job["request"], format!("{BASE}/$export"));
    assert!(job["created"].is_string() && job["finished"].is_null());
    // Cancelled while queued: gone at once.
    api.delete(&status).await.ok(202);
    api.get(&status).await.outcome(404);
    api.delete(&status).await.outcome(404);
}

#[tokio::test]
async fn a_completed_export_has_a_manifest_and_files_to_download() {
    let api = Api::with_jobs(Jobs::default());
    api.small_world().await;
    let status = api.start("/$export?_type=Patient,Observation").await;
    let done = api.finished(&status).await;
    assert_eq!(
        done.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(done.header("content-type"), Some("application/json"));
    assert!(done.header("expires").unwrap().ends_with(" GMT"));
    let manifest = done.json();
    assert_eq!(
        manifest["request"],
        format!("{BASE}/$export?_type=Patient,Observation")
    );
    let output = manifest["output"].as_array().unwrap();
    assert_eq!(output.len(), 2, "{manifest}");
    let files_base = format!("{BASE}{status}/files/");
    let patients = output.iter().find(|o| o["type"] == "Patient").unwrap();
    let url = patients["url"].as_str().unwrap();
    let path = url.strip_prefix(BASE).unwrap();
    assert!(url.starts_with(&files_base), "{url}");
    assert_eq!(patients["count"], 2);

    let plain = api.get(path).await;
    assert_eq!(plain.status.as_u16(), 200);
    assert_eq!(
        plain.header("content-type"),
        Some("application/fhir+ndjson")
    );
    let lines: Vec<Value> = plain
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|r| r["resourceType"] == "Patient"));

    // The download ignores the API's JSON-only negotiation.
    let ndjson = [("accept", "application/fhir+ndjson")];
    let accepted_ndjson = api.send(Method::GET, path, &ndjson, None).await;
    assert_eq!(accepted_ndjson.status.as_u16(), 200);

    let gzip = [("accept-encoding", "gzip")];
    let gz = api.send(Method::GET, path, &gzip, None).await;
    assert_eq!(gz.status.as_u16(), 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("content-type"), Some("application/fhir+ndjson"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body);

    let range = [("range", "bytes=2-11"), ("accept-encoding", "gzip")];
    let part = api.send(Method::GET, path, &range, None).await;
    assert_eq!(part.status.as_u16(), 206);
    assert_eq!(part.header("content-encoding"), None);
    assert_eq!(part.body, plain.body[2..12]);
    let len = plain.body.len();
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 2-11/{len}").as_str())
    );
    let beyond = format!("bytes={}-", len + 5);
    let unsatisfiable = api
        .send(Method::GET, path, &[("range", beyond.as_str())], None)
        .await;
    assert_eq!(unsatisfiable.status.as_u16(), 416);

    // Only names the job lists, never a path.
    for bad in ["nope.ndjson", "..", "..%2F..%2Fdb", "%2Fetc%2Fpasswd"] {
        api.get(&format!("{status}/files/{bad}")).await.outcome(404);
    }

    let list = api.get("/_operations/export").await.json();
    let job = &list["exports"][0];
    assert_eq!(job["state"], "completed");
    assert!(job["finished"].is_string());

    // DELETE of a completed export removes its files and status.
    let files_on_disk = walk(&api.exports_dir());
    assert!(!files_on_disk.is_empty());
    api.delete(&status).await.ok(202);
    api.get(&status).await.outcome(404);
    api.get(path).await.outcome(404);
    assert!(walk(&api.exports_dir()).is_empty());
    api.delete(&status).await.outcome(404);
}

/// The files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[tokio::test]
async fn patient_level_post_with_patients() {
    let api = Api::with_jobs(Jobs::default());
    api.small_world().await;
    let body = parameters(&[
        ("_type", json!("Patient,Observation")),
        ("patient", json!({"reference": "Patient/p2"})),
    ]);
    let status = accepted(&api.kickoff_post("/Patient/$export", &body).await);
    let manifest = api.finished(&status).await.ok_json();
    assert_eq!(manifest["request"], format!("{BASE}/Patient/$export"));
    let counts: Vec<(String, u64)> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_owned(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(counts.contains(&("Patient".into(), 1)), "{manifest}");
    assert!(counts.contains(&("Observation".into(), 1)), "{manifest}");
}

#[tokio::test]
async fn a_failed_export_answers_its_stored_status() {
    let api = Api::with_jobs(Jobs::default());
    let group = json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true});
    api.put("/Group/g1", &group).await.ok(201);
    // Membership is only known once the job resolves the Group: a patient
    // outside it fails the job, not the kick-off.
    let params = parameters(&[("patient", json!({"reference": "Patient/nobody"}))]);
    let status = accepted(&api.kickoff_post("/Group/g1/$export", &params).await);
    let failed = api.finished(&status).await;
    let issue = failed.outcome(400);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Patient/nobody is not a member of Group/g1"),
        "{issue}"
    );
    let list = api.get("/_operations/export").await.json();
    assert_eq!(list["exports"][0]["state"], "failed");
}

#[tokio::test]
async fn expired_exports_are_404_and_the_janitor_removes_them() {
    let api = Api::with_jobs(Jobs {
        retention: Duration::from_millis(300),
        ..Jobs::default()
    });
    api.small_world().await;
    let status = api.start("/$export?_type=Patient").await;
    let manifest = api.finished(&status).await.ok_json();
    let url = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    let path = url.strip_prefix(BASE).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.get(&status).await.outcome(404);
    api.get(path).await.outcome(404);
    assert!(!walk(&api.exports_dir()).is_empty(), "not removed yet");
    let janitor = tokio::spawn(crate::api::export::run_janitor(
        api.exports.clone(),
        Duration::from_millis(20),
    ));
    for _ in 0..200 {
        if walk(&api.exports_dir()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    janitor.abort();
    assert!(
        walk(&api.exports_dir()).is_empty(),
        "the janitor left files"
    );
    let list = api.get("/_operations/export").await.json();
    assert_eq!(list, json!({"exports": []}));
}

#[tokio::test]
async fn capability_statement_lists_the_export_operations() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    let cs = api.get("/metadata").await.ok(200).json();
    assert_eq!(
        cs["instantiates"],
        json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"])
    );
    let names: Vec<&str> = cs["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["export", "patient-export", "group-export", "import"]
    );
    assert_eq!(
        cs["rest"][0]["operation"][2]["definition"],
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
    );
}

#[tokio::test]
async fn export_paths_keep_their_neighbours() {
    let api = Api::with_jobs(Jobs {
        run: false,
        ..Jobs::default()
    });
    // Other operations are still a precise not-supported, and the REST
    // routes next to the export ones still answer.
    api.get("/Patient/$everything").await.outcome(400);
    api.get("/Group/g1/_history").await.outcome(404);
    let wrong_method = api.send(Method::PUT, "/$export", &KICKOFF, None).await;
    wrong_method.outcome(405);
    let wrong_method = api
        .send(Method::POST, "/_operations/export/x", &[], None)
        .await;
    wrong_method.outcome(405);
    // A HEAD changes nothing: it cannot start an export.
    let head = api.send(Method::HEAD, "/$export", &KICKOFF, None).await;
    assert_eq!(head.status.as_u16(), 405);
    assert_eq!(head.header("allow"), Some("GET,POST"));
    assert_eq!(
        api.get("/_operations/export").await.json(),
        json!({"exports": []})
    );
}
