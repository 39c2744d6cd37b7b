//! Shared helpers: start/stop the real `hearth` binary, HTTP requests with
//! FHIR JSON, reading and loading the synthea data set, the independent
//! Patient-compartment oracle, and the `$export` client (kick-off, status
//! polling, manifest checks, downloads). Every test uses these; nothing here
//! is duplicated in the test files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use hearth::azure::emulator::Azurite;
use hearth::azure::{Accounts, AzureConfig};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const FHIR_JSON: &str = "application/fhir+json";
const READY_PREFIX: &str = "hearth: listening on ";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary folder holding one data dir and the logs of every server
/// started on it.
pub struct Sandbox {
    tmp: tempfile::TempDir,
    starts: usize,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            tmp: tempfile::tempdir().expect("temp dir"),
            starts: 0,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// A folder `name` in the sandbox (created), next to the data dir: e.g.
    /// the files an import reads.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a sandbox folder");
        dir
    }

    /// Starts `hearth serve` on 127.0.0.1 (free port) over this sandbox's
    /// data dir, with `extra` flags, and waits for its ready line on stdout.
    pub async fn start(&mut self, extra: &[&str]) -> Server {
        self.start_env(extra, &[]).await
    }

    /// Like [`Sandbox::start`], with these `HEARTH_*` environment variables
    /// (for settings that have no flag); no other `HEARTH_*` variable of the
    /// test's own environment reaches the server.
    pub async fn start_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        self.starts += 1;
        let log = self.tmp.path().join(format!("server-{}.log", self.starts));
        Server::start(&self.data_dir(), &log, extra, env).await
    }
}

/// A running `hearth serve` child process. Dropping it kills the process
/// (SIGKILL) and waits for it, so no test leaves a process behind. Derefs to
/// its [`Http`] client.
pub struct Server {
    child: Option<Child>,
    pid: i32,
    pub http: Http,
}

impl std::ops::Deref for Server {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

/// A client for one server: cheap to clone into concurrent tasks.
#[derive(Clone)]
pub struct Http {
    /// `http://127.0.0.1:PORT`, as printed by the server.
    pub base: String,
    pub log: PathBuf,
    pub client: reqwest::Client,
}

impl Server {
    async fn start(data_dir: &Path, log: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let stderr = File::create(log).expect("create server log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // The configuration must come from the flags (and `env`) alone.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HEARTH_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            assert!(k.starts_with("HEARTH_"), "not a hearth setting: {k}");
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hearth");
        let pid = child.id() as i32;

        // A thread reads the first stdout line, hands it over, then drains
        // stdout until the process closes it.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });

        let mut server = Server {
            child: Some(child),
            pid,
            http: Http {
                base: String::new(),
                log: log.to_owned(),
                client: reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("http client"),
            },
        };
        let line = match tokio::time::timeout(READY_TIMEOUT, rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = server.child.as_mut().and_then(|c| c.wait().ok());
                panic!(
                    "hearth exited ({status:?}) before printing its ready line; stderr:\n{}",
                    server.log_text()
                )
            }
            Err(_) => panic!(
                "hearth printed no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                server.log_text()
            ),
        };
        let Some(url) = line.strip_prefix(READY_PREFIX) else {
            panic!(
                "unexpected first stdout line {line:?}; stderr:\n{}",
                server.log_text()
            )
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "not a loopback address: {url}"
        );
        server.http.base = url.trim_end_matches('/').to_owned();
        server
    }

    /// SIGTERM, then waits for the exit (failing after 30 s).
    pub async fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait().await
    }

    /// SIGKILL, then waits for the exit.
    pub async fn kill(mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait().await
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on the pid of our own child, not yet reaped
        // (`child` is still held, so the pid cannot have been reused).
        let rc = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid);
    }

    async fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server still running");
        let pid = self.pid;
        let waiting = tokio::task::spawn_blocking(move || child.wait());
        tokio::pin!(waiting);
        match tokio::time::timeout(STOP_TIMEOUT, &mut waiting).await {
            Ok(status) => status.expect("join").expect("wait for hearth"),
            Err(_) => {
                // SAFETY: as in `signal`; the blocking task still holds the child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = waiting.await;
                panic!(
                    "hearth did not exit within {STOP_TIMEOUT:?}; stderr:\n{}",
                    self.log_text()
                )
            }
        }
    }
}

impl Http {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends a request; `body` is sent as `application/fhir+json`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_send(method.clone(), path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; server stderr:\n{}", self.log_text()))
    }

