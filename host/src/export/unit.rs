//! One unit of an export: scan (a type, or the compartments of a partition
//! of the patients), select versions, batch lines per type, filter, render,
//! write; checkpoint after every file committed.

use std::collections::{BTreeMap, BTreeSet};
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
use super::files::{Kind, Lines, Stream, Target, finish_all};
use super::patients::Patients;
use super::plan::{Plan, REFERENCED_UNIT, Unit, Work};
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
}

impl<'a> Lane<'a> {
    fn new(stream: Stream<'a>, rtype: ResourceType) -> Self {
        Lane {
            rtype,
            buffer: Vec::new(),
            buffered: 0,
            stream,
        }
    }

    /// The floor of the oldest line not yet in a committed file.
    fn floor(&self) -> Option<&Option<String>> {
        self.stream
            .floor()
            .or_else(|| self.buffer.first().map(|p| &p.floor))
    }

    /// Filters, renders (into `lines`, the unit's scratch) and writes the
    /// batch; whether a file was committed. The references of the lines
    /// written to resources of the plan's referenced types go into
    /// `referenced`.
    fn flush(
        &mut self,
        shared: &Shared,
        referenced: &mut BTreeSet<String>,
        lines: &mut Lines,
    ) -> Result<bool, ExportError> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        shared.check()?;
        // Emptied and put back: its capacity serves the next batch.
        let mut batch = std::mem::take(&mut self.buffer);
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
        lines.clear();
        // Only compartment resources (not the referenced ones themselves,
        // nor deletions) bring referenced resources in.
        let collect = !plan.referenced.is_empty()
            && !plan.referenced.contains(&self.rtype)
            && !matches!(self.stream.kind(), Kind::Deleted(_));
        for (p, keep) in batch.drain(..).zip(verdicts) {
            if keep {
                if collect {
                    references_to(p.emit.body(), &plan.referenced, referenced);
                }
                render(self.rtype, plan, &p.emit, lines, p.pos, p.floor)?;
            }
        }
        self.buffer = batch;
        self.stream.write(lines)
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
    /// `Type/id` of referenced resources to export (see `UnitState`).
    referenced: BTreeSet<String>,
    /// Every lane's batch is rendered here in turn: one buffer per unit,
    /// however many types it writes.
    lines: Lines,
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
            referenced: state.referenced,
            lines: Lines::default(),
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
            Work::Referenced => self.scan_referenced(),
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
            self.push_all(rtype, select(snapshot, cur, &window)?, pos)?;
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
            let window = if plan.added.binary_search(&patient).is_ok() {
                plan.window.whole()
            } else {
                plan.window
            };
            for cur in snapshot.store().compartment(&patient, snapshot.at())? {
                let cur = cur?;
                if !plan.types.contains(&cur.rtype)
                    || !window.touches(&cur)
                    || !patients.owns(
                        snapshot,
                        &patient,
                        &cur,
                        plan.window.touches(&cur),
                        &plan.added,
                    )?
                {
                    continue;
                }
                let pos = Position {
                    patient: patient.as_str().to_owned(),
                    id: cur.id.as_str().to_owned(),
                };
                let rtype = cur.rtype;
                self.push_all(rtype, select(snapshot, cur, &window)?, pos)?;
            }
            self.cursor = Some(patient.into_string());
        }
        Ok(())
    }

    /// The referenced resources the patient units collected (in their
    /// final checkpoints: this unit runs after them), in `Type/id` order, as
    /// of the snapshot, whatever `_since` says; one that does not exist
    /// then is skipped.
    fn scan_referenced(&mut self) -> Result<(), ExportError> {
        let keys: BTreeSet<String> = {
            let checkpoint = self
                .shared
                .checkpoint
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            checkpoint
                .units
                .iter()
                .filter(|(name, _)| name.as_str() != REFERENCED_UNIT)
                .flat_map(|(_, unit)| unit.referenced.iter().cloned())
                .collect()
        };
        let snapshot = self.shared.snapshot;
        let after = self.cursor.clone();
        for key in keys
            .into_iter()
            .filter(|k| after.as_deref().is_none_or(|a| k.as_str() > a))
        {
            self.shared.check()?;
            let parsed = key
                .split_once('/')
                .and_then(|(t, id)| Some((ResourceType::parse(t)?, ResourceId::parse(id)?)));
            if let Some((rtype, id)) = parsed
                && let Some(live) = snapshot.live(rtype, &id)?
            {
                let pos = Position {
                    patient: String::new(),
                    id: key.clone(),
                };
                self.push(rtype, Emit::Live(live), pos)?;
            }
            self.cursor = Some(key);
        }
        Ok(())
    }

    /// Queues the lines of one resource, all at `pos`.
    fn push_all(
        &mut self,
        rtype: ResourceType,
        mut emits: Vec<Emit>,
        pos: Position,
    ) -> Result<(), ExportError> {
        let Some(last) = emits.pop() else {
            return Ok(());
        };
        for emit in emits {
            self.push(rtype, emit, pos.clone())?;
        }
        self.push(rtype, last, pos)
    }

    /// Queues one line for its lane, flushing the lane when its batch is
    /// full; lines already in committed files (a resumed scan) are skipped.
    fn push(&mut self, rtype: ResourceType, emit: Emit, pos: Position) -> Result<(), ExportError> {
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
        if lane.stream.has(&pos) {
            return Ok(());
        }
        lane.buffered += emit.body().len();
        lane.buffer.push(Pending { emit, pos, floor });
        let full = lane.buffer.len() >= shared.batch_lines || lane.buffered >= MAX_BATCH_BYTES;
        if full && lane.flush(shared, &mut self.referenced, &mut self.lines)? {
            self.save(false)?;
        }
        Ok(())
    }

    /// Writes what is left, commits every open file and records the unit
    /// as done.
    fn finish(&mut self) -> Result<(), ExportError> {
        let (shared, referenced, lines) = (self.shared, &mut self.referenced, &mut self.lines);
        let lanes: Vec<&mut Lane> = self
            .output
            .values_mut()
            .chain(self.deleted.values_mut())
            .collect();
        let expected = lanes
            .iter()
            .filter(|l| l.stream.floor().is_some() || !l.buffer.is_empty())
            .count();
        let flushed = lanes.into_iter().map(|lane| {
            lane.flush(shared, referenced, lines)?;
            Ok(&mut lane.stream)
        });
        finish_all(expected, flushed)?;
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
            referenced: self.referenced.clone(),
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

/// Adds to `out` the `Type/id` of every relative reference in `body` (stored
/// compact JSON, where a `"reference":"` outside a string value cannot occur
/// unescaped) to a resource of one of `types`; a version suffix is dropped.
fn references_to(body: &[u8], types: &BTreeSet<ResourceType>, out: &mut BTreeSet<String>) {
    const KEY: &[u8] = b"\"reference\":\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
        let value = &rest[..end];
        rest = &rest[end..];
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let value = value.split("/_history/").next().unwrap_or(value);
        let Some((rtype, id)) = value.split_once('/') else {
            continue;
        };
        let known = ResourceType::parse(rtype).is_some_and(|t| types.contains(&t));
        if known && ResourceId::parse(id).is_some() {
            out.insert(value.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_relative_references_of_the_listed_types() {
        let types: BTreeSet<ResourceType> = ["Practitioner", "Organization"]
            .into_iter()
            .map(|t| ResourceType::parse(t).unwrap())
            .collect();
        let body = br##"{"resourceType":"Encounter","subject":{"reference":"Patient/p"},"participant":[{"individual":{"reference":"Practitioner/d1","display":"\"reference\":\"Practitioner/fake\""}}],"serviceProvider":{"reference":"Organization/o1/_history/3"},"x":{"reference":"#contained"},"y":{"reference":"http://elsewhere/Practitioner/d9"},"z":{"reference":"Practitioner/d1"}}"##;
        let mut out = BTreeSet::new();
        references_to(body, &types, &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["Organization/o1", "Practitioner/d1"]
        );
    }
}
