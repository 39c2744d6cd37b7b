//! Durable jobs: a queue persisted next to the data, workers that lease jobs
//! and renew the lease by heartbeat, checkpoints to resume from, cancel.
//! Knows nothing of FHIR operations: a job is a kind, a serialised request, a
//! handler-owned checkpoint and result. `$export` and `$import` are handlers.
//!
//! Exactly-once output is the handler's part: it must make every effect it
//! records in a checkpoint durable *before* checkpointing, and on resume undo
//! any effect made after the last checkpoint (see `export/`).

pub mod engine;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fhir::{Instant, OperationOutcome};

/// A job's id: a UUID, the last segment of its status URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub String);

impl JobId {
    pub fn generate() -> Self {
        JobId(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts only the UUID form, so ids from URLs are safe as file names.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(|u| JobId(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Export,
    Import,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    /// The lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// How far a job has got, for `X-Progress` and listings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done (resources, lines...: the handler says which in `message`).
    pub done: u64,
    /// Units expected, when known.
    pub total: Option<u64>,
    pub message: String,
}

/// Who holds a running job, and until when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// `<node>/<incarnation>`: the node part is stable across restarts of one
    /// host, so a restarted host can release its own stale leases at once.
    pub worker: String,
    pub expires: Instant,
}

/// Why a job failed, as the status endpoint will answer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// HTTP status of the failed status poll (4xx when the request was at
    /// fault, 5xx otherwise).
    pub status: u16,
    /// The OperationOutcome, as JSON.
    pub outcome: serde_json::Value,
}

impl JobError {
    pub fn new(status: u16, outcome: &OperationOutcome) -> Self {
        JobError {
            status,
            outcome: outcome.to_json(),
        }
    }
}

/// Everything persisted about one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    /// The kind's typed request, serialised (e.g. `export::ExportRequest`).
    pub request: serde_json::Value,
    /// Hex SHA-256 of the canonical request: registering the same request
    /// again while a job for it is not final returns that job (idempotency).
    pub request_hash: String,
    /// The client that registered it, once authentication exists.
    pub owner: Option<String>,
    pub created: Instant,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
    pub lease: Option<Lease>,
    /// How many times a worker has started or resumed it.
    pub attempts: u32,
    pub cancel_requested: bool,
    pub progress: Progress,
    /// Handler-owned resume state, written by [`JobStore::checkpoint`].
    pub checkpoint: serde_json::Value,
    /// Handler-owned final output (e.g. the export manifest's data).
    pub result: serde_json::Value,
    pub error: Option<JobError>,
}

/// A job to register.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: JobKind,
    pub request: serde_json::Value,
    pub owner: Option<String>,
    pub created: Instant,
}

/// How a worker ends a job.
#[derive(Clone, Debug)]
pub enum Finish {
    Completed { result: serde_json::Value },
    Failed(JobError),
    Cancelled,
}

/// What a heartbeat learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease was extended; the job goes on.
    Renewed,
    /// The lease was extended, but a client asked to cancel.
    CancelRequested,
    /// This worker no longer holds the job (its lease expired and another
    /// worker took it, or it was deleted): stop without writing anything.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    #[error("job storage failure: {0}")]
    Backend(String),
    #[error("corrupt job record {0}")]
    Corrupt(String),
    /// The caller does not hold the job's lease (or the job is gone).
    #[error("job {0} is not held by this worker")]
    NotHolder(JobId),
}

/// Persistence of jobs. Implementations must make each method atomic: two
/// workers (threads, or later hosts) can never both claim one job.
pub trait JobStore: Send + Sync + 'static {
    /// Registers a job, or returns the existing non-final job of the same
    /// kind and request hash (`false` = not newly created).
    fn enqueue(&self, job: NewJob) -> Result<(JobRecord, bool), JobStoreError>;

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JobStoreError>;

    /// All jobs of `kind` (all kinds when `None`), oldest first.
    fn list(&self, kind: Option<JobKind>) -> Result<Vec<JobRecord>, JobStoreError>;

    /// Jobs of `kind` that are queued or running.
    fn active(&self, kind: JobKind) -> Result<usize, JobStoreError>;

    /// Takes the oldest queued job of one of `kinds`, or else a running one
    /// whose lease expired before `now` (counting a new attempt), leasing it
    /// to `worker` until `now + lease`. A job with `cancel_requested` and an
    /// expired lease is finished as cancelled instead of being handed out.
    fn claim(
        &self,
        kinds: &[JobKind],
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Option<JobRecord>, JobStoreError>;

    /// Makes every lease held by a worker whose id starts with `node/`
    /// expire now: called at start-up, when no worker of this node can be
    /// alive, so that interrupted jobs resume at once.
    fn release_node(&self, node: &str) -> Result<usize, JobStoreError>;

    fn heartbeat(
        &self,
        id: &JobId,
        worker: &str,
        now: Instant,
        lease: Duration,
    ) -> Result<Heartbeat, JobStoreError>;

    /// Records resume state and progress; `NotHolder` if `worker` lost the job.
    fn checkpoint(
        &self,
        id: &JobId,
        worker: &str,
        checkpoint: serde_json::Value,
        progress: Progress,
    ) -> Result<(), JobStoreError>;

    /// Ends a running job; `NotHolder` if `worker` lost it.
    fn finish(
        &self,
        id: &JobId,
        worker: &str,
        finish: Finish,
        now: Instant,
    ) -> Result<(), JobStoreError>;

    /// Cancels: a queued job becomes cancelled at once; a running one gets
    /// `cancel_requested` (its worker sees it at the next heartbeat).
    /// Returns the job as it now is, `None` if unknown.
    fn request_cancel(&self, id: &JobId, now: Instant) -> Result<Option<JobRecord>, JobStoreError>;

    /// Forgets a job (its outputs are the caller's to remove).
    fn delete(&self, id: &JobId) -> Result<bool, JobStoreError>;
}

