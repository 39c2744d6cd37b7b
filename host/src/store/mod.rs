//! The versioned FHIR store: every write a new version, all versions kept,
//! reads as of any instant. [`Store`] is the only door; [`sled`] is the
//! embedded implementation. Nothing in here knows HTTP or jobs.
//!
//! Time model: each [`Store::commit`] is one atomic step with one
//! `lastUpdated` instant, strictly greater than every earlier commit's
//! (millisecond precision; under more than 1,000 commits/s the store clock runs
//! ahead of the wall clock rather than repeat an instant). All versions written
//! by one commit share that instant, so a snapshot at T sees a commit whole or
//! not at all.
//!
//! Imports ([`Store::import`]) write versions whose number and instant come
//! from the input: instants no later than the import batch's own (a new
//! commit instant), possibly long before the last commit, and versions in
//! any order, kept in time order along each resource. Reads as of an instant
//! see them where their instant puts them (snapshots, `_history`, `changed`
//! and so `_since` exports, compartments); a read running while such a batch
//! applies may see part of it.

mod keys;
mod record;
pub mod sled;
mod sled_import;
mod sled_jobs;

use bytes::Bytes;

use crate::fhir::resource::Resource;
use crate::fhir::{Instant, ResourceId, ResourceType};

/// The version/time/deletion facts of one stored version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    /// 1, 2, 3... per resource.
    pub version: u64,
    pub last_updated: Instant,
    /// A tombstone written by a delete.
    pub deleted: bool,
}

/// One version of one resource, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVersion {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub meta: VersionMeta,
    /// Compact JSON with normalised `meta`, ready to stream as one NDJSON
    /// line; empty for a tombstone.
    pub body: Bytes,
}

/// A condition a write makes on the resource's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// The current version must be this one and not deleted (`If-Match`).
    IfMatch(u64),
}

#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Create with this id; fails with [`OpError::AlreadyExists`] if the id has
    /// any version (live or deleted).
    Create { id: ResourceId, resource: Resource },
    /// Update, or create when the id is new or deleted ("update as create").
    Update {
        id: ResourceId,
        resource: Resource,
        precondition: Precondition,
    },
    /// Writes a tombstone. Deleting a missing or deleted resource changes nothing.
    Delete {
        rtype: ResourceType,
        id: ResourceId,
        precondition: Precondition,
    },
}

impl WriteOp {
    pub fn target(&self) -> (ResourceType, &ResourceId) {
        match self {
            WriteOp::Create { id, resource } | WriteOp::Update { id, resource, .. } => {
                (resource.rtype, id)
            }
            WriteOp::Delete { rtype, id, .. } => (*rtype, id),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// Any failing op fails the whole commit; nothing is written.
    AllOrNothing,
    /// Failing ops are reported one by one; the others are written together.
    BestEffort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Created,
    Updated,
    Deleted,
    /// A delete of something missing or already deleted: no new version.
    Unchanged,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    pub kind: WriteKind,
    /// The version written (for `Unchanged`: the current tombstone, if any).
    pub version: Option<StoredVersion>,
}

/// Why one op of a commit could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}/{1} already exists")]
    AlreadyExists(ResourceType, ResourceId),
    #[error("{rtype}/{id} is at version {current:?}, not {expected}")]
    VersionMismatch {
        rtype: ResourceType,
        id: ResourceId,
        expected: u64,
        current: Option<u64>,
    },
    #[error("{0}/{1} is written twice in one commit")]
    DuplicateInCommit(ResourceType, ResourceId),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// AllOrNothing commit rejected: the index of the first failing op and why.
    #[error("operation {index}: {error}")]
    Rejected { index: usize, error: OpError },
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("corrupt record at {0}")]
    Corrupt(String),
}

pub type VersionIter = Box<dyn Iterator<Item = Result<StoredVersion, StoreError>> + Send>;

/// One `$import` run as the store knows it (a job derives it from its id).
/// Its versions carry it, so that the run can tell its own earlier writes
/// from everybody else's; its progress and rejected lines are kept under it
/// until [`Store::end_import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImportSession(pub u64);

/// Where an imported line comes from: the input's position in the request,
/// the 1-based physical line number and the byte offset of the line start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineRef {
    pub input: u32,
    pub line: u64,
    pub offset: u64,
}

