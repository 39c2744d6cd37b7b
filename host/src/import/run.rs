//! One attempt at an import job, first or resumed: plan (first attempt
//! only), run the unfinished parts in parallel, write the error files, and
//! return the result.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant as Clock;

use serde_json::Value;

use super::checkpoint::{Checkpoint, PartState, PlannedInput, PlannedRange};
use super::error::ImportError;
use super::error_files::{ErrorFile, ErrorFiles};
use super::part::{self, Part, Shared};
use super::ranges::{self, ByteRange};
use super::request::ImportRequest;
use super::result::{ImportErrorFile, ImportOutput, ImportResult};
use super::source::check_etag;
use super::{ImportHandler, error_file_name, session_of};
use crate::jobs::{JobContext, JobRecord, Progress};
use crate::store::ImportSession;

pub fn run(
    handler: &ImportHandler,
    job: &JobRecord,
    ctx: &JobContext,
) -> Result<Value, ImportError> {
    let request: ImportRequest =
        serde_json::from_value(job.request.clone()).map_err(|e| ImportError::Corrupt {
            what: "request",
            message: e.to_string(),
        })?;
    let session = session_of(&job.id);
    let result = attempt(handler, job, ctx, &request, session);
    match &result {
        Ok(_) => tracing::info!(job = %job.id, "import completed"),
        // Another worker owns the job now, or this one is stopping.
        Err(ImportError::Lost | ImportError::Stopped) => {}
        // What was imported stays; the bookkeeping and error files go.
        Err(e) => {
            tracing::info!(job = %job.id, error = %e, "import ended without a result");
            if let Err(e) = handler.store.end_import(session) {
                tracing::warn!(job = %job.id, error = %e, "clearing the import's progress failed");
            }
            let removed = ErrorFiles::of(
                &handler.sources,
                &handler.config.error_dir,
                &job.id,
                &request,
            )
            .and_then(|files| files.clear());
            if let Err(e) = removed {
                tracing::warn!(job = %job.id, error = %e, "removing the import's error files failed");
            }
        }
    }
    let result = result?;
    serde_json::to_value(result).map_err(|e| ImportError::Corrupt {
        what: "result",
        message: e.to_string(),
    })
}

fn attempt(
    handler: &ImportHandler,
    job: &JobRecord,
    ctx: &JobContext,
    request: &ImportRequest,
    session: ImportSession,
) -> Result<ImportResult, ImportError> {
    tracing::info!(job = %job.id, attempt = job.attempts, resumed = !job.checkpoint.is_null(), "import starting");
    let mut plan = if job.checkpoint.is_null() {
        let plan = make_plan(handler, ctx, request)?;
        save(ctx, &plan, 0)?;
        plan
    } else {
        serde_json::from_value(job.checkpoint.clone()).map_err(|e| ImportError::Corrupt {
            what: "checkpoint",
            message: e.to_string(),
        })?
    };
    if let Some(result) = plan.result.clone() {
        handler.store.end_import(session)?;
        return Ok(result);
    }
    let states = progress(handler, session)?;
    let consumed = AtomicU64::new(
        plan.parts()
            .filter_map(|(i, _, r)| states.get(&i).map(|s| s.consumed(r.range)))
            .sum(),
    );
    let pending: Vec<Part> = plan
        .parts()
        .map(|(index, input, range)| Part {
            index,
            input,
            range,
            state: states.get(&index).copied(),
        })
        .filter(|p| !p.state.is_some_and(|s| s.done))
        .collect();
    // The plugins of this attempt, whatever a reload does meanwhile.
    let plugins = handler.plugins.current();
    let stop = AtomicBool::new(false);
    let shared = Shared {
        store: &*handler.store,
        sources: &handler.sources,
        validator: &plugins.import_validator,
        config: &handler.config,
        request,
        plan: &plan,
        plan_json: to_json(&plan)?,
        session,
        ctx,
        stop: &stop,
        consumed: &consumed,
        saved: Mutex::new(Clock::now()),
    };
    run_parts(&shared, pending, handler.config.parallelism)?;
    // Until now batches were applied but not necessarily on disk; the
    // result below tells the client they are.
    handler.store.flush()?;
    let states = progress(handler, session)?;
    let result = finish(handler, job, request, &plan, &states, session)?;
    plan.result = Some(result.clone());
    save(ctx, &plan, plan.total_bytes())?;
    handler.store.end_import(session)?;
    Ok(result)
}

