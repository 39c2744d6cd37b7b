//! The worker pool: claims jobs, runs their handler on a blocking thread,
//! renews leases, relays cancellation, records the end.
//!
//! Each worker is a tokio task that loops: claim (store calls run on the
//! blocking pool), run the claimed job's handler on a blocking thread while
//! heartbeating its lease, record how it ended; with nothing to claim, wait
//! for the poll interval or [`Engine::wake`]. Every decision about which job
//! runs where is the store's ([`JobStore::claim`]), so several engines (hosts)
//! can share one store.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::MissedTickBehavior;

use super::{
    Finish, JobContext, JobError, JobFailure, JobHandler, JobId, JobKind, JobRecord, JobStore,
    JobStoreError,
};
use crate::fhir::{Instant, IssueType, OperationOutcome};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This host's name in lease holders (`<node>/<incarnation>/<n>`): it
    /// must stay the same across restarts and differ between hosts sharing
    /// a store, so that a restart releases exactly its own stale leases.
    pub node: String,
    pub workers: usize,
    /// How long a claim or heartbeat holds a job: a worker silent for this
    /// long is presumed dead and its job goes to another worker.
    pub lease: Duration,
    /// How often a running job's lease is renewed; also the longest a
    /// cancel can go unnoticed (unless [`Engine::wake`] is called).
    pub heartbeat: Duration,
    /// How often an idle worker looks for work without being woken.
    pub poll: Duration,
}

impl Default for EngineConfig {
    /// A 10-minute lease: a job whose worker has not been heard of for 10
    /// minutes is stuck and resumes elsewhere. Four heartbeats per lease, so
    /// that one slow or failed renewal does not lose the job.
    fn default() -> Self {
        let lease = Duration::from_secs(10 * 60);
        EngineConfig {
            node: String::from("local"),
            workers: 2,
            lease,
            heartbeat: lease / 4,
            poll: Duration::from_secs(1),
        }
    }
}

/// A handle on the running worker pool. Clones share the pool: the API keeps
/// one to [`wake`](Engine::wake) it, the server another to shut it down.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// What the workers share.
struct Shared {
    store: Arc<dyn JobStore>,
    handlers: HashMap<JobKind, Arc<dyn JobHandler>>,
    /// The kinds there is a handler for: the only ones claimed.
    kinds: Vec<JobKind>,
    config: EngineConfig,
    /// Wakes idle workers (new job) and makes running ones heartbeat at once
    /// (a cancel to relay).
    wake: Notify,
    /// `true` once shutting down.
    stop: watch::Sender<bool>,
    /// Taken by the first [`Engine::shutdown`].
    workers: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} job worker(s) still running when the shutdown timeout ran out")]
pub struct ShutdownTimeout(pub usize);

impl Engine {
    /// Releases the leases this node's previous incarnation held (no worker
    /// of it can be alive), then spawns the workers. Must be called within a
    /// tokio runtime; blocks for that one store write. One handler per kind:
    /// a later one for the same kind replaces an earlier one.
    pub fn start(
        store: Arc<dyn JobStore>,
        handlers: Vec<Arc<dyn JobHandler>>,
        config: EngineConfig,
    ) -> Result<Engine, JobStoreError> {
        let released = store.release_node(&config.node)?;
        if released > 0 {
            tracing::info!(node = %config.node, released, "resuming jobs interrupted by the last stop");
        }
        let handlers: HashMap<_, _> = handlers.into_iter().map(|h| (h.kind(), h)).collect();
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            kinds: handlers.keys().copied().collect(),
            handlers,
            config,
            wake: Notify::new(),
            stop,
            workers: Mutex::new(Vec::new()),
        });
        let incarnation = uuid::Uuid::new_v4();
        let workers = (0..shared.config.workers)
            .map(|n| {
                let worker = format!("{}/{incarnation}/{n}", shared.config.node);
                tokio::spawn(work(shared.clone(), worker))
            })
            .collect();
        *lock_workers(&shared) = workers;
        Ok(Engine { shared })
    }

    /// Call after enqueuing (idle workers claim at once instead of at the
    /// next poll) and after requesting a cancel (running workers heartbeat at
    /// once, so the handler sees the cancel within milliseconds).
    pub fn wake(&self) {
        self.shared.wake.notify_waiters();
    }

    /// Stops claiming, tells running handlers to stop (their `check` fails
    /// as [`JobFailure::Lost`]: nothing is recorded, the next start resumes
    /// them) and waits up to `timeout` for every worker to end. A handler
    /// that ignores the signal keeps its blocking thread past the timeout.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), ShutdownTimeout> {
        self.shared.stop.send_replace(true);
        let mut workers = std::mem::take(&mut *lock_workers(&self.shared));
        let all_ended = async {
            for worker in workers.iter_mut() {
                if let Err(e) = worker.await {
                    tracing::error!(error = %e, "a job worker ended abnormally");
                }
            }
        };
        if tokio::time::timeout(timeout, all_ended).await.is_ok() {
            return Ok(());
        }
        let running = workers.iter().filter(|w| !w.is_finished()).count();
        Err(ShutdownTimeout(running))
    }
}

