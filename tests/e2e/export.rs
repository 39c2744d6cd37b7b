//! `$export` on small hand-made data: kick-off checks (every 400, lenient
//! handling), `_typeFilter`, `_elements`, `_container`, `_outputFormat`,
//! GET/POST equivalence, snapshots (`_till`/`_until`, writes racing the
//! job), `_since` with deletes, `includeAssociatedData`, status, download
//! (gzip, Range), cancel, the concurrency limit and `/metadata`.

use std::collections::{BTreeMap, BTreeSet};

use hearth::fhir::Instant;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    ExportFile, FHIR_JSON, FILE_MAX_ENV, Http, LENIENT_HEADERS, MAX_EXPORTS_ENV, Sandbox, Server,
    by_key, count_by_type, deleted_keys, enc, gunzip, key_of, outcome_issues, parameters,
    patient_param, patient_parameters, version_of, without_server_meta,
};

const LOINC: &str = "http://loinc.org";
const SUBSETTED: &str = "SUBSETTED";

fn patient(id: &str, gender: Option<&str>, n: u64) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("F{n}")}]});
    if let Some(g) = gender {
        p["gender"] = json!(g);
    }
    p
}

fn observation(id: &str, patient: &str, status: &str, codings: &[(&str, &str)]) -> Value {
    let coding: Vec<Value> = codings
        .iter()
        .map(|(system, code)| json!({"system": system, "code": code}))
        .collect();
    json!({
        "resourceType": "Observation", "id": id, "status": status,
        "code": {"coding": coding},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 1.50, "unit": "kg"}
    })
}

