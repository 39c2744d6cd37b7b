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

mod keys;
mod record;
pub mod sled;
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

    /// The instant a snapshot of "now" must use to include every
    /// acknowledged commit: the wall clock, or the last commit's instant when
    /// the store clock runs ahead of it (over 1,000 commits/s). Export's
    /// `transactionTime` and every "as of now" read take it from here.
    fn now(&self) -> Result<Instant, StoreError> {
        let wall = Instant::now();
        Ok(self.last_commit()?.map_or(wall, |last| last.max(wall)))
    }

    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Forces everything acknowledged so far to disk (used at shutdown).
    fn flush(&self) -> Result<(), StoreError>;
}