fn to_json(plan: &Checkpoint) -> Result<Value, ImportError> {
    serde_json::to_value(plan).map_err(|e| ImportError::Corrupt {
        what: "checkpoint",
        message: e.to_string(),
    })
}

fn save(ctx: &JobContext, plan: &Checkpoint, done: u64) -> Result<(), ImportError> {
    let progress = Progress {
        done,
        total: Some(plan.total_bytes()),
        message: "bytes of input read".into(),
    };
    Ok(ctx.checkpoint(to_json(plan)?, progress)?)
}

/// Every part's last saved state, by part.
fn progress(
    handler: &ImportHandler,
    session: ImportSession,
) -> Result<HashMap<u32, PartState>, ImportError> {
    handler
        .store
        .import_progress(session)?
        .into_iter()
        .map(|(part, bytes)| {
            PartState::decode(&bytes)
                .map(|s| (part, s))
                .ok_or_else(|| ImportError::Corrupt {
                    what: "progress",
                    message: format!("part {part}"),
                })
        })
        .collect()
}

/// Sizes and entity tags now (checked against the request's), the ranges,
/// and a counting pass for the line numbers of each range.
fn make_plan(
    handler: &ImportHandler,
    ctx: &JobContext,
    request: &ImportRequest,
) -> Result<Checkpoint, ImportError> {
    let transaction_time = handler.store.now()?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        ctx.check()?;
        let info = handler
            .sources
            .open(&input.url)
            .and_then(|s| s.info())
            .map_err(ImportError::at_input(i))?;
        if let Some(expected) = &input.etag {
            check_etag(expected, &info.etag).map_err(ImportError::at_input(i))?;
        }
        let ranges = ranges::split(info.len, handler.config.range_bytes)
            .into_iter()
            .map(|range| PlannedRange {
                range,
                newlines_before: 0,
            })
            .collect();
        inputs.push(PlannedInput {
            len: info.len,
            etag: info.etag,
            ranges,
        });
    }
    let mut plan = Checkpoint {
        transaction_time,
        inputs,
        result: None,
    };
    count_lines(handler, ctx, request, &mut plan)?;
    Ok(plan)
}