fn lock_workers(shared: &Shared) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
    shared
        .workers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// One worker's life: claim and run until shutdown.
async fn work(shared: Arc<Shared>, worker: String) {
    let mut stop = shared.stop.subscribe();
    while !*stop.borrow() {
        // Created before the claim: a `Notified` receives every
        // `notify_waiters` from its creation on, so a wake between a claim
        // that finds nothing and the wait below is not missed.
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        match claim(&shared, &worker).await {
            Ok(Some(job)) => {
                run(&shared, &worker, job, &mut stop).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(worker, error = %e, "claiming a job failed"),
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep(shared.config.poll) => {}
            () = stopped(&mut stop) => {}
        }
    }
}

/// Resolves once the engine shuts down. The guard `wait_for` returns is
/// dropped here: it must not live across the await points of a worker.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error would mean the sender is gone; `Shared`, which holds it,
    // outlives every worker.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn claim(shared: &Arc<Shared>, worker: &str) -> Result<Option<JobRecord>, JobStoreError> {
    let (s, worker) = (shared.clone(), worker.to_owned());
    blocking(move || {
        s.store
            .claim(&s.kinds, &worker, Instant::now(), s.config.lease)
    })
    .await
}

/// Runs one claimed job to its end and records it.
async fn run(shared: &Arc<Shared>, worker: &str, job: JobRecord, stop: &mut watch::Receiver<bool>) {
    let (id, kind) = (job.id.clone(), job.kind);
    tracing::info!(job = %id, ?kind, attempt = job.attempts, worker, "job started");
    let finish = match shared.handlers.get(&kind).cloned() {
        Some(handler) => {
            let ctx = JobContext::new(shared.store.clone(), id.clone(), worker.to_owned());
            let signal = ctx.signal();
            let task = tokio::task::spawn_blocking(move || handler.run(&job, &ctx));
            let outcome = supervise(shared, worker, &id, &signal, task, stop).await;
            ending(kind, outcome)
        }
        // Claims name only kinds with a handler; kept total all the same.
        None => Some(Finish::Failed(internal(format!(
            "no handler for {kind:?} jobs"
        )))),
    };
    match finish {
        Some(finish) => record(shared, worker, &id, finish).await,
        None => tracing::info!(job = %id, worker, "job stopped without an end: it resumes later"),
    }
}

/// Waits for the handler while renewing its lease, and relays what the
/// heartbeats learn and the shutdown to it.
async fn supervise(
    shared: &Arc<Shared>,
    worker: &str,
    id: &JobId,
    signal: &AtomicU8,
    mut task: JoinHandle<Result<serde_json::Value, JobFailure>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Result<serde_json::Value, JobFailure>, JoinError> {
    let period = shared.config.heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            outcome = &mut task => return outcome,
            _ = beat.tick() => heartbeat(shared, worker, id, signal).await,
            () = shared.wake.notified() => heartbeat(shared, worker, id, signal).await,
            () = stopped(stop), if !stopping => {
                stopping = true;
                JobContext::raise_shutdown(signal);
            }
        }
    }
}

/// A failed renewal is only logged: the next one may succeed before the
/// lease runs out, and if it does not, the job resumes on another worker.
async fn heartbeat(shared: &Arc<Shared>, worker: &str, id: &JobId, signal: &AtomicU8) {
    let (s, w, i) = (shared.clone(), worker.to_owned(), id.clone());
    let beat = blocking(move || s.store.heartbeat(&i, &w, Instant::now(), s.config.lease)).await;
    match beat {
        Ok(beat) => JobContext::raise(signal, beat),
        Err(e) => tracing::warn!(job = %id, worker, error = %e, "renewing a job lease failed"),
    }
}

