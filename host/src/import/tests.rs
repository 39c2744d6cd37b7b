//! The import handler end to end, in process: a real SledStore (data and
//! jobs) in a temporary directory, real input files, the embedded default
//! plugins, and `run` called as the engine would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::request::{ImportInput, ImportMode, ImportRequest, SourceUrl};
use super::result::ImportResult;
use super::source::{ImportSources, file_url};
use super::{ImportConfig, ImportHandler, error_file_path, session_of};
use crate::fhir::resource::Resource;
use crate::fhir::{Instant, ResourceId, ResourceType};
use crate::jobs::{Heartbeat, JobContext, JobFailure, JobHandler, JobKind, JobRecord, JobStore};
use crate::store::sled::SledStore;
use crate::store::{
    CommitMode, HistoryQuery, HistoryScope, ImportBatch, ImportOutcome, ImportRejection,
    ImportSession, Precondition, RejectionIter, Store, StoreError, StoreStats, StoredVersion,
    VersionIter, WriteOp, WriteResult,
};
use crate::tests::{WORKER, claim_job, default_plugins as plugins, ndjson_lines};

fn rt(name: &str) -> ResourceType {
    ResourceType::parse(name).unwrap()
}

struct Env {
    dir: TempDir,
    store: Arc<SledStore>,
    config: ImportConfig,
}

impl Env {
    fn new() -> Env {
        Env::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut ImportConfig)) -> Env {
        let dir = TempDir::new().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let mut config = ImportConfig::for_data_dir(dir.path());
        std::fs::create_dir_all(&config.sources[0]).unwrap();
        adjust(&mut config);
        Env { dir, store, config }
    }

    /// Writes an input file under the import folder.
    fn file(&self, name: &str, content: &str) -> SourceUrl {
        let path = self.config.sources[0].join(name);
        std::fs::write(&path, content).unwrap();
        file_url(&path)
    }

    fn handler_on(&self, store: Arc<dyn Store>) -> ImportHandler {
        let sources = Arc::new(ImportSources::from_config(&self.config));
        ImportHandler::new(store, plugins(), sources, Arc::new(self.config.clone()))
    }

    fn handler(&self) -> ImportHandler {
        self.handler_on(self.store.clone())
    }

    /// Registers `request` and claims it, as the engine would.
    fn job(&self, request: &ImportRequest) -> JobRecord {
        claim_job(
            self.store.as_ref(),
            JobKind::Import,
            request,
            Instant::now(),
        )
    }

    fn context(&self, job: &JobRecord) -> JobContext {
        JobContext::new(self.store.clone(), job.id.clone(), WORKER.into())
    }

    /// The job as stored now (its latest checkpoint).
    fn reload(&self, job: &JobRecord) -> JobRecord {
        self.store.get(&job.id).unwrap().unwrap()
    }

    /// Runs `request` to its end in one attempt.
    fn import(&self, request: &ImportRequest) -> Imported {
        let job = self.job(request);
        let value = self.handler().run(&job, &self.context(&job)).unwrap();
        self.read(&job, value)
    }

    fn read(&self, job: &JobRecord, value: Value) -> Imported {
        let result: ImportResult = serde_json::from_value(value).unwrap();
        let mut errors = BTreeMap::new();
        for e in &result.error {
            let path = error_file_path(&self.config, &job.id, &e.file).unwrap();
            let text = std::fs::read_to_string(path).unwrap();
            let lines = ndjson_lines(&text, e.count, &e.file);
            errors.insert(e.file.clone(), lines);
        }
        // Nothing of the run is left in the store's bookkeeping.
        let session = session_of(&job.id);
        assert!(self.store.import_progress(session).unwrap().is_empty());
        assert_eq!(self.store.import_rejections(session).unwrap().count(), 0);
        Imported {
            result,
            errors,
            job: job.clone(),
        }
    }

    /// `(type/id, version, lastUpdated, deleted, body)` of every version
    /// in the store, sorted.
    fn contents(&self) -> Vec<(String, u64, Instant, bool, String)> {
        contents(&*self.store)
    }
}

