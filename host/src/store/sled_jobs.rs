//! [`JobStore`] on the sled store: the jobs live next to the data, in a tree
//! of their own.
//!
//! # Layout (tree `jobs`)
//!
//! | key                        | value                                          |
//! |----------------------------|------------------------------------------------|
//! | `J` id                     | JSON `{"seq": n, "job": <JobRecord>}`          |
//! | `A` seq                    | id: the non-final jobs, in enqueue order       |
//! | `H` kind-tag request_hash  | id: the non-final job of that request          |
//! | `N`                        | the last `seq` given out (8-byte big-endian)   |
//!
//! `seq` numbers jobs 1, 2, 3... in enqueue order: `A` is the queue claims
//! walk (oldest first) without decoding finished jobs, `H` makes enqueue
//! idempotent with one point read. A job leaves `A` and `H` when it becomes
//! final (or is deleted while not final); final jobs are never written again.
//!
//! # Writes
//!
//! Job mutations are few, so one mutex serialises them all: each reads what
//! it needs and writes every changed key with one `apply_batch` (atomic on
//! disk and for readers), then flushes before returning, so a crash can
//! neither lose an acknowledged enqueue nor bring a finished job back. As in
//! [`super::sled`], the flush runs after the lock is released.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::sled::{Batch, Db, Tree};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys;
use super::sled::SledStore;
use crate::fhir::Instant;
use crate::jobs::{
    Finish, Heartbeat, JobId, JobKind, JobRecord, JobState, JobStore, JobStoreError, Lease, NewJob,
    Progress,
};

const JOB: u8 = b'J';
const ACTIVE: u8 = b'A';
const HASH: u8 = b'H';
const LAST_SEQ: &[u8] = b"N";

/// The jobs tree and the lock that orders its writers.
pub(super) struct JobTree {
    tree: Tree,
    writer: Mutex<()>,
}

impl JobTree {
    pub(super) fn open(db: &Db) -> Result<Self, ::sled::Error> {
        Ok(JobTree {
            tree: db.open_tree("jobs")?,
            writer: Mutex::new(()),
        })
    }

    /// Runs one mutation under the writer lock, then makes it durable.
    fn mutate<T>(&self, f: impl FnOnce() -> Result<T, JobStoreError>) -> Result<T, JobStoreError> {
        let result = {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            f()?
        };
        self.tree.flush()?;
        Ok(result)
    }

    fn load(&self, id: &JobId) -> Result<Option<Stored>, JobStoreError> {
        let key = job_key(id);
        self.tree
            .get(&key)?
            .map(|value| decode(&key, &value))
            .transpose()
    }

    /// The job `id` if `worker` holds its lease, else `NotHolder`.
    fn held(&self, id: &JobId, worker: &str) -> Result<Stored, JobStoreError> {
        self.load(id)?
            .filter(|stored| holds(&stored.job, worker))
            .ok_or_else(|| JobStoreError::NotHolder(id.clone()))
    }

    /// The non-final jobs of `kinds` (all kinds when `None`), oldest first.
    /// Outside the writer lock a job may finish or vanish between the index
    /// read and the record read: those are skipped.
    fn active_jobs(&self, kinds: Option<&[JobKind]>) -> Result<Vec<Stored>, JobStoreError> {
        let mut jobs = Vec::new();
        for entry in self.tree.scan_prefix([ACTIVE]) {
            let (key, id) = entry?;
            let id = std::str::from_utf8(&id).map_err(|_| corrupt(&key))?;
            let Some(stored) = self.load(&JobId(id.to_owned()))? else {
                continue;
            };
            let wanted = kinds.is_none_or(|kinds| kinds.contains(&stored.job.kind));
            if wanted && !stored.job.state.is_final() {
                jobs.push(stored);
            }
        }
        Ok(jobs)
    }

    /// Writes one job (see [`Changes::save`]).
    fn put(&self, stored: &Stored) -> Result<(), JobStoreError> {
        let mut changes = Changes::default();
        changes.save(stored)?;
        changes.apply(&self.tree)
    }

