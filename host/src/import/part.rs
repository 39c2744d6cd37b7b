//! One part (a byte range of one input): read its lines in batches, check
//! each, validate the batch with one plugin call, write it to the store
//! with the part's progress.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant as Clock};

use super::ImportConfig;
use super::checkpoint::{Checkpoint, PartState, PlannedRange};
use super::error::ImportError;
use super::line::{self, LineError, Rules};
use super::ranges::{Content, LineReader, RawLine};
use super::request::{ImportMode, ImportRequest};
use super::source::{ImportSources, SourceError, check_etag};
use crate::jobs::{JobContext, Progress};
use crate::plugins::{LoadedPlugin, ValidationSession, Verdict};
use crate::store::{ImportBatch, ImportItem, ImportSession, ImportWrites, LineRef, Store};

/// NDJSON bytes per batch at most, whatever `batch_lines` says: bounds the
/// memory of a batch of large resources.
const BATCH_BYTES: usize = 8 << 20;

/// How often the progress shown to clients is saved.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the parts of one attempt share.
pub struct Shared<'a> {
    pub store: &'a dyn Store,
    pub sources: &'a ImportSources,
    pub validator: &'a Arc<LoadedPlugin>,
    pub config: &'a ImportConfig,
    pub request: &'a ImportRequest,
    pub plan: &'a Checkpoint,
    /// The plan as saved, re-saved with each progress update.
    pub plan_json: serde_json::Value,
    pub session: ImportSession,
    pub ctx: &'a JobContext,
    /// Raised when a part fails: the others stop at their next batch.
    pub stop: &'a AtomicBool,
    /// Input bytes behind the store's progress, over all parts.
    pub consumed: &'a AtomicU64,
    /// When progress was last saved.
    pub saved: Mutex<Clock>,
}

/// A part to run: its number, input, range and where it stands.
pub struct Part {
    pub index: u32,
    pub input: usize,
    pub range: PlannedRange,
    pub state: Option<PartState>,
}

impl Shared<'_> {
    fn check(&self) -> Result<(), ImportError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(ImportError::Stopped);
        }
        Ok(self.ctx.check()?)
    }

    /// Saves `X-Progress` (bytes read of all inputs) at most every second.
    fn report(&self) -> Result<(), ImportError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        if saved.elapsed() < PROGRESS_EVERY {
            return Ok(());
        }
        *saved = Clock::now();
        let progress = Progress {
            done: self.consumed.load(Ordering::SeqCst),
            total: Some(self.plan.total_bytes()),
            message: "bytes of input read".into(),
        };
        Ok(self.ctx.checkpoint(self.plan_json.clone(), progress)?)
    }
}

pub fn run(shared: &Shared<'_>, part: Part) -> Result<(), ImportError> {
    let at = ImportError::at_input(part.input);
    let input = &shared.request.inputs[part.input];
    let planned = &shared.plan.inputs[part.input];
    let range = part.range.range;
    let max_line = shared.config.max_line_bytes;
    let source = shared.sources.open(&input.url).map_err(at)?;
    let mut state = part.state.unwrap_or_default();
    let mut lines = match part.state {
        Some(s) => {
            let reader = source
                .read_from(s.offset, range.end, &planned.etag)
                .map_err(at)?;
            LineReader::resume(reader, s.offset, s.line, range.end, max_line)
        }
        None => {
            let reader = source
                .read_from(range.start.saturating_sub(1), range.end, &planned.etag)
                .map_err(at)?;
            LineReader::range(reader, range, part.range.newlines_before, max_line)
                .map_err(|e| read_error(part.input, input.url.as_str(), e))?
        }
    };
    let rules = Rules {
        mode: shared.request.mode,
        declared: input.resource_type,
    };
    let mut validator =
        ValidationSession::begin(shared.validator, input.resource_type.map(|t| t.as_str()))?;
    let mut reported = state.consumed(range);
    loop {
        shared.check()?;
        let raw = read_batch(&mut lines, shared.config.batch_lines)
            .map_err(|e| read_error(part.input, input.url.as_str(), e))?;
        state.lines += raw.len() as u64;
        (state.offset, state.line) = lines.position();
        state.done = lines.finished();
        let (items, rejected) = check_batch(&rules, &mut validator, part.input, max_line, raw)?;
        let batch = ImportBatch {
            session: shared.session,
            writes: match rules.mode {
                ImportMode::InitialLoad => ImportWrites::CreateOnly,
                ImportMode::IncrementalLoad => ImportWrites::History,
            },
            items,
            rejected,
            progress: Some((part.index, state.encode())),
        };
        shared.store.import(batch, &line::conflict_record)?;
        let consumed = state.consumed(range);
        shared
            .consumed
            .fetch_add(consumed - reported, Ordering::SeqCst);
        reported = consumed;
        shared.report()?;
        if state.done {
            break;
        }
    }
    // The part's bytes were the planned input's only if it still is.
    let now = source.info().map_err(at)?;
    check_etag(&planned.etag, &now.etag).map_err(at)
}

