//! One attempt at an export job, first or resumed: clean the folder down to
//! what the checkpoint lists, plan, write the error file, run the units in
//! parallel, and assemble the result from the final checkpoint.
//!
//! Exactly-once rests on the order "commit the file, then checkpoint it"
//! (see `checkpoint`) and on one worker at a time per job, which the job
//! lease gives. A worker that lost its lease learns it at its next check or
//! checkpoint and stops; its pending files have names of their own, so its
//! aborts never touch the new holder's. The window left open: a file the
//! old worker commits between losing the lease and noticing could replace
//! a same-named file the new holder committed. That takes a worker stalled
//! past the whole lease (10 minutes by default) with its heartbeat stopped
//! too; a fencing token checked by the destination would close it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::destinations::{Destination, Folder};
use crate::fhir::OperationOutcome;
use crate::jobs::{JobContext, JobRecord};

use super::ExportHandler;
use super::checkpoint::{Checkpoint, Position, StreamState, UnitState};
use super::error::ExportError;
use super::files::{Kind, Lines, Stream, Target, job_folder};
use super::manifest::{ExportResult, ResultFile};
use super::plan::{Plan, Unit, Work};
use super::request::ExportRequest;
use super::snapshot::Snapshot;
use super::unit::{Shared, UnitRun};

pub fn run(
    handler: &ExportHandler,
    job: &JobRecord,
    ctx: &JobContext,
) -> Result<Value, ExportError> {
    let request = super::request_of(job)?;
    let folder = job_folder(job, &request)?;
    let result = attempt(handler, job, ctx, &request, &folder);
    match &result {
        Ok(_) => tracing::info!(job = %job.id, folder = %folder, "export completed"),
        // Another worker owns the job now, or this one is stopping: its
        // files are the job's, not garbage.
        Err(ExportError::Lost | ExportError::Stopped) => {}
        // A cancelled or failed export's files are never served.
        Err(e) => {
            tracing::info!(job = %job.id, error = %e, "export ended without a result; removing its files");
            if let Err(e) = handler.destination.remove_folder(&folder) {
                tracing::warn!(job = %job.id, folder = %folder, error = %e, "removing export files failed");
            }
        }
    }
    result
}

fn attempt(
    handler: &ExportHandler,
    job: &JobRecord,
    ctx: &JobContext,
    request: &ExportRequest,
    folder: &Folder,
) -> Result<Value, ExportError> {
    let mut checkpoint: Checkpoint = if job.checkpoint.is_null() {
        Checkpoint::default()
    } else {
        serde_json::from_value(job.checkpoint.clone()).map_err(|e| ExportError::Corrupt {
            what: "checkpoint",
            message: e.to_string(),
        })?
    };
    tracing::info!(job = %job.id, attempt = job.attempts, resumed = !job.checkpoint.is_null(), "export starting");
    // The plugins of this attempt, whatever a reload does meanwhile.
    let plugins = handler.plugins.current();
    clean(&*handler.destination, folder, &checkpoint)?;
    let snapshot = Arc::new(Snapshot::new(
        handler.store.clone(),
        request.transaction_time,
    ));
    let config = &handler.config;
    let plan = Plan::build(
        request,
        &plugins,
        &snapshot,
        config.parallelism,
        checkpoint.partitions,
    )?;
    if plan.patients.is_some() {
        checkpoint.partitions = plan.units.first().map(|u| u.parts);
    }
    let sink = plugins
        .sink(request.sink.as_deref())
        .ok_or_else(|| ExportError::SinkGone(request.sink.clone().unwrap_or_default()))?;
    let target = Target {
        destination: &*handler.destination,
        folder,
        sink,
        job_id: job.id.as_str(),
        max_lines: u64::try_from(config.file_max_resources.max(1)).unwrap_or(u64::MAX),
        max_bytes: config.file_max_bytes.max(1),
    };
    let errors_written = checkpoint.errors.is_some();
    let pending: Vec<(&Unit, UnitState)> = plan
        .units
        .iter()
        .map(|u| {
            (
                u,
                checkpoint.units.get(&u.name).cloned().unwrap_or_default(),
            )
        })
        .filter(|(_, state)| !state.done)
        .collect();
    let lock = Mutex::new(checkpoint);
    let stop = AtomicBool::new(false);
    let shared = Shared {
        snapshot: &snapshot,
        plan: &plan,
        target: &target,
        batch_lines: config.batch_lines.max(1),
        ctx,
        checkpoint: &lock,
        stop: &stop,
    };
    if !errors_written {
        write_errors(&shared, &plan.warnings)?;
    }
    // The referenced unit exports what the others collected: it runs last.
    let (last, first): (Vec<_>, Vec<_>) = pending
        .into_iter()
        .partition(|(u, _)| u.work == Work::Referenced);
    run_units(&shared, first, config.parallelism)?;
    run_units(&shared, last, config.parallelism)?;
    let checkpoint = lock.into_inner().unwrap_or_else(PoisonError::into_inner);
    serde_json::to_value(result(request, &checkpoint)).map_err(|e| ExportError::Corrupt {
        what: "result",
        message: e.to_string(),
    })
}