    fn next_seq(&self, batch: &mut Batch) -> Result<u64, JobStoreError> {
        let last = match self.tree.get(LAST_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt(LAST_SEQ))?),
            None => 0,
        };
        let seq = last + 1;
        batch.insert(LAST_SEQ, &seq.to_be_bytes());
        Ok(seq)
    }
}

/// A job as stored: its record and its place in the queue.
#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    job: JobRecord,
}

fn job_key(id: &JobId) -> Vec<u8> {
    [&[JOB], id.as_str().as_bytes()].concat()
}

fn active_key(seq: u64) -> Vec<u8> {
    [&[ACTIVE][..], &seq.to_be_bytes()].concat()
}

/// Kinds get a fixed byte, not their serde name, so renaming a variant
/// cannot orphan index entries.
fn hash_key(kind: JobKind, request_hash: &str) -> Vec<u8> {
    let tag = match kind {
        JobKind::Export => b'e',
        JobKind::Import => b'i',
    };
    [&[HASH, tag][..], request_hash.as_bytes()].concat()
}

fn decode(key: &[u8], value: &[u8]) -> Result<Stored, JobStoreError> {
    serde_json::from_slice(value).map_err(|_| corrupt(key))
}

fn corrupt(key: &[u8]) -> JobStoreError {
    JobStoreError::Corrupt(keys::display(key))
}

/// The writes of one mutation, applied as one batch; not at all when there
/// are none, so that idle workers polling the queue write nothing.
#[derive(Default)]
struct Changes {
    batch: Batch,
    saved: usize,
}

impl Changes {
    /// Adds the record; when the job has just become final, also takes it
    /// out of the queue and the idempotency index (only non-final jobs are
    /// ever saved, so a final state here is the transition).
    fn save(&mut self, stored: &Stored) -> Result<(), JobStoreError> {
        let key = job_key(&stored.job.id);
        let value = serde_json::to_vec(stored).map_err(|e| {
            JobStoreError::Backend(format!("serialising job {}: {e}", stored.job.id))
        })?;
        self.batch.insert(key, value);
        if stored.job.state.is_final() {
            unindex(&mut self.batch, stored);
        }
        self.saved += 1;
        Ok(())
    }

    fn apply(self, tree: &Tree) -> Result<(), JobStoreError> {
        if self.saved > 0 {
            tree.apply_batch(self.batch)?;
        }
        Ok(())
    }
}

fn unindex(batch: &mut Batch, stored: &Stored) {
    batch.remove(active_key(stored.seq));
    batch.remove(hash_key(stored.job.kind, &stored.job.request_hash));
}

/// Hex SHA-256 of the request as serialised: the typed request serialises
/// its fields in a fixed order, so equal requests hash equal.
fn request_hash(request: &serde_json::Value) -> Result<String, JobStoreError> {
    let bytes = serde_json::to_vec(request)
        .map_err(|e| JobStoreError::Backend(format!("serialising a job request: {e}")))?;
    Ok(keys::to_hex(&Sha256::digest(bytes)))
}

fn plus(now: Instant, duration: Duration) -> Instant {
    let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    Instant::from_millis(now.as_millis().saturating_add(millis))
}

fn holds(job: &JobRecord, worker: &str) -> bool {
    job.state == JobState::Running && job.lease.as_ref().is_some_and(|l| l.worker == worker)
}

/// A running job whose holder has not renewed in time. A lease that ends at
/// `now` counts as expired, so that a claim in the same millisecond as
/// [`JobStore::release_node`] resumes the released job.
fn expired(job: &JobRecord, now: Instant) -> bool {
    job.state == JobState::Running && job.lease.as_ref().is_none_or(|l| l.expires <= now)
}

fn end(job: &mut JobRecord, state: JobState, now: Instant) {
    job.state = state;
    job.finished = Some(now);
    job.lease = None;
}

