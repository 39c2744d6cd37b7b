//! The embedded [`Store`] on sled.
//!
//! # Layout
//!
//! Everything lives in the default tree of one sled `Db`, told apart by a
//! one-byte tag. Names and ids never contain 0x00, so 0x00 separates them
//! (see [`keys`]); numbers are 8-byte big-endian, instants with the sign bit
//! flipped so that byte order is time order. `seq` numbers every version
//! written, 1, 2, 3... across the store, so it orders versions within a commit.
//!
//! | key                                   | value                                        |
//! |---------------------------------------|----------------------------------------------|
//! | `R` type 0 id 0 version               | format, lastUpdated, flags, body (empty for a tombstone) |
//! | `C` type 0 id                         | format, version, lastUpdated, flags, patient ids of that version joined by 0 |
//! | `L` lastUpdated seq                   | the `R` key (system history)                 |
//! | `T` type 0 lastUpdated seq            | the `R` key (type history, change log)       |
//! | `P` patient 0 type 0 id 0 version     | the version's `R` value in format 1 if it is in the compartment; a left marker if it is not and the version before it was |
//! | `M`                                   | format, last commit instant, last seq, live resource count |
//! | `I` session part                      | an import's progress for one part (opaque to the store) |
//! | `E` session input line                | the error record of an imported line that was rejected |
//!
//! `C` makes preconditions a point read and carries the memberships a
//! tombstone inherits. The version count is the last `seq`. An imported
//! version's `R` value has format 2: the header also carries its origin
//! (import session, precedence, line, `seq`, patients), see
//! `sled_import.rs`.
//!
//! `P` values repeat the version so that a patient's compartment is one
//! sequential range read instead of random reads per member: a Group export
//! reads a tenth of the store that way, and random reads cost about as much
//! as scanning all of it. Left markers (format 3 and the version's
//! `lastUpdated`) make the entries of one resource in one compartment
//! complete: the newest entry at or before an instant says whether the
//! resource's version then is in the compartment, and is that version.
//! Compartment resources are written twice, the price of clustering them by
//! patient. Stores written before kept `P` values empty; such entries are
//! read through `R`.
//!
//! Jobs (`JobStore`) live in a tree of their own, see [`super::sled_jobs`].
//!
//! # Writes
//!
//! One writer at a time (a mutex) reads the `C` records of its targets and
//! `M`, checks preconditions, picks the instant and writes every key of the
//! commit, `M` included, with one `apply_batch`: atomic on disk and for
//! readers. The store clock persists in `M`, so it keeps increasing across
//! restarts.
//!
//! A commit returns after `Db::flush`, called once the lock is released so
//! that other commits apply meanwhile and one flush covers them all. On Linux
//! sled's flush is `pwrite` + `sync_file_range`: an acknowledged commit
//! survives the process being killed; against power loss it relies on sled's
//! background `fsync` (every 500 ms) and the device's write cache.
//!
//! # Reads
//!
//! sled iterators are not snapshots: a scan may see a batch applied while it
//! runs. Every read "as of" an instant is therefore clamped to the last commit
//! applied when the read starts; later commits carry later instants, so they
//! stay invisible and a scan sees each commit whole or not at all.

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ::sled::{Batch, IVec, Tree};
use bytes::Bytes;

use super::keys::{self, LOG, TYPE_LOG, VERSION};
use super::record::{self, Current, Member, Meta, VERSION_HEADER};
use super::sled_jobs::JobTree;
use super::{
    CommitMode, HistoryCursor, HistoryPage, HistoryQuery, HistoryScope, ImportBatch, ImportOutcome,
    ImportRejection, ImportSession, OpError, Precondition, RejectionIter, Store, StoreError,
    StoreStats, StoredVersion, VersionIter, VersionMeta, WriteKind, WriteOp, WriteResult,
};
use crate::fhir::compartment::patients_of;
use crate::fhir::{Instant, ResourceId, ResourceType};

pub struct SledStore {
    pub(super) db: ::sled::Db,
    /// Serialises commits and import batches. It guards no memory: the
    /// clock and counters are the `M` record, which each commit reads and
    /// rewrites under this lock.
    pub(super) writer: Mutex<()>,
    /// The wall clock; tests freeze it to run the store clock ahead of it.
    pub(super) clock: fn() -> Instant,
    /// The jobs, with their own writer lock (job writes never wait for a
    /// commit, nor commits for them).
    pub(super) jobs: JobTree,
}

/// sled's own default is 1 GiB, which a bulk scan fills and keeps: peak RSS
/// followed it. 64 MiB measured no slower than 256 for the ×10 import and
/// export benches, and 150-290 MB less peak RSS (README, Export).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