fn encounter(id: &str, patient: &str) -> Value {
    json!({
        "resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

/// Patients `p0..`, `per_patient` Observations each with statuses and codes
/// mixed so that `status=final` and `code=loinc|8302-2` overlap but differ
/// (8302-2 also as a second coding, and under another system), and one
/// Encounter per patient.
fn small_world(patients: usize, per_patient: usize) -> Vec<(String, Value)> {
    const STATUSES: [&str; 4] = ["final", "amended", "preliminary", "final"];
    let codes: [&[(&str, &str)]; 5] = [
        &[(LOINC, "8302-2")],
        &[(LOINC, "29463-7")],
        &[("http://example.org/codes", "8302-2")],
        &[(LOINC, "8867-4"), (LOINC, "8302-2")],
        &[(LOINC, "9279-1")],
    ];
    let mut data = Vec::new();
    for p in 0..patients {
        let gender = ["female", "male", "other"].get(p % 4).copied();
        let pid = format!("p{p}");
        data.push(("Patient".into(), patient(&pid, gender, p as u64)));
        data.push(("Encounter".into(), encounter(&format!("e{p}"), &pid)));
        for o in 0..per_patient {
            let n = p * per_patient + o;
            data.push((
                "Observation".into(),
                observation(
                    &format!("o{p}-{o}"),
                    &pid,
                    STATUSES[n % STATUSES.len()],
                    codes[(n / 2) % codes.len()],
                ),
            ));
        }
    }
    data
}

async fn server(env: &[(&str, &str)]) -> (Sandbox, Server) {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start_env(&[], env).await;
    (sandbox, srv)
}

/// `Type/id` → resource without server meta, for the given types.
fn expected_of(
    data: &[(String, Value)],
    keep: impl Fn(&str, &Value) -> bool,
) -> BTreeMap<String, Value> {
    data.iter()
        .filter(|(t, r)| keep(t, r))
        .map(|(_, r)| (key_of(r), without_server_meta(r)))
        .collect()
}

/// Asserts that the output lines are exactly `expected` (by `Type/id`, no
/// repeats, content equal but for `meta.versionId`/`lastUpdated`).
#[track_caller]
fn assert_output(files: &[ExportFile], expected: &BTreeMap<String, Value>, what: &str) {
    let got = by_key(files);
    let got_keys: BTreeSet<&String> = got.keys().collect();
    let want_keys: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(
        got_keys.difference(&want_keys).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "{what}: exported but not expected"
    );
    assert_eq!(
        want_keys.difference(&got_keys).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "{what}: expected but not exported"
    );
    for (key, line) in got {
        assert_eq!(without_server_meta(line), expected[&key], "{what}: {key}");
    }
}

/// Whether a coding list holds `system|code`.
fn has_coding(r: &Value, system: &str, code: &str) -> bool {
    r["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == system && c["code"] == code)
}

/// The lines of the manifest's output, downloaded and checked.
async fn output(srv: &Http, manifest: &Value) -> Vec<ExportFile> {
    srv.files(manifest, "output").await
}

/// Every UUID-shaped (8-4-4-4-12 hex) substring of `text`.
fn uuids_in(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out = BTreeSet::new();
    for start in 0..b.len().saturating_sub(35) {
        if start > 0 && b[start - 1].is_ascii_hexdigit() {
            continue;
        }
        let mut i = start;
        let ok = shape.iter().enumerate().all(|(n, &len)| {
            let run = b[i..i + len].iter().all(u8::is_ascii_hexdigit);
            i += len;
            let sep = n == 4 || b.get(i) == Some(&b'-');
            i += 1;
            run && sep
        });
        if ok && !b.get(start + 36).is_some_and(u8::is_ascii_hexdigit) {
            out.insert(text[start..start + 36].to_ascii_lowercase());
        }
    }
    out
}

/// `meta.lastUpdated` of a write answer's body.
fn last_updated(resource: &Value) -> String {
    resource["meta"]["lastUpdated"]
        .as_str()
        .unwrap_or_else(|| panic!("no meta.lastUpdated: {resource}"))
        .to_owned()
}

/// Writes Organization/marker; its `lastUpdated` opens a `_since` window.
async fn open_window(srv: &Http) -> String {
    let marker = json!({"resourceType": "Organization", "id": "marker"});
    last_updated(
        &srv.put("/Organization/marker", &marker)
            .await
            .ok(201)
            .json(),
    )
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickoff_errors_are_operation_outcomes() {
    let (_sandbox, srv) = server(&[]).await;
    let data = small_world(3, 2);
    srv.load_transactions(&data, 100).await;
    let group = json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p0"}}, {"entity": {"reference": "Patient/p1"}}]});
    srv.put("/Group/g1", &group).await.ok(201);

    // Value-set membership needs terminology: the default engine refuses it.
    let obs_in = enc("Observation?code:in=http://example.org/vs");
    let obs_final = enc("Observation?status=final");
    let future = Instant::from_millis(Instant::now().as_millis() + 86_400_000).to_fhir();
    let bad_get: Vec<(String, u16)> = vec![
        ("/$export?_outputFormat=text%2Fcsv".into(), 400),
        (
            "/$export?_outputFormat=application%2Ffhir%2Bjson".into(),
            400,
        ),
        (format!("/$export?_since={}", enc(&future)), 400),
        ("/$export?_since=not-a-date".into(), 400),
        ("/$export?_since=2024-13-45".into(), 400),
        ("/$export?_till=yesterday".into(), 400),
        ("/$export?_until=2024-02-30T00%3A00%3A00Z".into(), 400),
        ("/$export?_type=Pateint".into(), 400),
        ("/$export?_type=Patient,Pateint".into(), 400),
        (
            format!("/$export?_type=Patient&_typeFilter={obs_final}"),
            400,
        ),
        (format!("/$export?_typeFilter={obs_in}"), 400),
        (
            format!("/$export?_type=Observation&_typeFilter={obs_in}"),
            400,
        ),
        (
            format!("/$export?_typeFilter={}", enc("Pateint?gender=female")),
            400,
        ),
        (format!("/$export?_typeFilter={}", enc("status=final")), 400),
        ("/$export?_foo=bar".into(), 400),
        (
            "/$export?includeAssociatedData=LatestProvenanceResources".into(),
            400,
        ),
        (format!("/$export?_container={}", enc("../escape")), 400),
        (format!("/$export?_container={}", enc("a/../../b")), 400),
        ("/$export?_container=..".into(), 400),
        ("/Patient/$export?_type=Pateint".into(), 400),
        ("/Patient/$export?_foo=bar".into(), 400),
        (format!("/Group/g1/$export?_typeFilter={obs_in}"), 400),
        ("/Group/missing/$export".into(), 404),
        ("/Group/missing/$export?_type=Patient".into(), 404),
    ];
    // Every mismatch is printed at once and the test fails at its end, so
    // that one run reports them all.
    let mut wrong = Vec::new();
    let mut check = |what: String, resp: crate::support::Resp, status: u16| {
        if let Some(problem) = resp.outcome_problem(status) {
            eprintln!("WRONG: {what}: {problem}");
            wrong.push(what);
        }
    };
    for (path, status) in &bad_get {
        let resp = srv.kickoff(path).await;
        check(format!("GET {path}"), resp, *status);
    }

    // The same checks through POST Parameters.
    let bad_post: Vec<(&str, Value, u16)> = vec![
        (
            "/$export",
            parameters(&[("_outputFormat", "valueString", json!("text/csv"))]),
            400,
        ),
        (
            "/$export",
            parameters(&[("_since", "valueInstant", json!(future))]),
            400,
        ),
        (
            "/$export",
            parameters(&[("_type", "valueString", json!("Pateint"))]),
            400,
        ),
        (
            "/$export",
            parameters(&[(
                "_typeFilter",
                "valueString",
                json!("Observation?code:in=http://example.org/vs"),
            )]),
            400,
        ),
        (
            "/$export",
            parameters(&[("_foo", "valueString", json!("bar"))]),
            400,
        ),
        (
            "/$export",
            parameters(&[("_container", "valueString", json!("../x"))]),
            400,
        ),
        // `patient` is for Patient and Group level only.
        ("/$export", patient_parameters(["p0"]), 400),
        // Not a Parameters resource.
        (
            "/$export",
            json!({"resourceType": "Patient", "id": "x"}),
            400,
        ),
        (
            "/Group/missing/$export",
            parameters(&[("_type", "valueString", json!("Patient"))]),
            404,
        ),
    ];
    for (path, body, status) in &bad_post {
        let resp = srv.kickoff_post(path, body).await;
        check(format!("POST {path} {body}"), resp, *status);
    }

    // The headers: Prefer: respond-async and Accept: application/fhir+json
    // are required.
    for (what, headers) in [
        ("no Prefer", vec![("accept", FHIR_JSON)]),
        (
            "Prefer without respond-async",
            vec![("accept", FHIR_JSON), ("prefer", "return=minimal")],
        ),
        (
            "Accept not FHIR JSON",
            vec![
                ("accept", "application/fhir+xml"),
                ("prefer", "respond-async"),
            ],
        ),
    ] {
        let resp = srv.send(Method::GET, "/$export", None, &headers).await;
        check(format!("GET /$export, {what}"), resp, 400);
    }
    let (status, answer) = srv
        .raw_request("GET /$export HTTP/1.1\r\nPrefer: respond-async")
        .await;
    if status != 400 || !answer.contains("OperationOutcome") {
        eprintln!("WRONG: GET /$export without Accept: {answer}");
        wrong.push("GET /$export without Accept".into());
    }

    // Nothing was registered by any of these.
    let jobs = srv.get("/_operations/export").await.ok(200).text();
    if !uuids_in(&jobs).is_empty() {
        eprintln!("WRONG: rejected kick-offs left jobs behind: {jobs}");
        wrong.push("jobs registered by rejected kick-offs".into());
    }

    // Lenient: an unknown parameter and an unsupported `_typeFilter` become
    // warnings in the error files; the export runs.
    let lenient = |path: &'static str| {
        let srv = &srv;
        async move {
            let resp = srv.send(Method::GET, path, None, LENIENT_HEADERS).await;
            let status = resp.accepted(&srv.base);
            srv.await_manifest(&status, Some(&srv.url(path))).await
        }
    };
    let m = lenient("/$export?_type=Patient&_foo=bar").await;
    let errors = srv.files(&m, "error").await;
    let issues = outcome_issues(&errors);
    assert!(
        issues
            .iter()
            .any(|i| i["severity"] == "warning" && i.to_string().contains("_foo")),
        "lenient: no warning about _foo in {issues:?}"
    );
    assert_output(
        &output(&srv, &m).await,
        &expected_of(&data, |t, _| t == "Patient"),
        "lenient _foo",
    );

    let path = "/$export?_type=Observation&_typeFilter=Observation%3Fcode%3Ain%3Dhttp%3A%2F%2Fexample.org%2Fvs";
    let m = lenient(path).await;
    let issues = outcome_issues(&srv.files(&m, "error").await);
    assert!(
        issues.iter().any(|i| i["severity"] == "warning"
            && (i.to_string().contains("_typeFilter") || i.to_string().contains("code:in"))),
        "lenient: no warning about the _typeFilter in {issues:?}"
    );
    // The unsupported filter is ignored, not turned into "nothing matches".
    assert_output(
        &output(&srv, &m).await,
        &expected_of(&data, |t, _| t == "Observation"),
        "lenient _typeFilter",
    );

    assert!(
        wrong.is_empty(),
        "{} kick-offs not refused as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_filters_elements_container_and_formats() {
    let (sandbox, srv) = server(&[]).await;
    let data = small_world(12, 10);
    srv.load_transactions(&data, 200).await;

    // `_typeFilter`: two for Observation are OR-ed; Patient filtered on its
    // own; Encounter unfiltered.
    let code = format!("{LOINC}|8302-2");
    let filters = [
        "Observation?status=final".to_string(),
        format!("Observation?code={code}"),
        "Patient?gender=female".to_string(),
    ];
    let query: String = filters
        .iter()
        .map(|f| format!("&_typeFilter={}", enc(f)))
        .collect();
    let path = format!("/$export?_type=Observation,Patient,Encounter{query}");
    let expected = expected_of(&data, |t, r| match t {
        "Observation" => r["status"] == "final" || has_coding(r, LOINC, "8302-2"),
        "Patient" => r["gender"] == "female",
        _ => t == "Encounter",
    });
    let n_obs = expected
        .keys()
        .filter(|k| k.starts_with("Observation/"))
        .count();
    let all_obs = data.iter().filter(|(t, _)| t == "Observation").count();
    assert!(
        n_obs < all_obs && n_obs > data.iter().filter(|(_, r)| r["status"] == "final").count(),
        "the fixture should make the OR differ from each filter alone"
    );
    let (_, m_get) = srv.export(&path).await;
    let get_files = output(&srv, &m_get).await;
    assert_output(&get_files, &expected, "_typeFilter OR (GET)");

    // The query inside `_typeFilter` may itself be percent-encoded (it is a
    // FHIR search query): `http%3A%2F%2Floinc.org%7C8302-2` is the same code.
    let inner = format!("Observation?code={}", enc(&code));
    let (_, m) = srv
        .export(&format!(
            "/$export?_type=Observation&_typeFilter={}",
            enc(&inner)
        ))
        .await;
    assert_output(
        &output(&srv, &m).await,
        &expected_of(&data, |t, r| {
            t == "Observation" && has_coding(r, LOINC, "8302-2")
        }),
        "_typeFilter with an encoded value",
    );

    // The same request as POST Parameters: the same output.
    let mut params = vec![(
        "_type",
        "valueString",
        json!("Observation,Patient,Encounter"),
    )];
    for f in &filters {
        params.push(("_typeFilter", "valueString", json!(f)));
    }
    let (_, m_post) = srv.export_post("/$export", &parameters(&params)).await;
    let post_files = output(&srv, &m_post).await;
    assert_output(&post_files, &expected, "_typeFilter OR (POST)");
    assert_eq!(count_by_type(&get_files), count_by_type(&post_files));
    let post_req = m_post["request"].as_str().unwrap();
    assert!(
        post_req.ends_with("/$export"),
        "POST manifest request {post_req}"
    );

    // `_elements`: listed elements plus resourceType, id, meta, and the
    // SUBSETTED tag. `status` applies to every type; the mandatory
    // elements of each type are listed, so nothing else may appear.
    let elements = "status,Observation.code,Encounter.class,Patient.gender";
    let (_, m) = srv
        .export(&format!(
            "/$export?_type=Observation,Patient,Encounter&_elements={}",
            enc(elements)
        ))
        .await;
    let files = output(&srv, &m).await;
    let sources: BTreeMap<String, &Value> = data.iter().map(|(_, r)| (key_of(r), r)).collect();
    let got = by_key(&files);
    assert_eq!(got.len(), data.len(), "_elements must not drop resources");
    for (key, line) in got {
        let source = sources[&key];
        let allowed: &[&str] = match line["resourceType"].as_str().unwrap() {
            "Observation" => &["status", "code"],
            "Encounter" => &["status", "class"],
            "Patient" => &["gender"],
            other => panic!("unexpected type {other}"),
        };
        let obj = line.as_object().unwrap();
        for name in obj.keys() {
            assert!(
                ["resourceType", "id", "meta"].contains(&name.as_str())
                    || allowed.contains(&name.as_str()),
                "{key}: element {name} not asked for by _elements={elements}"
            );
        }
        for name in allowed {
            assert_eq!(line[*name], source[*name], "{key}.{name}");
        }
        let tags = line["meta"]["tag"].as_array().cloned().unwrap_or_default();
        assert!(
            tags.iter().any(|t| t["code"] == SUBSETTED
                && t["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"),
            "{key}: no SUBSETTED tag in {}",
            line["meta"]
        );
    }

    // `_container`: the files live in a new folder per export inside that
    // folder of the export directory (default `<data-dir>/exports`), named
    // after the job: `<container>/<kick-off instant>-<job id>/<file>`.
    let container = sandbox.data_dir().join("exports").join("my-folder");
    let mut folders = BTreeSet::new();
    for round in 0..2 {
        let (status, m) = srv
            .export("/$export?_type=Patient,Encounter&_container=my-folder")
            .await;
        let files = output(&srv, &m).await;
        assert_output(
            &files,
            &expected_of(&data, |t, _| t == "Patient" || t == "Encounter"),
            "_container",
        );
        let job = status.rsplit('/').next().unwrap();
        let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&container)
            .unwrap_or_else(|e| panic!("{}: {e}", container.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .ends_with(&format!("-{job}"))
            })
            .collect();
        assert_eq!(
            dirs.len(),
            1,
            "round {round}: no folder *-{job} in {}",
            container.display()
        );
        folders.insert(dirs[0].clone());
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dirs[0])
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let listed: BTreeSet<String> = files.iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(
            on_disk,
            listed,
            "round {round}: files in {}",
            dirs[0].display()
        );
        for f in &files {
            assert_eq!(
                std::fs::read(dirs[0].join(f.name())).unwrap(),
                f.bytes,
                "{} on disk vs downloaded",
                f.name()
            );
        }
    }
    assert_eq!(folders.len(), 2, "each export gets its own folder");

    // `_outputFormat` spellings, and `_isparallel`: all accepted, same output.
    for query in [
        "_outputFormat=application%2Ffhir%2Bndjson",
        "_outputFormat=application%2Fndjson",
        "_outputFormat=ndjson",
        "_isparallel=true",
    ] {
        let (_, m) = srv
            .export(&format!("/$export?_type=Patient,Encounter&{query}"))
            .await;
        assert_output(
            &output(&srv, &m).await,
            &expected_of(&data, |t, _| t == "Patient" || t == "Encounter"),
            query,
        );
    }
}

/// Writes that land after the kick-off's 202 (updates, creates, deletes) are
/// not in the output: it shows the data as of `transactionTime`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_ignores_writes_after_kickoff() {
    // Small files, so that the job has many steps to race against.
    let (_sandbox, srv) = server(&[(FILE_MAX_ENV, "25")]).await;
    let data = small_world(60, 30);
    let loaded = srv.load_transactions(&data, 500).await;
    let expected = expected_of(&data, |t, _| t == "Patient" || t == "Observation");

    let path = "/$export?_type=Patient,Observation";
    let status = srv.start_export(path).await;

    // Right after the 202: one transaction updating every Patient, creating
    // Observations and deleting some, then single writes.
    let mut entries = Vec::new();
    for (t, r) in &data {
        let id = r["id"].as_str().unwrap();
        if t == "Patient" {
            let mut changed = r.clone();
            changed["name"] = json!([{"family": "Changed"}]);
            entries.push(json!({"resource": changed, "request": {"method": "PUT", "url": format!("Patient/{id}")}}));
        }
    }
    for i in 0..40 {
        let o = observation(&format!("new{i}"), "p0", "final", &[(LOINC, "8302-2")]);
        entries.push(json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/new{i}")}}));
    }
    for p in 0..20 {
        entries
            .push(json!({"request": {"method": "DELETE", "url": format!("Observation/o{p}-0")}}));
    }
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let resp = srv.post("/", &tx).await.ok(200).json();
    let first_after = resp["entry"][0]["response"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    for p in 0..20 {
        let id = format!("o{p}-1");
        let o = observation(&id, "p1", "cancelled", &[(LOINC, "1-1")]);
        srv.put(&format!("/Observation/{id}"), &o).await.ok(200);
    }
    let running = srv.get(&status).await.status == 202;
    eprintln!(
        "snapshot: the job was {} when the writes were done",
        if running {
            "still running"
        } else {
            "already done"
        }
    );

    let m = srv.await_manifest(&status, Some(&srv.url(path))).await;
    let tt = Instant::parse(m["transactionTime"].as_str().unwrap()).unwrap();
    assert!(
        tt >= Instant::parse(&loaded).unwrap() && tt < Instant::parse(&first_after).unwrap(),
        "transactionTime {tt} should be between the last load {loaded} and the first later write {first_after}"
    );
    let files = output(&srv, &m).await;
    assert_output(&files, &expected, "snapshot at kick-off");
    for f in &files {
        for line in &f.lines {
            assert_eq!(version_of(line), 1, "{}: a later version", key_of(line));
        }
    }
    assert!(
        m["deleted"].as_array().is_none_or(Vec::is_empty),
        "deleted without _since: {m}"
    );
}

/// `_till`/`_until` read the past from history; `_since` lists what was
/// deleted in the window in `deleted` and never in `output`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn till_until_and_since_with_deletes() {
    let (_sandbox, srv) = server(&[]).await;
    let write = |id: &'static str, n: u64| {
        let srv = &srv;
        async move {
            let body = patient(id, Some("female"), n);
            let resp = srv.put(&format!("/Patient/{id}"), &body).await;
            assert!(
                matches!(resp.status, 200 | 201),
                "PUT {id}: {}",
                resp.text()
            );
            let stored = resp.json();
            (body, last_updated(&stored))
        }
    };
    let (a1, t1) = write("a", 1).await;
    let (b1, t2) = write("b", 1).await;
    let (a2, t3) = write("a", 2).await;
    srv.delete("/Patient/b").await.ok(204);
    // The delete's instant: the store clock is strictly increasing, so the
    // next write's instant is after it; the delete is in b's history.
    let hist = srv.get("/Patient/b/_history").await.ok(200).json();
    let t4 = hist["entry"][0]["response"]["lastModified"]
        .as_str()
        .unwrap_or_else(|| panic!("no lastModified on the delete: {hist}"))
        .to_owned();
    let (c1, t5) = write("c", 1).await;

    let expect = |items: &[&Value]| -> BTreeMap<String, Value> {
        items
            .iter()
            .map(|r| (key_of(r), without_server_meta(r)))
            .collect()
    };
    let cases: Vec<(String, BTreeMap<String, Value>, BTreeSet<String>)> = vec![
        (
            format!("_till={}", enc(&t1)),
            expect(&[&a1]),
            BTreeSet::new(),
        ),
        (
            format!("_till={}", enc(&t2)),
            expect(&[&a1, &b1]),
            BTreeSet::new(),
        ),
        (
            format!("_until={}", enc(&t3)),
            expect(&[&a2, &b1]),
            BTreeSet::new(),
        ),
        (
            format!("_till={}", enc(&t4)),
            expect(&[&a2]),
            BTreeSet::new(),
        ),
        (
            format!("_till={}", enc(&t5)),
            expect(&[&a2, &c1]),
            BTreeSet::new(),
        ),
        (String::new(), expect(&[&a2, &c1]), BTreeSet::new()),
        // Windows: (since, till].
        (
            format!("_since={}&_till={}", enc(&t1), enc(&t3)),
            expect(&[&a2, &b1]),
            BTreeSet::new(),
        ),
        (
            format!("_since={}&_till={}", enc(&t3), enc(&t4)),
            expect(&[]),
            BTreeSet::from(["Patient/b".to_string()]),
        ),
    ];
    for (query, expected, deleted) in &cases {
        let path = format!("/$export?_type=Patient&{query}");
        let (_, m) = srv.export(&path).await;
        assert_output(&output(&srv, &m).await, expected, &path);
        let got_deleted = deleted_keys(&srv.files(&m, "deleted").await);
        assert_eq!(&got_deleted, deleted, "{path}: deleted");
        if let Some(till) = query
            .split('&')
            .find_map(|p| p.strip_prefix("_till=").or(p.strip_prefix("_until=")))
        {
            let till = till.replace("%3A", ":").replace("%2B", "+");
            assert_eq!(
                Instant::parse(m["transactionTime"].as_str().unwrap()).unwrap(),
                Instant::parse(&till).unwrap(),
                "{path}: transactionTime is the snapshot asked for"
            );
        }
    }
    // The versions themselves: _till=t1 gives a at version 1.
    let (_, m) = srv
        .export(&format!("/$export?_type=Patient&_till={}", enc(&t1)))
        .await;
    let files = output(&srv, &m).await;
    assert_eq!(version_of(by_key(&files)["Patient/a"]), 1);

    // `_since` over a window with every kind of change, on a fresh set.
    let mut base = Vec::new();
    for id in ["sa", "sb", "sc", "sd", "sg"] {
        base.push(("Patient".to_string(), patient(id, Some("male"), 0)));
    }
    srv.load_transactions(&base, 100).await;
    srv.delete("/Patient/sd").await.ok(204); // deleted before the window
    srv.delete("/Patient/sg").await.ok(204); // deleted before, recreated in it
    let since = open_window(&srv).await;
    let (sb2, _) = write("sb", 2).await; // updated in the window
    srv.delete("/Patient/sc").await.ok(204); // deleted in the window
    let (se1, _) = write("se", 1).await; // created in the window
    write("sf", 1).await; // created and deleted in the window
    srv.delete("/Patient/sf").await.ok(204);
    write("sa", 2).await; // updated, then deleted in the window
    srv.delete("/Patient/sa").await.ok(204);
    let (sg3, _) = write("sg", 3).await;
    // Older resources (a, c) were not changed in the window.
    let path = format!("/$export?_type=Patient&_since={}", enc(&since));
    let (_, m) = srv.export(&path).await;
    assert_output(
        &output(&srv, &m).await,
        &expect(&[&sb2, &se1, &sg3]),
        "_since window",
    );
    let deleted = deleted_keys(&srv.files(&m, "deleted").await);
    assert_eq!(
        deleted,
        BTreeSet::from(["Patient/sa", "Patient/sc", "Patient/sf"].map(String::from)),
        "_since window: deleted"
    );
    // A delete after the kick-off is in neither list.
    let status = srv.start_export(&path).await;
    srv.delete("/Patient/sb").await.ok(204);
    let m = srv.await_manifest(&status, Some(&srv.url(&path))).await;
    assert_output(
        &output(&srv, &m).await,
        &expect(&[&sb2, &se1, &sg3]),
        "_since window, then a delete",
    );
    assert_eq!(
        deleted_keys(&srv.files(&m, "deleted").await),
        BTreeSet::from(["Patient/sa", "Patient/sc", "Patient/sf"].map(String::from))
    );
}

/// `includeAssociatedData=_history` exports every version up to the
/// snapshot; `_deleted` adds deleted resources, marked as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_associated_history_and_deleted() {
    let (_sandbox, srv) = server(&[]).await;
    let mut versions: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut put = async |id: &str, n: u64| {
        let body = patient(id, Some("other"), n);
        let resp = srv.put(&format!("/Patient/{id}"), &body).await;
        assert!(matches!(resp.status, 200 | 201), "{}", resp.text());
        versions
            .entry(format!("Patient/{id}"))
            .or_default()
            .push(resp.json());
    };
    // h1: 3 versions; h2: 1 version, then deleted; h3: 1 version;
    // h4: 1 version, deleted, recreated (version 3).
    put("h1", 1).await;
    put("h1", 2).await;
    put("h1", 3).await;
    put("h2", 1).await;
    put("h3", 1).await;
    put("h4", 1).await;
    srv.delete("/Patient/h2").await.ok(204);
    srv.delete("/Patient/h4").await.ok(204);
    put("h4", 3).await;
    let live = ["Patient/h1", "Patient/h3", "Patient/h4"];

    // `(Type/id, versionId)` of every line, failing on repeats.
    let version_keys = |files: &[ExportFile]| -> BTreeMap<(String, u64), Value> {
        let mut out = BTreeMap::new();
        for f in files {
            for line in &f.lines {
                let k = (key_of(line), version_of(line));
                assert!(out.insert(k.clone(), line.clone()).is_none(), "{k:?} twice");
            }
        }
        out
    };
    // The `deleted-state` extension (on `meta`, or on the resource).
    let is_marked_deleted = |line: &Value| {
        [&line["meta"]["extension"], &line["extension"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .any(|e| {
                e["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/deleted-state"))
            })
    };

    // _history: every live version of live resources.
    let (_, m) = srv
        .export("/$export?_type=Patient&includeAssociatedData=_history")
        .await;
    let got = version_keys(&output(&srv, &m).await);
    let mut want = BTreeSet::new();
    for key in live {
        for v in &versions[key] {
            want.insert((key.to_string(), version_of(v)));
        }
    }
    assert_eq!(
        got.keys()
            .filter(|(k, _)| k != "Patient/h2")
            .cloned()
            .collect::<BTreeSet<_>>(),
        want,
        "_history"
    );
    for ((key, v), line) in &got {
        if key == "Patient/h2" {
            continue;
        }
        let stored = versions[key].iter().find(|s| version_of(s) == *v).unwrap();
        assert_eq!(
            without_server_meta(line),
            without_server_meta(stored),
            "{key}/{v}"
        );
        assert!(!is_marked_deleted(line), "{key}/{v} marked deleted");
    }

    // _deleted: the current version of live resources, plus h2 marked.
    let (_, m) = srv
        .export("/$export?_type=Patient&includeAssociatedData=_deleted")
        .await;
    let files = output(&srv, &m).await;
    let got = by_key(&files);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["Patient/h1", "Patient/h2", "Patient/h3", "Patient/h4"].map(String::from)),
        "_deleted"
    );
    assert!(
        is_marked_deleted(got["Patient/h2"]),
        "the deleted h2 carries no deleted marker: {}",
        got["Patient/h2"]
    );
    for key in live {
        assert!(!is_marked_deleted(got[key]), "{key} marked deleted");
        assert_eq!(
            version_of(got[key]),
            version_of(versions[key].last().unwrap()),
            "{key}: current version"
        );
    }

    // _history with _till: only the versions up to the snapshot.
    let t_h1_v2 = last_updated(&versions["Patient/h1"][1]);
    let (_, m) = srv
        .export(&format!(
            "/$export?_type=Patient&includeAssociatedData=_history&_till={}",
            enc(&t_h1_v2)
        ))
        .await;
    let got = version_keys(&output(&srv, &m).await);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([("Patient/h1".to_string(), 1), ("Patient/h1".to_string(), 2)]),
        "_history up to h1's version 2"
    );

    // Both: every version, h2's included.
    let (_, m) = srv
        .export("/$export?_type=Patient&includeAssociatedData=_history,_deleted")
        .await;
    let got = version_keys(&output(&srv, &m).await);
    for key in live {
        for v in &versions[key] {
            assert!(
                got.contains_key(&(key.to_string(), version_of(v))),
                "{key}/{}",
                version_of(v)
            );
        }
    }
    assert!(
        got.iter()
            .any(|((k, _), l)| k == "Patient/h2" && is_marked_deleted(l)),
        "_history,_deleted: no deleted h2"
    );
    assert!(
        got.keys().any(|(k, v)| k == "Patient/h2" && *v == 1),
        "_history,_deleted: h2's version 1 missing"
    );
}