fn lease_to(job: &mut JobRecord, worker: &str, now: Instant, lease: Duration) {
    job.state = JobState::Running;
    job.started.get_or_insert(now);
    job.attempts += 1;
    job.lease = Some(Lease {
        worker: worker.to_owned(),
        expires: plus(now, lease),
    });
}

impl JobStore for SledStore {
    fn enqueue(&self, new: NewJob) -> Result<(JobRecord, bool), JobStoreError> {
        let request_hash = request_hash(&new.request)?;
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let index = hash_key(new.kind, &request_hash);
            if let Some(id) = jobs.tree.get(&index)? {
                let id = std::str::from_utf8(&id).map_err(|_| corrupt(&index))?;
                let existing = jobs.load(&JobId(id.to_owned()))?;
                return existing
                    .map(|stored| (stored.job, false))
                    .ok_or_else(|| corrupt(&index));
            }
            let mut changes = Changes::default();
            let seq = jobs.next_seq(&mut changes.batch)?;
            let job = JobRecord {
                id: JobId::generate(),
                kind: new.kind,
                state: JobState::Queued,
                request: new.request,
                request_hash,
                owner: new.owner,
                created: new.created,
                started: None,
                finished: None,
                lease: None,
                attempts: 0,
                cancel_requested: false,
                progress: Progress::default(),
                checkpoint: serde_json::Value::Null,
                result: serde_json::Value::Null,
                error: None,
            };
            changes
                .batch
                .insert(active_key(seq), job.id.as_str().as_bytes());
            changes.batch.insert(index, job.id.as_str().as_bytes());
            let stored = Stored { seq, job };
            changes.save(&stored)?;
            changes.apply(&jobs.tree)?;
            Ok((stored.job, true))
        })
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JobStoreError> {
        Ok(self.jobs.load(id)?.map(|stored| stored.job))
    }

    /// Decodes every job: listings are rare and jobs few.
    fn list(&self, kind: Option<JobKind>) -> Result<Vec<JobRecord>, JobStoreError> {
        let mut all = Vec::new();
        for entry in self.jobs.tree.scan_prefix([JOB]) {
            let (key, value) = entry?;
            let stored = decode(&key, &value)?;
            if kind.is_none_or(|kind| stored.job.kind == kind) {
                all.push(stored);
            }
        }
        all.sort_by_key(|stored| stored.seq);
        Ok(all.into_iter().map(|stored| stored.job).collect())
    }

    fn active(&self, kind: JobKind) -> Result<usize, JobStoreError> {
        Ok(self.jobs.active_jobs(Some(&[kind]))?.len())
    }

    /// Walks the queue once: expired cancel-requested jobs are ended on the
    /// way, then the oldest queued job is taken, else the oldest expired one.
    fn claim(
        &self,
        kinds: &[JobKind],
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Option<JobRecord>, JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let mut changes = Changes::default();
            let mut candidates = Vec::new();
            for mut stored in jobs.active_jobs(Some(kinds))? {
                if stored.job.cancel_requested && expired(&stored.job, now) {
                    end(&mut stored.job, JobState::Cancelled, now);
                    changes.save(&stored)?;
                } else {
                    candidates.push(stored);
                }
            }
            let pick = candidates
                .iter()
                .position(|s| s.job.state == JobState::Queued)
                .or_else(|| candidates.iter().position(|s| expired(&s.job, now)));
            let claimed = match pick {
                Some(i) => {
                    let mut stored = candidates.swap_remove(i);
                    lease_to(&mut stored.job, worker, now, lease);
                    changes.save(&stored)?;
                    Some(stored.job)
                }
                None => None,
            };
            changes.apply(&jobs.tree)?;
            Ok(claimed)
        })
    }

    /// Expires the leases at the wall clock's now; claims count a lease
    /// ending at their `now` as expired.
    fn release_node(&self, node: &str) -> Result<usize, JobStoreError> {
        let prefix = format!("{node}/");
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let now = Instant::now();
            let mut changes = Changes::default();
            for mut stored in jobs.active_jobs(None)? {
                let Some(lease) = stored.job.lease.as_mut() else {
                    continue;
                };
                if lease.worker.starts_with(&prefix) && lease.expires > now {
                    lease.expires = now;
                    changes.save(&stored)?;
                }
            }
            let released = changes.saved;
            changes.apply(&jobs.tree)?;
            Ok(released)
        })
    }

    /// Renews even a lease that expired, as long as no other worker has
    /// claimed the job since: the holder was only late.
    fn heartbeat(
        &self,
        id: &JobId,
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Heartbeat, JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let mut stored = match jobs.held(id, worker) {
                Ok(stored) => stored,
                Err(JobStoreError::NotHolder(_)) => return Ok(Heartbeat::Lost),
                Err(e) => return Err(e),
            };
            stored.job.lease = Some(Lease {
                worker: worker.to_owned(),
                expires: plus(now, lease),
            });
            jobs.put(&stored)?;
            Ok(if stored.job.cancel_requested {
                Heartbeat::CancelRequested
            } else {
                Heartbeat::Renewed
            })
        })
    }

    fn checkpoint(
        &self,
        id: &JobId,
        worker: &str,
        checkpoint: serde_json::Value,
        progress: Progress,
    ) -> Result<(), JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let mut stored = jobs.held(id, worker)?;
            stored.job.checkpoint = checkpoint;
            stored.job.progress = progress;
            jobs.put(&stored)?;
            Ok(())
        })
    }

    fn finish(
        &self,
        id: &JobId,
        worker: &str,
        finish: Finish,
        now: Instant,
    ) -> Result<(), JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let mut stored = jobs.held(id, worker)?;
            let state = match finish {
                Finish::Completed { result } => {
                    stored.job.result = result;
                    JobState::Completed
                }
                Finish::Failed(error) => {
                    stored.job.error = Some(error);
                    JobState::Failed
                }
                Finish::Cancelled => JobState::Cancelled,
            };
            end(&mut stored.job, state, now);
            jobs.put(&stored)?;
            Ok(())
        })
    }

    fn request_cancel(&self, id: &JobId, now: Instant) -> Result<Option<JobRecord>, JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let Some(mut stored) = jobs.load(id)? else {
                return Ok(None);
            };
            match stored.job.state {
                JobState::Queued => end(&mut stored.job, JobState::Cancelled, now),
                JobState::Running if !stored.job.cancel_requested => {
                    stored.job.cancel_requested = true;
                }
                _ => return Ok(Some(stored.job)),
            }
            jobs.put(&stored)?;
            Ok(Some(stored.job))
        })
    }

    fn delete(&self, id: &JobId) -> Result<bool, JobStoreError> {
        let jobs = &self.jobs;
        jobs.mutate(|| {
            let Some(stored) = jobs.load(id)? else {
                return Ok(false);
            };
            let mut batch = Batch::default();
            batch.remove(job_key(id));
            // A final job's index entries are gone already, and its hash
            // entry may now name a newer job of the same request.
            if !stored.job.state.is_final() {
                unindex(&mut batch, &stored);
            }
            jobs.tree.apply_batch(batch)?;
            Ok(true)
        })
    }
}

