//! `$import` kick-off and status on small hand-made files: every parameter,
//! every 400 (each naming the parameter), 415, 412 on an etag mismatch,
//! idempotent registration (also across a restart), the status, listing,
//! error-file and cancel endpoints' answers for finished and unknown jobs,
//! and `/metadata`.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    FHIR_JSON, IMPORT_HEADERS, IMPORT_SOURCES_ENV, NDJSON, Resp, Sandbox, Server, file_url,
    import_body, import_input, local_etag, patient,
};

/// A server whose import source is the sandbox folder `in`, which is
/// returned.
async fn server(sandbox: &mut Sandbox) -> (Server, PathBuf) {
    let dir = sandbox.dir("in");
    let sources = format!("[\"{}\"]", dir.display());
    let srv = sandbox
        .start_env(&[], &[(IMPORT_SOURCES_ENV, &sources)])
        .await;
    (srv, dir)
}

/// Writes `lines` (each serialised, `\n`-terminated) to `dir/name`.
fn write_lines(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// What must be wrong with a response: status and the issue's expression.
#[track_caller]
fn expect(resp: &Resp, status: u16, expression: &str, fragment: &str) -> Option<String> {
    if let Some(problem) = resp.outcome_problem(status) {
        return Some(problem);
    }
    let issue = &resp.json()["issue"][0];
    let at = issue["expression"][0].as_str().unwrap_or_default();
    let text = issue["diagnostics"].as_str().unwrap_or_default();
    if at != expression || !text.contains(fragment) {
        return Some(format!(
            "expected expression {expression:?} and a message with {fragment:?}; got {at:?}: {text}"
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickoff_rejects_each_bad_parameter_precisely() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    let a = write_lines(&dir, "a.ndjson", &[patient("a")]);
    let b = write_lines(&dir, "b.ndjson", &[patient("b")]);
    let outside = sandbox.dir("elsewhere").join("c.ndjson");
    std::fs::write(&outside, patient("c").to_string()).unwrap();
    let (a_url, b_url) = (file_url(&a), file_url(&b));
    let a_input = import_input(Some("Patient"), &a_url, None);
    let format = json!({"name": "inputFormat", "valueString": NDJSON});
    let with =
        |parameters: Vec<Value>| json!({"resourceType": "Parameters", "parameter": parameters});
    // Importing `a`, with one more parameter.
    let importing_a_with =
        |parameter: Value| import_body(None, &[parameter], std::slice::from_ref(&a_input));
    let many: Vec<Value> = (0..10_001)
        .map(|i| import_input(None, &file_url(&dir.join(format!("{i}.ndjson"))), None))
        .collect();

    // (what, body, status, expression, message fragment)
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "no inputFormat",
            with(vec![a_input.clone()]),
            400,
            "Parameters.parameter",
            "inputFormat",
        ),
        (
            "inputFormat not NDJSON",
            with(vec![
                json!({"name": "inputFormat", "valueString": "application/fhir+json"}),
                a_input.clone(),
            ]),
            400,
            "Parameters.parameter[0]",
            "application/fhir+ndjson",
        ),
        (
            "inputFormat twice",
            with(vec![format.clone(), format.clone(), a_input.clone()]),
            400,
            "Parameters.parameter[1]",
            "more than once",
        ),
        (
            "unknown mode",
            import_body(Some("FullLoad"), &[], std::slice::from_ref(&a_input)),
            400,
            "Parameters.parameter[1]",
            "FullLoad",
        ),
        (
            "mode of the wrong type",
            with(vec![
                format.clone(),
                json!({"name": "mode", "valueBoolean": true}),
                a_input.clone(),
            ]),
            400,
            "Parameters.parameter[1]",
            "valueBoolean",
        ),
        (
            "allowNegativeVersions as a string",
            importing_a_with(json!({"name": "allowNegativeVersions", "valueString": "true"})),
            400,
            "Parameters.parameter[1]",
            "valueBoolean",
        ),
        (
            "allowNegativeVersions true",
            importing_a_with(json!({"name": "allowNegativeVersions", "valueBoolean": true})),
            400,
            "Parameters.parameter[1]",
            "versions below 1 cannot be stored",
        ),
        (
            "bad errorContainerName",
            importing_a_with(json!({"name": "errorContainerName", "valueString": "../logs"})),
            400,
            "Parameters.parameter[1]",
            "container",
        ),
        (
            "unknown parameter",
            importing_a_with(json!({"name": "eventualConsistency", "valueBoolean": true})),
            400,
            "Parameters.parameter[1]",
            "eventualConsistency",
        ),
        (
            "no input",
            import_body(None, &[], &[]),
            400,
            "Parameters.parameter",
            "input",
        ),
        (
            "more than 10,000 inputs",
            import_body(None, &[], &many),
            400,
            "Parameters.parameter[10001]",
            "10000",
        ),
        (
            "unknown type",
            import_body(None, &[], &[import_input(Some("Patients"), &a_url, None)]),
            400,
            "Parameters.parameter[1].part[0]",
            "Patients",
        ),
        (
            "SearchParameter",
            import_body(
                None,
                &[],
                &[import_input(Some("SearchParameter"), &a_url, None)],
            ),
            400,
            "Parameters.parameter[1].part[0]",
            "SearchParameter resources cannot be processed by import",
        ),
        (
            "duplicate url",
            import_body(
                None,
                &[],
                &[
                    a_input.clone(),
                    import_input(None, &b_url, None),
                    import_input(Some("Patient"), &a_url, None),
                ],
            ),
            400,
            "Parameters.parameter[3]",
            "Parameters.parameter[1]",
        ),
        (
            "input without url",
            import_body(
                None,
                &[],
                &[json!({"name": "input", "part": [{"name": "type", "valueString": "Patient"}]})],
            ),
            400,
            "Parameters.parameter[1]",
            "no url",
        ),
        (
            "unknown input part",
            import_body(
                None,
                &[],
                &[json!({"name": "input", "part": [
                    {"name": "url", "valueUri": a_url},
                    {"name": "format", "valueString": "x"},
                ]})],
            ),
            400,
            "Parameters.parameter[1].part[1]",
            "format",
        ),
        (
            "url of the wrong type",
            import_body(
                None,
                &[],
                &[json!({"name": "input", "part": [{"name": "url", "valueBoolean": true}]})],
            ),
            400,
            "Parameters.parameter[1].part[0]",
            "valueBoolean",
        ),
        (
            "url outside the sources",
            import_body(None, &[], &[import_input(None, &file_url(&outside), None)]),
            400,
            "Parameters.parameter[1]",
            "not under a configured import source",
        ),
        (
            "url climbing out of the sources",
            import_body(
                None,
                &[],
                &[import_input(
                    None,
                    &format!("{}/../elsewhere/c.ndjson", file_url(&dir)),
                    None,
                )],
            ),
            400,
            "Parameters.parameter[1]",
            "not under a configured import source",
        ),
        (
            "http url not allow-listed",
            import_body(
                None,
                &[],
                &[import_input(None, "http://127.0.0.1:9/a.ndjson", None)],
            ),
            400,
            "Parameters.parameter[1]",
            "not under a configured import source",
        ),
        (
            "no such file",
            import_body(
                None,
                &[],
                &[import_input(
                    None,
                    &file_url(&dir.join("none.ndjson")),
                    None,
                )],
            ),
            400,
            "Parameters.parameter[1]",
            "does not exist",
        ),
        (
            "relative url",
            import_body(None, &[], &[import_input(None, "a.ndjson", None)]),
            400,
            "Parameters.parameter[1].part[0]",
            "absolute URL",
        ),
        (
            "etag mismatch",
            import_body(
                None,
                &[],
                &[
                    a_input.clone(),
                    import_input(Some("Patient"), &b_url, Some("\"0-0\"")),
                ],
            ),
            412,
            "Parameters.parameter[2]",
            "entity tag",
        ),
        (
            "not a Parameters resource",
            json!({"resourceType": "Patient"}),
            400,
            "resourceType",
            "Parameters",
        ),
    ];
    // Every mismatch is printed, then the test fails once at the end.
    let mut wrong = Vec::new();
    for (what, body, status, expression, fragment) in &cases {
        let resp = srv.kickoff_import(body).await;
        if let Some(problem) = expect(&resp, *status, expression, fragment) {
            eprintln!("WRONG: {what}: {problem}");
            wrong.push(*what);
        }
    }

    // Bodies that are not JSON, and the headers.
    let raw = |body: &str,
               content_type: Option<&'static str>,
               headers: &'static [(&'static str, &'static str)]| {
        srv.send_raw(
            Method::POST,
            "/$import",
            Some(body.as_bytes().to_vec()),
            content_type,
            headers,
        )
    };
    let valid = import_body(None, &[], std::slice::from_ref(&a_input)).to_string();
    let header_cases: Vec<(&str, Resp, u16)> = vec![
        (
            "not JSON",
            raw("{\"resourceType\":", Some(FHIR_JSON), IMPORT_HEADERS).await,
            400,
        ),
        (
            "empty body",
            raw("", Some(FHIR_JSON), IMPORT_HEADERS).await,
            400,
        ),
        ("no Prefer", raw(&valid, Some(FHIR_JSON), &[]).await, 400),
        (
            "Content-Type application/json",
            raw(&valid, Some("application/json"), IMPORT_HEADERS).await,
            415,
        ),
        (
            "Content-Type text/plain",
            raw(&valid, Some("text/plain"), IMPORT_HEADERS).await,
            415,
        ),
        (
            "no Content-Type",
            raw(&valid, None, IMPORT_HEADERS).await,
            415,
        ),
    ];
    for (what, resp, status) in &header_cases {
        if let Some(problem) = resp.outcome_problem(*status) {
            eprintln!("WRONG: {what}: {problem}");
            wrong.push(what);
        }
    }
    let no_prefer = &header_cases[2].1;
    assert_eq!(no_prefer.json()["issue"][0]["expression"][0], "Prefer");
    let query = srv
        .send(
            Method::POST,
            "/$import?mode=InitialLoad",
            Some(&import_body(None, &[], std::slice::from_ref(&a_input))),
            IMPORT_HEADERS,
        )
        .await;
    if let Some(problem) = query.outcome_problem(400) {
        eprintln!("WRONG: a query string: {problem}");
        wrong.push("query string");
    }
    let get = srv
        .send(Method::GET, "/$import", None, IMPORT_HEADERS)
        .await;
    if let Some(problem) = get.outcome_problem(405) {
        eprintln!("WRONG: GET /$import: {problem}");
        wrong.push("GET");
    }
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");

    // None of them registered anything.
    let list = srv.get("/_operations/import").await.ok(200).json();
    assert_eq!(list["imports"], json!([]), "{list}");
}

/// Every parameter accepted, with its effect visible in the outcome, and
/// `%24import` as a spelling of `$import`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickoff_accepts_every_parameter() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    let a = write_lines(&dir, "a.ndjson", &[patient("a1"), patient("a2")]);
    let b = write_lines(
        &dir,
        "b.ndjson",
        &[
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "x"}}),
        ],
    );
    let etag = local_etag(&a);
    let body = import_body(
        Some("IncrementalLoad"),
        &[
            json!({"name": "allowNegativeVersions", "valueBoolean": false}),
            json!({"name": "errorContainerName", "valueString": "import-logs"}),
        ],
        &[
            import_input(Some("Patient"), &file_url(&a), Some(&etag)),
            import_input(None, &file_url(&b), None),
        ],
    );
    let resp = srv
        .send(Method::POST, "/%24import", Some(&body), IMPORT_HEADERS)
        .await;
    let status = resp.accepted_for(&srv.base, "import");
    let informational = resp.json();
    assert_eq!(informational["resourceType"], "OperationOutcome");
    assert_eq!(informational["issue"][0]["severity"], "information");
    let done = srv.await_import(&status).await;
    assert_eq!(done["request"], format!("{}/$import", srv.base));
    assert_eq!(
        done["output"],
        json!([
            {"type": "Patient", "count": 2, "inputUrl": file_url(&a)},
            {"type": null, "count": 1, "inputUrl": file_url(&b)},
        ]),
        "{done}"
    );
    assert_eq!(done["error"], json!([]), "{done}");
    srv.get("/Patient/a2").await.ok(200);
    srv.get("/Observation/o1").await.ok(200);

    // InitialLoad, typed by valueCode, the etag without quotes.
    let c = write_lines(&dir, "c.ndjson", &[patient("c1")]);
    let bare = local_etag(&c).trim_matches('"').to_owned();
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": NDJSON},
        {"name": "mode", "valueCode": "InitialLoad"},
        {"name": "input", "part": [
            {"name": "url", "valueUrl": file_url(&c)},
            {"name": "type", "valueCode": "Patient"},
            {"name": "etag", "valueString": bare},
        ]},
    ]});
    let (_, done) = srv.import(&body).await;
    assert_eq!(done["output"][0]["count"], 1, "{done}");
    srv.get("/Patient/c1").await.ok(200);

    // The listing shows both jobs, completed, with their modes.
    let list = srv.get("/_operations/import").await.ok(200).json();
    let jobs = list["imports"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{list}");
    assert_eq!(jobs[0]["mode"], "IncrementalLoad");
    assert_eq!(jobs[1]["mode"], "InitialLoad");
    assert!(jobs.iter().all(|j| j["state"] == "completed"), "{list}");
    assert_eq!(jobs[0]["status"], status);
}