impl SledStore {
    /// Opens (or creates) the store in the directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledStore::open`], with sled's page cache capped at `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_with(path, cache_bytes, Instant::now)
    }

    pub(super) fn open_with(
        path: &Path,
        cache_bytes: u64,
        clock: fn() -> Instant,
    ) -> Result<Self, StoreError> {
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(SledStore {
            jobs: JobTree::open(&db)?,
            db,
            writer: Mutex::new(()),
            clock,
        })
    }

    pub(super) fn meta(&self) -> Result<Option<Meta>, StoreError> {
        self.db
            .get(keys::META)?
            .map(|v| Meta::decode(&v).ok_or_else(|| corrupt(keys::META)))
            .transpose()
    }

    pub(super) fn current(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<Current>, StoreError> {
        current_in(&self.db, rtype, id)
    }

    /// `t`, or the last applied commit if that is earlier (see "Reads" above).
    fn visible(&self, t: Instant) -> Result<Instant, StoreError> {
        Ok(self.meta()?.map_or(Instant::MIN, |m| t.min(m.last_ts)))
    }

    /// The version at an `R` key known to exist (from `C`, `L` or `T`).
    fn load(&self, rkey: &[u8]) -> Result<StoredVersion, StoreError> {
        let value = self.db.get(rkey)?.ok_or_else(|| corrupt(rkey))?;
        decode_version(rkey, value)
    }

    /// Decides what one op does against the current state. Runs under the
    /// writer lock.
    fn plan(&self, prepared: Prepared) -> Result<Plan, StoreError> {
        let Prepared {
            op,
            patients,
            duplicate,
        } = prepared;
        let (rtype, id) = op.target();
        if duplicate {
            return Ok(Plan::Fail(OpError::DuplicateInCommit(rtype, id.clone())));
        }
        let current = self.current(rtype, id)?;
        let live = current.as_ref().filter(|c| !c.meta.deleted);
        let checked = match &op {
            WriteOp::Create { .. } if current.is_some() => {
                Err(OpError::AlreadyExists(rtype, id.clone()))
            }
            WriteOp::Create { .. } => Ok(()),
            WriteOp::Update { precondition, .. } | WriteOp::Delete { precondition, .. } => {
                check(*precondition, live, rtype, id)
            }
        };
        if let Err(e) = checked {
            return Ok(Plan::Fail(e));
        }
        let (kind, patients) = match (&op, live) {
            (WriteOp::Delete { .. }, None) => {
                let tombstone = match &current {
                    Some(c) => self.vread(rtype, id, c.meta.version)?,
                    None => None,
                };
                return Ok(Plan::Unchanged(tombstone));
            }
            // A tombstone stays in the compartments of the version it deletes.
            (WriteOp::Delete { .. }, Some(c)) => (WriteKind::Deleted, c.patients.clone()),
            (_, Some(_)) => (WriteKind::Updated, patients),
            (_, None) => (WriteKind::Created, patients),
        };
        // The compartments the version before was in and this one is not.
        let left = current.as_ref().map_or_else(Vec::new, |c| {
            c.patients
                .iter()
                .filter(|p| !patients.contains(p))
                .cloned()
                .collect()
        });
        let version = current.map_or(1, |c| c.meta.version + 1);
        Ok(Plan::Write(Write {
            op,
            kind,
            version,
            patients,
            left,
        }))
    }

    /// The instant of a new commit (the wall clock, or just after the last
    /// commit when the clock is not past it) and the `M` record to update.
    /// Runs under the writer lock.
    pub(super) fn next_commit(&self) -> Result<(Instant, Meta), StoreError> {
        let previous = self.meta()?;
        let now = (self.clock)();
        let ts = previous.map_or(now, |m| {
            now.max(Instant::from_millis(
                m.last_ts.as_millis().saturating_add(1),
            ))
        });
        let meta = previous.unwrap_or(Meta {
            last_ts: ts,
            last_seq: 0,
            live: 0,
            removed: 0,
        });
        Ok((ts, meta))
    }

    /// Writes every planned version in one batch under one new instant.
    /// Runs under the writer lock; writes nothing when no op writes.
    fn apply(&self, plans: Vec<Plan>) -> Result<Vec<Result<WriteResult, OpError>>, StoreError> {
        let (ts, mut meta) = self.next_commit()?;
        let first_seq = meta.last_seq;
        let mut batch = Batch::default();
        let results = plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Fail(e) => Err(e),
                Plan::Unchanged(version) => Ok(WriteResult {
                    kind: WriteKind::Unchanged,
                    version,
                }),
                Plan::Write(write) => {
                    count_version(&mut meta, write.kind);
                    Ok(stage(&mut batch, write, ts, meta.last_seq))
                }
            })
            .collect();
        if meta.last_seq > first_seq {
            meta.last_ts = ts;
            batch.insert(keys::META, meta.encode());
            self.db.apply_batch(batch)?;
        }
        Ok(results)
    }
}

/// One op of a commit with what can be worked out before taking the writer
/// lock: its compartment membership (a JSON walk) and whether an earlier op
/// of the same commit already targets the same resource.
struct Prepared {
    op: WriteOp,
    patients: Vec<String>,
    duplicate: bool,
}

fn prepare(ops: Vec<WriteOp>) -> Vec<Prepared> {
    let mut seen = HashSet::new();
    ops.into_iter()
        .map(|op| {
            let (rtype, id) = op.target();
            let duplicate = !seen.insert((rtype, id.clone()));
            let patients = match &op {
                WriteOp::Create { id, resource } | WriteOp::Update { id, resource, .. } => {
                    patients_of(resource.rtype, id, &resource.body)
                }
                WriteOp::Delete { .. } => Vec::new(),
            };
            Prepared {
                op,
                patients,
                duplicate,
            }
        })
        .collect()
}

/// What one op of a commit does.
enum Plan {
    Write(Write),
    /// A delete of something missing or deleted (with its tombstone, if any).
    Unchanged(Option<StoredVersion>),
    Fail(OpError),
}

/// A new version of the op's target.
struct Write {
    op: WriteOp,
    kind: WriteKind,
    version: u64,
    /// The patients whose compartments this version is in.
    patients: Vec<String>,
    /// The patients whose compartments it leaves.
    left: Vec<String>,
}

/// `If-Match`: the live version must be the expected one. A deleted resource
/// has no live version, so it is reported as `current: None`.
fn check(
    precondition: Precondition,
    live: Option<&Current>,
    rtype: ResourceType,
    id: &ResourceId,
) -> Result<(), OpError> {
    let current = live.map(|c| c.meta.version);
    match precondition {
        Precondition::IfMatch(expected) if current != Some(expected) => {
            Err(OpError::VersionMismatch {
                rtype,
                id: id.clone(),
                expected,
                current,
            })
        }
        _ => Ok(()),
    }
}

/// Counts one new version in `M`.
fn count_version(meta: &mut Meta, kind: WriteKind) {
    meta.last_seq += 1;
    match kind {
        WriteKind::Created => meta.live += 1,
        WriteKind::Deleted => meta.live = meta.live.saturating_sub(1),
        WriteKind::Updated | WriteKind::Unchanged => {}
    }
}