/// How a handler's outcome is recorded; `None`: not at all (the lease was
/// lost, or the engine or runtime is shutting down).
fn ending(
    kind: JobKind,
    outcome: Result<Result<serde_json::Value, JobFailure>, JoinError>,
) -> Option<Finish> {
    match outcome {
        Ok(Ok(result)) => Some(Finish::Completed { result }),
        Ok(Err(JobFailure::Cancelled)) => Some(Finish::Cancelled),
        Ok(Err(JobFailure::Failed(error))) => Some(Finish::Failed(error)),
        Ok(Err(JobFailure::Lost)) => None,
        Err(e) if e.is_panic() => Some(Finish::Failed(internal(format!(
            "the {kind:?} job handler panicked: {}",
            panic_message(e.into_panic())
        )))),
        Err(_) => None,
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| String::from("(no message)"), |s| (*s).to_owned()),
    }
}

fn internal(diagnostics: String) -> JobError {
    JobError::new(
        500,
        &OperationOutcome::error(IssueType::Exception, diagnostics),
    )
}

/// `NotHolder` is expected when the lease was lost meanwhile: the job is
/// another worker's now. Any other failure leaves the job running until its
/// lease expires; then it runs again.
async fn record(shared: &Arc<Shared>, worker: &str, id: &JobId, finish: Finish) {
    let state = match &finish {
        Finish::Completed { .. } => "completed",
        Finish::Failed(_) => "failed",
        Finish::Cancelled => "cancelled",
    };
    let (s, w, i) = (shared.clone(), worker.to_owned(), id.clone());
    match blocking(move || s.store.finish(&i, &w, finish, Instant::now())).await {
        Ok(()) => tracing::info!(job = %id, worker, state, "job ended"),
        Err(JobStoreError::NotHolder(_)) => {
            tracing::warn!(job = %id, worker, state, "job ended after its lease was lost: not recorded")
        }
        Err(e) => {
            tracing::error!(job = %id, worker, state, error = %e, "recording a job's end failed")
        }
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JobStoreError> + Send + 'static,
) -> Result<T, JobStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobStoreError::Backend(format!("job store call did not complete: {e}")))?
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jobs::{JobState, NewJob, Progress};
    use crate::store::sled::SledStore;

    /// Counts from its checkpoint to `request.count`, one checkpoint per
    /// step of `request.step_ms`; `request.mode` "fail" or "panic" instead
    /// fails or panics at once.
    struct Counter;

    impl JobHandler for Counter {
        fn kind(&self) -> JobKind {
            JobKind::Export
        }

        fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobFailure> {
            match job.request["mode"].as_str() {
                Some("fail") => return Err(JobFailure::Failed(rejected())),
                Some("panic") => panic!("counter bug"),
                _ => {}
            }
            let count = job.request["count"].as_u64().unwrap();
            let step = Duration::from_millis(job.request["step_ms"].as_u64().unwrap_or(0));
            let from = job.checkpoint["n"].as_u64().unwrap_or(0);
            for n in from + 1..=count {
                std::thread::sleep(step);
                let progress = Progress {
                    done: n,
                    total: Some(count),
                    message: String::from("numbers counted"),
                };
                ctx.checkpoint(json!({ "n": n }), progress)?;
            }
            Ok(json!({ "count": count, "resumed_from": from }))
        }
    }

    fn rejected() -> JobError {
        JobError::new(
            422,
            &OperationOutcome::error(IssueType::Invalid, "nothing to count"),
        )
    }

    fn fresh() -> (tempfile::TempDir, Arc<SledStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        (dir, store)
    }

    fn config() -> EngineConfig {
        EngineConfig {
            node: String::from("test"),
            workers: 2,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_millis(20),
            poll: Duration::from_millis(50),
        }
    }

    fn start(store: &Arc<SledStore>, config: EngineConfig) -> Engine {
        Engine::start(store.clone(), vec![Arc::new(Counter)], config).unwrap()
    }

    fn submit(store: &SledStore, request: serde_json::Value) -> JobId {
        let job = NewJob {
            kind: JobKind::Export,
            request,
            owner: None,
            created: Instant::now(),
        };
        store.enqueue(job).unwrap().0.id
    }

    /// Polls the job until `done` holds, for at most `within`.
    async fn until(
        store: &SledStore,
        id: &JobId,
        within: Duration,
        done: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = store.get(id).unwrap().unwrap();
            if done(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting after {within:?}: {job:#?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn until_final(store: &SledStore, id: &JobId) -> JobRecord {
        until(store, id, Duration::from_secs(10), |j| j.state.is_final()).await
    }

    async fn stop(engine: Engine) {
        engine.shutdown(Duration::from_secs(10)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_a_job_to_its_result() {
        let (_dir, store) = fresh();
        let engine = start(&store, config());
        let id = submit(&store, json!({ "count": 5 }));
        let job = until_final(&store, &id).await;
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.result, json!({ "count": 5, "resumed_from": 0 }));
        assert_eq!(job.checkpoint, json!({ "n": 5 }));
        assert_eq!(job.progress.done, 5);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.lease, None);
        assert!(job.finished.is_some());
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_a_handler_failure() {
        let (_dir, store) = fresh();
        let engine = start(&store, config());
        let id = submit(&store, json!({ "mode": "fail" }));
        let job = until_final(&store, &id).await;
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error, Some(rejected()));
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_fails_its_job_and_the_worker_goes_on() {
        let (_dir, store) = fresh();
        let engine = start(
            &store,
            EngineConfig {
                workers: 1,
                ..config()
            },
        );
        let id = submit(&store, json!({ "mode": "panic" }));
        let job = until_final(&store, &id).await;
        assert_eq!(job.state, JobState::Failed);
        let error = job.error.unwrap();
        assert_eq!(error.status, 500);
        let diagnostics = error.outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            diagnostics.contains("panicked: counter bug"),
            "{diagnostics}"
        );

        let next = submit(&store, json!({ "count": 2 }));
        assert_eq!(until_final(&store, &next).await.state, JobState::Completed);
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_reaches_the_handler_at_the_next_heartbeat() {
        let (_dir, store) = fresh();
        let engine = start(&store, config());
        let id = submit(&store, json!({ "count": 100_000, "step_ms": 1 }));
        until(&store, &id, Duration::from_secs(10), |j| {
            j.progress.done > 0
        })
        .await;
        store.request_cancel(&id, Instant::now()).unwrap();
        let job = until(&store, &id, Duration::from_secs(2), |j| j.state.is_final()).await;
        assert_eq!(job.state, JobState::Cancelled);
        assert!(job.cancel_requested);
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wake_relays_a_cancel_without_waiting_for_the_heartbeat() {
        let (_dir, store) = fresh();
        let hour = Duration::from_secs(3600);
        let engine = start(
            &store,
            EngineConfig {
                lease: hour,
                heartbeat: hour,
                ..config()
            },
        );
        let id = submit(&store, json!({ "count": 100_000, "step_ms": 1 }));
        until(&store, &id, Duration::from_secs(10), |j| {
            j.progress.done > 0
        })
        .await;
        store.request_cancel(&id, Instant::now()).unwrap();
        engine.wake();
        let job = until(&store, &id, Duration::from_secs(2), |j| j.state.is_final()).await;
        assert_eq!(job.state, JobState::Cancelled);
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wake_starts_a_job_without_waiting_for_the_poll() {
        let (_dir, store) = fresh();
        let engine = start(
            &store,
            EngineConfig {
                poll: Duration::from_secs(3600),
                ..config()
            },
        );
        // Let both workers find the queue empty and go to sleep.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = submit(&store, json!({ "count": 1 }));
        engine.wake();
        let job = until(&store, &id, Duration::from_secs(2), |j| j.state.is_final()).await;
        assert_eq!(job.state, JobState::Completed);
        stop(engine).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_interrupted_by_shutdown_resumes_from_its_checkpoint() {
        let (_dir, store) = fresh();
        let engine = start(&store, config());
        let id = submit(&store, json!({ "count": 60, "step_ms": 10 }));
        until(&store, &id, Duration::from_secs(10), |j| {
            j.progress.done >= 5
        })
        .await;
        stop(engine).await;

        let interrupted = store.get(&id).unwrap().unwrap();
        assert_eq!(interrupted.state, JobState::Running);
        assert_eq!(interrupted.attempts, 1);
        let reached = interrupted.checkpoint["n"].as_u64().unwrap();
        assert!((5..60).contains(&reached), "stopped at {reached}");
        // Nothing moves while no engine runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.get(&id).unwrap().unwrap(), interrupted);

        let engine = start(&store, config());
        let job = until_final(&store, &id).await;
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.attempts, 2);
        assert_eq!(job.result, json!({ "count": 60, "resumed_from": reached }));
        stop(engine).await;
    }
}
