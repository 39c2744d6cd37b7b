//! Shared helpers: start/stop the real `hearth` binary, HTTP requests with
//! FHIR JSON, reading the synthea data set. Every test uses these; nothing
//! here is duplicated in the test files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

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

    /// Starts `hearth serve` on 127.0.0.1 (free port) over this sandbox's
    /// data dir, with `extra` flags, and waits for its ready line on stdout.
    pub async fn start(&mut self, extra: &[&str]) -> Server {
        self.starts += 1;
        let log = self.tmp.path().join(format!("server-{}.log", self.starts));
        Server::start(&self.data_dir(), &log, extra).await
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
    async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> Server {
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
        // The configuration must come from the flags alone.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HEARTH_") {
                cmd.env_remove(k);
            }
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
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialise body"));
        self.send_raw(method, path, bytes, Some(FHIR_JSON), headers)
            .await
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
        assert_eq!(self.status, status, "{}", self.describe());
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(FHIR_JSON),
            "content type {ct:?}: {}",
            self.describe()
        );
        let oo = self.json();
        assert_eq!(
            oo["resourceType"],
            "OperationOutcome",
            "{}",
            self.describe()
        );
        let issues = oo["issue"].as_array().cloned().unwrap_or_default();
        assert!(
            issues
                .iter()
                .any(|i| matches!(i["severity"].as_str(), Some("error" | "fatal"))),
            "no error issue: {}",
            self.describe()
        );
        oo
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