/// How an import batch writes versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportWrites {
    /// Each resource once, as version 1 at the batch's instant; an id the
    /// store already has from elsewhere is rejected.
    CreateOnly,
    /// Versions with the ids and instants the lines give (missing ones
    /// assigned), in any order: history stays ordered by version, with
    /// `lastUpdated` strictly increasing along it.
    History,
}

/// One line to import.
#[derive(Clone, Debug)]
pub struct ImportItem {
    pub id: ResourceId,
    /// For a deleted version, the body it deletes: it decides the
    /// compartments the tombstone stays in (as a REST delete does); the
    /// tombstone itself stores no body.
    pub resource: Resource,
    /// `History` only: the version to write; `None` assigns one.
    pub version: Option<u64>,
    /// `History` only: the version's instant; `None` is the batch's instant.
    pub last_updated: Option<Instant>,
    /// `History` only: write a tombstone.
    pub deleted: bool,
    pub line: LineRef,
    /// `CreateOnly`: when lines of one session claim the same id, the
    /// greater precedence stays, ties going to the lower `line`; the others
    /// are rejected as [`ImportConflict::Duplicate`], whatever order they
    /// were written in. `History` does not use it: of lines claiming one
    /// version the earliest `lastUpdated` stays, then the lower `line`; of
    /// two versions of one session whose `lastUpdated` goes backwards the
    /// higher stays (the other is [`ImportConflict::OutOfOrder`]), again
    /// whatever the order (for lines that carry `lastUpdated`: one without
    /// gets its batch's instant).
    pub precedence: (u64, Instant),
}

/// One atomic step of an import: versions, lines the caller rejected
/// itself, and the caller's progress, applied together or not at all.
#[derive(Clone, Debug)]
pub struct ImportBatch {
    pub session: ImportSession,
    pub writes: ImportWrites,
    pub items: Vec<ImportItem>,
    /// Error records of lines rejected before the store, by line.
    pub rejected: Vec<(LineRef, Vec<u8>)>,
    /// `(part, state)`: opaque resume state of one part of the import,
    /// read back by [`Store::import_progress`].
    pub progress: Option<(u32, Vec<u8>)>,
}

/// Why the store did not keep an imported line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportConflict {
    /// `CreateOnly`: the id already has a version not written by this import.
    Exists,
    /// `History`: this version exists, not written by this import.
    VersionExists(u64),
    /// A line of this import claiming the same slot takes precedence:
    /// `winner`, or one that in turn displaces it later in the import (so
    /// only the slot's final holder is the winner).
    Duplicate { winner: LineRef },
    /// No `versionId`, and this version already has the line's `lastUpdated`.
    LastUpdatedTaken(u64),
    /// `lastUpdated` must increase with the version: `neighbour` is on the
    /// wrong side of it.
    OutOfOrder {
        version: u64,
        last_updated: Instant,
        neighbour: u64,
        neighbour_last_updated: Instant,
    },
    /// `lastUpdated` after the batch's own instant.
    Future { last_updated: Instant, now: Instant },
    /// No `versionId`, and no free version number between the versions
    /// around `lastUpdated`: it would need a version below 1 (the seed
    /// document's negative versions), which this store does not hold.
    NoVersionFits { last_updated: Instant },
}

/// A rejected line, for the caller to render as its error record.
#[derive(Clone, Copy, Debug)]
pub struct ImportRejection<'a> {
    pub line: LineRef,
    pub rtype: ResourceType,
    pub id: &'a ResourceId,
    pub version: Option<u64>,
    pub conflict: &'a ImportConflict,
}

/// What became of one [`ImportItem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    Written(VersionMeta),
    /// This very line was written before (a batch applied again): nothing
    /// changes and it is not an error.
    AlreadyWritten(VersionMeta),
    Rejected(ImportConflict),
}

/// A rejected line's record: `(input, line, bytes)`.
pub type RejectionIter = Box<dyn Iterator<Item = Result<(u32, u64, Bytes), StoreError>> + Send>;

/// Which history `_history` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
}

/// A window and page of history, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Only versions with `lastUpdated > since`.
    pub since: Option<Instant>,
    /// Only versions with `lastUpdated <= at_or_before` (HL7 `_at`-like upper bound).
    pub until: Option<Instant>,
    /// Resume after this opaque position (from [`HistoryPage::next`]).
    pub cursor: Option<HistoryCursor>,
    pub count: usize,
}