impl From<::sled::Error> for JobStoreError {
    fn from(e: ::sled::Error) -> Self {
        JobStoreError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::jobs::JobError;

    const LEASE: Duration = Duration::from_secs(10);

    fn fresh() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn t(ms: i64) -> Instant {
        Instant::from_millis(1_700_000_000_000 + ms)
    }

    fn new_job(kind: JobKind, request: serde_json::Value) -> NewJob {
        NewJob {
            kind,
            request,
            owner: None,
            created: t(0),
        }
    }

    fn enqueue(store: &SledStore, n: u64) -> JobRecord {
        let (job, created) = store
            .enqueue(new_job(JobKind::Export, serde_json::json!({ "n": n })))
            .unwrap();
        assert!(created);
        job
    }

    fn claim(store: &SledStore, worker: &str, now: Instant) -> Option<JobRecord> {
        store.claim(&[JobKind::Export], worker, now, LEASE).unwrap()
    }

    fn state(store: &SledStore, id: &JobId) -> JobState {
        store.get(id).unwrap().unwrap().state
    }

    fn is_not_holder<T: std::fmt::Debug>(result: Result<T, JobStoreError>) -> bool {
        matches!(result, Err(JobStoreError::NotHolder(_)))
    }

    #[test]
    fn enqueue_is_idempotent_while_not_final() {
        let (_dir, store) = fresh();
        let request = serde_json::json!({ "types": ["Patient"], "since": null });
        let (first, created) = store
            .enqueue(new_job(JobKind::Export, request.clone()))
            .unwrap();
        assert!(created);
        assert_eq!(first.state, JobState::Queued);
        assert_eq!(first.attempts, 0);
        assert_eq!(first.request_hash.len(), 64);
        let (again, created) = store
            .enqueue(new_job(JobKind::Export, request.clone()))
            .unwrap();
        assert!(!created);
        assert_eq!(again, first);
        // Another kind or another request is another job.
        let (import, created) = store
            .enqueue(new_job(JobKind::Import, request.clone()))
            .unwrap();
        assert!(created);
        assert_ne!(import.id, first.id);
        let other = enqueue(&store, 1);
        assert_ne!(other.request_hash, first.request_hash);

        // Still the same job while it runs; a new one once it is final.
        let claimed = claim(&store, "n/a/0", t(1)).unwrap();
        assert_eq!(claimed.id, first.id);
        let (running, created) = store
            .enqueue(new_job(JobKind::Export, request.clone()))
            .unwrap();
        assert!(!created);
        assert_eq!(running.state, JobState::Running);
        store
            .finish(&first.id, "n/a/0", Finish::Cancelled, t(2))
            .unwrap();
        let (fresh_job, created) = store.enqueue(new_job(JobKind::Export, request)).unwrap();
        assert!(created);
        assert_ne!(fresh_job.id, first.id);
        assert_eq!(fresh_job.request_hash, first.request_hash);
    }

    #[test]
    fn claim_takes_the_oldest_queued_job_of_its_kinds() {
        let (_dir, store) = fresh();
        let (import, _) = store
            .enqueue(new_job(JobKind::Import, serde_json::json!({})))
            .unwrap();
        let jobs: Vec<_> = (0..3).map(|n| enqueue(&store, n)).collect();
        for (i, job) in jobs.iter().enumerate() {
            let claimed = claim(&store, "n/a/0", t(1)).unwrap();
            assert_eq!(claimed.id, job.id, "claim {i}");
            assert_eq!(claimed.state, JobState::Running);
            assert_eq!(claimed.attempts, 1);
            assert_eq!(claimed.started, Some(t(1)));
            assert_eq!(
                claimed.lease,
                Some(Lease {
                    worker: "n/a/0".into(),
                    expires: t(10_001)
                })
            );
            assert_eq!(store.get(&job.id).unwrap(), Some(claimed));
        }
        assert_eq!(claim(&store, "n/a/0", t(2)), None);
        assert_eq!(state(&store, &import.id), JobState::Queued);
        assert_eq!(store.active(JobKind::Export).unwrap(), 3);
        assert_eq!(store.active(JobKind::Import).unwrap(), 1);
        let listed: Vec<_> = store
            .list(None)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        let mut expected = vec![import.id.clone()];
        expected.extend(jobs.iter().map(|j| j.id.clone()));
        assert_eq!(listed, expected);
        assert_eq!(store.list(Some(JobKind::Import)).unwrap().len(), 1);
    }

    #[test]
    fn racing_workers_never_share_a_job() {
        let (_dir, store) = fresh();
        let store = Arc::new(store);
        let jobs: HashSet<_> = (0..40).map(|n| enqueue(&store, n).id).collect();
        let threads: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let worker = format!("n/a/{w}");
                    let mut mine = Vec::new();
                    while let Some(job) = claim(&store, &worker, t(1)) {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(seen.insert(id), "a job was claimed twice");
            }
        }
        assert_eq!(seen, jobs);
    }

