//! The initial-load lock: while an `InitialLoad` import is queued or
//! running, REST writes answer 423 Locked (reads, `$export`, `$import`
//! status and cancel go on).
//!
//! The truth is the job store: the lock is the set of non-final
//! `InitialLoad` jobs. It is read from there at start-up (so a restart with
//! such a job still queued or running stays locked), grows when a kick-off
//! registers one, and shrinks when a write finds one of its jobs final.
//! A write while nothing is held costs one atomic load; while something is,
//! one job record read per held job.
//!
//! A write admitted just before a kick-off is registered may still commit
//! after it: the lock orders writes against registrations, not against the
//! job's own commits.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::blocking;
use crate::api::error::ApiError;
use crate::import::{ImportMode, ImportRequest};
use crate::jobs::{JobId, JobKind, JobRecord, JobStore, JobStoreError};

#[derive(Clone)]
pub struct ImportLock {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Arc<dyn JobStore>,
    /// Whether `held` may be non-empty: the fast path of every write.
    locked: AtomicBool,
    held: Mutex<BTreeSet<JobId>>,
}

impl ImportLock {
    /// The lock as the job store has it: held by every non-final
    /// `InitialLoad` import.
    pub fn load(jobs: Arc<dyn JobStore>) -> Result<Self, JobStoreError> {
        let held: BTreeSet<JobId> = jobs
            .list(Some(JobKind::Import))?
            .into_iter()
            .filter(|job| !job.state.is_final() && is_initial_load(job))
            .map(|job| job.id)
            .collect();
        if let Some(id) = held.first() {
            tracing::info!(job = %id, "an initial import is not finished: REST writes answer 423");
        }
        Ok(ImportLock {
            inner: Arc::new(Inner {
                jobs,
                locked: AtomicBool::new(!held.is_empty()),
                held: Mutex::new(held),
            }),
        })
    }

    /// Runs `register`, which registers an `InitialLoad` job (returning it
    /// and whether it is new), with the lock taken: a write checked
    /// meanwhile waits, and is refused if a job was registered.
    pub fn hold_while<E>(
        &self,
        register: impl FnOnce() -> Result<(JobRecord, bool), E>,
    ) -> Result<(JobRecord, bool), E> {
        let mut held = self.held();
        self.inner.locked.store(true, Ordering::SeqCst);
        let registered = register();
        if let Ok((job, _)) = &registered
            && !job.state.is_final()
        {
            held.insert(job.id.clone());
        }
        self.inner.locked.store(!held.is_empty(), Ordering::SeqCst);
        registered
    }

    /// `Err(Locked)` while an `InitialLoad` job is queued or running.
    pub async fn check(&self) -> Result<(), ApiError> {
        if !self.inner.locked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let lock = self.clone();
        let holder = blocking::run(move || lock.refresh()).await?;
        match holder {
            None => Ok(()),
            Some(id) => Err(ApiError::Locked(format!(
                "the initial import {id} is queued or running: the server takes no other writes until it ends (reads, $export and the import's status and cancel still work)"
            ))),
        }
    }

    /// Drops the jobs that are final (or gone) and returns one still held.
    fn refresh(&self) -> Result<Option<JobId>, ApiError> {
        let mut held = self.held();
        let mut ended = Vec::new();
        for id in held.iter() {
            match self.inner.jobs.get(id)? {
                Some(job) if !job.state.is_final() => return Ok(Some(job.id)),
                _ => ended.push(id.clone()),
            }
        }
        for id in ended {
            tracing::info!(job = %id, "initial import ended: REST writes accepted again");
            held.remove(&id);
        }
        self.inner.locked.store(!held.is_empty(), Ordering::SeqCst);
        Ok(None)
    }

