//! The export handler end to end, in process: a real SledStore (data and
//! jobs) in a temporary directory, the embedded default plugins, a local
//! destination, and `run` called as the engine would.

mod compartment;
mod groups;
mod resume;
mod sinks;
mod system;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::{ExportConfig, ExportHandler, ExportResult};
use crate::destinations::{Destination, Download, Folder, LocalDestination};
use crate::export::request::{Associated, ExportLevel, ExportRequest};
use crate::fhir::resource::Resource;
use crate::fhir::{Instant, ResourceId, ResourceType};
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, JobRecord, JobStore};
use crate::plugins::PluginRegistry;
use crate::store::sled::SledStore;
use crate::store::{CommitMode, Precondition, Store, WriteOp};
use crate::tests::{WORKER, claim_job, default_plugins, ndjson_lines};

pub fn rt(name: &str) -> ResourceType {
    ResourceType::parse(name).unwrap()
}

pub fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

pub struct Env {
    _dir: TempDir,
    pub store: Arc<SledStore>,
    pub destination: Arc<LocalDestination>,
    pub config: ExportConfig,
}

impl Env {
    pub fn new() -> Env {
        let dir = TempDir::new().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let config = ExportConfig::for_data_dir(dir.path());
        let destination = Arc::new(LocalDestination::new(config.output_dir.clone()));
        Env {
            _dir: dir,
            store,
            destination,
            config,
        }
    }

    /// Writes `resources` (each with an `id`) in one commit; returns its instant.
    pub fn put(&self, resources: &[Value]) -> Instant {
        let ops = resources
            .iter()
            .map(|r| {
                let resource = Resource::from_value(r.clone()).unwrap();
                WriteOp::Update {
                    id: resource.id.clone().unwrap(),
                    resource,
                    precondition: Precondition::None,
                }
            })
            .collect();
        self.commit(ops)
    }

    pub fn delete(&self, rtype: &str, i: &str) -> Instant {
        self.commit(vec![WriteOp::Delete {
            rtype: rt(rtype),
            id: id(i),
            precondition: Precondition::None,
        }])
    }

    fn commit(&self, ops: Vec<WriteOp>) -> Instant {
        let results = self.store.commit(ops, CommitMode::AllOrNothing).unwrap();
        let written = results[0].as_ref().unwrap().version.as_ref().unwrap();
        written.meta.last_updated
    }

    /// `Store::now()`, then a pause so that later commits are strictly after it.
    pub fn now(&self) -> Instant {
        let now = self.store.now().unwrap();
        std::thread::sleep(Duration::from_millis(3));
        now
    }

    pub fn handler(&self) -> ExportHandler {
        self.handler_with(default_plugins())
    }

    /// A handler running the plugins of `registry` instead of the defaults.
    pub fn handler_with(&self, registry: Arc<PluginRegistry>) -> ExportHandler {
        ExportHandler::new(
            self.store.clone(),
            registry,
            self.destination.clone(),
            self.config.clone(),
        )
    }

    /// Registers `request` and claims it, as the engine would.
    pub fn job(&self, request: &ExportRequest) -> JobRecord {
        let created = Instant::parse("2024-05-01T12:00:00Z").unwrap();
        claim_job(self.store.as_ref(), JobKind::Export, request, created)
    }

    pub fn context(&self, job: &JobRecord) -> JobContext {
        JobContext::new(self.store.clone(), job.id.clone(), WORKER.into())
    }

    /// Runs `request` to its end in one attempt.
    pub fn export(&self, request: &ExportRequest) -> Export {
        let job = self.job(request);
        let ctx = self.context(&job);
        let value = self.handler().run(&job, &ctx).unwrap();
        self.read(&job, value)
    }

    /// The job as stored now (its latest checkpoint).
    pub fn reload(&self, job: &JobRecord) -> JobRecord {
        self.store.get(&job.id).unwrap().unwrap()
    }

    /// The job's files, checked against its result.
    pub fn read(&self, job: &JobRecord, value: Value) -> Export {
        let result: ExportResult = serde_json::from_value(value.clone()).unwrap();
        let job = JobRecord {
            result: value,
            ..job.clone()
        };
        let handler = self.handler();
        let read = |files: &[super::manifest::ResultFile]| {
            let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for f in files {
                let Some(Download::File(path)) = handler.download(&job, &f.file).unwrap() else {
                    panic!("{} is not downloadable", f.file);
                };
                let text = std::fs::read_to_string(path).unwrap();
                let lines = ndjson_lines(&text, f.count, &f.file);
                out.entry(f.rtype.clone()).or_default().extend(lines);
            }
            out
        };
        Export {
            output: read(&result.output),
            deleted: read(&result.deleted),
            error: read(&result.error),
            result,
            job,
        }
    }