    #[test]
    fn an_expired_lease_moves_the_job_to_another_worker() {
        let (_dir, store) = fresh();
        let job = enqueue(&store, 0);
        claim(&store, "n/a/0", t(0)).unwrap();
        store
            .checkpoint(
                &job.id,
                "n/a/0",
                serde_json::json!({ "at": 1 }),
                Progress::default(),
            )
            .unwrap();
        // Not yet expired: nothing to claim.
        assert_eq!(claim(&store, "n/b/0", t(9_999)), None);

        let taken = claim(&store, "n/b/0", t(10_000)).unwrap();
        assert_eq!(taken.id, job.id);
        assert_eq!(taken.attempts, 2);
        assert_eq!(taken.started, Some(t(0)));
        assert_eq!(taken.checkpoint, serde_json::json!({ "at": 1 }));
        assert_eq!(taken.lease.as_ref().unwrap().worker, "n/b/0");

        let old = "n/a/0";
        assert_eq!(
            store.heartbeat(&job.id, old, t(10_001), LEASE).unwrap(),
            Heartbeat::Lost
        );
        assert!(is_not_holder(store.checkpoint(
            &job.id,
            old,
            serde_json::Value::Null,
            Progress::default()
        )));
        assert!(is_not_holder(store.finish(
            &job.id,
            old,
            Finish::Cancelled,
            t(10_001)
        )));
        assert_eq!(
            store.heartbeat(&job.id, "n/b/0", t(10_001), LEASE).unwrap(),
            Heartbeat::Renewed
        );
        let failure = JobError {
            status: 500,
            outcome: serde_json::json!({ "resourceType": "OperationOutcome" }),
        };
        store
            .finish(&job.id, "n/b/0", Finish::Failed(failure.clone()), t(10_002))
            .unwrap();
        let done = store.get(&job.id).unwrap().unwrap();
        assert_eq!(done.state, JobState::Failed);
        assert_eq!(done.error, Some(failure));
        assert_eq!(done.finished, Some(t(10_002)));
        assert_eq!(done.lease, None);
        // A final job is nobody's.
        assert_eq!(
            store.heartbeat(&job.id, "n/b/0", t(10_003), LEASE).unwrap(),
            Heartbeat::Lost
        );
        assert_eq!(store.active(JobKind::Export).unwrap(), 0);
    }