/// An opaque, stable position in a history listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCursor(pub String);

#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub entries: Vec<StoredVersion>,
    /// Set when more entries follow.
    pub next: Option<HistoryCursor>,
}

/// Counters for health checks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Resources whose current version is not deleted.
    pub live_resources: u64,
    /// All versions, tombstones included.
    pub versions: u64,
}

/// The storage contract export, import and the REST API are written against.
/// Implementations must be safe to share between threads; calls may block
/// (callers on async runtimes use `spawn_blocking`).
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` atomically with one new `lastUpdated` instant, returning
    /// one result per op in order. Returns only after the write is durable.
    /// In `BestEffort` mode a failing op yields `Err` in its slot.
    fn commit(
        &self,
        ops: Vec<WriteOp>,
        mode: CommitMode,
    ) -> Result<Vec<Result<WriteResult, OpError>>, StoreError>;

    /// The latest version (possibly a tombstone), or `None` if never written.
    fn read(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<StoredVersion>, StoreError>;

    /// One version (possibly a tombstone).
    fn vread(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError>;

    fn history(
        &self,
        scope: &HistoryScope,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError>;

    /// Every resource of `rtype` as it was at `snapshot` (the version with the
    /// greatest `lastUpdated <= snapshot`), in id order, tombstones included
    /// (callers skip or export them). Resumes after id `after` when given.
    /// Streams: memory does not grow with the number of resources.
    fn scan_type(
        &self,
        rtype: ResourceType,
        snapshot: Instant,
        after: Option<&ResourceId>,
    ) -> Result<VersionIter, StoreError>;

    /// Resources of `rtype` with at least one version in `(since, until]`,
    /// each as it was at `until`, tombstones included, in id order.
    fn changed(
        &self,
        rtype: ResourceType,
        since: Instant,
        until: Instant,
    ) -> Result<VersionIter, StoreError>;

    /// Every resource in the compartment of patient `patient` as it was at
    /// `snapshot` (membership judged on that version), each once, tombstones
    /// of members included. Ordered by type, then id.
    fn compartment(
        &self,
        patient: &ResourceId,
        snapshot: Instant,
    ) -> Result<VersionIter, StoreError>;

    /// The `lastUpdated` of the latest commit, if any.
    fn last_commit(&self) -> Result<Option<Instant>, StoreError>;

    /// The instant a snapshot of "now" must use: every acknowledged commit
    /// is at or before it, and every later commit strictly after it. A
    /// commit takes the wall clock's millisecond (or the one after the last
    /// commit), so a snapshot one millisecond behind the wall clock, or at
    /// the last commit when the store clock runs ahead (over 1,000
    /// commits/s), can never share its instant with a commit still to come.
    /// Export's `transactionTime` and every "as of now" read take it from
    /// here.
    fn now(&self) -> Result<Instant, StoreError> {
        let behind = Instant::from_millis(Instant::now().as_millis().saturating_sub(1));
        Ok(self.last_commit()?.map_or(behind, |last| last.max(behind)))
    }

    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Applies one import batch atomically (see [`ImportBatch`]), returning
    /// one outcome per item. Every rejected line, the caller's and the
    /// store's (including a line of an earlier batch that a winning duplicate
    /// displaces now), gets the record `render` makes, in the same atomic
    /// step. Not flushed: a batch lost to a crash is lost with its progress,
    /// so the caller redoes it; call [`Store::flush`] before relying on it.
    fn import(
        &self,
        batch: ImportBatch,
        render: &dyn Fn(&ImportRejection<'_>) -> Vec<u8>,
    ) -> Result<Vec<ImportOutcome>, StoreError>;

    /// The last progress each part of `session` recorded, by part.
    fn import_progress(&self, session: ImportSession) -> Result<Vec<(u32, Vec<u8>)>, StoreError>;

    /// The records of the rejected lines of `session`, by input then line.
    fn import_rejections(&self, session: ImportSession) -> Result<RejectionIter, StoreError>;

    /// Forgets the progress and rejected lines of `session` (its versions
    /// stay).
    fn end_import(&self, session: ImportSession) -> Result<(), StoreError>;

    /// Forces everything acknowledged so far to disk (used at shutdown).
    fn flush(&self) -> Result<(), StoreError>;
}