    /// Sends raw bytes with the given content type (none if `None`).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_send_raw(method.clone(), path, body, content_type, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; server stderr:\n{}", self.log_text()))
    }

    /// Like [`Http::send`], but a transport failure is returned, not a panic.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, reqwest::Error> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialise body"));
        self.try_send_raw(method, path, bytes, Some(FHIR_JSON), headers)
            .await
    }

    pub async fn try_send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.client.request(method.clone(), self.url(path));
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            req = req.header("accept", FHIR_JSON);
        }
        if let Some(body) = body {
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req = req.body(body);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Resp {
            method,
            path: path.to_owned(),
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// Follows a Bundle's `next` links from `path` until there are none,
    /// returning the entries of each page. Panics after 10,000 pages.
    pub async fn all_pages(&self, path: &str) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(url) = next.take() {
            assert!(pages.len() < 10_000, "paging from {path} does not end");
            let page = self.get(&url).await.ok(200).json();
            assert_eq!(page["resourceType"], "Bundle", "{page}");
            pages.push(page["entry"].as_array().cloned().unwrap_or_default());
            next = bundle_link(&page, "next");
        }
        pages
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- hearth stderr ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A response read whole.
pub struct Resp {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    fn describe(&self) -> String {
        format!(
            "{} {} -> {}: {}",
            self.method,
            self.path,
            self.status,
            String::from_utf8_lossy(&self.body[..self.body.len().min(2000)])
        )
    }

    /// Asserts the status, returning `self` for chaining.
    #[track_caller]
    pub fn ok(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{}", self.describe());
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.describe()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    }

    /// Asserts an error response: this status, an FHIR JSON content type and
    /// an OperationOutcome body with at least one issue of severity error or
    /// fatal. Returns the OperationOutcome.
    #[track_caller]
    pub fn outcome(&self, status: u16) -> Value {
        if let Some(problem) = self.outcome_problem(status) {
            panic!("{problem}");
        }
        self.json()
    }

    /// What keeps this from being the error response [`Resp::outcome`]
    /// asserts, if anything.
    pub fn outcome_problem(&self, status: u16) -> Option<String> {
        if self.status != status {
            return Some(format!("expected {status}: {}", self.describe()));
        }
        let ct = self.header("content-type").unwrap_or_default();
        if !ct.starts_with(FHIR_JSON) {
            return Some(format!("content type {ct:?}: {}", self.describe()));
        }
        let Ok(oo) = serde_json::from_slice::<Value>(&self.body) else {
            return Some(format!("not JSON: {}", self.describe()));
        };
        if oo["resourceType"] != "OperationOutcome" {
            return Some(format!("not an OperationOutcome: {}", self.describe()));
        }
        let issues = oo["issue"].as_array().cloned().unwrap_or_default();
        if !issues
            .iter()
            .any(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
        {
            return Some(format!("no error issue: {}", self.describe()));
        }
        None
    }
}

/// The `url` of the Bundle link with this relation.
pub fn bundle_link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// `"W/\"3\""` → 3.
#[track_caller]
pub fn etag_version(etag: &str) -> u64 {
    etag.strip_prefix("W/\"")
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a weak version ETag: {etag:?}"))
}

/// `("Type/id", version)` of a history Bundle entry: from the resource's
/// `meta.versionId`, or for a delete (no resource) from `request.url` and
/// `response.etag`.
#[track_caller]
pub fn history_key(entry: &Value) -> (String, u64) {
    let r = &entry["resource"];
    if r.is_object() {
        let key = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        return (key, version_of(r));
    }
    assert_eq!(
        entry["request"]["method"], "DELETE",
        "an entry without a resource: {entry}"
    );
    let url = entry["request"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no request.url: {entry}"));
    let etag = entry["response"]["etag"]
        .as_str()
        .unwrap_or_else(|| panic!("no response.etag: {entry}"));
    (url.to_owned(), etag_version(etag))
}

/// `meta.versionId` as a number.
#[track_caller]
pub fn version_of(resource: &Value) -> u64 {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric meta.versionId: {resource}"))
}

/// A copy without the server-managed `meta.versionId` / `meta.lastUpdated`
/// (and without `meta` if nothing else was in it), for comparing content.
pub fn without_server_meta(resource: &Value) -> Value {
    let mut r = resource.clone();
    if let Some(obj) = r.as_object_mut() {
        let empty = match obj.get_mut("meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("meta");
        }
    }
    r
}

/// The synthea-100 data set shipped in `tests/data`.
pub fn synthea_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/synthea-100")
}

/// Every resource of an NDJSON data set folder (gunzipped as needed), parsed,
/// with the type named by its file.
pub fn read_dataset(dir: &Path) -> Vec<(String, Value)> {
    hearth::dataset::read_dir_resources(dir)
        .expect("data set folder")
        .map(|item| {
            let (rtype, line) = item.expect("data set line");
            let value: Value = serde_json::from_slice(&line).expect("data set line is JSON");
            (rtype.to_string(), value)
        })
        .collect()
}

/// Lines per type counted straight from the gzipped files, independently of
/// the NDJSON reader in `hearth::dataset`.
pub fn count_lines_gz(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("data set folder") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(rtype) = name.strip_suffix(".ndjson.gz") else {
            continue;
        };
        let reader = BufReader::new(flate2::read::GzDecoder::new(File::open(&path).unwrap()));
        let n = reader
            .lines()
            .map(|l| l.expect("gzip line"))
            .filter(|l| !l.trim().is_empty())
            .count();
        *counts.entry(rtype.to_owned()).or_default() += n as u64;
    }
    counts
}

/// Opens the store of a stopped server directly.
pub fn open_store(data_dir: &Path) -> hearth::store::sled::SledStore {
    hearth::store::sled::SledStore::open(data_dir).expect("open the stopped server's store")
}

/// Collects a store iterator, failing on the first error.
pub fn collect_versions(iter: hearth::store::VersionIter) -> Vec<hearth::store::StoredVersion> {
    iter.map(|v| v.expect("store iterator item")).collect()
}

/// The instant that sees every acknowledged commit.
pub fn latest(store: &dyn hearth::store::Store) -> hearth::fhir::Instant {
    store.now().expect("store clock")
}

/// `Type/id` of a resource.
#[track_caller]
pub fn key_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"]
            .as_str()
            .unwrap_or_else(|| panic!("no resourceType: {resource}")),
        resource["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id: {resource}"))
    )
}