/// A failed read of input `input`: a source's own error (a blob replaced
/// mid-read) keeps its kind, so that the job fails as for a changed file.
pub(super) fn read_error(input: usize, url: &str, e: std::io::Error) -> ImportError {
    match e.downcast::<SourceError>() {
        Ok(source) => ImportError::Source { input, source },
        Err(e) => ImportError::Io {
            what: format!("reading {url}"),
            source: e,
        },
    }
}

fn read_batch<R: Read>(lines: &mut LineReader<R>, max: usize) -> std::io::Result<Vec<RawLine>> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while batch.len() < max.max(1) && bytes < BATCH_BYTES {
        let Some(line) = lines.next_line()? else {
            break;
        };
        if let Content::Bytes(b) = &line.content {
            bytes += b.len();
        }
        batch.push(line);
    }
    Ok(batch)
}

type Rejected = Vec<(LineRef, Vec<u8>)>;

/// The host's checks, then one validator call for the lines that passed
/// them, then the store items. Every line ends as an item or a record.
fn check_batch(
    rules: &Rules,
    validator: &mut ValidationSession,
    input: usize,
    max_line: usize,
    raw: Vec<RawLine>,
) -> Result<(Vec<ImportItem>, Rejected), ImportError> {
    let input = u32::try_from(input).unwrap_or(u32::MAX);
    let mut rejected = Vec::new();
    let mut passed = Vec::with_capacity(raw.len());
    let mut ndjson = Vec::new();
    for RawLine {
        line,
        offset,
        content,
    } in raw
    {
        let at = LineRef {
            input,
            line,
            offset,
        };
        let parsed = match content {
            Content::TooLong(bytes) => Err(LineError::TooLong {
                bytes,
                limit: max_line,
            }),
            Content::Bytes(bytes) => line::parse(rules, &bytes).inspect(|_| {
                ndjson.extend_from_slice(&bytes);
                ndjson.push(b'\n');
            }),
        };
        match parsed {
            Ok(p) => passed.push((at, p)),
            Err(e) => rejected.push((at, line::record(at, &e))),
        }
    }
    let verdicts = if passed.is_empty() {
        Vec::new()
    } else {
        validator.validate(&ndjson)?
    };
    let mut items = Vec::with_capacity(passed.len());
    for ((at, (resource, id)), verdict) in passed.into_iter().zip(verdicts) {
        let accepted = match verdict {
            Verdict::Accept => Ok((resource, id)),
            Verdict::AcceptWithChanges(bytes) => line::parse(rules, &bytes),
            Verdict::Reject(issues) => Err(LineError::Rejected(issues)),
        };
        match accepted.and_then(|(resource, id)| line::item(rules, at, resource, id)) {
            Ok(item) => items.push(item),
            Err(e) => rejected.push((at, line::record(at, &e))),
        }
    }
    Ok((items, rejected))
}