/// Status while running (`X-Progress`, `Retry-After`), `Expires`, gzip and
/// Range downloads, the job list, 429 at the concurrency limit, DELETE of
/// a running and of a completed job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_download_cancel_and_limit() {
    let (_sandbox, srv) = server(&[(FILE_MAX_ENV, "3"), (MAX_EXPORTS_ENV, "1")]).await;
    let data = small_world(40, 150);
    srv.load_transactions(&data, 1000).await;

    // A small export, completed.
    let small = "/$export?_type=Patient";
    let (small_status, m) = srv.export(small).await;
    let files = output(&srv, &m).await;
    assert_output(&files, &expected_of(&data, |t, _| t == "Patient"), "small");
    assert!(
        files.len() >= 2,
        "3 resources per file: {} files",
        files.len()
    );
    for f in &files {
        assert!(f.lines.len() <= 3, "{}: {} lines", f.url, f.lines.len());
    }
    let first = &files[0];

    // gzip: same bytes once decoded.
    let gz = srv
        .download(&first.url, &[("accept-encoding", "gzip")])
        .await
        .ok(200);
    assert_eq!(
        gz.header("content-encoding").as_deref(),
        Some("gzip"),
        "{}",
        first.url
    );
    assert_eq!(gunzip(&gz.body), first.bytes, "gunzipped {}", first.url);
    // Range: 206 with the slice.
    let len = first.bytes.len();
    assert!(len > 30);
    let part = srv
        .download(&first.url, &[("range", "bytes=5-24")])
        .await
        .ok(206);
    assert_eq!(part.body, first.bytes[5..25], "Range bytes=5-24");
    assert_eq!(
        part.header("content-range").as_deref(),
        Some(format!("bytes 5-24/{len}").as_str())
    );
    let tail = srv
        .download(&first.url, &[("range", "bytes=-10")])
        .await
        .ok(206);
    assert_eq!(tail.body, first.bytes[len - 10..], "Range bytes=-10");
    srv.download(&first.url, &[("range", &format!("bytes={}-", len + 10))])
        .await
        .ok(416);

    // A big export: 6,000+ resources at 3 per file is thousands of files.
    let big = "/$export";
    let big_status = srv.start_export(big).await;
    let resp = srv.get(&big_status).await;
    assert_eq!(
        resp.status,
        202,
        "the big export should still be running: {}",
        resp.text()
    );
    assert!(resp.header("x-progress").is_some(), "no X-Progress");
    assert!(
        resp.header("retry-after")
            .is_some_and(|r| r.parse::<u64>().is_ok()),
        "Retry-After {:?}",
        resp.header("retry-after")
    );

    // The list shows both jobs, and no other.
    let list = srv.get("/_operations/export").await.ok(200).text();
    let ids: BTreeSet<String> = [&small_status, &big_status]
        .iter()
        .map(|s| s.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(uuids_in(&list), ids, "job list: {list}");

    // At the limit (1): another kick-off is refused with 429 + Retry-After.
    let other = "/$export?_type=Encounter";
    let refused = srv.kickoff(other).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|r| r.parse::<u64>().is_ok()),
        "429 without Retry-After"
    );
    refused.outcome(429);

    // Cancel the running one: 202, then its status is 404.
    srv.delete(&big_status).await.ok(202);
    srv.get(&big_status).await.outcome(404);

    // Its files are not served either (file URLs are `<status>/files/<name>`
    // on this server, as the small job's manifest shows).
    let (small_prefix, first_name) = first.url.rsplit_once('/').unwrap();
    assert_eq!(
        small_prefix,
        format!("{small_status}/files"),
        "file URL scheme"
    );
    assert!(first_name.starts_with("Patient-"));
    for name in [
        "Patient-1-1.ndjson",
        "Observation-1-1.ndjson",
        "Encounter-1-1.ndjson",
    ] {
        let resp = srv
            .download(&format!("{big_status}/files/{name}"), &[])
            .await;
        assert_eq!(
            resp.status,
            404,
            "{name} of the cancelled job: {}",
            resp.text()
        );
    }

    // The slot frees up: the other kick-off is accepted (retried on 429).
    let started = std::time::Instant::now();
    let mut delay = std::time::Duration::from_millis(50);
    let other_status = loop {
        let resp = srv.kickoff(other).await;
        if resp.status != 429 {
            break resp.accepted(&srv.base);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "still 429 a minute after the cancel"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(1));
    };
    let m_other = srv
        .await_manifest(&other_status, Some(&srv.url(other)))
        .await;
    assert_output(
        &output(&srv, &m_other).await,
        &expected_of(&data, |t, _| t == "Encounter"),
        "after the cancel",
    );
    srv.get(&big_status).await.outcome(404);

    // DELETE a completed job: 202, then the status and every file are 404.
    srv.delete(&small_status).await.ok(202);
    srv.get(&small_status).await.outcome(404);
    for f in &files {
        let resp = srv.download(&f.url, &[]).await;
        assert_eq!(resp.status, 404, "{} after DELETE", f.url);
    }
    // Deleting again: nothing there.
    srv.delete(&small_status).await.outcome(404);
    // An unknown job.
    srv.get("/_operations/export/00000000-0000-4000-8000-000000000000")
        .await
        .outcome(404);
}

