//! How long a finished export stays, and removing it: on `DELETE` of its
//! status URL, and by the janitor once `export.retention_hours` have passed
//! since it finished.

use std::time::Duration;

use crate::export::ExportError;
use crate::fhir::Instant;
use crate::jobs::{JobId, JobKind, JobRecord, JobState, JobStoreError};

use super::Exports;

/// Where a job stands with respect to retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Queued or running.
    Pending,
    /// Finished (completed or failed): its status and files stay until then.
    At(Instant),
    /// Cancelled (or a cancel was asked for), or past retention: to clients
    /// it no longer exists (404); the janitor removes what is left.
    Gone(&'static str),
}

pub fn expiry(job: &JobRecord, retention: Duration, now: Instant) -> Expiry {
    if job.cancel_requested || job.state == JobState::Cancelled {
        return Expiry::Gone("was cancelled");
    }
    if !job.state.is_final() {
        return Expiry::Pending;
    }
    let finished = job.finished.unwrap_or(job.created);
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let at = Instant::from_millis(finished.as_millis().saturating_add(retention));
    if at <= now {
        Expiry::Gone("has expired")
    } else {
        Expiry::At(at)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// Boxed: an export error is several times larger than the others.
    #[error("removing the files of export {0}: {1}")]
    Files(JobId, Box<ExportError>),
    #[error("removing export {0}: {1}")]
    Record(JobId, JobStoreError),
    #[error("listing the exports: {0}")]
    List(JobStoreError),
}

/// Deletes a finished job's files, then its record: a failure in between
/// leaves a record the janitor removes again, never files without one.
/// Blocking.
pub fn remove(exports: &Exports, job: &JobRecord) -> Result<(), RemoveError> {
    let id = || job.id.clone();
    exports
        .handler
        .remove_files(job)
        .map_err(|e| RemoveError::Files(id(), Box::new(e)))?;
    exports
        .jobs
        .delete(&job.id)
        .map_err(|e| RemoveError::Record(id(), e))?;
    Ok(())
}

/// Every `period`, removes the exports that are gone: cancelled ones at once
/// (a cancelled job's worker has stopped writing), finished ones past
/// retention. Runs until the task is dropped.
pub async fn run_janitor(exports: Exports, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let exports = exports.clone();
        let swept = tokio::task::spawn_blocking(move || sweep(&exports, Instant::now())).await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "removed expired and cancelled exports"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "removing expired exports failed; retrying later")
            }
            Err(error) => tracing::warn!(%error, "the export janitor task failed"),
        }
    }
}

/// One pass of the janitor; how many jobs it removed.
fn sweep(exports: &Exports, now: Instant) -> Result<usize, RemoveError> {
    let mut removed = 0;
    let jobs = exports
        .jobs
        .list(Some(JobKind::Export))
        .map_err(RemoveError::List)?;
    for job in jobs {
        // A job with only a cancel request is still running: its worker
        // may still write, so it waits until it is final.
        if job.state.is_final() && matches!(expiry(&job, exports.retention, now), Expiry::Gone(_)) {
            remove(exports, &job)?;
            removed += 1;
        }
    }
    Ok(removed)
}