    #[test]
    fn heartbeats_extend_the_lease() {
        let (_dir, store) = fresh();
        let job = enqueue(&store, 0);
        claim(&store, "n/a/0", t(0)).unwrap();
        assert_eq!(
            store.heartbeat(&job.id, "n/a/0", t(8_000), LEASE).unwrap(),
            Heartbeat::Renewed
        );
        assert_eq!(claim(&store, "n/b/0", t(12_000)), None);
        let expires = store.get(&job.id).unwrap().unwrap().lease.unwrap().expires;
        assert_eq!(expires, t(18_000));
    }

    #[test]
    fn release_node_expires_only_that_nodes_leases() {
        let (_dir, store) = fresh();
        let mine = enqueue(&store, 0);
        let theirs = enqueue(&store, 1);
        let now = Instant::now();
        store
            .claim(&[JobKind::Export], "local/old/0", now, LEASE)
            .unwrap();
        store
            .claim(&[JobKind::Export], "localhost/x/0", now, LEASE)
            .unwrap();
        assert_eq!(store.release_node("local").unwrap(), 1);
        assert_eq!(store.release_node("local").unwrap(), 0);
        let resumed = store
            .claim(&[JobKind::Export], "local/new/0", Instant::now(), LEASE)
            .unwrap()
            .unwrap();
        assert_eq!(resumed.id, mine.id);
        assert_eq!(resumed.attempts, 2);
        let other = store.get(&theirs.id).unwrap().unwrap();
        assert_eq!(other.lease.unwrap().worker, "localhost/x/0");
    }