/// The same registration gives the same job, queued, running or completed,
/// whatever the order of its inputs and the port it came through; any
/// difference (an etag, the mode, an input) is a new registration. A file
/// changed after a completed registration is imported again only under a
/// new etag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    let a = write_lines(&dir, "a.ndjson", &[patient("p1")]);
    let b = write_lines(&dir, "b.ndjson", &[patient("p2")]);
    let (ia, ib) = (
        import_input(Some("Patient"), &file_url(&a), None),
        import_input(Some("Patient"), &file_url(&b), None),
    );
    let body = import_body(None, &[], &[ia.clone(), ib.clone()]);
    let first = srv.start_import(&body).await;
    let again = srv.start_import(&body).await;
    assert_eq!(first, again, "a repeated registration while under way");
    srv.await_import(&first).await;
    let reordered = import_body(Some("IncrementalLoad"), &[], &[ib.clone(), ia.clone()]);
    let resp = srv.kickoff_import(&reordered).await;
    assert_eq!(
        resp.accepted_for(&srv.base, "import"),
        first,
        "after completion"
    );
    assert!(resp.text().contains("completed"), "{}", resp.text());

    // The file changes: the same registration still names the old job;
    // naming the new etag registers a new import, which reads the change.
    write_lines(&dir, "a.ndjson", &[patient("p1"), patient("p3")]);
    assert_eq!(srv.start_import(&body).await, first);
    let tagged = import_body(
        None,
        &[],
        &[
            import_input(Some("Patient"), &file_url(&a), Some(&local_etag(&a))),
            ib.clone(),
        ],
    );
    let second = srv.start_import(&tagged).await;
    assert_ne!(second, first);
    let done = srv.await_import(&second).await;
    assert_eq!(done["output"][0]["count"], 2, "{done}");
    srv.get("/Patient/p3").await.ok(200);

    for different in [
        import_body(Some("InitialLoad"), &[], &[ia.clone(), ib.clone()]),
        import_body(None, &[], std::slice::from_ref(&ia)),
        import_body(
            None,
            &[json!({"name": "errorContainerName", "valueString": "elsewhere"})],
            &[ia.clone(), ib.clone()],
        ),
    ] {
        let other = srv.start_import(&different).await;
        assert!(other != first && other != second, "{different}");
        srv.await_import(&other).await;
    }

    // Across a restart (another port): still the same job.
    srv.terminate().await;
    let (srv, _) = server(&mut sandbox).await;
    let after = srv.start_import(&body).await;
    assert_eq!(after.rsplit('/').next(), first.rsplit('/').next());
}