fn contents(store: &dyn Store) -> Vec<(String, u64, Instant, bool, String)> {
    let page = store
        .history(
            &HistoryScope::System,
            &HistoryQuery {
                count: 1_000_000,
                ..Default::default()
            },
        )
        .unwrap();
    let mut all: Vec<_> = page
        .entries
        .into_iter()
        .map(|v| {
            (
                format!("{}/{}", v.rtype, v.id),
                v.meta.version,
                v.meta.last_updated,
                v.meta.deleted,
                String::from_utf8(v.body.to_vec()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

struct Imported {
    result: ImportResult,
    /// Error file name → its OperationOutcomes.
    errors: BTreeMap<String, Vec<Value>>,
    job: JobRecord,
}

impl Imported {
    /// `(line, code, details)` of every error line of `file`.
    fn lines(&self, file: &str) -> Vec<(u64, String, String)> {
        self.errors[file]
            .iter()
            .map(|oo| {
                let issue = &oo["issue"][0];
                let diagnostics = issue["diagnostics"].as_str().unwrap();
                let line = diagnostics
                    .strip_prefix("Failed to process resource at line: ")
                    .and_then(|d| d.split(' ').next())
                    .unwrap()
                    .parse()
                    .unwrap();
                (
                    line,
                    issue["code"].as_str().unwrap().to_owned(),
                    issue["details"]["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn counts(&self) -> Vec<u64> {
        self.result.output.iter().map(|o| o.count).collect()
    }
}

fn request(mode: ImportMode, inputs: &[(Option<&str>, &SourceUrl)]) -> ImportRequest {
    ImportRequest {
        request_url: "http://hearth.test/$import".into(),
        mode,
        allow_negative_versions: false,
        inputs: inputs
            .iter()
            .map(|(t, url)| ImportInput {
                resource_type: t.map(rt),
                url: (*url).clone(),
                etag: None,
            })
            .collect(),
        error_location: None,
    }
}

fn patient(id: &str, family: &str) -> String {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}).to_string()
}

fn versioned(id: &str, version: u64, at: &str, family: &str) -> String {
    json!({"resourceType": "Patient", "id": id,
           "meta": {"versionId": version.to_string(), "lastUpdated": at},
           "name": [{"family": family}]})
    .to_string()
}

fn soft_deleted(id: &str, version: u64, at: &str) -> String {
    json!({"resourceType": "Patient", "id": id,
           "meta": {"versionId": version.to_string(), "lastUpdated": at,
                    "extension": [{"url": "http://azurehealthcareapis.com/data-extensions/deleted-state",
                                   "valueString": "soft-deleted"}]},
           "name": [{"family": "Gone"}]})
    .to_string()
}

/// The hand-made file: broken JSON, a wrong type, a bad id, a conditional
/// reference, duplicate versions, a soft-deleted resource, CRLF, blank
/// lines and a long line, numbered as in the comments.
fn hand_made() -> String {
    let long = json!({"resourceType": "Patient", "id": "long",
                      "name": [{"family": "L".repeat(3000)}]})
    .to_string();
    [
        versioned("a", 1, "2021-01-01T00:00:00Z", "A1"), // 1
        "{\"resourceType\":\"Patient\",\"id\":".to_owned(), // 2 broken
        String::new(),                                   // 3 blank
        json!({"resourceType": "Observation", "id": "o", "status": "final",
               "code": {"text": "x"}})
        .to_string(), // 4 wrong type
        json!({"resourceType": "Patient", "id": "bad_id"}).to_string(), // 5 bad id
        json!({"resourceType": "Patient", "id": "c",
               "link": [{"type": "seealso",
                         "other": {"reference": "Patient?identifier=x|y"}}]})
        .to_string(), // 6 conditional
        versioned("a", 2, "2021-02-01T00:00:00Z", "A2"), // 7
        versioned("a", 2, "2021-02-02T00:00:00Z", "A2 again"), // 8 duplicate
        soft_deleted("a", 3, "2021-03-01T00:00:00Z"),    // 9
        long,                                            // 10
        "  ".to_owned(),                                 // 11 blank
        patient("b", "B"),                               // 12
    ]
    .join("\r\n")
        + "\r\n"
}

#[test]
fn incremental_hand_made_file() {
    let env = Env::with(|c| c.range_bytes = 700);
    let url = env.file("hand.ndjson", &hand_made());
    let done = env.import(&request(
        ImportMode::IncrementalLoad,
        &[(Some("Patient"), &url)],
    ));
    assert_eq!(done.counts(), [6]);
    assert_eq!(done.result.error.len(), 1);
    assert_eq!(done.result.error[0].file, "Patient-1.ndjson");
    assert_eq!(done.result.error[0].input_url, url.as_str());
    let lines = done.lines("Patient-1.ndjson");
    let summary: Vec<(u64, &str)> = lines.iter().map(|(l, c, _)| (*l, c.as_str())).collect();
    assert_eq!(
        summary,
        [
            (2, "structure"),
            (4, "invalid"),
            (5, "value"),
            (8, "duplicate")
        ]
    );
    assert_eq!(
        lines[3].2,
        "Patient/a version 2 is also on another line of this import, which is the one imported (the earliest meta.lastUpdated wins, then the first line)."
    );
    // The byte offset of line 8: lines 1-7 and their CRLFs before it.
    let offset: usize = hand_made().split("\r\n").take(7).map(|l| l.len() + 2).sum();
    assert_eq!(
        done.errors["Patient-1.ndjson"][3]["issue"][0]["diagnostics"],
        format!("Failed to process resource at line: 8 with stream start offset: {offset}")
    );

    let pt = rt("Patient");
    let a = env
        .store
        .read(pt, &ResourceId::parse("a").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((a.meta.version, a.meta.deleted), (3, true));
    assert_eq!(
        a.meta.last_updated,
        Instant::parse("2021-03-01T00:00:00Z").unwrap()
    );
    let v2 = env
        .store
        .vread(pt, &ResourceId::parse("a").unwrap(), 2)
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&v2.body).contains("\"family\":\"A2\""));
    // The conditional reference is loaded unresolved.
    let c = env
        .store
        .read(pt, &ResourceId::parse("c").unwrap())
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&c.body).contains("Patient?identifier=x|y"));
    assert_eq!(
        env.store.stats().unwrap(),
        StoreStats {
            live_resources: 3,
            versions: 6
        }
    );
    assert_eq!(
        env.reload(&done.job).progress.done,
        hand_made().len() as u64
    );
}

#[test]
fn initial_load_hand_made_file() {
    let env = Env::with(|c| {
        c.range_bytes = 500;
        c.batch_lines = 2;
    });
    env.store
        .commit(
            vec![WriteOp::Create {
                id: ResourceId::parse("b").unwrap(),
                resource: Resource::from_slice(patient("b", "rest").as_bytes()).unwrap(),
            }],
            CommitMode::AllOrNothing,
        )
        .unwrap();
    let url = env.file("hand.ndjson", &hand_made());
    let done = env.import(&request(ImportMode::InitialLoad, &[(None, &url)]));
    let lines = done.lines("Resource-1.ndjson");
    let summary: Vec<(u64, &str)> = lines.iter().map(|(l, c, _)| (*l, c.as_str())).collect();
    // a: versions 1, 2, 2 again and the soft delete claim one id: the
    // highest versionId (2), then the latest lastUpdated (line 8) wins.
    assert_eq!(
        summary,
        [
            (1, "duplicate"),
            (2, "structure"),
            (5, "value"),
            (6, "not-supported"),
            (7, "duplicate"),
            (9, "not-supported"),
            (12, "duplicate"),
        ]
    );
    assert!(
        lines[3]
            .2
            .starts_with("Given conditional reference 'Patient?identifier=x|y'")
    );
    assert_eq!(
        lines[0].2,
        "Patient/a is also on another line of this import, which is the one imported (the highest meta.versionId wins, then the latest meta.lastUpdated, then the first line)."
    );
    assert_eq!(
        lines[6].2,
        "Patient/b already exists; an initial load only creates resources."
    );
    // Observation o (no declared type), a and long were created.
    assert_eq!(done.counts(), [3]);
    let a = env
        .store
        .read(rt("Patient"), &ResourceId::parse("a").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(a.meta.version, 1);
    assert!(String::from_utf8_lossy(&a.body).contains("A2 again"));
    assert!(a.meta.last_updated > Instant::parse("2024-01-01T00:00:00Z").unwrap());
}

#[test]
fn ranges_and_parallelism_do_not_change_the_outcome() {
    // Versions of p0..p39 (duplicates among them, instants increasing with
    // the version), blank and broken lines, unique q resources; input b
    // repeats some versions.
    let text: String = (0..300u64)
        .map(|i| match i % 7 {
            0 => {
                let v = 1 + (i / 7) % 3;
                let at = format!("2020-01-0{v}T00:00:00Z");
                format!(
                    "{}\n",
                    versioned(&format!("p{}", i % 40), v, &at, &i.to_string())
                )
            }
            1 => "\r\n".to_owned(),
            2 => "{not json\n".to_owned(),
            _ => format!(
                "{}\r\n",
                patient(&format!("q{i}"), &"x".repeat(i as usize % 50))
            ),
        })
        .collect();
    let other: String = (0..40)
        .step_by(3)
        .map(|k| {
            format!(
                "{}\n",
                versioned(&format!("p{k}"), 1, "2020-01-01T00:00:00Z", "dup")
            )
        })
        .collect();
    let run = |mode, range_bytes, parallelism, batch_lines| {
        let env = Env::with(|c| {
            c.range_bytes = range_bytes;
            c.parallelism = parallelism;
            c.batch_lines = batch_lines;
        });
        let a = env.file("a.ndjson", &text);
        let b = env.file("b.ndjson", &other);
        let done = env.import(&request(mode, &[(Some("Patient"), &a), (None, &b)]));
        let kept_before = Instant::parse("2021-01-01T00:00:00Z").unwrap();
        // Everything but the instants the store assigned.
        let stored: Vec<_> = env
            .contents()
            .into_iter()
            .map(|(r, v, t, d, body)| {
                let body: Value = serde_json::from_str(&body).unwrap();
                (
                    r,
                    v,
                    (t < kept_before).then_some(t),
                    d,
                    body["name"].clone(),
                )
            })
            .collect();
        (done.counts(), done.errors, stored)
    };
    for mode in [ImportMode::IncrementalLoad, ImportMode::InitialLoad] {
        let reference = run(mode, 1 << 20, 1, 1000);
        assert_eq!(reference.1.len(), 2);
        for (range_bytes, parallelism, batch_lines) in [(97, 2, 3), (1000, 3, 7), (1, 2, 1)] {
            let other = run(mode, range_bytes, parallelism, batch_lines);
            assert_eq!(
                other, reference,
                "{mode:?} {range_bytes} {parallelism} {batch_lines}"
            );
        }
    }
}

/// A store that lets `left` import batches through, then raises `then` on
/// the job: `Lost` as a killed worker would, mid-import (later batches are
/// dropped: the process is gone), or a client's cancel (later batches still
/// apply until the job notices).
struct Interrupting {
    inner: Arc<SledStore>,
    left: AtomicUsize,
    signal: Arc<std::sync::atomic::AtomicU8>,
    then: Heartbeat,
}

impl Interrupting {
    fn new(env: &Env, ctx: &JobContext, left: usize, then: Heartbeat) -> Arc<Interrupting> {
        Arc::new(Interrupting {
            inner: env.store.clone(),
            left: AtomicUsize::new(left),
            signal: ctx.signal(),
            then,
        })
    }
}

impl Store for Interrupting {
    fn commit(
        &self,
        ops: Vec<WriteOp>,
        mode: CommitMode,
    ) -> Result<Vec<Result<WriteResult, crate::store::OpError>>, StoreError> {
        self.inner.commit(ops, mode)
    }
    fn read(&self, t: ResourceType, id: &ResourceId) -> Result<Option<StoredVersion>, StoreError> {
        self.inner.read(t, id)
    }
    fn vread(
        &self,
        t: ResourceType,
        id: &ResourceId,
        v: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        self.inner.vread(t, id, v)
    }
    fn history(
        &self,
        s: &HistoryScope,
        q: &HistoryQuery,
    ) -> Result<crate::store::HistoryPage, StoreError> {
        self.inner.history(s, q)
    }
    fn scan_type(
        &self,
        t: ResourceType,
        at: Instant,
        after: Option<&ResourceId>,
    ) -> Result<VersionIter, StoreError> {
        self.inner.scan_type(t, at, after)
    }
    fn changed(
        &self,
        t: ResourceType,
        since: Instant,
        until: Instant,
    ) -> Result<VersionIter, StoreError> {
        self.inner.changed(t, since, until)
    }
    fn compartment(&self, p: &ResourceId, at: Instant) -> Result<VersionIter, StoreError> {
        self.inner.compartment(p, at)
    }
    fn last_commit(&self) -> Result<Option<Instant>, StoreError> {
        self.inner.last_commit()
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn import(
        &self,
        batch: ImportBatch,
        render: &dyn Fn(&ImportRejection<'_>) -> Vec<u8>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        let through = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !through {
            JobContext::raise(&self.signal, self.then);
            if self.then == Heartbeat::Lost {
                return Ok(Vec::new());
            }
        }
        self.inner.import(batch, render)
    }
    fn import_progress(&self, s: ImportSession) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        self.inner.import_progress(s)
    }
    fn import_rejections(&self, s: ImportSession) -> Result<RejectionIter, StoreError> {
        self.inner.import_rejections(s)
    }
    fn end_import(&self, s: ImportSession) -> Result<(), StoreError> {
        self.inner.end_import(s)
    }
}

#[test]
fn interrupted_imports_resume_exactly_once() {
    let text = hand_made()
        + &(0..40)
            .map(|i| {
                format!(
                    "{}\n",
                    versioned(
                        &format!("r{}", i % 15),
                        1 + i / 15,
                        &format!("2022-0{}-01T00:00:00Z", 1 + i / 15),
                        "R"
                    )
                )
            })
            .collect::<String>();
    for mode in [ImportMode::IncrementalLoad, ImportMode::InitialLoad] {
        let adjust = |c: &mut ImportConfig| {
            c.range_bytes = 900;
            c.batch_lines = 3;
        };
        let reference = Env::with(adjust);
        let url = reference.file("in.ndjson", &text);
        let expected = reference.import(&request(mode, &[(Some("Patient"), &url)]));
        let expected_store = reference.contents();
        for crash_after in [0, 1, 2, 5, 9, 14] {
            let env = Env::with(adjust);
            let url = env.file("in.ndjson", &text);
            let job = env.job(&request(mode, &[(Some("Patient"), &url)]));
            let ctx = env.context(&job);
            let crashing = Interrupting::new(&env, &ctx, crash_after, Heartbeat::Lost);
            let failure = env.handler_on(crashing).run(&job, &ctx).unwrap_err();
            assert_eq!(failure, JobFailure::Lost, "{mode:?} after {crash_after}");
            // The next attempt, from what the job store and the store kept.
            let resumed = env.reload(&job);
            let value = env.handler().run(&resumed, &env.context(&resumed)).unwrap();
            let done = env.read(&resumed, value);
            assert_eq!(
                done.counts(),
                expected.counts(),
                "{mode:?} after {crash_after}"
            );
            assert_eq!(done.errors, expected.errors, "{mode:?} after {crash_after}");
            let strip =
                |all: Vec<(String, u64, Instant, bool, String)>| -> Vec<(String, u64, bool)> {
                    all.into_iter().map(|(r, v, _, d, _)| (r, v, d)).collect()
                };
            let stored = env.contents();
            assert_eq!(
                strip(stored.clone()),
                strip(expected_store.clone()),
                "{mode:?} after {crash_after}"
            );
            if mode == ImportMode::IncrementalLoad {
                // Kept instants are kept; only assigned ones differ.
                let kept = |all: &[(String, u64, Instant, bool, String)]| {
                    all.iter()
                        .filter(|v| v.2 < Instant::parse("2023-01-01T00:00:00Z").unwrap())
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(kept(&stored), kept(&expected_store));
            }
        }
    }
}

#[test]
fn cancel_stops_and_keeps_what_was_imported() {
    let env = Env::with(|c| c.batch_lines = 10);
    let text: String = (0..200)
        .map(|i| format!("{}\n", patient(&format!("p{i}"), "C")))
        .collect();
    let url = env.file("in.ndjson", &text);
    let job = env.job(&request(ImportMode::IncrementalLoad, &[(None, &url)]));
    let ctx = env.context(&job);
    // A client cancels during the fourth batch: it still applies, then the
    // job stops.
    let cancelling = Interrupting::new(&env, &ctx, 3, Heartbeat::CancelRequested);
    let failure = env.handler_on(cancelling).run(&job, &ctx).unwrap_err();
    assert_eq!(failure, JobFailure::Cancelled);
    assert_eq!(env.store.stats().unwrap().live_resources, 40);
    let session = session_of(&job.id);
    assert!(env.store.import_progress(session).unwrap().is_empty());
    assert!(!env.config.error_dir.join(job.id.as_str()).exists());
}

#[test]
fn inputs_that_change_or_vanish_fail_the_job() {
    let env = Env::new();
    let text: String = (0..20)
        .map(|i| format!("{}\n", patient(&format!("p{i}"), "E")))
        .collect();
    let url = env.file("in.ndjson", &text);
    // The etag the request names must be the file's.
    let mut req = request(ImportMode::IncrementalLoad, &[(None, &url)]);
    req.inputs[0].etag = Some("\"nope\"".into());
    let job = env.job(&req);
    let JobFailure::Failed(error) = env.handler().run(&job, &env.context(&job)).unwrap_err() else {
        panic!("not failed")
    };
    assert_eq!(error.status, 412);
    assert!(
        error.outcome.to_string().contains("nope"),
        "{}",
        error.outcome
    );

    // Planned, then changed before the parts read it.
    let job = env.job(&request(ImportMode::IncrementalLoad, &[(None, &url)]));
    let ctx = env.context(&job);
    let crashing = Interrupting::new(&env, &ctx, 0, Heartbeat::Lost);
    assert_eq!(
        env.handler_on(crashing).run(&job, &ctx).unwrap_err(),
        JobFailure::Lost
    );
    // Same length: only the modification time tells the versions apart,
    // so it is moved explicitly rather than waited for.
    let path = env.config.sources[0].join("in.ndjson");
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, text.replace("E", "F")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before + Duration::from_secs(1))
        .unwrap();
    let resumed = env.reload(&job);
    let JobFailure::Failed(error) = env
        .handler()
        .run(&resumed, &env.context(&resumed))
        .unwrap_err()
    else {
        panic!("not failed")
    };
    assert_eq!(error.status, 412);
    assert!(
        env.store
            .import_progress(session_of(&job.id))
            .unwrap()
            .is_empty()
    );

    // Gone.
    let job = env.job(&request(ImportMode::IncrementalLoad, &[(None, &url)]));
    std::fs::remove_file(env.config.sources[0].join("in.ndjson")).unwrap();
    let JobFailure::Failed(error) = env.handler().run(&job, &env.context(&job)).unwrap_err() else {
        panic!("not failed")
    };
    assert_eq!(error.status, 400);
}

#[test]
fn error_file_names_are_checked() {
    let config = ImportConfig::for_data_dir(std::path::Path::new("/data"));
    let job = crate::jobs::JobId::generate();
    let path = error_file_path(&config, &job, "Patient-12.ndjson").unwrap();
    assert_eq!(
        path,
        PathBuf::from(format!("/data/import-errors/{job}/Patient-12.ndjson"))
    );
    for bad in [
        "../x-1.ndjson",
        "Patient-1.json",
        "Patient-01.ndjson",
        "-1.ndjson",
        "Patient-.ndjson",
        "a/b-1.ndjson",
        "Patient-1.ndjson/..",
    ] {
        assert!(error_file_path(&config, &job, bad).is_none(), "{bad}");
    }
    assert!(
        error_file_path(
            &config,
            &crate::jobs::JobId("../../etc".into()),
            "Patient-1.ndjson"
        )
        .is_none()
    );
}

/// Synthea-100 (two files, one per mode) imports without a rejected line.
#[test]
fn synthea_files_import_cleanly() {
    let synthea = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/synthea-100");
    for (mode, name) in [
        (ImportMode::IncrementalLoad, "Patient"),
        (ImportMode::InitialLoad, "Encounter"),
    ] {
        let env = Env::with(|c| c.range_bytes = 256 << 10);
        let gz = std::fs::File::open(synthea.join(format!("{name}.ndjson.gz"))).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(gz), &mut text)
            .unwrap();
        let url = env.file(&format!("{name}.ndjson"), &text);
        let done = env.import(&request(mode, &[(Some(name), &url)]));
        assert!(done.errors.is_empty(), "{:?}", done.errors.values().next());
        let lines = text.lines().count() as u64;
        assert_eq!(done.counts(), [lines]);
        assert_eq!(env.store.stats().unwrap().live_resources, lines);
    }
}

/// Versions written by REST, exported with `_history` and `_deleted` from
/// one store, imported (incrementally) into an empty one: every version is
/// there with its number, instant, deleted state and bytes.
#[test]
fn export_with_history_imports_back_identically() {
    use crate::destinations::{Download, LocalDestination};
    use crate::export::{ExportConfig, ExportHandler};

    let source = Env::new();
    let put = |json: Value| {
        let resource = Resource::from_value(json).unwrap();
        source
            .store
            .commit(
                vec![WriteOp::Update {
                    id: resource.id.clone().unwrap(),
                    resource,
                    precondition: Precondition::None,
                }],
                CommitMode::AllOrNothing,
            )
            .unwrap();
    };
    let delete = |t: &str, i: &str| {
        source
            .store
            .commit(
                vec![WriteOp::Delete {
                    rtype: rt(t),
                    id: ResourceId::parse(i).unwrap(),
                    precondition: Precondition::None,
                }],
                CommitMode::AllOrNothing,
            )
            .unwrap();
    };
    put(json!({"resourceType": "Patient", "id": "p1", "gender": "female"}));
    put(json!({"resourceType": "Patient", "id": "p2", "gender": "male"}));
    put(
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"text": "w"}, "subject": {"reference": "Patient/p1"},
               "valueQuantity": {"value": 1.50}}),
    );
    put(json!({"resourceType": "Patient", "id": "p1", "gender": "other"}));
    delete("Observation", "o1");
    put(
        json!({"resourceType": "Observation", "id": "o1", "status": "amended",
               "code": {"text": "w"}, "subject": {"reference": "Patient/p2"}}),
    );
    delete("Patient", "p2");
    put(json!({"resourceType": "Patient", "id": "p1", "gender": "unknown"}));

    let export_config = ExportConfig::for_data_dir(source.dir.path());
    let destination = Arc::new(LocalDestination::new(export_config.output_dir.clone()));
    let exporter = ExportHandler::new(
        source.store.clone(),
        plugins(),
        destination,
        export_config.clone(),
    );
    let export_request: crate::export::ExportRequest = serde_json::from_value(json!({
        "level": {"level": "system"}, "request_url": "http://a/$export",
        "transaction_time": source.store.now().unwrap(), "since": null, "until_given": false,
        "types": [], "type_filters": [], "elements": [], "patients": [],
        "associated": {"history": true, "deleted": true}, "container": null,
        "lenient": false, "warnings": []
    }))
    .unwrap();
    let job = claim_job(
        source.store.as_ref(),
        JobKind::Export,
        &export_request,
        Instant::now(),
    );
    let value = exporter.run(&job, &source.context(&job)).unwrap();
    let exported: crate::export::ExportResult = serde_json::from_value(value.clone()).unwrap();
    let job = JobRecord {
        result: value,
        ..job
    };

    let target = Env::with(|c| {
        c.sources = vec![export_config.output_dir.clone()];
        c.range_bytes = 300;
    });
    let urls: Vec<SourceUrl> = exported
        .output
        .iter()
        .map(|f| match exporter.download(&job, &f.file).unwrap() {
            Some(Download::File(path)) => file_url(&path),
            _ => panic!("{} is not a file", f.file),
        })
        .collect();
    let inputs: Vec<(Option<&str>, &SourceUrl)> = urls.iter().map(|u| (None, u)).collect();
    let done = target.import(&request(ImportMode::IncrementalLoad, &inputs));
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    assert_eq!(target.contents(), source.contents());
    assert_eq!(target.store.stats().unwrap(), source.store.stats().unwrap());
}

/// An input over HTTP, read in ranges, imports like the same local file.
#[test]
fn http_inputs_import_like_local_files() {
    let local = Env::with(|c| c.range_bytes = 300);
    let url = local.file("hand.ndjson", &hand_made());
    let expected = local.import(&request(ImportMode::IncrementalLoad, &[(None, &url)]));

    let served = TempDir::new().unwrap();
    std::fs::write(served.path().join("hand.ndjson"), hand_made()).unwrap();
    let server = super::source::FileServer::start(served.path());
    let env = Env::with(|c| {
        c.range_bytes = 300;
        c.allowed_http = vec![format!("{}/files/", server.base)];
    });
    let url = SourceUrl(format!("{}/files/hand.ndjson", server.base));
    let done = env.import(&request(ImportMode::IncrementalLoad, &[(None, &url)]));
    assert_eq!(done.counts(), expected.counts());
    let records = |i: &Imported| -> Vec<Value> { i.errors.values().flatten().cloned().collect() };
    assert_eq!(records(&done), records(&expected));
    let without_assigned = |e: &Env| -> Vec<(String, u64, bool, String)> {
        e.contents()
            .into_iter()
            .map(|(r, v, _, d, body)| {
                (
                    r,
                    v,
                    d,
                    body.split("\"lastUpdated\"")
                        .nth(1)
                        .map(|b| b[28..].to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    assert_eq!(without_assigned(&env), without_assigned(&local));
}

/// The default validator's verdict on a line the host accepts: its issues
/// make the line's record, located like any other.
#[test]
fn validator_rejections_become_error_lines() {
    let env = Env::new();
    let text = format!(
        "{}\n{}\n",
        patient("ok", "Fine"),
        json!({"resourceType": "Patient", "id": "typo", "fmaily": "x"})
    );
    let url = env.file("v.ndjson", &text);
    let done = env.import(&request(
        ImportMode::IncrementalLoad,
        &[(Some("Patient"), &url)],
    ));
    assert_eq!(done.counts(), [1]);
    let records = &done.errors["Patient-1.ndjson"];
    assert_eq!(records.len(), 1);
    let issue = &records[0]["issue"][0];
    let offset = patient("ok", "Fine").len() + 1;
    assert_eq!(
        issue["diagnostics"],
        format!("Failed to process resource at line: 2 with stream start offset: {offset}")
    );
    assert!(issue["details"]["text"].is_string());
    assert!(
        issue["expression"].to_string().contains("fmaily"),
        "{issue}"
    );
    assert!(
        env.store
            .read(rt("Patient"), &ResourceId::parse("typo").unwrap())
            .unwrap()
            .is_none()
    );
}