/// Why a handler stopped without a result.
#[derive(Clone, Debug, PartialEq)]
pub enum JobFailure {
    /// A client cancelled the job: the engine records it as cancelled.
    Cancelled,
    /// This worker lost the lease: the engine records nothing (another worker
    /// owns the job now).
    Lost,
    /// The job cannot complete: recorded as failed with this answer.
    Failed(JobError),
}

/// Runs one kind of job. The engine calls `run` on a blocking thread, with
/// the record as claimed (its `checkpoint` is where to resume from; `Null`
/// on a first attempt). `run` must call [`JobContext::check`] (or
/// `checkpoint`) often enough to stop within about a heartbeat interval of a
/// cancel.
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> JobKind;

    /// Returns the job's result (stored as [`JobRecord::result`]).
    fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobFailure>;
}

const SIGNAL_RUNNING: u8 = 0;
const SIGNAL_CANCEL: u8 = 1;
const SIGNAL_LOST: u8 = 2;
/// The engine is shutting down: the handler stops as if it lost the job
/// (nothing is recorded; the job keeps its lease, and the next start of this
/// node releases and resumes it).
const SIGNAL_SHUTDOWN: u8 = 3;

/// A running job's line to the engine: its heartbeat task raises the signal,
/// the handler polls it and checkpoints through it.
pub struct JobContext {
    store: Arc<dyn JobStore>,
    id: JobId,
    worker: String,
    signal: Arc<AtomicU8>,
}

impl JobContext {
    pub(crate) fn new(store: Arc<dyn JobStore>, id: JobId, worker: String) -> Self {
        JobContext {
            store,
            id,
            worker,
            signal: Arc::new(AtomicU8::new(SIGNAL_RUNNING)),
        }
    }

    /// The flag the heartbeat task raises (shared with it).
    pub(crate) fn signal(&self) -> Arc<AtomicU8> {
        self.signal.clone()
    }

    pub(crate) fn raise(signal: &AtomicU8, heartbeat: Heartbeat) {
        let value = match heartbeat {
            Heartbeat::Renewed => return,
            Heartbeat::CancelRequested => SIGNAL_CANCEL,
            Heartbeat::Lost => SIGNAL_LOST,
        };
        signal.fetch_max(value, Ordering::SeqCst);
    }

    pub(crate) fn raise_shutdown(signal: &AtomicU8) {
        signal.fetch_max(SIGNAL_SHUTDOWN, Ordering::SeqCst);
    }

    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// `Err` once the job was cancelled, this worker lost it or the engine
    /// is shutting down (the last two as [`JobFailure::Lost`]).
    pub fn check(&self) -> Result<(), JobFailure> {
        match self.signal.load(Ordering::SeqCst) {
            SIGNAL_RUNNING => Ok(()),
            SIGNAL_CANCEL => Err(JobFailure::Cancelled),
            _ => Err(JobFailure::Lost),
        }
    }

    /// Persists resume state and progress (after [`JobContext::check`]).
    pub fn checkpoint(
        &self,
        checkpoint: serde_json::Value,
        progress: Progress,
    ) -> Result<(), JobFailure> {
        self.check()?;
        match self
            .store
            .checkpoint(&self.id, &self.worker, checkpoint, progress)
        {
            Ok(()) => Ok(()),
            Err(JobStoreError::NotHolder(_)) => {
                self.signal.store(SIGNAL_LOST, Ordering::SeqCst);
                Err(JobFailure::Lost)
            }
            Err(e) => Err(JobFailure::Failed(JobError::new(
                500,
                &OperationOutcome::error(
                    crate::fhir::IssueType::Exception,
                    format!("saving the job checkpoint: {e}"),
                ),
            ))),
        }
    }
}