    /// The committed files in the job's folder.
    pub fn folder_files(&self, job: &JobRecord) -> Vec<String> {
        let mut names = self.destination.list(&folder(job)).unwrap();
        names.sort();
        names
    }
}

pub fn folder(job: &JobRecord) -> Folder {
    let request: ExportRequest = serde_json::from_value(job.request.clone()).unwrap();
    super::files::job_folder(job, &request).unwrap()
}

/// A finished export, read back.
pub struct Export {
    pub result: ExportResult,
    pub job: JobRecord,
    /// Lines by manifest type.
    pub output: BTreeMap<String, Vec<Value>>,
    pub deleted: BTreeMap<String, Vec<Value>>,
    pub error: BTreeMap<String, Vec<Value>>,
}

impl Export {
    /// `Type/id` of every output line, sorted.
    pub fn refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = self
            .output
            .values()
            .flatten()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                )
            })
            .collect();
        refs.sort();
        refs
    }

    pub fn count(&self, rtype: &str) -> usize {
        self.output.get(rtype).map_or(0, Vec::len)
    }

    pub fn files(&self, rtype: &str) -> Vec<&str> {
        self.result
            .output
            .iter()
            .filter(|f| f.rtype == rtype)
            .map(|f| f.file.as_str())
            .collect()
    }

    /// The diagnostics of every issue in the error files.
    pub fn warnings(&self) -> Vec<String> {
        self.error
            .values()
            .flatten()
            .flat_map(|oo| oo["issue"].as_array().unwrap().clone())
            .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

pub fn request(level: ExportLevel, transaction_time: Instant) -> ExportRequest {
    ExportRequest {
        level,
        request_url: "http://hearth.test/$export".into(),
        transaction_time,
        since: None,
        until_given: false,
        types: Vec::new(),
        type_filters: Vec::new(),
        elements: Vec::new(),
        patients: Vec::new(),
        referenced: Vec::new(),
        associated: Associated::default(),
        container: None,
        sink: None,
        lenient: false,
        warnings: Vec::new(),
    }
}

pub fn patient(i: &str, gender: &str) -> Value {
    json!({"resourceType": "Patient", "id": i, "gender": gender})
}

pub fn observation(i: &str, subject: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": i, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{subject}")},
        "valueQuantity": {"value": 1.50, "unit": "kg"}
    })
}

/// Three patients, their observations (`o3` also names `p2` as performer,
/// so it is in two compartments), an encounter, a condition, a
/// practitioner (in no compartment) and Group `g` of p1 and p2.
pub fn fixture(env: &Env) {
    env.put(&[
        patient("p1", "female"),
        patient("p2", "male"),
        patient("p3", "female"),
        json!({"resourceType": "Practitioner", "id": "dr1"}),
    ]);
    let mut shared = observation("o3", "p1", "8302-2");
    shared["performer"] = json!([{"reference": "Patient/p2"}]);
    env.put(&[
        observation("o1", "p1", "8302-2"),
        observation("o2", "p2", "29463-7"),
        shared,
        observation("o4", "p3", "29463-7"),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
               "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"}}),
        json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
               "member": [{"entity": {"reference": "Patient/p2"}},
                          {"entity": {"reference": "Patient/p1"}}]}),
    ]);
}

/// What exporting Group `g` of [`fixture`] writes: the Group and the
/// compartments of its members p1 and p2 (o3 is in both), each once.
pub const GROUP_G: [&str; 8] = [
    "Condition/c1",
    "Encounter/e1",
    "Group/g",
    "Observation/o1",
    "Observation/o2",
    "Observation/o3",
    "Patient/p1",
    "Patient/p2",
];

/// A failed run's answer.
pub fn failure(env: &Env, request: &ExportRequest) -> (JobRecord, JobFailure) {
    let job = env.job(request);
    let ctx = env.context(&job);
    let failure = env.handler().run(&job, &ctx).unwrap_err();
    (job, failure)
}

/// Asserts that `f` failed the job with `status` and an outcome naming
/// each of `needles`.
#[track_caller]
pub fn assert_failed(f: &JobFailure, status: u16, needles: &[&str]) {
    let JobFailure::Failed(e) = f else {
        panic!("{f:?}")
    };
    let outcome = e.outcome.to_string();
    assert_eq!(e.status, status, "{outcome}");
    for needle in needles {
        assert!(outcome.contains(needle), "{needle}: {outcome}");
    }
}