/// Status, cancel and error files of unknown, malformed and finished jobs;
/// the OperationDefinition `/metadata` points at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cancel_and_files_of_finished_jobs() {
    let mut sandbox = Sandbox::new();
    let (srv, dir) = server(&mut sandbox).await;
    let unknown = "/_operations/import/6f1c33f5-59ee-4a47-9d4e-1a8f2a4f2f6d";
    srv.get(unknown).await.outcome(404);
    srv.delete(unknown).await.outcome(404);
    srv.get(&format!("{unknown}/errors/x.ndjson"))
        .await
        .outcome(404);
    srv.get("/_operations/import/not-a-job").await.outcome(404);
    srv.delete("/_operations/import/..").await.outcome(404);

    let a = write_lines(&dir, "a.ndjson", &[patient("p1")]);
    let (status, done) = srv
        .import(&import_body(
            None,
            &[],
            &[import_input(None, &file_url(&a), None)],
        ))
        .await;
    assert_eq!(done["error"], json!([]));
    // An export's status URL does not answer for an import, nor the reverse.
    let id = status.rsplit('/').next().unwrap();
    srv.get(&format!("/_operations/export/{id}"))
        .await
        .outcome(404);
    srv.get(&format!("{}/errors/Patient.ndjson", srv.local(&status)))
        .await
        .outcome(404);
    let conflict = srv.delete(&srv.local(&status)).await.outcome(409);
    assert!(
        conflict["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{conflict}"
    );
    // Still there, still completed.
    srv.get(&srv.local(&status)).await.ok(200);

    let cs = srv.get("/metadata").await.ok(200).json();
    let import = cs["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "import")
        .unwrap_or_else(|| panic!("no import operation: {}", cs["rest"][0]["operation"]))
        .clone();
    let definition = import["definition"].as_str().unwrap();
    let od = srv.get(&srv.local(definition)).await.ok(200).json();
    assert_eq!(od["resourceType"], "OperationDefinition");
    assert_eq!(od["url"], definition);
    assert_eq!(od["code"], "import");
    let names: Vec<&str> = od["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "inputFormat",
            "mode",
            "allowNegativeVersions",
            "errorContainerName",
            "input"
        ]
    );
}