    #[test]
    fn cancel_ends_a_queued_job_and_flags_a_running_one() {
        let (_dir, store) = fresh();
        let running = enqueue(&store, 0);
        let queued = enqueue(&store, 1);
        claim(&store, "n/a/0", t(0)).unwrap();

        let cancelled = store.request_cancel(&queued.id, t(5)).unwrap().unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert_eq!(cancelled.finished, Some(t(5)));
        assert_eq!(claim(&store, "n/b/0", t(6)), None);

        let flagged = store.request_cancel(&running.id, t(6)).unwrap().unwrap();
        assert_eq!(flagged.state, JobState::Running);
        assert!(flagged.cancel_requested);
        assert_eq!(
            store.heartbeat(&running.id, "n/a/0", t(7), LEASE).unwrap(),
            Heartbeat::CancelRequested
        );
        store
            .finish(&running.id, "n/a/0", Finish::Cancelled, t(8))
            .unwrap();
        assert_eq!(state(&store, &running.id), JobState::Cancelled);

        // Final jobs stay as they are; unknown ones are reported.
        let again = store.request_cancel(&queued.id, t(9)).unwrap().unwrap();
        assert_eq!(again, cancelled);
        let unknown = JobId::generate();
        assert_eq!(store.request_cancel(&unknown, t(9)).unwrap(), None);
    }

    #[test]
    fn a_cancelled_job_whose_worker_died_is_ended_not_resumed() {
        let (_dir, store) = fresh();
        let job = enqueue(&store, 0);
        claim(&store, "n/a/0", t(0)).unwrap();
        store.request_cancel(&job.id, t(1)).unwrap();
        assert_eq!(claim(&store, "n/b/0", t(20_000)), None);
        let ended = store.get(&job.id).unwrap().unwrap();
        assert_eq!(ended.state, JobState::Cancelled);
        assert_eq!(ended.finished, Some(t(20_000)));
        assert_eq!(ended.attempts, 1);
    }

    #[test]
    fn delete_forgets_a_job_and_its_request() {
        let (_dir, store) = fresh();
        let job = enqueue(&store, 0);
        assert!(store.delete(&job.id).unwrap());
        assert!(!store.delete(&job.id).unwrap());
        assert_eq!(store.get(&job.id).unwrap(), None);
        assert_eq!(store.active(JobKind::Export).unwrap(), 0);
        assert_eq!(claim(&store, "n/a/0", t(0)), None);
        let again = enqueue(&store, 0);
        assert_ne!(again.id, job.id);

        // Deleting a finished job keeps the index entry of a newer job of
        // the same request.
        claim(&store, "n/a/0", t(0)).unwrap();
        store
            .finish(&again.id, "n/a/0", Finish::Cancelled, t(1))
            .unwrap();
        let newer = enqueue(&store, 0);
        assert!(store.delete(&again.id).unwrap());
        let (same, created) = store
            .enqueue(new_job(JobKind::Export, serde_json::json!({ "n": 0 })))
            .unwrap();
        assert!(!created);
        assert_eq!(same.id, newer.id);
    }

    #[test]
    fn jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (claimed, waiting) = {
            let store = SledStore::open(dir.path()).unwrap();
            let claimed = enqueue(&store, 0);
            let waiting = enqueue(&store, 1);
            let finished = enqueue(&store, 2);
            store.request_cancel(&finished.id, t(0)).unwrap();
            claim(&store, "n/a/0", t(0)).unwrap();
            (claimed, waiting)
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(state(&store, &claimed.id), JobState::Running);
        assert_eq!(state(&store, &waiting.id), JobState::Queued);
        assert_eq!(store.list(None).unwrap().len(), 3);
        assert_eq!(store.active(JobKind::Export).unwrap(), 2);
        // Enqueue order, and the sequence, carry on.
        let next = enqueue(&store, 3);
        assert_eq!(claim(&store, "n/a/0", t(1)).unwrap().id, waiting.id);
        assert_eq!(claim(&store, "n/a/0", t(1)).unwrap().id, next.id);
    }
}