#[tokio::test]
async fn metadata_announces_bulk_export() {
    let (_sandbox, srv) = server(&[]).await;
    let cs = srv.get("/metadata").await.ok(200).json();
    assert!(
        cs["instantiates"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|u| u == "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"),
        "instantiates: {}",
        cs["instantiates"]
    );
    let rest = &cs["rest"][0];
    let mut ops: Vec<&Value> = rest["operation"].as_array().into_iter().flatten().collect();
    for r in rest["resource"].as_array().into_iter().flatten() {
        ops.extend(r["operation"].as_array().into_iter().flatten());
    }
    let names: BTreeSet<&str> = ops.iter().filter_map(|o| o["name"].as_str()).collect();
    let definitions: BTreeSet<&str> = ops
        .iter()
        .filter_map(|o| o["definition"].as_str())
        .collect();
    for name in ["export", "patient-export", "group-export"] {
        assert!(
            names.contains(name),
            "operation {name} not listed: {names:?}"
        );
        let def = format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{name}");
        assert!(
            definitions.contains(def.as_str()),
            "{def} not listed: {definitions:?}"
        );
    }
}

/// Patient and Group level on a hand-made compartment puzzle: a resource in
/// two patients' compartments is exported once; resources outside every
/// compartment (Device, Organization) are not exported; a Group that cannot
/// be resolved (definitional) fails with a 4xx OperationOutcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_group_levels_export_each_resource_once() {
    let (_sandbox, srv) = server(&[]).await;
    let mut shared = observation("shared", "p0", "final", &[(LOINC, "8302-2")]);
    // In the compartments of p0 (subject) and p1 (performer).
    shared["performer"] = json!([{"reference": "Patient/p1"}]);
    let group = json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p0"}}, {"entity": {"reference": "Patient/p1"}}]});
    let data: Vec<(String, Value)> = vec![
        ("Patient".into(), patient("p0", Some("female"), 0)),
        ("Patient".into(), patient("p1", Some("male"), 1)),
        ("Patient".into(), patient("p2", None, 2)),
        ("Observation".into(), shared),
        (
            "Observation".into(),
            observation("o1", "p1", "final", &[(LOINC, "1-1")]),
        ),
        ("Encounter".into(), encounter("e2", "p2")),
        (
            "Device".into(),
            json!({"resourceType": "Device", "id": "d0", "patient": {"reference": "Patient/p0"}}),
        ),
        (
            "Organization".into(),
            json!({"resourceType": "Organization", "id": "org", "name": "Clinic"}),
        ),
        ("Group".into(), group),
    ];
    srv.load_transactions(&data, 100).await;
    let keys = |ks: &[&str]| -> BTreeMap<String, Value> {
        expected_of(&data, |_, r| ks.contains(&key_of(r).as_str()))
    };

    // Patient level: everything in some compartment, once (the Group is in
    // p0's and p1's compartments through `member`).
    let (_, m) = srv.export("/Patient/$export").await;
    assert_output(
        &output(&srv, &m).await,
        &keys(&[
            "Patient/p0",
            "Patient/p1",
            "Patient/p2",
            "Observation/shared",
            "Observation/o1",
            "Encounter/e2",
            "Group/g",
        ]),
        "Patient level",
    );
    // Group level: p0 and p1 only.
    let (_, m) = srv.export("/Group/g/$export").await;
    assert_output(
        &output(&srv, &m).await,
        &keys(&[
            "Patient/p0",
            "Patient/p1",
            "Observation/shared",
            "Observation/o1",
            "Group/g",
        ]),
        "Group level",
    );
    // `patient` at Patient level: p1 alone still gets the shared one.
    let params = patient_parameters(["p1"]);
    let (_, m) = srv.export_post("/Patient/$export", &params).await;
    assert_output(
        &output(&srv, &m).await,
        &keys(&[
            "Patient/p1",
            "Observation/shared",
            "Observation/o1",
            "Group/g",
        ]),
        "Patient level, patient=p1",
    );

    // A definitional Group cannot be resolved: a 4xx OperationOutcome, at
    // kick-off or as the job's final status.
    let def = json!({"resourceType": "Group", "id": "def", "type": "person", "actual": false});
    srv.put("/Group/def", &def).await.ok(201);
    let resp = srv.kickoff("/Group/def/$export").await;
    let failed = if resp.status == 202 {
        srv.poll_export(&resp.accepted(&srv.base)).await
    } else {
        resp
    };
    assert!(
        (400..500).contains(&failed.status),
        "definitional Group: {} {}",
        failed.status,
        failed.text()
    );
    failed.outcome(failed.status);
}