/// gunzips a whole body.
#[track_caller]
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

impl Http {
    /// Writes `data` through transaction Bundles of `per_bundle` entries
    /// `PUT Type/id` (ids kept), asserting that every entry created its
    /// resource (201). Returns the `lastModified` of the last commit.
    pub async fn load_transactions(&self, data: &[(String, Value)], per_bundle: usize) -> String {
        let mut last = String::new();
        for chunk in data.chunks(per_bundle) {
            let entries: Vec<Value> = chunk
                .iter()
                .map(|(rtype, r)| {
                    let url = format!("{rtype}/{}", r["id"].as_str().expect("id"));
                    serde_json::json!({"resource": r, "request": {"method": "PUT", "url": url}})
                })
                .collect();
            let n = entries.len();
            let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let resp = self
                .send(
                    Method::POST,
                    "/",
                    Some(&bundle),
                    &[("prefer", "return=minimal")],
                )
                .await
                .ok(200)
                .json();
            let out = resp["entry"]
                .as_array()
                .expect("transaction-response entries");
            assert_eq!(out.len(), n);
            for e in out {
                assert!(
                    e["response"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("201"),
                    "{e}"
                );
                last = e["response"]["lastModified"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no lastModified: {e}"))
                    .to_owned();
            }
        }
        last
    }

    /// The path (and query) of `url` on this server: status and file URLs
    /// handed out by an earlier process on the same data dir name another
    /// port.
    #[track_caller]
    pub fn local(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("not a loopback URL: {url}"));
        let slash = rest.find('/').unwrap_or(rest.len());
        self.url(&rest[slash..])
    }
}

// ---------------------------------------------------------------------------
// The independent Patient-compartment oracle (from the NDJSON alone).

/// Where synthea-100 puts `Patient/...` references, per type, as dotted
/// element paths (array levels are transparent). `contained.*` paths of
/// ExplanationOfBenefit always name the same patient as its `patient`.
///
/// For every type here except Device, each path is named by the type's
/// params in the R4 Patient CompartmentDefinition (`patient`, `subject`,
/// `participant` → CareTeam.participant.member, ...). R4 lists Device with no
/// params, so a Device is in no Patient compartment although `Device.patient`
/// points at one. Hence, for this data set, "a resource of a type other than
/// Device (or the Patient itself) is in the compartment of Patient/x iff any
/// `reference` anywhere in it equals `Patient/x`" is the CompartmentDefinition's
/// rule; [`check_reference_paths`] verifies the premise on the data.
const PATIENT_REFERENCE_PATHS: &[(&str, &[&str])] = &[
    ("AllergyIntolerance", &["patient"]),
    ("CarePlan", &["subject"]),
    ("CareTeam", &["subject", "participant.member"]),
    ("Claim", &["patient"]),
    ("Condition", &["subject"]),
    ("Device", &["patient"]),
    ("DiagnosticReport", &["subject"]),
    ("Encounter", &["subject"]),
    (
        "ExplanationOfBenefit",
        &["patient", "contained.subject", "contained.beneficiary"],
    ),
    ("ImagingStudy", &["subject"]),
    ("Immunization", &["patient"]),
    ("MedicationRequest", &["subject"]),
    ("Observation", &["subject"]),
    ("Procedure", &["subject"]),
];

/// `(dotted path, reference)` of every `reference` string in `value`.
pub fn references(value: &Value, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == "reference" => out.push((path.join("."), s.clone())),
                    _ => {
                        path.push(k.clone());
                        references(v, path, out);
                        path.pop();
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, path, out)),
        _ => {}
    }
}

fn patient_references(resource: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    references(resource, &mut Vec::new(), &mut out);
    out.retain(|(_, r)| r.starts_with("Patient/"));
    out
}

/// The premise of the oracle: Patient references only at the listed paths,
/// and EOB's contained ones agree with `ExplanationOfBenefit.patient`.
pub fn check_reference_paths(data: &[(String, Value)]) {
    let allowed: HashMap<&str, &[&str]> = PATIENT_REFERENCE_PATHS.iter().copied().collect();
    let mut devices_with_patient = 0;
    for (rtype, r) in data {
        for (path, reference) in patient_references(r) {
            let ok = allowed
                .get(rtype.as_str())
                .is_some_and(|paths| paths.contains(&path.as_str()));
            assert!(ok, "{rtype}/{} has a Patient reference at {path}", r["id"]);
            if path.starts_with("contained.") {
                assert_eq!(
                    r["patient"]["reference"],
                    reference.as_str(),
                    "{rtype}/{}",
                    r["id"]
                );
            }
            if rtype == "Device" {
                devices_with_patient += 1;
            }
        }
    }
    assert!(
        devices_with_patient > 0,
        "the data set was expected to have Devices pointing at patients"
    );
}

