//! One unit of an export: scan (a type, or the compartments of a partition
//! of the patients), select versions, batch lines per type, filter, render,
//! write; checkpoint after every file committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};

use crate::fhir::{ResourceId, ResourceType};
use crate::jobs::{JobContext, Progress};
use crate::store::{StoreError, StoredVersion};

use super::checkpoint::{Checkpoint, Position, StreamState, UnitState};
use super::deleted;
use super::elements::subset;
use super::error::ExportError;
use super::files::{Kind, Lines, Stream, Target};
use super::patients::Patients;
use super::plan::{Plan, Unit, Work};
use super::select::{Emit, select};
use super::snapshot::Snapshot;

/// A lane's batch is also written once it holds this many bytes: at
/// Patient/Group level a unit fills a batch per type at once, and large
/// resources (ExplanationOfBenefit) would otherwise hold many megabytes.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What every unit of one job shares.
pub struct Shared<'a> {
    pub snapshot: &'a Snapshot,
    pub plan: &'a Plan,
    pub target: &'a Target<'a>,
    pub batch_lines: usize,
    pub ctx: &'a JobContext,
    pub checkpoint: &'a Mutex<Checkpoint>,
    /// Raised when a unit failed: the others stop at their next check.
    pub stop: &'a AtomicBool,
}

impl Shared<'_> {
    pub fn check(&self) -> Result<(), ExportError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(ExportError::Stopped);
        }
        Ok(self.ctx.check()?)
    }

    /// Applies `update` to the checkpoint and saves it whole. Saves are
    /// serialised by the lock, so a later state never loses to an earlier.
    pub fn save(&self, update: impl FnOnce(&mut Checkpoint)) -> Result<(), ExportError> {
        let mut checkpoint = self
            .checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        update(&mut checkpoint);
        let json = serde_json::to_value(&*checkpoint).map_err(|e| ExportError::Corrupt {
            what: "checkpoint",
            message: e.to_string(),
        })?;
        let progress = Progress {
            done: checkpoint.exported(),
            total: None,
            message: "resources exported".into(),
        };
        Ok(self.ctx.checkpoint(json, progress)?)
    }
}

/// A line waiting for its batch to be filtered and written.
struct Pending {
    emit: Emit,
    pos: Position,
    floor: Option<String>,
}

/// One stream and the batch collected for it.
struct Lane<'a> {
    rtype: ResourceType,
    buffer: Vec<Pending>,
    /// Body bytes in `buffer`.
    buffered: usize,
    stream: Stream<'a>,
    /// Reused between batches.
    lines: Lines,
}

impl<'a> Lane<'a> {
    fn new(stream: Stream<'a>, rtype: ResourceType) -> Self {
        Lane {
            rtype,
            buffer: Vec::new(),
            buffered: 0,
            stream,
            lines: Lines::default(),
        }
    }

    /// The floor of the oldest line not yet in a committed file.
    fn floor(&self) -> Option<&Option<String>> {
        self.stream
            .floor()
            .or_else(|| self.buffer.first().map(|p| &p.floor))
    }

    /// Filters, renders and writes the batch; whether a file was committed.
    fn flush(&mut self, shared: &Shared) -> Result<bool, ExportError> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        shared.check()?;
        let batch = std::mem::take(&mut self.buffer);
        self.buffered = 0;
        let plan = shared.plan;
        let verdicts = if plan.filters.applies(self.rtype) {
            let mut ndjson = Vec::new();
            for p in &batch {
                ndjson.extend_from_slice(p.emit.body());
                ndjson.push(b'\n');
            }
            plan.filters.evaluate(self.rtype, &ndjson)?
        } else {
            vec![true; batch.len()]
        };
        self.lines.clear();
        for (p, keep) in batch.into_iter().zip(verdicts) {
            if keep {
                render(self.rtype, plan, &p.emit, &mut self.lines, p.pos, p.floor)?;
            }
        }
        self.stream.write(&self.lines)
    }
}