/// Counts the `\n` of every range but the last of each input, in parallel,
/// and turns the counts into each range's `newlines_before`.
fn count_lines(
    handler: &ImportHandler,
    ctx: &JobContext,
    request: &ImportRequest,
    plan: &mut Checkpoint,
) -> Result<(), ImportError> {
    let jobs: Vec<(usize, usize, ByteRange)> = plan
        .inputs
        .iter()
        .enumerate()
        .flat_map(|(i, input)| {
            let last = input.ranges.len().saturating_sub(1);
            input.ranges[..last]
                .iter()
                .enumerate()
                .map(move |(k, r)| (i, k, r.range))
        })
        .collect();
    let queue = Mutex::new(VecDeque::from(jobs));
    let counts = Mutex::new(HashMap::new());
    let failure: Mutex<Option<ImportError>> = Mutex::new(None);
    let count = |(i, _, range): (usize, usize, ByteRange)| -> Result<u64, ImportError> {
        ctx.check()?;
        let input = &request.inputs[i];
        let source = handler
            .sources
            .open(&input.url)
            .map_err(ImportError::at_input(i))?;
        let reader = source
            .read_from(range.start, range.end, &plan.inputs[i].etag)
            .map_err(ImportError::at_input(i))?;
        ranges::count_newlines(reader, range.end - range.start)
            .map_err(|e| part::read_error(i, input.url.as_str(), e))
    };
    std::thread::scope(|scope| {
        for _ in 0..handler.config.parallelism.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some(job) = next else { break };
                    match count(job) {
                        Ok(n) => {
                            counts
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert((job.0, job.1), n);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .get_or_insert(e);
                            queue.lock().unwrap_or_else(PoisonError::into_inner).clear();
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    let counts = counts.into_inner().unwrap_or_else(PoisonError::into_inner);
    for (i, input) in plan.inputs.iter_mut().enumerate() {
        let mut before = 0;
        for (k, range) in input.ranges.iter_mut().enumerate() {
            range.newlines_before = before;
            before += counts.get(&(i, k)).copied().unwrap_or(0);
        }
    }
    Ok(())
}

/// Runs the parts on up to `parallelism` threads. The first failure stops
/// the others at their next batch and is the one returned.
fn run_parts(shared: &Shared<'_>, parts: Vec<Part>, parallelism: usize) -> Result<(), ImportError> {
    let threads = parallelism.clamp(1, parts.len().max(1));
    let queue = Mutex::new(VecDeque::from(parts));
    let failure: Mutex<Option<ImportError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !shared.stop.load(Ordering::SeqCst) {
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some(part) = next else { break };
                    if let Err(e) = part::run(shared, part) {
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

/// Writes each input's error file from the store's records (in line
/// order) and builds the result: per input, the non-blank lines minus the
/// rejected ones were imported.
fn finish(
    handler: &ImportHandler,
    job: &JobRecord,
    request: &ImportRequest,
    plan: &Checkpoint,
    states: &HashMap<u32, PartState>,
    session: ImportSession,
) -> Result<ImportResult, ImportError> {
    let files = ErrorFiles::of(
        &handler.sources,
        &handler.config.error_dir,
        &job.id,
        request,
    )?;
    // Whatever an interrupted earlier finish left is written again.
    files.clear()?;
    let mut lines = vec![0u64; request.inputs.len()];
    for (part, input, _) in plan.parts() {
        lines[input] += states.get(&part).map_or(0, |s| s.lines);
    }
    let mut errors = vec![0u64; request.inputs.len()];
    let mut urls: Vec<Option<String>> = vec![None; request.inputs.len()];
    let mut open: Option<(usize, ErrorFile)> = None;
    for record in handler.store.import_rejections(session)? {
        let (input, _, bytes) = record?;
        let input = input as usize;
        if input >= request.inputs.len() {
            return Err(ImportError::Corrupt {
                what: "error records",
                message: format!(
                    "a record of input {} of {}",
                    input + 1,
                    request.inputs.len()
                ),
            });
        }
        if open.as_ref().is_none_or(|(i, _)| *i != input) {
            if let Some((i, file)) = open.take() {
                urls[i] = file.commit()?;
            }
            open = Some((input, files.create(&name_of(request, input))?));
        }
        if let Some((_, file)) = &mut open {
            file.write_line(&bytes)?;
        }
        errors[input] += 1;
    }
    if let Some((i, file)) = open.take() {
        urls[i] = file.commit()?;
    }
    let output = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| ImportOutput {
            resource_type: input.resource_type,
            count: lines[i].saturating_sub(errors[i]),
            input_url: input.url.as_str().to_owned(),
        })
        .collect();
    let error = request
        .inputs
        .iter()
        .enumerate()
        .filter(|(i, _)| errors[*i] > 0)
        .map(|(i, input)| ImportErrorFile {
            resource_type: ImportErrorFile::TYPE.into(),
            count: errors[i],
            input_url: input.url.as_str().to_owned(),
            file: name_of(request, i),
            url: urls[i].clone(),
        })
        .collect();
    Ok(ImportResult {
        transaction_time: plan.transaction_time,
        request: request.request_url.clone(),
        output,
        error,
        error_location: request.error_location.clone(),
    })
}

fn name_of(request: &ImportRequest, input: usize) -> String {
    error_file_name(request.inputs[input].resource_type, input)
}
