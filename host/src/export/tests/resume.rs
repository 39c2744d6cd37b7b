//! Interrupted exports: a worker that dies after any checkpoint (its last
//! file committed but not listed, a pending file left over), resumed from
//! the stored checkpoint, ends with every line exactly once; a cancel
//! removes the folder.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::jobs::{Finish, Heartbeat, JobId, JobStoreError, NewJob, Progress};

/// What happens once the allowed checkpoints are used up.
#[derive(Clone, Copy)]
enum Then {
    /// The next checkpoint finds the lease gone: the worker stops right
    /// after committing a file it could not record.
    Lose,
    /// The last allowed checkpoint is saved, then a client cancels.
    Cancel,
}

/// The sled JobStore, with a fault after `left` checkpoints.
struct Faulty {
    inner: Arc<SledStore>,
    left: AtomicUsize,
    then: Then,
    signal: OnceLock<Arc<AtomicU8>>,
}

impl JobStore for Faulty {
    fn enqueue(&self, job: NewJob) -> Result<(JobRecord, bool), JobStoreError> {
        self.inner.enqueue(job)
    }
    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JobStoreError> {
        self.inner.get(id)
    }
    fn list(&self, kind: Option<JobKind>) -> Result<Vec<JobRecord>, JobStoreError> {
        self.inner.list(kind)
    }
    fn active(&self, kind: JobKind) -> Result<usize, JobStoreError> {
        self.inner.active(kind)
    }
    fn claim(
        &self,
        kinds: &[JobKind],
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Option<JobRecord>, JobStoreError> {
        self.inner.claim(kinds, worker, now, lease)
    }
    fn release_node(&self, node: &str) -> Result<usize, JobStoreError> {
        self.inner.release_node(node)
    }
    fn heartbeat(
        &self,
        id: &JobId,
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Heartbeat, JobStoreError> {
        self.inner.heartbeat(id, worker, now, lease)
    }
    fn checkpoint(
        &self,
        id: &JobId,
        worker: &str,
        checkpoint: Value,
        progress: Progress,
    ) -> Result<(), JobStoreError> {
        let allowed = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        match (allowed, self.then) {
            (true, _) => self.inner.checkpoint(id, worker, checkpoint, progress),
            (false, Then::Lose) => Err(JobStoreError::NotHolder(id.clone())),
            (false, Then::Cancel) => {
                self.inner.checkpoint(id, worker, checkpoint, progress)?;
                if let Some(signal) = self.signal.get() {
                    JobContext::raise(signal, Heartbeat::CancelRequested);
                }
                Ok(())
            }
        }
    }
    fn finish(
        &self,
        id: &JobId,
        worker: &str,
        finish: Finish,
        now: Instant,
    ) -> Result<(), JobStoreError> {
        self.inner.finish(id, worker, finish, now)
    }
    fn request_cancel(&self, id: &JobId, now: Instant) -> Result<Option<JobRecord>, JobStoreError> {
        self.inner.request_cancel(id, now)
    }
    fn delete(&self, id: &JobId) -> Result<bool, JobStoreError> {
        self.inner.delete(id)
    }
}

/// Runs `job` once with a fault after `allowed` checkpoints.
fn faulty_run(env: &Env, job: &JobRecord, allowed: usize, then: Then) -> Result<Value, JobFailure> {
    let store = Arc::new(Faulty {
        inner: env.store.clone(),
        left: AtomicUsize::new(allowed),
        then,
        signal: OnceLock::new(),
    });
    let ctx = JobContext::new(store.clone(), job.id.clone(), WORKER.into());
    let _ = store.signal.set(ctx.signal());
    env.handler().run(job, &ctx)
}

/// Every output and deleted line, sorted: equal multisets mean nothing was
/// lost or written twice.
fn lines(export: &Export) -> Vec<String> {
    let mut all: Vec<String> = export
        .output
        .values()
        .chain(export.deleted.values())
        .flatten()
        .map(Value::to_string)
        .collect();
    all.sort();
    all
}

/// More data: 40 observations over the three patients, every fifth also
/// performed by another patient, some updated and some deleted after
/// `since` (returned).
fn bulk(env: &Env) -> Instant {
    fixture(env);
    let patients = ["p1", "p2", "p3"];
    let obs: Vec<Value> = (0..40)
        .map(|i| {
            let mut o = observation(&format!("b{i:02}"), patients[i % 3], "8302-2");
            if i % 5 == 0 {
                o["performer"] =
                    json!([{"reference": format!("Patient/{}", patients[(i + 1) % 3])}]);
            }
            o
        })
        .collect();
    env.put(&obs);
    let since = env.now();
    for i in (0..40).step_by(7) {
        env.delete("Observation", &format!("b{i:02}"));
    }
    env.put(&[observation("b01", "p2", "1-1"), patient("p3", "other")]);
    since
}

/// Interrupts `r` after each possible checkpoint in turn, adds leftovers,
/// resumes, and compares with an uninterrupted run.
fn survives_interruptions(env: &Env, r: &ExportRequest) {
    let baseline = env.export(r);
    let expected = lines(&baseline);
    assert!(expected.len() >= 8, "{}", expected.len());
    let mut interrupted = 0;
    for allowed in 0.. {
        let job = env.job(r);
        match faulty_run(env, &job, allowed, Then::Lose) {
            Ok(_) => break,
            Err(JobFailure::Lost) => interrupted += 1,
            Err(other) => panic!("{other:?}"),
        }
        // A crash can also leave a half-written file and a committed file
        // no checkpoint lists.
        let folder = folder(&job);
        let mut half = env
            .destination
            .create(&folder, "Observation-1-99.ndjson")
            .unwrap();
        half.append(b"{\"half\":").unwrap();
        std::mem::forget(half);
        let mut stray = env
            .destination
            .create(&folder, "Patient-9-1.ndjson")
            .unwrap();
        stray.append(b"{}\n").unwrap();
        stray.commit().unwrap();

        // Possibly a second interruption, then to the end.
        let job = env.reload(&job);
        let value = match faulty_run(env, &job, 1, Then::Lose) {
            Ok(value) => value,
            Err(JobFailure::Lost) => {
                let job = env.reload(&job);
                env.handler().run(&job, &env.context(&job)).unwrap()
            }
            Err(other) => panic!("{other:?}"),
        };
        let export = env.read(&job, value);
        assert_eq!(
            lines(&export),
            expected,
            "interrupted after {allowed} checkpoints"
        );
        let mut listed: Vec<String> = export
            .result
            .output
            .iter()
            .chain(&export.result.deleted)
            .chain(&export.result.error)
            .map(|f| f.file.clone())
            .collect();
        listed.sort();
        assert_eq!(env.folder_files(&job), listed);
        assert!(allowed < 200, "never completes");
    }
    assert!(interrupted >= 3, "only {interrupted} checkpoints");
}

#[test]
fn a_system_export_resumes_exactly_once() {
    let mut env = Env::new();
    let since = bulk(&env);
    env.config.file_max_resources = 3;
    env.config.batch_lines = 2;
    let mut r = request(ExportLevel::System, env.now());
    r.types = vec![rt("Observation"), rt("Patient"), rt("Encounter")];
    r.warnings = vec![crate::export::Warning {
        parameter: "_foo".into(),
        message: "unknown".into(),
    }];
    r.lenient = true;
    survives_interruptions(&env, &r);

    // With `_since`: output and `deleted` streams in one unit.
    r.since = Some(since);
    survives_interruptions(&env, &r);
}

#[test]
fn patient_and_group_exports_resume_exactly_once() {
    let mut env = Env::new();
    let since = bulk(&env);
    env.config.file_max_resources = 3;
    env.config.batch_lines = 2;
    let r = request(ExportLevel::Patient, env.now());
    survives_interruptions(&env, &r);

    let mut r = r;
    r.since = Some(since);
    r.associated.history = true;
    survives_interruptions(&env, &r);

    // Group members are a sorted list the partitions resume in.
    let group = request(ExportLevel::Group { id: id("g") }, env.now());
    survives_interruptions(&env, &group);
}

#[test]
fn referenced_resources_and_added_members_resume_exactly_once() {
    let mut env = Env::new();
    let since = bulk(&env);
    let practitioners: Vec<Value> = (0..6)
        .map(|i| json!({"resourceType": "Practitioner", "id": format!("dr{i}")}))
        .collect();
    env.put(&practitioners);
    let encounters: Vec<Value> = (0..12)
        .map(|i| {
            json!({"resourceType": "Encounter", "id": format!("x{i:02}"), "status": "finished",
                   "class": {"code": "AMB"},
                   "subject": {"reference": format!("Patient/p{}", i % 3 + 1)},
                   "participant": [{"individual": {"reference": format!("Practitioner/dr{}", i % 6)}}]})
        })
        .collect();
    env.put(&encounters);
    env.config.file_max_resources = 3;
    env.config.batch_lines = 2;
    let mut r = request(ExportLevel::Patient, env.now());
    r.referenced = vec![rt("Practitioner")];
    survives_interruptions(&env, &r);

    // p3 joins Group g after `since`.
    env.put(&[
        json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}},
                   {"entity": {"reference": "Patient/p3"}}]}),
    ]);
    let mut group = request(ExportLevel::Group { id: id("g") }, env.now());
    group.since = Some(since);
    group.referenced = vec![rt("Practitioner")];
    survives_interruptions(&env, &group);
}

#[test]
fn a_cancelled_export_removes_its_folder() {
    let mut env = Env::new();
    bulk(&env);
    env.config.file_max_resources = 3;
    let job = env.job(&request(ExportLevel::System, env.now()));
    let failure = faulty_run(&env, &job, 2, Then::Cancel).unwrap_err();
    assert_eq!(failure, JobFailure::Cancelled);
    let dir = env.config.output_dir.join(job.id.as_str());
    assert!(!dir.exists(), "{dir:?}");
}