    fn held(&self) -> MutexGuard<'_, BTreeSet<JobId>> {
        // The set stays consistent whatever panicked while holding it.
        self.inner.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether an import job's request is an `InitialLoad`.
pub fn is_initial_load(job: &JobRecord) -> bool {
    serde_json::from_value::<ImportRequest>(job.request.clone())
        .is_ok_and(|request| request.mode == ImportMode::InitialLoad)
}

/// The middleware: refuses what writes resources while the lock is held.
pub async fn refuse_writes(
    State(lock): State<ImportLock>,
    request: Request,
    next: Next,
) -> Response {
    if writes_resources(request.method(), request.uri().path())
        && let Err(locked) = lock.check().await
    {
        return locked.into_response();
    }
    next.run(request).await
}

/// Every request that is not safe (GET, HEAD, OPTIONS) writes resources,
/// except the Bulk Data kick-offs (`$export` only reads; `$import` has its
/// own rule, see `kickoff`), what happens under `/_operations` (status and
/// cancel of jobs) and `/_admin` (plugins), and a search by POST. Anything
/// else, including paths no route serves, is refused while locked: a write
/// route added later is locked without anyone remembering to.
fn writes_resources(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let exempt = matches!(first, "_operations" | "_admin")
        || matches!(last, "$export" | "$import")
        || (*method == Method::POST && last == "_search" && path.matches('/').count() == 2);
    !exempt
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fhir::Instant;
    use crate::import::{ImportInput, SourceUrl};
    use crate::jobs::{Finish, NewJob};
    use crate::store::sled::SledStore;

    fn enqueue(jobs: &dyn JobStore, mode: ImportMode, url: &str) -> JobId {
        let request = ImportRequest {
            request_url: "http://h/$import".into(),
            mode,
            allow_negative_versions: false,
            inputs: vec![ImportInput {
                resource_type: None,
                url: SourceUrl(url.into()),
                etag: None,
            }],
            error_location: None,
        };
        let new = NewJob {
            kind: JobKind::Import,
            request: serde_json::to_value(request).unwrap(),
            owner: None,
            created: Instant::now(),
        };
        jobs.enqueue(new).unwrap().0.id
    }

    fn is_locked(result: Result<(), ApiError>) -> bool {
        match result {
            Ok(()) => false,
            Err(ApiError::Locked(_)) => true,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn held_by_unfinished_initial_loads_only() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Arc<dyn JobStore> = Arc::new(SledStore::open(dir.path()).unwrap());
        let incremental = enqueue(jobs.as_ref(), ImportMode::IncrementalLoad, "file:///a");
        let lock = ImportLock::load(jobs.clone()).unwrap();
        assert!(!is_locked(lock.check().await));
        jobs.request_cancel(&incremental, Instant::now()).unwrap();

        // Read from the store, as at a start-up.
        let initial = enqueue(jobs.as_ref(), ImportMode::InitialLoad, "file:///b");
        let lock = ImportLock::load(jobs.clone()).unwrap();
        assert!(is_locked(lock.check().await));
        let now = Instant::now();
        let claimed = jobs
            .claim(&[JobKind::Import], "w", now, Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, initial);
        assert!(is_locked(lock.check().await), "running");
        let result = Finish::Completed {
            result: serde_json::Value::Null,
        };
        jobs.finish(&initial, "w", result, now).unwrap();
        assert!(!is_locked(lock.check().await), "completed");
        assert!(!lock.inner.locked.load(Ordering::SeqCst));

        // Taken at a kick-off; a cancel while queued ends it at once.
        let registered = lock.hold_while(|| {
            let id = enqueue(jobs.as_ref(), ImportMode::InitialLoad, "file:///c");
            jobs.get(&id).map(|job| (job.unwrap(), true))
        });
        let next = registered.unwrap().0.id;
        assert!(is_locked(lock.check().await));
        let failed: Result<(JobRecord, bool), ApiError> =
            lock.hold_while(|| Err(ApiError::invalid("refused")));
        assert!(failed.is_err());
        assert!(is_locked(lock.check().await), "still held by the first");
        jobs.request_cancel(&next, Instant::now()).unwrap();
        assert!(!is_locked(lock.check().await), "cancelled");
    }

    #[test]
    fn what_the_lock_refuses() {
        let (get, post, put, delete, patch) = (
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        );
        let refused = [
            (&post, "/"),
            (&post, "/Patient"),
            (&put, "/Patient/1"),
            (&put, "/Patient"),
            (&delete, "/Patient/1"),
            (&delete, "/Patient"),
            (&patch, "/Patient/1"),
            (&post, "/Patient/1/_search"),
            (&post, "/Patient/$validate"),
            (&post, "/_search"),
        ];
        for (method, path) in refused {
            assert!(writes_resources(method, path), "{method} {path}");
        }
        let allowed = [
            (&get, "/Patient/1"),
            (&Method::HEAD, "/Patient/1"),
            (&Method::OPTIONS, "/"),
            (&get, "/_history"),
            (&post, "/Patient/_search"),
            (&post, "/$export"),
            (&post, "/Patient/$export"),
            (&post, "/Group/g/$export"),
            (&post, "/$import"),
            (
                &delete,
                "/_operations/import/6a1f0a9e-0000-4000-8000-000000000000",
            ),
            (
                &delete,
                "/_operations/export/6a1f0a9e-0000-4000-8000-000000000000",
            ),
            (&post, "/_admin/plugins/reload"),
        ];
        for (method, path) in allowed {
            assert!(!writes_resources(method, path), "{method} {path}");
        }
    }
}