/// Compartments and Group membership are taken as of the snapshot: an
/// Observation moved to another patient, or a patient removed from the
/// Group, after `_till` still count as they were. At Group level, `_since`
/// lists only deletions within the members' compartments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compartments_and_members_follow_the_snapshot() {
    let (_sandbox, srv) = server(&[]).await;
    let group_v1 = json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p0"}}, {"entity": {"reference": "Patient/p1"}}]});
    let o1_v1 = observation("o1", "p1", "final", &[(LOINC, "1-1")]);
    let data: Vec<(String, Value)> = vec![
        ("Patient".into(), patient("p0", Some("female"), 0)),
        ("Patient".into(), patient("p1", Some("male"), 1)),
        ("Patient".into(), patient("p2", None, 2)),
        ("Observation".into(), o1_v1.clone()),
        (
            "Observation".into(),
            observation("o2", "p0", "final", &[(LOINC, "2-2")]),
        ),
        ("Encounter".into(), encounter("e2", "p2")),
        ("Group".into(), group_v1.clone()),
    ];
    let t1 = srv.load_transactions(&data, 100).await;
    // t2: o1 moves from p1 to p2. t3: p1 leaves the Group.
    let o1_v2 = observation("o1", "p2", "final", &[(LOINC, "1-1")]);
    let t2 = last_updated(&srv.put("/Observation/o1", &o1_v2).await.ok(200).json());
    let mut group_v2 = group_v1.clone();
    group_v2["member"] = json!([{"entity": {"reference": "Patient/p0"}}]);
    let t3 = last_updated(&srv.put("/Group/g", &group_v2).await.ok(200).json());

    let by = |items: &[&Value]| -> BTreeMap<String, Value> {
        items
            .iter()
            .map(|r| (key_of(r), without_server_meta(r)))
            .collect()
    };
    let res = |key: &str| -> Value {
        data.iter()
            .find(|(_, r)| key_of(r) == key)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    let (p0, p1, o2) = (res("Patient/p0"), res("Patient/p1"), res("Observation/o2"));

    // Patient level, patient=p1, at t1: o1 was p1's.
    let at =
        |till: &str| parameters(&[patient_param("p1"), ("_till", "valueInstant", json!(till))]);
    let (_, m) = srv.export_post("/Patient/$export", &at(&t1)).await;
    assert_output(
        &output(&srv, &m).await,
        &by(&[&p1, &o1_v1, &group_v1]),
        "patient=p1 at t1",
    );
    // At t2 it is not any more.
    let (_, m) = srv.export_post("/Patient/$export", &at(&t2)).await;
    assert_output(
        &output(&srv, &m).await,
        &by(&[&p1, &group_v1]),
        "patient=p1 at t2",
    );
    // Group level at t2: both members (o1 now p2's); at t3 only p0.
    let (_, m) = srv
        .export(&format!("/Group/g/$export?_till={}", enc(&t2)))
        .await;
    assert_output(
        &output(&srv, &m).await,
        &by(&[&p0, &p1, &o2, &group_v1]),
        "Group at t2",
    );
    let (_, m) = srv
        .export(&format!("/Group/g/$export?_till={}", enc(&t3)))
        .await;
    assert_output(
        &output(&srv, &m).await,
        &by(&[&p0, &o2, &group_v2]),
        "Group at t3",
    );

    // `_since` at Group level: o2 (p0's) and e2 (p2's, not a member) are
    // deleted in the window; only o2 is listed.
    let since = open_window(&srv).await;
    srv.delete("/Observation/o2").await.ok(204);
    srv.delete("/Encounter/e2").await.ok(204);
    let (_, m) = srv
        .export(&format!("/Group/g/$export?_since={}", enc(&since)))
        .await;
    assert_output(&output(&srv, &m).await, &BTreeMap::new(), "Group _since");
    assert_eq!(
        deleted_keys(&srv.files(&m, "deleted").await),
        BTreeSet::from(["Observation/o2".to_string()]),
        "Group _since: deleted"
    );
    // The same at system level lists both.
    let (_, m) = srv
        .export(&format!("/$export?_since={}", enc(&since)))
        .await;
    assert_eq!(
        deleted_keys(&srv.files(&m, "deleted").await),
        BTreeSet::from(["Observation/o2".to_string(), "Encounter/e2".to_string()]),
        "system _since: deleted"
    );

    // A type with no resources: a completed export with no output.
    let (_, m) = srv.export("/$export?_type=Medication").await;
    assert_eq!(m["output"], json!([]), "{m}");
}