/// Adds every key of one new version to `batch`.
fn stage(batch: &mut Batch, write: Write, ts: Instant, seq: u64) -> WriteResult {
    let Write {
        op,
        kind,
        version,
        patients,
        left,
    } = write;
    let (rtype, id) = op.target();
    let meta = VersionMeta {
        version,
        last_updated: ts,
        deleted: kind == WriteKind::Deleted,
    };
    let body = match &op {
        WriteOp::Create { resource, .. } | WriteOp::Update { resource, .. } => {
            resource.to_stored_bytes(id, version, ts)
        }
        WriteOp::Delete { .. } => Vec::new(),
    };
    let rkey = keys::version_key(rtype, id, version);
    let record = IVec::from(record::encode_version(ts, meta.deleted, &body));
    for patient in &patients {
        batch.insert(
            keys::member_key(patient, rtype, id, version),
            record.clone(),
        );
    }
    for patient in &left {
        batch.insert(
            keys::member_key(patient, rtype, id, version),
            record::encode_left(ts),
        );
    }
    batch.insert(
        keys::current_key(rtype, id),
        Current { meta, patients }.encode(),
    );
    batch.insert(keys::log_key(ts, seq), rkey.as_slice());
    batch.insert(keys::type_log_key(rtype, ts, seq), rkey.as_slice());
    batch.insert(rkey, record.clone());
    let body = Bytes::from_owner(record).slice(VERSION_HEADER..);
    WriteResult {
        kind,
        version: Some(StoredVersion {
            rtype,
            id: id.clone(),
            meta,
            body,
        }),
    }
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub(super) fn corrupt(key: &[u8]) -> StoreError {
    StoreError::Corrupt(keys::display(key))
}

fn last_updated(key: &[u8], value: &[u8]) -> Result<Instant, StoreError> {
    record::decode_version_header(value)
        .map(|(ts, _, _)| ts)
        .ok_or_else(|| corrupt(key))
}

/// An `R` entry as a [`StoredVersion`]; the body shares the value's buffer.
fn decode_version(key: &[u8], value: IVec) -> Result<StoredVersion, StoreError> {
    let (rtype, id, version) = keys::parse_version_key(key).ok_or_else(|| corrupt(key))?;
    let (last_updated, deleted, body_at) =
        record::decode_version_header(&value).ok_or_else(|| corrupt(key))?;
    let body = Bytes::from_owner(value).slice(body_at..);
    Ok(StoredVersion {
        rtype,
        id,
        meta: VersionMeta {
            version,
            last_updated,
            deleted,
        },
        body,
    })
}

type Entry = (IVec, IVec);

/// The first of `newest_first` (`R` entries of one resource) written at or
/// before `snapshot`. Versions of a resource are in time order, so this is the
/// version current at `snapshot`.
fn newest_at(
    newest_first: impl Iterator<Item = Result<Entry, StoreError>>,
    snapshot: Instant,
) -> Result<Option<StoredVersion>, StoreError> {
    for entry in newest_first {
        let (key, value) = entry?;
        if last_updated(&key, &value)? <= snapshot {
            return decode_version(&key, value).map(Some);
        }
    }
    Ok(None)
}

/// One resource as of `snapshot`: a reverse range read of its versions that
/// stops at the first old enough.
fn as_of(
    tree: &Tree,
    rtype: ResourceType,
    id: &ResourceId,
    snapshot: Instant,
) -> Result<Option<StoredVersion>, StoreError> {
    let versions = tree.scan_prefix(keys::resource_prefix(rtype, id)).rev();
    newest_at(versions.map(|e| e.map_err(StoreError::from)), snapshot)
}

/// The compartment entry for one run of `P` keys (one resource): the
/// resource as of `snapshot` if that version is in the compartment, which
/// the newest entry at or before `snapshot` says (see "Layout").
fn member_at(
    tree: &Tree,
    prefix_len: usize,
    run: &[Entry],
    snapshot: Instant,
) -> Result<Option<StoredVersion>, StoreError> {
    let Some((first, _)) = run.first() else {
        return Ok(None);
    };
    let (rtype, id, _) = first
        .get(prefix_len..)
        .and_then(keys::parse_resource_version)
        .ok_or_else(|| corrupt(first))?;
    for (key, value) in run.iter().rev() {
        if value.is_empty() {
            // An entry of the earlier layout carries no copy.
            return member_in_versions(tree, rtype, &id, run, snapshot);
        }
        match record::decode_member(value).ok_or_else(|| corrupt(key))? {
            Member::Left(ts) if ts <= snapshot => return Ok(None),
            Member::In(last_updated, deleted, body_at) if last_updated <= snapshot => {
                let (_, version) = keys::split_version(key).ok_or_else(|| corrupt(key))?;
                return Ok(Some(StoredVersion {
                    rtype,
                    id,
                    meta: VersionMeta {
                        version,
                        last_updated,
                        deleted,
                    },
                    body: Bytes::from_owner(value.clone()).slice(body_at..),
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// [`member_at`] through the resource's `R` versions: one reverse range read.
fn member_in_versions(
    tree: &Tree,
    rtype: ResourceType,
    id: &ResourceId,
    run: &[Entry],
    snapshot: Instant,
) -> Result<Option<StoredVersion>, StoreError> {
    let Some(version) = as_of(tree, rtype, id, snapshot)? else {
        return Ok(None);
    };
    let member = run
        .iter()
        .any(|(k, _)| keys::split_version(k).map(|(_, v)| v) == Some(version.meta.version));
    Ok(member.then_some(version))
}

/// The `C` record of a resource.
fn current_in(
    tree: &Tree,
    rtype: ResourceType,
    id: &ResourceId,
) -> Result<Option<Current>, StoreError> {
    let key = keys::current_key(rtype, id);
    tree.get(&key)?
        .map(|v| Current::decode(&v).ok_or_else(|| corrupt(&key)))
        .transpose()
}

/// Groups a forward scan of keys ending in a version (`R`, `P`) into runs,
/// one per resource, oldest version first. Memory: one resource's versions.
struct Runs {
    iter: ::sled::Iter,
    /// The first entry of the next run, read while ending the previous one.
    pending: Option<Entry>,
}

impl Runs {
    fn new(iter: ::sled::Iter) -> Self {
        Runs {
            iter,
            pending: None,
        }
    }
}

impl Iterator for Runs {
    type Item = Result<Vec<Entry>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut run: Vec<Entry> = self.pending.take().into_iter().collect();
        loop {
            let entry = match self.iter.next() {
                None => return (!run.is_empty()).then_some(Ok(run)),
                Some(Err(e)) => return Some(Err(e.into())),
                Some(Ok(entry)) => entry,
            };
            match run.first() {
                Some((first, _)) if !same_resource(first, &entry.0) => {
                    self.pending = Some(entry);
                    return Some(Ok(run));
                }
                _ => run.push(entry),
            }
        }
    }
}

fn same_resource(a: &[u8], b: &[u8]) -> bool {
    match (keys::split_version(a), keys::split_version(b)) {
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// Where a history scope lives: its key prefix and the length of the
/// position part after it (`ts seq` in the logs, the version in `R`).
fn history_prefix(scope: &HistoryScope) -> (Vec<u8>, usize) {
    match scope {
        HistoryScope::System => (vec![LOG], keys::LOG_SUFFIX),
        HistoryScope::Type(rtype) => (keys::type_prefix(TYPE_LOG, *rtype), keys::LOG_SUFFIX),
        HistoryScope::Instance(rtype, id) => (keys::resource_prefix(*rtype, id), 8),
    }
}

fn cursor_key(cursor: &HistoryCursor, prefix: &[u8], suffix: usize) -> Result<Vec<u8>, StoreError> {
    keys::from_hex(&cursor.0)
        .filter(|k| k.len() == prefix.len() + suffix && k.starts_with(prefix))
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "cursor {:?} is not a position in this history",
                cursor.0
            ))
        })
}

impl Store for SledStore {
    fn commit(
        &self,
        ops: Vec<WriteOp>,
        mode: CommitMode,
    ) -> Result<Vec<Result<WriteResult, OpError>>, StoreError> {
        let prepared = prepare(ops);
        let results = {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let plans = prepared
                .into_iter()
                .map(|p| self.plan(p))
                .collect::<Result<Vec<_>, _>>()?;
            if mode == CommitMode::AllOrNothing {
                let failed = plans
                    .iter()
                    .enumerate()
                    .find_map(|(index, plan)| match plan {
                        Plan::Fail(error) => Some((index, error.clone())),
                        _ => None,
                    });
                if let Some((index, error)) = failed {
                    return Err(StoreError::Rejected { index, error });
                }
            }
            self.apply(plans)?
        };
        // Outside the lock, so that other commits apply while this one syncs.
        // Also when nothing was written: an `Unchanged` result may report a
        // tombstone another commit has applied but not yet made durable.
        self.flush()?;
        Ok(results)
    }

    fn read(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let Some(current) = self.current(rtype, id)? else {
            return Ok(None);
        };
        let key = keys::version_key(rtype, id, current.meta.version);
        self.load(&key).map(Some)
    }

    fn vread(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
        version: u64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let key = keys::version_key(rtype, id, version);
        self.db
            .get(&key)?
            .map(|v| decode_version(&key, v))
            .transpose()
    }

    /// Newest first. Pages end at a cursor holding the last key returned; a
    /// later page reads strictly below it, where new writes never land. The
    /// logs are ranged by time; instance history filters its versions by
    /// time while walking them. A cursor that does not decode to a key of this
    /// scope is reported as [`StoreError::Corrupt`]. `count` 0 counts as 1.
    fn history(
        &self,
        scope: &HistoryScope,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let since = query.since.unwrap_or(Instant::MIN);
        let until = self.visible(query.until.unwrap_or(Instant::MAX))?;
        if since >= until {
            return Ok(HistoryPage {
                entries: Vec::new(),
                next: None,
            });
        }
        let (prefix, suffix) = history_prefix(scope);
        let (lower, upper) = match scope {
            HistoryScope::Instance(..) => (
                Bound::Included(prefix.clone()),
                Bound::Excluded(keys::prefix_end(&prefix)),
            ),
            _ => (
                Bound::Excluded(keys::log_bound(&prefix, since)),
                Bound::Included(keys::log_bound(&prefix, until)),
            ),
        };
        let upper = match &query.cursor {
            Some(cursor) => Bound::Excluded(cursor_key(cursor, &prefix, suffix)?),
            None => upper,
        };
        let mut entries = Vec::new();
        let mut last_key = None;
        for entry in self.db.range((lower, upper)).rev() {
            let (key, value) = entry?;
            let version = match scope {
                HistoryScope::Instance(..) => decode_version(&key, value)?,
                _ => self.load(&value)?,
            };
            if version.meta.last_updated > until {
                continue;
            }
            if version.meta.last_updated <= since {
                break;
            }
            if entries.len() == query.count.max(1) {
                let next = last_key.map(|k: IVec| HistoryCursor(keys::to_hex(&k)));
                return Ok(HistoryPage { entries, next });
            }
            entries.push(version);
            last_key = Some(key);
        }
        Ok(HistoryPage {
            entries,
            next: None,
        })
    }

    /// One forward range read over the type's `R` keys, grouped per resource.
    fn scan_type(
        &self,
        rtype: ResourceType,
        snapshot: Instant,
        after: Option<&ResourceId>,
    ) -> Result<VersionIter, StoreError> {
        let snapshot = self.visible(snapshot)?;
        let prefix = keys::type_prefix(VERSION, rtype);
        let start = after.map_or_else(|| prefix.clone(), |id| keys::after_resource(rtype, id));
        let runs = Runs::new(self.db.range(start..keys::prefix_end(&prefix)));
        Ok(Box::new(runs.filter_map(move |run| {
            run.and_then(|run| newest_at(run.into_iter().rev().map(Ok), snapshot))
                .transpose()
        })))
    }

    /// Collects the distinct ids from the type log window, then reads each
    /// as of `until`.
    fn changed(
        &self,
        rtype: ResourceType,
        since: Instant,
        until: Instant,
    ) -> Result<VersionIter, StoreError> {
        let until = self.visible(until)?;
        let mut ids = BTreeSet::new();
        if since < until {
            let prefix = keys::type_prefix(TYPE_LOG, rtype);
            let window = (
                Bound::Excluded(keys::log_bound(&prefix, since)),
                Bound::Included(keys::log_bound(&prefix, until)),
            );
            for entry in self.db.range(window) {
                let (_, rkey) = entry?;
                let (_, id, _) = keys::parse_version_key(&rkey).ok_or_else(|| corrupt(&rkey))?;
                ids.insert(id);
            }
        }
        let tree: Tree = (*self.db).clone();
        Ok(Box::new(ids.into_iter().map(move |id| {
            as_of(&tree, rtype, &id, until)?
                .ok_or_else(|| corrupt(&keys::resource_prefix(rtype, &id)))
        })))
    }

    /// One range read over the patient's `P` entries, which carry the
    /// versions; per member resource, a point read of its `C`.
    fn compartment(
        &self,
        patient: &ResourceId,
        snapshot: Instant,
    ) -> Result<VersionIter, StoreError> {
        let snapshot = self.visible(snapshot)?;
        let prefix = keys::member_prefix(patient.as_str());
        let runs = Runs::new(self.db.scan_prefix(&prefix));
        let tree: Tree = (*self.db).clone();
        Ok(Box::new(runs.filter_map(move |run| {
            run.and_then(|run| member_at(&tree, prefix.len(), &run, snapshot))
                .transpose()
        })))
    }

    fn last_commit(&self) -> Result<Option<Instant>, StoreError> {
        Ok(self.meta()?.map(|m| m.last_ts))
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let meta = self.meta()?;
        Ok(StoreStats {
            live_resources: meta.map_or(0, |m| m.live),
            versions: meta.map_or(0, |m| m.last_seq.saturating_sub(m.removed)),
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn import(
        &self,
        batch: ImportBatch,
        render: &dyn Fn(&ImportRejection<'_>) -> Vec<u8>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        self.import_batch(batch, render)
    }

    fn import_progress(&self, session: ImportSession) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        self.db
            .scan_prefix(keys::session_prefix(keys::IMPORT_PROGRESS, session.0))
            .map(|entry| {
                let (key, value) = entry?;
                let part = keys::parse_progress_key(&key).ok_or_else(|| corrupt(&key))?;
                Ok((part, value.to_vec()))
            })
            .collect()
    }

    fn import_rejections(&self, session: ImportSession) -> Result<RejectionIter, StoreError> {
        let entries = self
            .db
            .scan_prefix(keys::session_prefix(keys::IMPORT_REJECTED, session.0));
        Ok(Box::new(entries.map(|entry| {
            let (key, value) = entry?;
            let (input, line) = keys::parse_rejected_key(&key).ok_or_else(|| corrupt(&key))?;
            Ok((input, line, Bytes::from_owner(value)))
        })))
    }

    fn end_import(&self, session: ImportSession) -> Result<(), StoreError> {
        /// Keys removed per batch, so that a large error list is not one
        /// huge batch in memory.
        const CHUNK: usize = 10_000;
        for tag in [keys::IMPORT_PROGRESS, keys::IMPORT_REJECTED] {
            let prefix = keys::session_prefix(tag, session.0);
            loop {
                let mut batch = Batch::default();
                let mut n = 0;
                for key in self.db.scan_prefix(&prefix).keys().take(CHUNK) {
                    batch.remove(key?);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                self.db.apply_batch(batch)?;
            }
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::resource::Resource;
    use crate::store::HistoryScope as Scope;

    /// The frozen wall clock of most tests: commit n gets `T0 + n - 1`.
    const T0: i64 = 1_700_000_000_000;

    fn at(n: i64) -> Instant {
        Instant::from_millis(T0 + n - 1)
    }

    fn open(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open_with(dir.path(), DEFAULT_CACHE_BYTES, || Instant::from_millis(T0)).unwrap()
    }

    fn fresh() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        (dir, store)
    }

    fn rt(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap()
    }

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    fn resource(json: &str) -> Resource {
        Resource::from_slice(json.as_bytes()).unwrap()
    }

    fn patient(name: &str) -> Resource {
        resource(&format!(
            r#"{{"resourceType":"Patient","name":[{{"family":"{name}"}}]}}"#
        ))
    }

    fn observation(subject: &str) -> Resource {
        resource(&format!(
            r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/{subject}"}}}}"#
        ))
    }

    fn create(i: &str, resource: Resource) -> WriteOp {
        WriteOp::Create {
            id: id(i),
            resource,
        }
    }

    fn update(i: &str, resource: Resource) -> WriteOp {
        WriteOp::Update {
            id: id(i),
            resource,
            precondition: Precondition::None,
        }
    }

    fn update_if(i: &str, resource: Resource, v: u64) -> WriteOp {
        WriteOp::Update {
            id: id(i),
            resource,
            precondition: Precondition::IfMatch(v),
        }
    }

    fn delete(t: &str, i: &str) -> WriteOp {
        WriteOp::Delete {
            rtype: rt(t),
            id: id(i),
            precondition: Precondition::None,
        }
    }

    fn delete_if(t: &str, i: &str, v: u64) -> WriteOp {
        WriteOp::Delete {
            rtype: rt(t),
            id: id(i),
            precondition: Precondition::IfMatch(v),
        }
    }

    /// Commits `ops` all-or-nothing and returns the results.
    fn commit(store: &SledStore, ops: Vec<WriteOp>) -> Vec<WriteResult> {
        store
            .commit(ops, CommitMode::AllOrNothing)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    fn one(store: &SledStore, op: WriteOp) -> WriteResult {
        commit(store, vec![op]).remove(0)
    }

    /// `(id, version, deleted)` of each version, in order.
    fn summary<'a>(
        versions: impl IntoIterator<Item = &'a StoredVersion>,
    ) -> Vec<(String, u64, bool)> {
        versions
            .into_iter()
            .map(|v| (v.id.to_string(), v.meta.version, v.meta.deleted))
            .collect()
    }

    fn collect(iter: VersionIter) -> Vec<StoredVersion> {
        iter.collect::<Result<_, _>>().unwrap()
    }

    fn family(v: &StoredVersion) -> String {
        let json: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
        json["name"][0]["family"].as_str().unwrap().to_owned()
    }

    #[test]
    fn create_read_update_delete() {
        let (_dir, store) = fresh();
        let pt = rt("Patient");
        assert_eq!(store.read(pt, &id("a")).unwrap(), None);

        let created = one(&store, create("a", patient("One")));
        assert_eq!(created.kind, WriteKind::Created);
        let v1 = created.version.unwrap();
        assert_eq!(
            v1.meta,
            VersionMeta {
                version: 1,
                last_updated: at(1),
                deleted: false
            }
        );
        assert_eq!(
            std::str::from_utf8(&v1.body).unwrap(),
            r#"{"resourceType":"Patient","id":"a","meta":{"versionId":"1","lastUpdated":"2023-11-14T22:13:20.000Z"},"name":[{"family":"One"}]}"#
        );
        assert_eq!(store.read(pt, &id("a")).unwrap().as_ref(), Some(&v1));

        let updated = one(&store, update("a", patient("Two")));
        assert_eq!(updated.kind, WriteKind::Updated);
        assert_eq!(updated.version.as_ref().unwrap().meta.version, 2);
        assert_eq!(family(&store.read(pt, &id("a")).unwrap().unwrap()), "Two");
        assert_eq!(store.vread(pt, &id("a"), 1).unwrap(), Some(v1));
        assert_eq!(store.vread(pt, &id("a"), 9).unwrap(), None);

        let deleted = one(&store, delete("Patient", "a"));
        assert_eq!(deleted.kind, WriteKind::Deleted);
        let tomb = deleted.version.unwrap();
        assert_eq!(
            tomb.meta,
            VersionMeta {
                version: 3,
                last_updated: at(3),
                deleted: true
            }
        );
        assert!(tomb.body.is_empty());
        assert_eq!(store.read(pt, &id("a")).unwrap().as_ref(), Some(&tomb));

        // Deleting again or deleting the unknown writes nothing.
        let again = one(&store, delete("Patient", "a"));
        assert_eq!(
            again,
            WriteResult {
                kind: WriteKind::Unchanged,
                version: Some(tomb)
            }
        );
        let missing = one(&store, delete("Patient", "zz"));
        assert_eq!(
            missing,
            WriteResult {
                kind: WriteKind::Unchanged,
                version: None
            }
        );
        assert_eq!(store.last_commit().unwrap(), Some(at(3)));

        // Update as create after a delete continues the version sequence.
        let revived = one(&store, update("a", patient("Three")));
        assert_eq!(revived.kind, WriteKind::Created);
        assert_eq!(revived.version.unwrap().meta.version, 4);
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 1,
                versions: 4
            }
        );
    }

    #[test]
    fn preconditions() {
        let (_dir, store) = fresh();
        commit(
            &store,
            vec![create("a", patient("A")), create("gone", patient("G"))],
        );
        one(&store, update("a", patient("A2")));
        one(&store, delete("Patient", "gone"));
        let fail = |op| {
            store
                .commit(vec![op], CommitMode::BestEffort)
                .unwrap()
                .remove(0)
                .unwrap_err()
        };
        let pt = rt("Patient");

        assert_eq!(
            fail(create("a", patient("X"))),
            OpError::AlreadyExists(pt, id("a"))
        );
        assert_eq!(
            fail(create("gone", patient("X"))),
            OpError::AlreadyExists(pt, id("gone"))
        );
        let mismatch = |i: &str, expected, current| OpError::VersionMismatch {
            rtype: pt,
            id: id(i),
            expected,
            current,
        };
        assert_eq!(
            fail(update_if("a", patient("X"), 1)),
            mismatch("a", 1, Some(2))
        );
        assert_eq!(
            fail(update_if("new", patient("X"), 1)),
            mismatch("new", 1, None)
        );
        assert_eq!(
            fail(update_if("gone", patient("X"), 2)),
            mismatch("gone", 2, None)
        );
        assert_eq!(
            fail(delete_if("Patient", "a", 1)),
            mismatch("a", 1, Some(2))
        );
        assert_eq!(
            fail(delete_if("Patient", "gone", 2)),
            mismatch("gone", 2, None)
        );
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 1,
                versions: 4
            }
        );

        assert_eq!(
            one(&store, update_if("a", patient("A3"), 2)).kind,
            WriteKind::Updated
        );
        assert_eq!(
            one(&store, delete_if("Patient", "a", 3)).kind,
            WriteKind::Deleted
        );

        let results = store
            .commit(
                vec![create("b", patient("B")), update("b", patient("B2"))],
                CommitMode::BestEffort,
            )
            .unwrap();
        assert_eq!(
            results[0]
                .as_ref()
                .unwrap()
                .version
                .as_ref()
                .unwrap()
                .meta
                .version,
            1
        );
        assert_eq!(results[1], Err(OpError::DuplicateInCommit(pt, id("b"))));
        assert_eq!(family(&store.read(pt, &id("b")).unwrap().unwrap()), "B");
    }

    #[test]
    fn all_or_nothing_writes_nothing_on_failure() {
        let (_dir, store) = fresh();
        one(&store, create("b", patient("B")));
        let before = store.stats().unwrap();
        let err = store
            .commit(
                vec![
                    create("a", patient("A")),
                    update("b", patient("B2")),
                    delete_if("Patient", "zz", 7),
                ],
                CommitMode::AllOrNothing,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Rejected {
                    index: 2,
                    error: OpError::VersionMismatch { expected: 7, .. }
                }
            ),
            "{err:?}"
        );
        assert_eq!(store.stats().unwrap(), before);
        assert_eq!(store.read(rt("Patient"), &id("a")).unwrap(), None);
        assert_eq!(
            store
                .read(rt("Patient"), &id("b"))
                .unwrap()
                .unwrap()
                .meta
                .version,
            1
        );
        assert_eq!(store.last_commit().unwrap(), Some(at(1)));
        let history = store
            .history(
                &Scope::System,
                &HistoryQuery {
                    count: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(history.entries.len(), 1);
    }

    #[test]
    fn best_effort_writes_what_it_can() {
        let (_dir, store) = fresh();
        one(&store, create("b", patient("B")));
        let results = store
            .commit(
                vec![
                    create("a", patient("A")),
                    create("b", patient("X")),
                    update("c", patient("C")),
                    delete("Patient", "a"),
                    delete("Patient", "nobody"),
                ],
                CommitMode::BestEffort,
            )
            .unwrap();
        assert_eq!(results[0].as_ref().unwrap().kind, WriteKind::Created);
        assert_eq!(
            results[1],
            Err(OpError::AlreadyExists(rt("Patient"), id("b")))
        );
        assert_eq!(results[2].as_ref().unwrap().kind, WriteKind::Created);
        assert_eq!(
            results[3],
            Err(OpError::DuplicateInCommit(rt("Patient"), id("a")))
        );
        assert_eq!(
            results[4],
            Ok(WriteResult {
                kind: WriteKind::Unchanged,
                version: None
            })
        );
        for written in [&results[0], &results[2]] {
            assert_eq!(
                written
                    .as_ref()
                    .unwrap()
                    .version
                    .as_ref()
                    .unwrap()
                    .meta
                    .last_updated,
                at(2)
            );
        }
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 3,
                versions: 3
            }
        );

        // When nothing succeeds, nothing is written and no instant is used.
        let results = store
            .commit(vec![create("a", patient("X"))], CommitMode::BestEffort)
            .unwrap();
        assert!(results[0].is_err());
        assert_eq!(store.last_commit().unwrap(), Some(at(2)));
        assert_eq!(
            one(&store, create("d", patient("D")))
                .version
                .unwrap()
                .meta
                .last_updated,
            at(3)
        );
    }

    #[test]
    fn one_instant_per_commit_strictly_increasing_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let results = commit(
            &store,
            vec![
                create("a", patient("A")),
                create("o", observation("a")),
                update("b", patient("B")),
            ],
        );
        assert!(
            results
                .iter()
                .all(|r| r.version.as_ref().unwrap().meta.last_updated == at(1))
        );
        // The frozen wall clock never moves: the store clock runs ahead of it.
        for n in 2..=5 {
            let v = one(&store, update("a", patient("A"))).version.unwrap();
            assert_eq!(v.meta.last_updated, at(n));
        }
        drop(store);

        let store = open(&dir);
        assert_eq!(store.last_commit().unwrap(), Some(at(5)));
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 3,
                versions: 7
            }
        );
        assert_eq!(
            one(&store, update("a", patient("A")))
                .version
                .unwrap()
                .meta
                .last_updated,
            at(6)
        );
    }

    #[test]
    fn real_clock_is_strictly_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let start = Instant::now();
        let instants: Vec<_> = (0..20)
            .map(|_| {
                one(&store, update("a", patient("A")))
                    .version
                    .unwrap()
                    .meta
                    .last_updated
            })
            .collect();
        assert!(instants[0] >= start);
        assert!(instants.windows(2).all(|w| w[0] < w[1]), "{instants:?}");
    }

    #[test]
    fn concurrent_commits_are_serialised() {
        let (_dir, store) = fresh();
        one(&store, create("a", patient("A")));
        let store = &store;
        let mut metas: Vec<VersionMeta> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(move || {
                        (0..25)
                            .map(|_| one(store, update("a", patient("A"))).version.unwrap().meta)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        metas.sort_by_key(|m| m.version);
        assert_eq!(
            metas.iter().map(|m| m.version).collect::<Vec<_>>(),
            (2..=101).collect::<Vec<_>>()
        );
        assert!(
            metas
                .windows(2)
                .all(|w| w[0].last_updated < w[1].last_updated)
        );
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 1,
                versions: 101
            }
        );
    }

    /// Five commits: Patients a and b; Observation o of a; a updated; b deleted.
    fn history_fixture() -> (tempfile::TempDir, SledStore) {
        let (dir, store) = fresh();
        commit(
            &store,
            vec![create("a", patient("A")), create("b", patient("B"))],
        );
        one(&store, create("o", observation("a")));
        one(&store, update("a", patient("A2")));
        one(&store, delete("Patient", "b"));
        (dir, store)
    }

    fn page(store: &SledStore, scope: &Scope, query: HistoryQuery) -> HistoryPage {
        store.history(scope, &query).unwrap()
    }

    fn all(count: usize) -> HistoryQuery {
        HistoryQuery {
            count,
            ..Default::default()
        }
    }

    fn s(i: &str, v: u64, deleted: bool) -> (String, u64, bool) {
        (i.to_owned(), v, deleted)
    }

    #[test]
    fn history_scopes_and_windows() {
        let (_dir, store) = history_fixture();
        let system = page(&store, &Scope::System, all(100));
        assert_eq!(
            summary(&system.entries),
            [
                s("b", 2, true),
                s("a", 2, false),
                s("o", 1, false),
                s("b", 1, false),
                s("a", 1, false)
            ]
        );
        assert!(system.next.is_none());
        let patients = page(&store, &Scope::Type(rt("Patient")), all(100));
        assert_eq!(
            summary(&patients.entries),
            [
                s("b", 2, true),
                s("a", 2, false),
                s("b", 1, false),
                s("a", 1, false)
            ]
        );
        let a = page(&store, &Scope::Instance(rt("Patient"), id("a")), all(100));
        assert_eq!(summary(&a.entries), [s("a", 2, false), s("a", 1, false)]);
        assert_eq!(family(&a.entries[1]), "A");
        assert!(
            page(&store, &Scope::Instance(rt("Patient"), id("zz")), all(100))
                .entries
                .is_empty()
        );

        let window = |since: Option<i64>, until: Option<i64>| HistoryQuery {
            since: since.map(at),
            until: until.map(at),
            count: 100,
            cursor: None,
        };
        let since2 = page(&store, &Scope::System, window(Some(2), None));
        assert_eq!(
            summary(&since2.entries),
            [s("b", 2, true), s("a", 2, false)]
        );
        let until3 = page(&store, &Scope::Type(rt("Patient")), window(None, Some(3)));
        assert_eq!(
            summary(&until3.entries),
            [s("a", 2, false), s("b", 1, false), s("a", 1, false)]
        );
        let between = page(
            &store,
            &Scope::Instance(rt("Patient"), id("a")),
            window(Some(1), Some(3)),
        );
        assert_eq!(summary(&between.entries), [s("a", 2, false)]);
        assert!(
            page(&store, &Scope::System, window(Some(3), Some(3)))
                .entries
                .is_empty()
        );
        assert!(
            page(&store, &Scope::System, window(Some(4), Some(2)))
                .entries
                .is_empty()
        );
    }

    /// Every entry of a listing, reading pages of `count` and committing
    /// `between` after the first page.
    fn read_pages(
        store: &SledStore,
        scope: &Scope,
        count: usize,
        between: impl Fn(),
    ) -> Vec<(String, u64, bool)> {
        let mut seen = Vec::new();
        let mut query = all(count);
        loop {
            let p = page(store, scope, query.clone());
            assert!(p.entries.len() <= count);
            seen.extend(summary(&p.entries));
            between();
            match p.next {
                Some(cursor) => query.cursor = Some(cursor),
                None => return seen,
            }
        }
    }

    #[test]
    fn history_pages_are_stable_under_new_writes() {
        let (_dir, store) = history_fixture();
        let system = read_pages(&store, &Scope::System, 2, || {});
        assert_eq!(
            system,
            [
                s("b", 2, true),
                s("a", 2, false),
                s("o", 1, false),
                s("b", 1, false),
                s("a", 1, false)
            ]
        );
        assert_eq!(page(&store, &Scope::System, all(5)).next, None);

        // Writes between pages land above the cursor: no entry is skipped,
        // repeated or added.
        let cases = [
            (
                Scope::System,
                vec![
                    s("b", 2, true),
                    s("a", 2, false),
                    s("o", 1, false),
                    s("b", 1, false),
                    s("a", 1, false),
                ],
            ),
            (
                Scope::Type(rt("Patient")),
                vec![
                    s("b", 2, true),
                    s("a", 2, false),
                    s("b", 1, false),
                    s("a", 1, false),
                ],
            ),
            (
                Scope::Instance(rt("Patient"), id("a")),
                vec![s("a", 2, false), s("a", 1, false)],
            ),
        ];
        for (scope, expected) in cases {
            let (_dir, store) = history_fixture();
            let write = || {
                one(&store, update("a", patient("new")));
            };
            assert_eq!(read_pages(&store, &scope, 1, write), expected, "{scope:?}");
        }
    }

    #[test]
    fn bad_cursors_are_reported() {
        let (_dir, store) = history_fixture();
        let type_cursor = page(&store, &Scope::Type(rt("Patient")), all(1))
            .next
            .unwrap();
        for cursor in [
            HistoryCursor("zz".into()),
            HistoryCursor("".into()),
            type_cursor,
        ] {
            let query = HistoryQuery {
                cursor: Some(cursor),
                ..all(10)
            };
            let err = store.history(&Scope::System, &query).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt(ref m) if m.starts_with("cursor")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn scan_type_as_of_snapshots() {
        let (_dir, store) = fresh();
        commit(
            &store,
            vec![
                create("a", patient("A1")),
                create("a-", patient("Dash")),
                create("b", patient("B1")),
                create("c", patient("C1")),
                create("m", resource(r#"{"resourceType":"Medication"}"#)),
                create(
                    "mr",
                    resource(r#"{"resourceType":"MedicationRequest","status":"active"}"#),
                ),
            ],
        );
        one(&store, update("a", patient("A2")));
        one(&store, delete("Patient", "b"));
        one(&store, create("d", patient("D1")));
        let scan = |n: i64, after: Option<&str>| {
            let after = after.map(id);
            collect(
                store
                    .scan_type(rt("Patient"), at(n), after.as_ref())
                    .unwrap(),
            )
        };

        assert!(scan(0, None).is_empty());
        let t1 = scan(1, None);
        assert_eq!(
            summary(&t1),
            [
                s("a", 1, false),
                s("a-", 1, false),
                s("b", 1, false),
                s("c", 1, false)
            ]
        );
        assert_eq!(family(&t1[0]), "A1");
        let t2 = scan(2, None);
        assert_eq!(
            summary(&t2),
            [
                s("a", 2, false),
                s("a-", 1, false),
                s("b", 1, false),
                s("c", 1, false)
            ]
        );
        assert_eq!(family(&t2[0]), "A2");
        let t3 = scan(3, None);
        assert_eq!(
            summary(&t3),
            [
                s("a", 2, false),
                s("a-", 1, false),
                s("b", 2, true),
                s("c", 1, false)
            ]
        );
        assert!(t3[2].body.is_empty());
        let t4 = scan(4, None);
        assert_eq!(t4.len(), 5);
        // A snapshot in the future reads as the latest state.
        assert_eq!(
            collect(store.scan_type(rt("Patient"), Instant::MAX, None).unwrap()),
            t4
        );

        assert_eq!(summary(&scan(4, Some("a"))), summary(&t4[1..]));
        assert_eq!(
            summary(&scan(4, Some("b"))),
            [s("c", 1, false), s("d", 1, false)]
        );
        assert_eq!(
            summary(&scan(4, Some("bb"))),
            [s("c", 1, false), s("d", 1, false)]
        );
        assert!(scan(4, Some("d")).is_empty());

        let meds = collect(store.scan_type(rt("Medication"), at(4), None).unwrap());
        assert_eq!(summary(&meds), [s("m", 1, false)]);
    }

    #[test]
    fn changed_windows() {
        let (_dir, store) = history_fixture();
        let changed = |t: &str, since: i64, until: i64| {
            collect(store.changed(rt(t), at(since), at(until)).unwrap())
        };
        assert_eq!(
            summary(&changed("Patient", 0, 1)),
            [s("a", 1, false), s("b", 1, false)]
        );
        assert_eq!(summary(&changed("Patient", 1, 3)), [s("a", 2, false)]);
        assert_eq!(
            summary(&changed("Patient", 2, 4)),
            [s("a", 2, false), s("b", 2, true)]
        );
        // Each as it was at `until`, not at its change.
        assert_eq!(
            summary(&changed("Patient", 0, 2)),
            [s("a", 1, false), s("b", 1, false)]
        );
        assert_eq!(
            summary(&changed("Patient", 0, 4)),
            [s("a", 2, false), s("b", 2, true)]
        );
        assert_eq!(summary(&changed("Observation", 0, 4)), [s("o", 1, false)]);
        assert!(changed("Observation", 2, 4).is_empty());
        assert!(changed("Patient", 4, 4).is_empty());
    }

    #[test]
    fn compartments() {
        let (_dir, store) = fresh();
        commit(
            &store,
            vec![
                create("pa", patient("A")),
                create("pb", patient("B")),
                create("o1", observation("pa")),
                create("o2", observation("pa")),
                create(
                    "e1",
                    resource(
                        r#"{"resourceType":"Encounter","subject":{"reference":"Patient/pa"}}"#,
                    ),
                ),
            ],
        );
        one(&store, update("o1", observation("pb")));
        one(&store, delete("Observation", "o2"));
        one(
            &store,
            update(
                "e1",
                resource(r#"{"resourceType":"Encounter","subject":{"reference":"Patient/pa"}}"#),
            ),
        );
        let members =
            |p: &str, n: i64| summary(&collect(store.compartment(&id(p), at(n)).unwrap()));

        // Ordered by type, then id; each resource once.
        assert_eq!(
            members("pa", 1),
            [
                s("e1", 1, false),
                s("o1", 1, false),
                s("o2", 1, false),
                s("pa", 1, false)
            ]
        );
        assert_eq!(members("pb", 1), [s("pb", 1, false)]);
        // o1 moved to pb; o2's tombstone stays in pa's compartment.
        assert_eq!(
            members("pa", 2),
            [s("e1", 1, false), s("o2", 1, false), s("pa", 1, false)]
        );
        assert_eq!(members("pb", 2), [s("o1", 2, false), s("pb", 1, false)]);
        assert_eq!(
            members("pa", 4),
            [s("e1", 2, false), s("o2", 2, true), s("pa", 1, false)]
        );
        assert!(members("pa", 0).is_empty());
        assert!(members("nobody", 4).is_empty());
    }

    #[test]
    fn compartment_entries_of_the_earlier_layout_read_through_versions() {
        let (_dir, store) = fresh();
        commit(
            &store,
            vec![
                create("pa", patient("A")),
                create("o1", observation("pa")),
                create("o2", observation("pa")),
            ],
        );
        one(&store, update("o1", observation("pa")));
        one(&store, update("o2", observation("pb")));
        one(&store, delete("Observation", "o1"));
        let members = |store: &SledStore, n: i64| {
            summary(&collect(store.compartment(&id("pa"), at(n)).unwrap()))
        };
        let copies: Vec<_> = (0..5).map(|n| members(&store, n)).collect();
        assert_eq!(
            copies[3],
            [s("o1", 2, false), s("pa", 1, false)],
            "o2 left, o1 updated"
        );
        assert_eq!(copies[4], [s("o1", 3, true), s("pa", 1, false)]);
        // The earlier layout: empty values, and no left markers.
        let mut blank = Batch::default();
        for entry in store.db.scan_prefix(keys::member_prefix("pa")) {
            let (key, value) = entry.unwrap();
            match record::decode_member(&value).unwrap() {
                Member::In(..) => blank.insert(key, IVec::default()),
                Member::Left(_) => blank.remove(key),
            }
        }
        store.db.apply_batch(blank).unwrap();
        let through_r: Vec<_> = (0..5).map(|n| members(&store, n)).collect();
        assert_eq!(through_r, copies);
    }
}