/// The oracle: patient id → `Type/id` of every member of its compartment
/// (the Patient itself included).
pub fn expected_compartments(data: &[(String, Value)]) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (rtype, r) in data {
        let key = format!("{rtype}/{}", r["id"].as_str().unwrap());
        if rtype == "Patient" {
            out.entry(r["id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(key.clone());
        }
        if rtype == "Device" || rtype == "Patient" {
            continue;
        }
        for (_, reference) in patient_references(r) {
            let patient = reference.strip_prefix("Patient/").unwrap().to_owned();
            out.entry(patient).or_default().insert(key.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// `$export` client.

/// The kick-off headers the Bulk Data spec requires.
pub const KICKOFF_HEADERS: &[(&str, &str)] = &[("accept", FHIR_JSON), ("prefer", "respond-async")];
/// The same with lenient handling of unsupported parameters.
pub const LENIENT_HEADERS: &[(&str, &str)] = &[
    ("accept", FHIR_JSON),
    ("prefer", "respond-async, handling=lenient"),
];
pub const NDJSON: &str = "application/fhir+ndjson";
/// Environment settings of the export engine (no flags for them).
pub const FILE_MAX_ENV: &str = "HEARTH_EXPORT__FILE_MAX_RESOURCES";
pub const MAX_EXPORTS_ENV: &str = "HEARTH_JOBS__MAX_CONCURRENT_EXPORTS";

const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_CAP: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// One file of a manifest's `output`, `deleted` or `error` list, downloaded
/// and parsed.
#[derive(Debug)]
pub struct ExportFile {
    /// The entry's `type`.
    pub rtype: String,
    pub url: String,
    pub bytes: Vec<u8>,
    pub lines: Vec<Value>,
}

impl ExportFile {
    /// The last segment of the URL.
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }
}

/// The ids of the Patients of a data set, sorted.
pub fn patients_of(data: &[(String, Value)]) -> Vec<String> {
    let mut ids: Vec<String> = data
        .iter()
        .filter(|(t, _)| t == "Patient")
        .map(|(_, r)| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The ids of the Patients exported in `files`.
pub fn patient_ids(files: &[ExportFile]) -> BTreeSet<String> {
    files
        .iter()
        .filter(|f| f.rtype == "Patient")
        .flat_map(|f| f.lines.iter().map(|l| l["id"].as_str().unwrap().to_owned()))
        .collect()
}

impl Resp {
    /// Asserts an accepted kick-off: 202 and an absolute `Content-Location`
    /// `{base}/_operations/export/{id}`, which is returned.
    #[track_caller]
    pub fn accepted(&self, base: &str) -> String {
        self.accepted_for(base, "export")
    }

    /// The same for `operation` (`export`, `import`).
    #[track_caller]
    pub fn accepted_for(&self, base: &str, operation: &str) -> String {
        assert_eq!(self.status, 202, "{}", self.describe());
        let loc = self
            .header("content-location")
            .unwrap_or_else(|| panic!("no Content-Location: {}", self.describe()));
        let prefix = format!("{base}/_operations/{operation}/");
        let id = loc
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("Content-Location {loc:?} is not {prefix}{{id}}"));
        assert!(
            !id.is_empty() && !id.contains('/'),
            "Content-Location {loc:?}"
        );
        loc
    }

    /// The body as text (for messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A FHIR `Parameters` resource of `(name, value[x] key, value)` triples.
pub fn parameters(params: &[(&str, &str, Value)]) -> Value {
    let parameter: Vec<Value> = params
        .iter()
        .map(|(name, kind, value)| serde_json::json!({"name": name, *kind: value}))
        .collect();
    serde_json::json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The lines a finished `$import` wrote: the sum of its `output` counts.
pub fn imported_count(done: &Value) -> u64 {
    let output = done["output"].as_array().unwrap();
    output.iter().map(|o| o["count"].as_u64().unwrap()).sum()
}

/// The `patient` parameter naming `Patient/{id}`, for [`parameters`].
pub fn patient_param(id: impl std::fmt::Display) -> (&'static str, &'static str, Value) {
    let reference = serde_json::json!({"reference": format!("Patient/{id}")});
    ("patient", "valueReference", reference)
}

/// A `Parameters` resource naming each of `ids` as a `patient`.
pub fn patient_parameters<T: std::fmt::Display>(ids: impl IntoIterator<Item = T>) -> Value {
    let params: Vec<_> = ids.into_iter().map(patient_param).collect();
    parameters(&params)
}

/// `application/x-www-form-urlencoded`-style encoding of one query value
/// (everything but unreserved characters escaped).
pub fn enc(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Http {
    /// `GET path` (query included) with the kick-off headers.
    pub async fn kickoff(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, KICKOFF_HEADERS).await
    }

    /// `POST path` with a `Parameters` body and the kick-off headers.
    pub async fn kickoff_post(&self, path: &str, params: &Value) -> Resp {
        self.send(Method::POST, path, Some(params), KICKOFF_HEADERS)
            .await
    }

    /// Polls a status URL (of an export or an import) until it answers
    /// anything but 202: first after 50 ms, then doubling up to 1 s, failing
    /// after 120 s. Every 202 must carry `X-Progress` and a numeric
    /// `Retry-After`.
    pub async fn poll_export(&self, status_url: &str) -> Resp {
        let started = std::time::Instant::now();
        let mut delay = POLL_FIRST;
        let mut progress = Vec::new();
        loop {
            let resp = self.get(status_url).await;
            if resp.status != 202 {
                return resp;
            }
            let p = resp.header("x-progress").unwrap_or_else(|| {
                panic!(
                    "a 202 status answer without X-Progress: {}",
                    resp.describe()
                )
            });
            let retry = resp.header("retry-after").unwrap_or_else(|| {
                panic!(
                    "a 202 status answer without Retry-After: {}",
                    resp.describe()
                )
            });
            assert!(
                retry.trim().parse::<u64>().is_ok(),
                "Retry-After {retry:?} is not delay-seconds"
            );
            progress.push(p);
            assert!(
                started.elapsed() < EXPORT_TIMEOUT,
                "{status_url} still running after {EXPORT_TIMEOUT:?}; last X-Progress {:?}; stderr:\n{}",
                progress.last(),
                self.log_text()
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_CAP);
        }
    }

    /// Polls a running job's status URL until it reports progress (some
    /// resources done); fails if it ends first or makes none in 120 s.
    pub async fn await_progress(&self, status_url: &str) {
        let started = std::time::Instant::now();
        loop {
            let resp = self.get(status_url).await;
            assert_eq!(
                resp.status,
                202,
                "the job ended before it was seen under way (make the input bigger): {}",
                resp.text()
            );
            if resp.progress().0 > 0 {
                return;
            }
            assert!(
                started.elapsed() < EXPORT_TIMEOUT,
                "{status_url}: no progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Polls until done and checks the manifest: 200 with `Expires`,
    /// `transactionTime` an instant, `request` the kick-off URL (when
    /// given), `requiresAccessToken` false, `output`/`error` arrays of
    /// `{type, url}` under this server, `deleted` absent or such an array.
    pub async fn await_manifest(&self, status_url: &str, request: Option<&str>) -> Value {
        let resp = self.poll_export(status_url).await.ok(200);
        let expires = resp
            .header("expires")
            .unwrap_or_else(|| panic!("manifest without Expires: {}", resp.describe()));
        let expires = time::PrimitiveDateTime::parse(
            &expires,
            time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ),
        )
        .unwrap_or_else(|e| panic!("Expires {expires:?} is not an HTTP-date: {e}"))
        .assume_utc();
        assert!(
            expires > time::OffsetDateTime::now_utc(),
            "Expires {expires} is not in the future"
        );
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(ct.contains("json"), "manifest content type {ct:?}");
        let m = resp.json();
        let tt = m["transactionTime"]
            .as_str()
            .unwrap_or_else(|| panic!("no transactionTime: {m}"));
        hearth::fhir::Instant::parse(tt).unwrap_or_else(|e| panic!("transactionTime: {e}"));
        assert!(m["request"].is_string(), "no request: {m}");
        if let Some(request) = request {
            assert_eq!(m["request"], request, "manifest request");
        }
        assert_eq!(m["requiresAccessToken"], false, "{m}");
        for list in ["output", "error", "deleted"] {
            if list == "deleted" && m.get("deleted").is_none() {
                continue;
            }
            let entries = m[list]
                .as_array()
                .unwrap_or_else(|| panic!("manifest {list} is not an array: {m}"));
            for e in entries {
                assert!(e["type"].is_string(), "{list} entry without type: {e}");
                let url = e["url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{list} entry without url: {e}"));
                assert!(
                    url.starts_with(&format!("{}/", self.base)),
                    "{list} url {url} is not an absolute URL of this server"
                );
                if list == "output" {
                    assert!(e["count"].is_u64(), "output entry without count: {e}");
                }
            }
        }
        m
    }

    /// Kicks off with `GET path`, expects 202 and returns the status URL.
    pub async fn start_export(&self, path: &str) -> String {
        self.kickoff(path).await.accepted(&self.base)
    }

    /// `GET path` kick-off, then the checked manifest. Returns (status
    /// URL, manifest).
    pub async fn export(&self, path: &str) -> (String, Value) {
        let status = self.start_export(path).await;
        let manifest = self.await_manifest(&status, Some(&self.url(path))).await;
        (status, manifest)
    }

    /// `POST path` kick-off with `params`, then the checked manifest.
    pub async fn export_post(&self, path: &str, params: &Value) -> (String, Value) {
        let status = self.kickoff_post(path, params).await.accepted(&self.base);
        let manifest = self.await_manifest(&status, None).await;
        (status, manifest)
    }

    /// `GET url` of an export file with `Accept: application/fhir+ndjson`
    /// and `extra` headers.
    pub async fn download(&self, url: &str, extra: &[(&str, &str)]) -> Resp {
        let mut headers = vec![("accept", NDJSON)];
        headers.extend_from_slice(extra);
        self.send(Method::GET, url, None, &headers).await
    }

    /// Downloads every file of the manifest's `list` (`output`, `deleted`
    /// or `error`; absent = none) and checks each: 200,
    /// `application/fhir+ndjson`, every line a JSON object of the entry's
    /// type, as many lines as its `count`.
    pub async fn files(&self, manifest: &Value, list: &str) -> Vec<ExportFile> {
        let mut out = Vec::new();
        for e in manifest[list].as_array().into_iter().flatten() {
            let rtype = e["type"].as_str().unwrap().to_owned();
            let url = e["url"].as_str().unwrap().to_owned();
            let resp = self.download(&url, &[]).await.ok(200);
            let ct = resp.header("content-type").unwrap_or_default();
            assert!(ct.starts_with(NDJSON), "{url}: content type {ct:?}");
            let lines = parse_ndjson(&resp.body, &url);
            for line in &lines {
                assert_eq!(
                    line["resourceType"],
                    rtype.as_str(),
                    "{url}: a line of another type"
                );
            }
            let count = e["count"].as_u64();
            if let Some(count) = count {
                assert_eq!(lines.len() as u64, count, "{url}: lines vs manifest count");
            }
            out.push(ExportFile {
                rtype,
                url,
                bytes: resp.body,
                lines,
            });
        }
        out
    }

    /// Writes an HTTP/1.1 request by hand (`head` without the Host and
    /// Connection lines and without the blank line) and returns the status
    /// and the raw response text: for requests reqwest cannot make, such
    /// as one without any `Accept` header.
    pub async fn raw_request(&self, head: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.base.strip_prefix("http://").unwrap();
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        let text = format!(
            "{}\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            head.trim_end()
        );
        stream.write_all(text.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("answer within 60 s")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
        (status, answer)
    }
}

/// Every line of an NDJSON body, each a JSON object; the body must end with
/// a newline (no half-written last line) and have no blank lines.
#[track_caller]
pub fn parse_ndjson(body: &[u8], what: &str) -> Vec<Value> {
    if body.is_empty() {
        return Vec::new();
    }
    assert_eq!(
        body.last(),
        Some(&b'\n'),
        "{what}: the last line is not terminated"
    );
    body[..body.len() - 1]
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{what}: line {} is not JSON ({e}): {}",
                    i + 1,
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                )
            });
            assert!(v.is_object(), "{what}: line {} is not an object", i + 1);
            v
        })
        .collect()
}

/// The lines of `files` by `Type/id`, failing on any repeated resource.
#[track_caller]
pub fn by_key(files: &[ExportFile]) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    for f in files {
        for line in &f.lines {
            let key = key_of(line);
            assert!(
                out.insert(key.clone(), line).is_none(),
                "{key} exported twice (again in {})",
                f.url
            );
        }
    }
    out
}

/// Lines per type over `files`.
pub fn count_by_type(files: &[ExportFile]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for f in files {
        *out.entry(f.rtype.clone()).or_default() += f.lines.len() as u64;
    }
    out
}

/// The `Type/id` of every DELETE entry of the transaction Bundles in a
/// manifest's `deleted` files (each must be a `transaction` Bundle of
/// entries `request: {method: DELETE, url: Type/id}`), failing on repeats.
#[track_caller]
pub fn deleted_keys(files: &[ExportFile]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        assert_eq!(f.rtype, "Bundle", "{}: deleted files hold Bundles", f.url);
        for bundle in &f.lines {
            assert_eq!(bundle["type"], "transaction", "{}: {bundle}", f.url);
            for e in bundle["entry"].as_array().into_iter().flatten() {
                assert_eq!(e["request"]["method"], "DELETE", "{}: {e}", f.url);
                let url = e["request"]["url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no request.url: {e}"));
                let mut parts = url.split('/');
                let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(t), Some(id), None) if !t.is_empty() && !id.is_empty());
                assert!(ok, "request.url {url:?} is not Type/id");
                assert!(out.insert(url.to_owned()), "{url} listed as deleted twice");
            }
        }
    }
    out
}