/// Deletes whatever an interrupted attempt left that the checkpoint does
/// not list: pending files, and files committed after the last checkpoint
/// (their lines are written again).
fn clean(
    destination: &dyn Destination,
    folder: &Folder,
    checkpoint: &Checkpoint,
) -> Result<(), ExportError> {
    destination.remove_pending(folder)?;
    let listed: HashSet<&str> = checkpoint.files().map(|f| f.file.as_str()).collect();
    for name in destination.list(folder)? {
        if !listed.contains(name.as_str()) {
            destination.remove(folder, &name)?;
        }
    }
    Ok(())
}

/// The error file: one OperationOutcome per warning found while planning
/// (none: no file), committed and checkpointed before any unit runs.
fn write_errors(shared: &Shared, warnings: &[OperationOutcome]) -> Result<(), ExportError> {
    let mut stream = Stream::new(shared.target, Kind::Errors, 1, 1, StreamState::default());
    let mut lines = Lines::default();
    for (i, warning) in warnings.iter().enumerate() {
        // Distinct positions, so that a long error file may roll over.
        let pos = Position {
            patient: String::new(),
            id: format!("{i:010}"),
        };
        lines.push(warning.to_json().to_string().as_bytes(), pos, None);
    }
    if let Err(e) = stream.write(&lines).and_then(|_| stream.finish()) {
        stream.abort();
        return Err(e);
    }
    let state = stream.state().clone();
    shared.save(|checkpoint| checkpoint.errors = Some(state))
}

/// Runs the units on up to `parallelism` threads. The first failure stops
/// the others at their next check and is the one returned.
fn run_units(
    shared: &Shared,
    units: Vec<(&Unit, UnitState)>,
    parallelism: usize,
) -> Result<(), ExportError> {
    let threads = parallelism.clamp(1, units.len().max(1));
    let queue = Mutex::new(VecDeque::from(units));
    let failure: Mutex<Option<ExportError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !shared.stop.load(Ordering::SeqCst) {
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some((unit, state)) = next else {
                        break;
                    };
                    if let Err(e) = UnitRun::new(shared, unit, state).run() {
                        // Recorded before the others are told to stop, so
                        // that their `Stopped` never takes its place.
                        failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                        shared.stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The job's result: every file the checkpoint lists.
fn result(request: &ExportRequest, checkpoint: &Checkpoint) -> ExportResult {
    let files = |kind: Kind, state: &StreamState| {
        state
            .files
            .iter()
            .map(|f| ResultFile {
                rtype: kind.line_type().to_owned(),
                file: f.file.clone(),
                count: f.count,
                location: f.location.clone(),
            })
            .collect::<Vec<_>>()
    };
    let mut output = Vec::new();
    let mut deleted = Vec::new();
    for unit in checkpoint.units.values() {
        for (rtype, state) in &unit.output {
            output.extend(files(Kind::Output(*rtype), state));
        }
        for (rtype, state) in &unit.deleted {
            deleted.extend(files(Kind::Deleted(*rtype), state));
        }
    }
    ExportResult {
        transaction_time: request.transaction_time,
        request: request.request_url.clone(),
        output,
        deleted,
        error: checkpoint
            .errors
            .as_ref()
            .map(|s| files(Kind::Errors, s))
            .unwrap_or_default(),
    }
}