/// Appends the line for `emit`: the stored bytes as they are unless
/// `_elements` or the soft-delete marker change the resource.
fn render(
    rtype: ResourceType,
    plan: &Plan,
    emit: &Emit,
    lines: &mut Lines,
    pos: Position,
    floor: Option<String>,
) -> Result<(), ExportError> {
    let keep = plan.elements.for_type(rtype);
    match emit {
        Emit::Live(v) if keep.is_none() => lines.push(&v.body, pos, floor),
        Emit::Live(v) => {
            let mut resource = parse(v)?;
            if let Some(keep) = keep {
                subset(&mut resource, keep);
            }
            lines.push(&to_bytes(&resource)?, pos, floor);
        }
        Emit::Marked { tombstone, live } => {
            let mut resource = parse(live)?;
            deleted::mark(&mut resource, tombstone);
            if let Some(keep) = keep {
                subset(&mut resource, keep);
            }
            lines.push(&to_bytes(&resource)?, pos, floor);
        }
        Emit::Deleted { tombstone, live } => {
            lines.push(
                &deleted::bundle_line(rtype, &live.id, tombstone),
                pos,
                floor,
            );
        }
    }
    Ok(())
}

fn parse(v: &StoredVersion) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_slice(&v.body)
        .map_err(|e| StoreError::Corrupt(format!("stored {}/{}: {e}", v.rtype, v.id)))
}

fn to_bytes(resource: &Map<String, Value>) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec(resource).map_err(|e| ExportError::Corrupt {
        what: "resource",
        message: e.to_string(),
    })
}

pub struct UnitRun<'a> {
    shared: &'a Shared<'a>,
    unit: &'a Unit,
    /// The last scan key whose resources were all handed to the lanes.
    cursor: Option<String>,
    output: BTreeMap<ResourceType, Lane<'a>>,
    deleted: BTreeMap<ResourceType, Lane<'a>>,
}

impl<'a> UnitRun<'a> {
    /// Continues from the unit's checkpointed `state`.
    pub fn new(shared: &'a Shared<'a>, unit: &'a Unit, state: UnitState) -> Self {
        let lanes = |streams: BTreeMap<ResourceType, StreamState>, deleted: bool| {
            streams
                .into_iter()
                .map(|(rtype, s)| (rtype, new_lane(shared, unit, rtype, deleted, s)))
                .collect()
        };
        UnitRun {
            shared,
            unit,
            cursor: state.resume_after,
            output: lanes(state.output, false),
            deleted: lanes(state.deleted, true),
        }
    }

    /// Runs the unit to its end; on any error its open files are discarded.
    pub fn run(mut self) -> Result<(), ExportError> {
        let result = match self.unit.work {
            Work::Type(rtype) => self.scan_type(rtype),
            Work::Patients => match &self.shared.plan.patients {
                Some(patients) => self.scan_patients(patients),
                None => Ok(()),
            },
        }
        .and_then(|()| self.finish());
        if result.is_err() {
            for lane in self.output.values_mut().chain(self.deleted.values_mut()) {
                lane.stream.abort();
            }
        }
        result
    }

    fn scan_type(&mut self, rtype: ResourceType) -> Result<(), ExportError> {
        let snapshot = self.shared.snapshot;
        let window = self.shared.plan.window;
        let store = snapshot.store();
        let scan = match window.since {
            // `changed` cannot resume; the cursor check below skips ahead.
            Some(since) => store.changed(rtype, since, snapshot.at())?,
            None => {
                let after = self.cursor.as_deref().and_then(ResourceId::parse);
                store.scan_type(rtype, snapshot.at(), after.as_ref())?
            }
        };
        for cur in scan {
            let cur = cur?;
            self.shared.check()?;
            if self.cursor.as_deref().is_some_and(|c| cur.id.as_str() <= c) {
                continue;
            }
            let pos = Position {
                patient: String::new(),
                id: cur.id.as_str().to_owned(),
            };
            let id = cur.id.clone();
            for emit in select(snapshot, cur, &window)? {
                self.push(rtype, emit, &pos)?;
            }
            self.cursor = Some(id.into_string());
        }
        Ok(())
    }