/// The issues of the OperationOutcome lines in a manifest's `error` files.
pub fn outcome_issues(files: &[ExportFile]) -> Vec<Value> {
    let mut out = Vec::new();
    for f in files {
        for line in &f.lines {
            assert_eq!(
                line["resourceType"], "OperationOutcome",
                "{}: {line}",
                f.url
            );
            out.extend(line["issue"].as_array().cloned().unwrap_or_default());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// `$import` client.

/// The kick-off header `$import` requires (the body goes as
/// `application/fhir+json`).
pub const IMPORT_HEADERS: &[(&str, &str)] = &[("prefer", "respond-async")];
/// Environment settings of imports and the job engine (no flags for them):
/// the import source folders (a list, `["/a","/b"]`), the byte range size,
/// the number of job workers.
pub const IMPORT_SOURCES_ENV: &str = "HEARTH_IMPORT__SOURCES";
pub const RANGE_BYTES_ENV: &str = "HEARTH_IMPORT__RANGE_BYTES";
pub const WORKERS_ENV: &str = "HEARTH_JOBS__WORKERS";

/// `file://` URL of a local file, as an `$import` input names it.
pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A small valid Patient.
pub fn patient(id: &str) -> Value {
    serde_json::json!({"resourceType": "Patient", "id": id, "gender": "female"})
}

/// A local file's entity tag as the import sources document it:
/// `"<length hex>-<mtime ns hex>"`.
pub fn local_etag(path: &Path) -> String {
    let meta = std::fs::metadata(path).expect("stat an input file");
    let mtime = meta
        .modified()
        .expect("modification time")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos();
    format!("\"{:x}-{mtime:x}\"", meta.len())
}

/// One `input` parameter: `type` (when given), `url`, `etag` (when given).
pub fn import_input(rtype: Option<&str>, url: &str, etag: Option<&str>) -> Value {
    let mut parts = Vec::new();
    if let Some(rtype) = rtype {
        parts.push(serde_json::json!({"name": "type", "valueString": rtype}));
    }
    parts.push(serde_json::json!({"name": "url", "valueUri": url}));
    if let Some(etag) = etag {
        parts.push(serde_json::json!({"name": "etag", "valueString": etag}));
    }
    serde_json::json!({"name": "input", "part": parts})
}

/// A kick-off body: `inputFormat` NDJSON, `mode` (when given), `extra`
/// parameters, then `inputs` (from [`import_input`]).
pub fn import_body(mode: Option<&str>, extra: &[Value], inputs: &[Value]) -> Value {
    let mut parameter = vec![serde_json::json!({"name": "inputFormat", "valueString": NDJSON})];
    if let Some(mode) = mode {
        parameter.push(serde_json::json!({"name": "mode", "valueString": mode}));
    }
    parameter.extend(extra.iter().cloned());
    parameter.extend(inputs.iter().cloned());
    serde_json::json!({"resourceType": "Parameters", "parameter": parameter})
}

/// One NDJSON file written for an import.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub rtype: String,
    pub path: PathBuf,
    pub url: String,
    /// Non-empty lines.
    pub lines: u64,
}

/// Writes synthea-100 as plain `<Type>.ndjson` files into `dir` (the gzip
/// files decompressed byte for byte); returns them in name order.
pub fn write_synthea(dir: &Path) -> Vec<InputFile> {
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(synthea_dir())
        .expect("data set folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    names.sort();
    for gz in names {
        let name = gz.file_name().unwrap().to_string_lossy().into_owned();
        let rtype = name.strip_suffix(".ndjson.gz").unwrap().to_owned();
        let bytes = gunzip(&std::fs::read(&gz).expect("read gzip"));
        let path = dir.join(format!("{rtype}.ndjson"));
        std::fs::write(&path, &bytes).expect("write an input file");
        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count() as u64;
        out.push(InputFile {
            url: file_url(&path),
            rtype,
            path,
            lines,
        });
    }
    out
}

/// The `input` parameters of `files`, typed.
pub fn typed_inputs(files: &[InputFile]) -> Vec<Value> {
    files
        .iter()
        .map(|f| import_input(Some(&f.rtype), &f.url, None))
        .collect()
}

impl Http {
    /// `POST /$import` with `body` and the kick-off header.
    pub async fn kickoff_import(&self, body: &Value) -> Resp {
        self.send(Method::POST, "/$import", Some(body), IMPORT_HEADERS)
            .await
    }

    /// Kicks off, expects 202 and returns the status URL.
    pub async fn start_import(&self, body: &Value) -> String {
        self.kickoff_import(body)
            .await
            .accepted_for(&self.base, "import")
    }

    /// Polls an import until done and checks the status body: 200, JSON,
    /// `transactionTime` an instant, `request` this server's `/$import`,
    /// `output` entries `{type, count, inputUrl}`, `error` entries
    /// `{type: OperationOutcome, count, inputUrl, url}` with the url under
    /// this server's status URL.
    pub async fn await_import(&self, status_url: &str) -> Value {
        let resp = self.poll_export(status_url).await.ok(200);
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(ct.contains("json"), "import status content type {ct:?}");
        let body = resp.json();
        let tt = body["transactionTime"]
            .as_str()
            .unwrap_or_else(|| panic!("no transactionTime: {body}"));
        hearth::fhir::Instant::parse(tt).unwrap_or_else(|e| panic!("transactionTime: {e}"));
        assert!(
            body["request"]
                .as_str()
                .is_some_and(|r| r.ends_with("/$import")),
            "request: {body}"
        );
        for e in body["output"]
            .as_array()
            .unwrap_or_else(|| panic!("output is not an array: {body}"))
        {
            assert!(e["count"].is_u64(), "output entry without count: {e}");
            assert!(
                e["inputUrl"].is_string(),
                "output entry without inputUrl: {e}"
            );
        }
        let status = if status_url.starts_with("http://") {
            self.local(status_url)
        } else {
            self.url(status_url)
        };
        let files = format!("{status}/errors/");
        for e in body["error"]
            .as_array()
            .unwrap_or_else(|| panic!("error is not an array: {body}"))
        {
            assert_eq!(e["type"], "OperationOutcome", "{e}");
            assert!(e["count"].is_u64(), "error entry without count: {e}");
            assert!(
                e["inputUrl"].is_string(),
                "error entry without inputUrl: {e}"
            );
            let url = e["url"].as_str().unwrap_or_else(|| panic!("no url: {e}"));
            assert!(
                self.local(url).starts_with(&files),
                "error url {url} is not under {files}"
            );
        }
        body
    }

    /// Kick-off, then the checked status body. Returns (status URL, body).
    pub async fn import(&self, body: &Value) -> (String, Value) {
        let status = self.start_import(body).await;
        let done = self.await_import(&status).await;
        (status, done)
    }

    /// The error files of a completed import by input URL, each downloaded
    /// (200, `application/fhir+ndjson`), every line an OperationOutcome, as
    /// many lines as the entry's `count`.
    pub async fn import_errors(&self, done: &Value) -> BTreeMap<String, Vec<Value>> {
        let mut out = BTreeMap::new();
        for e in done["error"].as_array().into_iter().flatten() {
            let url = e["url"].as_str().unwrap();
            let resp = self.download(&self.local(url), &[]).await.ok(200);
            let ct = resp.header("content-type").unwrap_or_default();
            assert!(ct.starts_with(NDJSON), "{url}: content type {ct:?}");
            let lines = parse_ndjson(&resp.body, url);
            for line in &lines {
                assert_eq!(line["resourceType"], "OperationOutcome", "{url}: {line}");
            }
            assert_eq!(
                Some(lines.len() as u64),
                e["count"].as_u64(),
                "{url}: count"
            );
            let input = e["inputUrl"].as_str().unwrap().to_owned();
            assert!(
                out.insert(input.clone(), lines).is_none(),
                "two error files for {input}"
            );
        }
        out
    }
}

impl Resp {
    /// `X-Progress` of a 202 as (done, total): `12,000 lines read` is
    /// (12000, None), `42% (12,000 of 28,500 lines read)` (12000,
    /// Some(28500)); (0, None) without a number.
    pub fn progress(&self) -> (u64, Option<u64>) {
        let text = self.header("x-progress").unwrap_or_default();
        let number = |s: &str| -> Option<u64> {
            let digits: String = s
                .split_whitespace()
                .next()?
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let counts = text.split_once('(').map_or(text.as_str(), |(_, c)| c);
        let total = counts.split_once(" of ").and_then(|(_, t)| number(t));
        (number(counts).unwrap_or(0), total)
    }
}

/// `inputUrl` → `count` of a status body's `output` (or `error`) list.
pub fn counts_by_input(done: &Value, list: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in done[list].as_array().into_iter().flatten() {
        let url = e["inputUrl"].as_str().unwrap().to_owned();
        *out.entry(url).or_default() += e["count"].as_u64().unwrap();
    }
    out
}

/// One version as the history API shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryVersion {
    pub version: u64,
    /// `response.lastModified` of the history entry.
    pub last_updated: String,
    pub deleted: bool,
}

impl Http {
    /// Every version of every resource of `rtype` through
    /// `GET /{rtype}/_history` (all pages): id → versions, oldest first.
    /// Fails if a version appears twice.
    pub async fn type_history(&self, rtype: &str) -> BTreeMap<String, Vec<HistoryVersion>> {
        let mut out: BTreeMap<String, Vec<HistoryVersion>> = BTreeMap::new();
        for page in self
            .all_pages(&format!("/{rtype}/_history?_count=1000"))
            .await
        {
            for entry in page {
                let (key, version) = history_key(&entry);
                let id = key
                    .strip_prefix(&format!("{rtype}/"))
                    .unwrap_or_else(|| panic!("{key} in the history of {rtype}"))
                    .to_owned();
                let last_updated = entry["response"]["lastModified"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no response.lastModified: {entry}"))
                    .to_owned();
                let deleted = entry["request"]["method"] == "DELETE";
                out.entry(id).or_default().push(HistoryVersion {
                    version,
                    last_updated,
                    deleted,
                });
            }
        }
        for (id, versions) in out.iter_mut() {
            versions.sort();
            let before = versions.len();
            versions.dedup_by_key(|v| v.version);
            assert_eq!(
                before,
                versions.len(),
                "{rtype}/{id}: a version listed twice"
            );
        }
        out
    }
}

/// Writes `copies` copies of synthea-100 into `dir` as
/// `<Type>-<k>.ndjson`, copy `k` with every resource id suffixed `-k`
/// (references are left alone): a bigger load of distinct resources.
pub fn write_synthea_copies(dir: &Path, copies: usize) -> Vec<InputFile> {
    let source = synthea_lines();
    let mut out = Vec::new();
    for k in 0..copies {
        for (rtype, lines) in &source {
            let mut text = Vec::new();
            for line in lines {
                let mut r: Value = serde_json::from_slice(line).expect("synthea line");
                let id = format!("{}-{k}", r["id"].as_str().expect("id"));
                r["id"] = Value::String(id);
                text.extend_from_slice(&serde_json::to_vec(&r).unwrap());
                text.push(b'\n');
            }
            let path = dir.join(format!("{rtype}-{k}.ndjson"));
            std::fs::write(&path, &text).expect("write an input file");
            out.push(InputFile {
                rtype: rtype.clone(),
                url: file_url(&path),
                path,
                lines: lines.len() as u64,
            });
        }
    }
    out
}

/// synthea-100's lines by type, in file order.
fn synthea_lines() -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for item in hearth::dataset::read_dir_resources(&synthea_dir()).expect("data set folder") {
        let (rtype, line) = item.expect("data set line");
        out.entry(rtype.to_string()).or_default().push(line);
    }
    out
}

/// Downloads the output of a finished export and checks it is exactly
/// `expected` (`Type/id` set), no resource twice, each line equal to its
/// source but for server meta. Returns the files.
pub async fn check_export_lines(
    srv: &Http,
    manifest: &Value,
    sources: &HashMap<String, &Value>,
    expected: &BTreeSet<String>,
    what: &str,
) -> Vec<ExportFile> {
    let files = srv.files(manifest, "output").await;
    let got = by_key(&files);
    let got_keys: BTreeSet<String> = got.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&got_keys).take(10).collect();
    let extra: Vec<&String> = got_keys.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} exported, {} expected; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        got_keys.len(),
        expected.len()
    );
    for (key, line) in got {
        assert_eq!(
            without_server_meta(line),
            without_server_meta(sources[&key]),
            "{what}: {key} differs from its source"
        );
    }
    files
}

/// Resources per type among `keys` (`Type/id`).
pub fn per_type(keys: &BTreeSet<String>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in keys {
        let rtype = k.split('/').next().unwrap_or_default();
        *out.entry(rtype.to_owned()).or_default() += 1;
    }
    out
}

/// Azurite in the sandbox, and the account `dev` on it as the tests see it.
pub fn azurite(sandbox: &Sandbox) -> (Azurite, Accounts) {
    let azurite = Azurite::start(&sandbox.dir("azurite")).expect("start Azurite");
    let mut config = AzureConfig::default();
    config.accounts.insert("dev".into(), azurite.account());
    (azurite, Accounts::new(&config).expect("accounts"))
}

/// The `HEARTH_*` variables that configure account `dev` at `endpoint`
/// (an [`Azurite::endpoint`]) for a server.
pub fn dev_account_env(endpoint: &str) -> [(&'static str, &str); 3] {
    [
        ("HEARTH_AZURE__ACCOUNTS__DEV__ACCOUNT", "devstoreaccount1"),
        ("HEARTH_AZURE__ACCOUNTS__DEV__ENDPOINT", endpoint),
        ("HEARTH_AZURE__ACCOUNTS__DEV__CREDENTIAL__KIND", "emulator"),
    ]
}