    fn scan_patients(&mut self, patients: &Patients) -> Result<(), ExportError> {
        let snapshot = self.shared.snapshot;
        let plan = self.shared.plan;
        let after = self.cursor.clone();
        let iter = patients.iter(snapshot, self.unit.part, self.unit.parts, after.as_deref())?;
        for patient in iter {
            let patient = patient?;
            self.shared.check()?;
            for cur in snapshot.store().compartment(&patient, snapshot.at())? {
                let cur = cur?;
                if !plan.types.contains(&cur.rtype)
                    || !plan.window.touches(&cur)
                    || !patients.owns(snapshot, &patient, &cur)?
                {
                    continue;
                }
                let pos = Position {
                    patient: patient.as_str().to_owned(),
                    id: cur.id.as_str().to_owned(),
                };
                let rtype = cur.rtype;
                for emit in select(snapshot, cur, &plan.window)? {
                    self.push(rtype, emit, &pos)?;
                }
            }
            self.cursor = Some(patient.into_string());
        }
        Ok(())
    }

    /// Queues one line for its lane, flushing the lane when its batch is
    /// full; lines already in committed files (a resumed scan) are skipped.
    fn push(&mut self, rtype: ResourceType, emit: Emit, pos: &Position) -> Result<(), ExportError> {
        let deleted = matches!(emit, Emit::Deleted { .. });
        let (shared, unit) = (self.shared, self.unit);
        let floor = self.cursor.clone();
        let lanes = if deleted {
            &mut self.deleted
        } else {
            &mut self.output
        };
        let lane = lanes
            .entry(rtype)
            .or_insert_with(|| new_lane(shared, unit, rtype, deleted, StreamState::default()));
        if lane.stream.has(pos) {
            return Ok(());
        }
        lane.buffered += emit.body().len();
        lane.buffer.push(Pending {
            emit,
            pos: pos.clone(),
            floor,
        });
        let full = lane.buffer.len() >= shared.batch_lines || lane.buffered >= MAX_BATCH_BYTES;
        if full && lane.flush(shared)? {
            self.save(false)?;
        }
        Ok(())
    }

    /// Writes what is left, commits every open file and records the unit
    /// as done.
    fn finish(&mut self) -> Result<(), ExportError> {
        for lane in self.output.values_mut().chain(self.deleted.values_mut()) {
            lane.flush(self.shared)?;
            lane.stream.finish()?;
        }
        self.save(true)
    }

    /// Checkpoints this unit: the scan resumes before the oldest line not
    /// in a committed file, or after the cursor when there is none.
    fn save(&self, done: bool) -> Result<(), ExportError> {
        let lanes = || self.output.values().chain(self.deleted.values());
        let resume_after = lanes()
            .filter_map(Lane::floor)
            .min()
            .cloned()
            .unwrap_or_else(|| self.cursor.clone());
        let streams = |lanes: &BTreeMap<ResourceType, Lane>| {
            lanes
                .iter()
                .map(|(t, l)| (*t, l.stream.state().clone()))
                .collect()
        };
        let state = UnitState {
            done,
            resume_after,
            output: streams(&self.output),
            deleted: streams(&self.deleted),
        };
        let name = self.unit.name.clone();
        self.shared.save(|checkpoint| {
            checkpoint.units.insert(name, state);
        })
    }
}

fn new_lane<'a>(
    shared: &'a Shared<'a>,
    unit: &Unit,
    rtype: ResourceType,
    deleted: bool,
    state: StreamState,
) -> Lane<'a> {
    let kind = if deleted {
        Kind::Deleted(rtype)
    } else {
        Kind::Output(rtype)
    };
    let stream = Stream::new(shared.target, kind, unit.part, unit.parts, state);
    Lane::new(stream, rtype)
}
