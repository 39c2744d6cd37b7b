//! [`Store::import`](super::Store::import) on sled: versions with explicit
//! ids and instants, written in any order, next to live REST traffic.
//!
//! # What an import batch writes
//!
//! Under the writer lock, like a commit, and as one `apply_batch`: for each
//! version its `R` record (format 2: the header carries the [`Origin`]:
//! session, precedence, line, `seq`, compartment patients), its `L` and `T`
//! log entries at its own `lastUpdated` (which may be older than the store
//! clock: logs are ordered by instant, so `_history`, `changed` and `_since`
//! exports find the version where its instant puts it), its `P` entries, and
//! `C` when it is the resource's highest version; then the batch's rejected
//! lines (`E`), the caller's progress (`I`) and `M` (clock, counters).
//!
//! # Invariants kept
//!
//! - Along one resource's versions `lastUpdated` strictly increases, as REST
//!   writes guarantee: reads "as of T" walk versions newest first and stop at
//!   the first not after T. A line that would break it is rejected.
//! - `C` is the highest version; `live` and the version count in `M` follow.
//! - No version is later than the batch's own instant, which is a new
//!   commit instant: a read "as of now" sees every imported version.
//!
//! What imports do not keep: a read running while a batch of past-dated
//! versions applies may see part of it (REST commits carry a new instant
//! and stay invisible to such a read), and a history page cursor may see
//! versions appear below it.
//!
//! # Duplicates and idempotency
//!
//! A slot (an id for `CreateOnly`, an id and version for `History`) already
//! filled by another line of the same session is settled by precedence, not
//! by arrival: the loser is rejected, and when the winner arrives second it
//! replaces the loser in place (same version and `seq`, its logs, `P`
//! entries and `C` rewritten) and the loser's rejection is recorded in the
//! same batch. So parallel parts of one import reach the same result in any
//! order. A slot filled by the very same line (a batch applied twice) is
//! [`ImportOutcome::AlreadyWritten`]: no change, no error.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::PoisonError;

use ::sled::Batch;

use super::keys;
use super::record::{self, Current, Meta, Origin};
use super::sled::{SledStore, corrupt};
use super::{
    ImportBatch, ImportConflict, ImportItem, ImportOutcome, ImportRejection, ImportWrites, LineRef,
    StoreError, VersionMeta,
};
use crate::fhir::compartment::patients_of;
use crate::fhir::{Instant, ResourceId, ResourceType};

/// An item with the patients whose compartments it is in.
type Prepared = (ImportItem, Vec<String>);

/// One version of a resource, as a batch sees it.
struct Slot {
    last_updated: Instant,
    deleted: bool,
    origin: Option<Origin>,
    /// A live version written elsewhere: the compartments of its body.
    body_patients: Option<Vec<String>>,
    /// The item of this batch that wrote it.
    item: Option<usize>,
}

/// The compartments `version` is in: its origin's, its body's, or for a
/// tombstone written elsewhere those of the version before it.
fn patients_at(versions: &BTreeMap<u64, Slot>, version: u64) -> &[String] {
    for (_, slot) in versions.range(..=version).rev() {
        if let Some(origin) = &slot.origin {
            return &origin.patients;
        }
        if let Some(patients) = &slot.body_patients {
            return patients;
        }
    }
    &[]
}

/// One resource: the stored state plus what the batch has done to it.
struct Resource {
    current: Option<Current>,
    /// Every version; read on first need (a resource the store did not have
    /// starts with none).
    versions: Option<BTreeMap<u64, Slot>>,
}

/// The state of one batch being planned under the writer lock.
struct Apply<'a> {
    store: &'a SledStore,
    session: u64,
    writes: ImportWrites,
    /// The batch's instant: a new commit instant.
    ts: Instant,
    meta: Meta,
    batch: Batch,
    resources: HashMap<(ResourceType, ResourceId), Resource>,
    outcomes: Vec<ImportOutcome>,
    /// Each item's body, serialised before the lock for the version and
    /// instant it most likely gets.
    rendered: Vec<Option<Rendered>>,
    render: &'a dyn Fn(&ImportRejection<'_>) -> Vec<u8>,
    /// Whether any version was written or replaced (the batch then uses its
    /// instant).
    wrote: bool,
}

impl SledStore {
    pub(super) fn import_batch(
        &self,
        batch: ImportBatch,
        render: &dyn Fn(&ImportRejection<'_>) -> Vec<u8>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        let ImportBatch {
            session,
            writes,
            items,
            rejected,
            progress,
        } = batch;
        // The JSON walks and most serialising, before taking the lock.
        let (prepared, rendered): (Vec<Prepared>, Vec<Option<Rendered>>) = items
            .into_iter()
            .map(|item| {
                let patients = patients_of(item.resource.rtype, &item.id, &item.resource.body);
                let rendered = Rendered::guess(&item);
                ((item, patients), rendered)
            })
            .unzip();
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (ts, meta) = self.next_commit()?;
        let mut apply = Apply {
            store: self,
            session: session.0,
            writes,
            ts,
            meta,
            batch: Batch::default(),
            resources: HashMap::new(),
            outcomes: Vec::with_capacity(prepared.len()),
            rendered,
            render,
            wrote: false,
        };
        for (index, (item, patients)) in prepared.into_iter().enumerate() {
            let outcome = apply.item(writes, index, item, patients)?;
            apply.outcomes.push(outcome);
        }
        let Apply {
            mut batch,
            mut meta,
            outcomes,
            wrote,
            ..
        } = apply;
        for (line, record) in rejected {
            batch.insert(keys::rejected_key(session.0, line.input, line.line), record);
        }
        if let Some((part, state)) = progress {
            batch.insert(keys::progress_key(session.0, part), state);
        }
        if wrote {
            meta.last_ts = ts;
            batch.insert(keys::META, meta.encode());
        }
        self.db.apply_batch(batch)?;
        Ok(outcomes)
    }
}

impl Apply<'_> {
    fn item(
        &mut self,
        writes: ImportWrites,
        index: usize,
        item: ImportItem,
        patients: Vec<String>,
    ) -> Result<ImportOutcome, StoreError> {
        let key = (item.resource.rtype, item.id.clone());
        let mut resource = match self.resources.remove(&key) {
            Some(r) => r,
            None => {
                let current = self.store.current(key.0, &key.1)?;
                let versions = current.is_none().then(BTreeMap::new);
                Resource { current, versions }
            }
        };
        self.load_versions(&key, &mut resource)?;
        let outcome = match writes {
            ImportWrites::CreateOnly => self.create(index, &item, patients, &mut resource),
            ImportWrites::History => self.history(index, &item, patients, &mut resource),
        };
        self.resources.insert(key, resource);
        Ok(outcome)
    }

    /// Reads every stored version's header and origin, once per resource.
    fn load_versions(
        &self,
        (rtype, id): &(ResourceType, ResourceId),
        resource: &mut Resource,
    ) -> Result<(), StoreError> {
        if resource.versions.is_some() {
            return Ok(());
        }
        let mut versions = BTreeMap::new();
        for entry in self.store.db.scan_prefix(keys::resource_prefix(*rtype, id)) {
            let (key, value) = entry?;
            let (_, version) = keys::split_version(&key).ok_or_else(|| corrupt(&key))?;
            let (last_updated, deleted, body_at) =
                record::decode_version_header(&value).ok_or_else(|| corrupt(&key))?;
            let origin = record::decode_origin(&value).map_err(|()| corrupt(&key))?;
            // Only the versions around a new one need it (see `mark_left`),
            // but a batch can place a version anywhere.
            let body_patients = match (&origin, deleted) {
                (None, false) => {
                    let body = crate::fhir::resource::Resource::from_slice(&value[body_at..])
                        .map_err(|_| corrupt(&key))?;
                    Some(patients_of(*rtype, id, &body.body))
                }
                _ => None,
            };
            versions.insert(
                version,
                Slot {
                    last_updated,
                    deleted,
                    origin,
                    body_patients,
                    item: None,
                },
            );
        }
        resource.versions = Some(versions);
        Ok(())
    }

    /// `CreateOnly`: version 1 at the batch's instant, unless the id exists.
    fn create(
        &mut self,
        index: usize,
        item: &ImportItem,
        patients: Vec<String>,
        resource: &mut Resource,
    ) -> ImportOutcome {
        let versions = resource.versions.get_or_insert_default();
        if versions.is_empty() {
            return self.write(index, item, patients, 1, self.ts, false, resource);
        }
        // Only a resource this session created (and nobody wrote since) is
        // a slot duplicates of this session compete for.
        let own = match (versions.len(), versions.get(&1)) {
            (1, Some(slot)) => slot
                .origin
                .as_ref()
                .filter(|o| o.session == self.session)
                .map(|o| (o.line, o.precedence, slot.last_updated)),
            _ => None,
        };
        match own {
            None => self.reject(item, None, ImportConflict::Exists),
            Some((line, _, last_updated)) if line == item.line => {
                ImportOutcome::AlreadyWritten(VersionMeta {
                    version: 1,
                    last_updated,
                    deleted: false,
                })
            }
            Some((line, precedence, last_updated)) => {
                if wins(item, precedence, line) {
                    // The instant of the first write stays: its log entries
                    // stay valid.
                    self.replace(index, item, patients, 1, last_updated, false, resource)
                } else {
                    self.reject(item, None, ImportConflict::Duplicate { winner: line })
                }
            }
        }
    }

    /// `History`: the line's version at its instant, both assigned when missing.
    fn history(
        &mut self,
        index: usize,
        item: &ImportItem,
        patients: Vec<String>,
        resource: &mut Resource,
    ) -> ImportOutcome {
        let versions = resource.versions.get_or_insert_default();
        let version = match (item.version, item.last_updated) {
            (Some(v), _) => v,
            (None, None) => versions
                .keys()
                .next_back()
                .map_or(1, |v| v.saturating_add(1)),
            (None, Some(last_updated)) => match fit(versions, last_updated) {
                Ok(v) => v,
                Err(conflict) => return self.reject(item, None, conflict),
            },
        };
        let last_updated = item.last_updated.unwrap_or(self.ts);
        if last_updated > self.ts {
            let conflict = ImportConflict::Future {
                last_updated,
                now: self.ts,
            };
            return self.reject(item, Some(version), conflict);
        }
        let Some(slot) = versions.get(&version) else {
            match self.settle_order(versions, version, last_updated) {
                Ok(losers) => self.evict(item, version, last_updated, &losers, resource),
                Err(conflict) => return self.reject(item, Some(version), conflict),
            }
            return self.write(
                index,
                item,
                patients,
                version,
                last_updated,
                item.deleted,
                resource,
            );
        };
        let own = slot
            .origin
            .as_ref()
            .filter(|o| o.session == self.session)
            .map(|o| (o.line, o.precedence));
        match own {
            None => self.reject(item, Some(version), ImportConflict::VersionExists(version)),
            Some((line, _)) if line == item.line => ImportOutcome::AlreadyWritten(VersionMeta {
                version,
                last_updated: slot.last_updated,
                deleted: slot.deleted,
            }),
            Some((line, _))
                if !first_of_version(last_updated, item.line, slot.last_updated, line) =>
            {
                self.reject(
                    item,
                    Some(version),
                    ImportConflict::Duplicate { winner: line },
                )
            }
            Some(_) => {
                match self.settle_order(versions, version, last_updated) {
                    Ok(losers) => self.evict(item, version, last_updated, &losers, resource),
                    Err(conflict) => return self.reject(item, Some(version), conflict),
                }
                self.replace(
                    index,
                    item,
                    patients,
                    version,
                    last_updated,
                    item.deleted,
                    resource,
                )
            }
        }
    }

    /// A new version: a new `seq`, and `C` when it is the highest.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        index: usize,
        item: &ImportItem,
        patients: Vec<String>,
        version: u64,
        last_updated: Instant,
        deleted: bool,
        resource: &mut Resource,
    ) -> ImportOutcome {
        self.meta.last_seq += 1;
        let origin = Origin {
            session: self.session,
            precedence: item.precedence,
            line: item.line,
            seq: self.meta.last_seq,
            patients,
        };
        let meta = VersionMeta {
            version,
            last_updated,
            deleted,
        };
        // The highest version, also when this line evicted the one `C` had.
        let highest = resource.versions.as_ref().is_none_or(|versions| {
            versions
                .range((Bound::Excluded(version), Bound::Unbounded))
                .next()
                .is_none()
        });
        self.place(index, item, meta, origin, highest, resource)
    }

    /// Puts `item` in the place of the version this session wrote there
    /// from a line it takes precedence over, which becomes a rejected line.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        index: usize,
        item: &ImportItem,
        patients: Vec<String>,
        version: u64,
        last_updated: Instant,
        deleted: bool,
        resource: &mut Resource,
    ) -> ImportOutcome {
        let rtype = item.resource.rtype;
        let versions = resource.versions.get_or_insert_default();
        let Some(Slot {
            last_updated: old_ts,
            origin: Some(old),
            item: old_item,
            ..
        }) = versions.remove(&version)
        else {
            // Callers only replace a slot of their own session.
            return self.write(
                index,
                item,
                patients,
                version,
                last_updated,
                deleted,
                resource,
            );
        };
        // Removals first: the batch keeps the last operation per key, and
        // the new version may share entries with the old.
        for patient in &old.patients {
            self.batch
                .remove(keys::member_key(patient, rtype, &item.id, version));
        }
        if old_ts != last_updated {
            self.batch.remove(keys::log_key(old_ts, old.seq));
            self.batch
                .remove(keys::type_log_key(rtype, old_ts, old.seq));
        }
        self.reject_earlier(
            old.line,
            rtype,
            &item.id,
            (self.writes == ImportWrites::History).then_some(version),
            ImportConflict::Duplicate { winner: item.line },
            old_item,
        );
        let origin = Origin {
            session: self.session,
            precedence: item.precedence,
            line: item.line,
            seq: old.seq,
            patients,
        };
        let meta = VersionMeta {
            version,
            last_updated,
            deleted,
        };
        let current = resource
            .current
            .as_ref()
            .is_some_and(|current| current.meta.version == version);
        self.place(index, item, meta, origin, current, resource)
    }

    /// Stages a version, the compartment markers it implies and its slot;
    /// `current`: it becomes the resource's `C`.
    fn place(
        &mut self,
        index: usize,
        item: &ImportItem,
        meta: VersionMeta,
        origin: Origin,
        current: bool,
        resource: &mut Resource,
    ) -> ImportOutcome {
        self.stage(index, item, &meta, &origin);
        self.mark_left(item, resource.versions.as_ref(), &meta, &origin.patients);
        if current {
            let was_live = resource.current.as_ref().is_some_and(|c| !c.meta.deleted);
            self.set_current(item, was_live, &meta, &origin, resource);
        }
        resource.versions.get_or_insert_default().insert(
            meta.version,
            Slot {
                last_updated: meta.last_updated,
                deleted: meta.deleted,
                origin: Some(origin),
                body_patients: None,
                item: Some(index),
            },
        );
        ImportOutcome::Written(meta)
    }

    /// The versions out of order with a line of `version` at `last_updated`
    /// (`lastUpdated` must strictly increase with the version): this
    /// session's lower versions, which it displaces; or why it cannot be
    /// written: a version from elsewhere, or a higher one of this session
    /// (the higher version stays). "Displaces" is transitive together with
    /// the duplicate rule ([`first_of_version`]), so the lines that stay are
    /// the ones no other line displaces, whatever order the parallel ranges
    /// write in.
    fn settle_order(
        &self,
        versions: &BTreeMap<u64, Slot>,
        version: u64,
        last_updated: Instant,
    ) -> Result<Vec<u64>, ImportConflict> {
        // Versions are in time order, so the ones out of order with the
        // line are the nearest below and above it.
        let below = versions
            .range(..version)
            .rev()
            .take_while(|(_, s)| s.last_updated >= last_updated);
        let above = versions
            .range((Bound::Excluded(version), Bound::Unbounded))
            .take_while(|(_, s)| s.last_updated <= last_updated);
        let mut losers = Vec::new();
        let mut kept = None;
        for (&neighbour, slot) in below.chain(above) {
            let own = slot
                .origin
                .as_ref()
                .is_some_and(|o| o.session == self.session);
            if own && neighbour < version {
                losers.push(neighbour);
            } else if kept.is_none() || !own {
                kept = Some((neighbour, slot.last_updated));
            }
        }
        match kept {
            Some((neighbour, neighbour_last_updated)) => Err(ImportConflict::OutOfOrder {
                version,
                last_updated,
                neighbour,
                neighbour_last_updated,
            }),
            None => Ok(losers),
        }
    }

    /// Removes `losers`, versions this session wrote that the line of
    /// `version` at `last_updated` displaces, and records their lines as
    /// rejected.
    fn evict(
        &mut self,
        item: &ImportItem,
        version: u64,
        last_updated: Instant,
        losers: &[u64],
        resource: &mut Resource,
    ) {
        let rtype = item.resource.rtype;
        let versions = resource.versions.get_or_insert_default();
        for loser in losers {
            let Some(Slot {
                last_updated: old_ts,
                origin: Some(old),
                item: old_item,
                ..
            }) = versions.remove(loser)
            else {
                continue;
            };
            self.batch
                .remove(keys::version_key(rtype, &item.id, *loser));
            for patient in &old.patients {
                self.batch
                    .remove(keys::member_key(patient, rtype, &item.id, *loser));
            }
            self.batch.remove(keys::log_key(old_ts, old.seq));
            self.batch
                .remove(keys::type_log_key(rtype, old_ts, old.seq));
            // Its left markers go too, and the version after it follows the
            // one before it now.
            let before = match versions.range(..*loser).next_back() {
                Some((&below, _)) => patients_at(versions, below).to_vec(),
                None => Vec::new(),
            };
            for patient in &before {
                self.batch
                    .remove(keys::member_key(patient, rtype, &item.id, *loser));
            }
            self.mark_left_above(item, versions, *loser, &before);
            self.meta.removed += 1;
            let conflict = ImportConflict::OutOfOrder {
                version: *loser,
                last_updated: old_ts,
                neighbour: version,
                neighbour_last_updated: last_updated,
            };
            self.reject_earlier(old.line, rtype, &item.id, Some(*loser), conflict, old_item);
        }
    }

    /// Keeps the compartment entries around a new version complete (see
    /// the layout in `sled.rs`): a left marker at the version for each
    /// compartment the version before it is in and it is not, and at the
    /// version after it for each one it is in and that one is not. A marker
    /// too many is harmless (it sits on a version outside that
    /// compartment), so markers the new version makes redundant stay.
    fn mark_left(
        &mut self,
        item: &ImportItem,
        versions: Option<&BTreeMap<u64, Slot>>,
        meta: &VersionMeta,
        patients: &[String],
    ) {
        let Some(versions) = versions else {
            return;
        };
        let rtype = item.resource.rtype;
        if let Some((&below, _)) = versions.range(..meta.version).next_back() {
            for patient in patients_at(versions, below) {
                if !patients.contains(patient) {
                    self.batch.insert(
                        keys::member_key(patient, rtype, &item.id, meta.version),
                        record::encode_left(meta.last_updated),
                    );
                }
            }
        }
        self.mark_left_above(item, versions, meta.version, patients);
    }

    /// A left marker at the version above `version`, for each of
    /// `patients` whose compartment that version is not in.
    fn mark_left_above(
        &mut self,
        item: &ImportItem,
        versions: &BTreeMap<u64, Slot>,
        version: u64,
        patients: &[String],
    ) {
        let Some((&after, slot)) = versions
            .range((Bound::Excluded(version), Bound::Unbounded))
            .next()
        else {
            return;
        };
        let theirs = patients_at(versions, after);
        for patient in patients.iter().filter(|p| !theirs.contains(p)) {
            self.batch.insert(
                keys::member_key(patient, item.resource.rtype, &item.id, after),
                record::encode_left(slot.last_updated),
            );
        }
    }

    /// `R`, its log entries and its compartment entries.
    fn stage(&mut self, index: usize, item: &ImportItem, meta: &VersionMeta, origin: &Origin) {
        let rtype = item.resource.rtype;
        let rendered = self.rendered.get_mut(index).and_then(Option::take);
        let body = if meta.deleted {
            Vec::new()
        } else {
            rendered.and_then(|r| r.body_for(meta)).unwrap_or_else(|| {
                item.resource
                    .to_stored_bytes(&item.id, meta.version, meta.last_updated)
            })
        };
        let rkey = keys::version_key(rtype, &item.id, meta.version);
        if !origin.patients.is_empty() {
            // The compartment copy: the version without its origin.
            let copy = ::sled::IVec::from(record::encode_version(
                meta.last_updated,
                meta.deleted,
                &body,
            ));
            for patient in &origin.patients {
                self.batch.insert(
                    keys::member_key(patient, rtype, &item.id, meta.version),
                    copy.clone(),
                );
            }
        }
        self.batch.insert(
            keys::log_key(meta.last_updated, origin.seq),
            rkey.as_slice(),
        );
        self.batch.insert(
            keys::type_log_key(rtype, meta.last_updated, origin.seq),
            rkey.as_slice(),
        );
        let value = record::encode_imported(meta.last_updated, meta.deleted, origin, &body);
        self.batch.insert(rkey, value);
        self.wrote = true;
    }

    fn set_current(
        &mut self,
        item: &ImportItem,
        was_live: bool,
        meta: &VersionMeta,
        origin: &Origin,
        resource: &mut Resource,
    ) {
        match (was_live, meta.deleted) {
            (false, false) => self.meta.live += 1,
            (true, true) => self.meta.live = self.meta.live.saturating_sub(1),
            _ => {}
        }
        let current = Current {
            meta: *meta,
            patients: origin.patients.clone(),
        };
        self.batch.insert(
            keys::current_key(item.resource.rtype, &item.id),
            current.encode(),
        );
        resource.current = Some(current);
    }

    fn reject(
        &mut self,
        item: &ImportItem,
        version: Option<u64>,
        conflict: ImportConflict,
    ) -> ImportOutcome {
        self.reject_line(item.line, item.resource.rtype, &item.id, version, conflict)
    }

    fn reject_line(
        &mut self,
        line: LineRef,
        rtype: ResourceType,
        id: &ResourceId,
        version: Option<u64>,
        conflict: ImportConflict,
    ) -> ImportOutcome {
        let record = (self.render)(&ImportRejection {
            line,
            rtype,
            id,
            version,
            conflict: &conflict,
        });
        self.batch.insert(
            keys::rejected_key(self.session, line.input, line.line),
            record,
        );
        ImportOutcome::Rejected(conflict)
    }

    /// A line already applied loses to a later one: its rejection is
    /// recorded, and its outcome replaced when it is in this batch.
    fn reject_earlier(
        &mut self,
        line: LineRef,
        rtype: ResourceType,
        id: &ResourceId,
        version: Option<u64>,
        conflict: ImportConflict,
        item: Option<usize>,
    ) {
        let outcome = self.reject_line(line, rtype, id, version, conflict);
        if let Some(i) = item {
            self.outcomes[i] = outcome;
        }
    }
}

/// A body serialised ahead of the writer lock, for the version the item
/// names (or 1, what a new resource gets) and the instant it names (or a
/// placeholder, patched in place once the batch's instant is known).
struct Rendered {
    version: u64,
    last_updated: Option<Instant>,
    bytes: Vec<u8>,
}

/// Stands for the batch's instant until it is known. Any instant from year
/// 1000 to 9999 has the same 24-byte form, so it is patched in place.
fn placeholder() -> Instant {
    Instant::from_millis(0)
}

impl Rendered {
    fn guess(item: &ImportItem) -> Option<Rendered> {
        if item.deleted {
            return None;
        }
        let version = item.version.unwrap_or(1);
        let at = item.last_updated.unwrap_or_else(placeholder);
        Some(Rendered {
            version,
            last_updated: item.last_updated,
            bytes: item.resource.to_stored_bytes(&item.id, version, at),
        })
    }

    /// The body for `meta`, if this one is it or can be patched into it.
    fn body_for(mut self, meta: &VersionMeta) -> Option<Vec<u8>> {
        if self.version != meta.version {
            return None;
        }
        match self.last_updated {
            Some(t) => (t == meta.last_updated).then_some(self.bytes),
            None => {
                let placeholder = placeholder().to_fhir();
                let actual = meta.last_updated.to_fhir();
                // `meta` comes right after `resourceType` and `id`, and
                // neither can hold a `:`: the first occurrence is
                // `meta.lastUpdated`.
                let at = memchr::memmem::find(&self.bytes, placeholder.as_bytes())?;
                (actual.len() == placeholder.len()).then(|| {
                    self.bytes[at..at + actual.len()].copy_from_slice(actual.as_bytes());
                    self.bytes
                })
            }
        }
    }
}

/// Whether `item` takes the slot from a line of the same session.
fn wins(item: &ImportItem, precedence: (u64, Instant), line: super::LineRef) -> bool {
    item.precedence > precedence || (item.precedence == precedence && item.line < line)
}

/// `History`: whether a line at `last_updated` takes a version's slot from
/// the line `held_by` at `held_at`: the earliest `lastUpdated` wins, then
/// the first line.
fn first_of_version(
    last_updated: Instant,
    line: super::LineRef,
    held_at: Instant,
    held_by: super::LineRef,
) -> bool {
    (last_updated, line) < (held_at, held_by)
}

/// The version for a line with `lastUpdated` but no `versionId`: next to the
/// versions around its instant, or none when no number is free there.
fn fit(versions: &BTreeMap<u64, Slot>, last_updated: Instant) -> Result<u64, ImportConflict> {
    let mut below = None;
    let mut above = None;
    for (&version, slot) in versions {
        if slot.last_updated == last_updated {
            return Err(ImportConflict::LastUpdatedTaken(version));
        }
        if slot.last_updated < last_updated {
            below = Some(version);
        } else if above.is_none() {
            above = Some(version);
        }
    }
    let free = match (below, above) {
        (None, None) => Some(1),
        (Some(b), None) => b.checked_add(1),
        (None, Some(a)) => (a > 1).then(|| a - 1),
        (Some(b), Some(a)) => (a - b > 1).then(|| b + 1),
    };
    free.ok_or(ImportConflict::NoVersionFits { last_updated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::resource::Resource as Body;
    use crate::store::{
        CommitMode, HistoryQuery, HistoryScope, ImportSession, LineRef, Precondition, Store,
        StoreStats, StoredVersion, WriteOp,
    };

    /// The frozen wall clock: every batch's instant is after `T0`.
    const T0: i64 = 1_700_000_000_000;
    const SESSION: ImportSession = ImportSession(7);

    fn fresh() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SledStore::open_with(dir.path(), 16 << 20, || Instant::from_millis(T0)).unwrap();
        (dir, store)
    }

    fn at(ms: i64) -> Instant {
        Instant::from_millis(T0 - 1_000_000 + ms)
    }

    fn rt(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap()
    }

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    fn line(n: u64) -> LineRef {
        LineRef {
            input: 0,
            line: n,
            offset: n * 100,
        }
    }

    fn observation(i: &str, patient: &str) -> Body {
        Body::from_slice(
            format!(
                r#"{{"resourceType":"Observation","id":"{i}","status":"final","subject":{{"reference":"Patient/{patient}"}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    /// A version of Observation `i` about `patient` from line `n`.
    fn item(i: &str, patient: &str, n: u64, version: Option<u64>, ts: Option<i64>) -> ImportItem {
        ImportItem {
            id: id(i),
            resource: observation(i, patient),
            version,
            last_updated: ts.map(at),
            deleted: false,
            line: line(n),
            precedence: (0, Instant::MIN),
        }
    }

    fn render(r: &ImportRejection<'_>) -> Vec<u8> {
        format!(
            "{}/{} line {}: {:?}",
            r.rtype, r.id, r.line.line, r.conflict
        )
        .into_bytes()
    }

    fn import(
        store: &SledStore,
        writes: ImportWrites,
        items: Vec<ImportItem>,
    ) -> Vec<ImportOutcome> {
        let batch = ImportBatch {
            session: SESSION,
            writes,
            items,
            rejected: Vec::new(),
            progress: None,
        };
        store.import(batch, &render).unwrap()
    }

    fn history(store: &SledStore, items: Vec<ImportItem>) -> Vec<ImportOutcome> {
        import(store, ImportWrites::History, items)
    }

    fn rejections(store: &SledStore) -> Vec<(u64, String)> {
        store
            .import_rejections(SESSION)
            .unwrap()
            .map(|r| {
                let (_, line, bytes) = r.unwrap();
                (line, String::from_utf8(bytes.to_vec()).unwrap())
            })
            .collect()
    }

    /// `(version, lastUpdated offset, deleted)` of every version, newest first.
    fn versions_of(store: &SledStore, i: &str) -> Vec<(u64, Instant, bool)> {
        let scope = HistoryScope::Instance(rt("Observation"), id(i));
        let query = HistoryQuery {
            count: 100,
            ..Default::default()
        };
        store
            .history(&scope, &query)
            .unwrap()
            .entries
            .iter()
            .map(|v| (v.meta.version, v.meta.last_updated, v.meta.deleted))
            .collect()
    }

    fn all(iter: crate::store::VersionIter) -> Vec<StoredVersion> {
        iter.collect::<Result<_, _>>().unwrap()
    }

    fn subject(v: &StoredVersion) -> String {
        let json: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
        json["subject"]["reference"].as_str().unwrap().to_owned()
    }

    #[test]
    fn versions_in_any_order_make_one_history() {
        let (_dir, store) = fresh();
        // Version 3 first, then 1, then 2 with 1 in the same batch.
        history(&store, vec![item("o", "p3", 3, Some(3), Some(30))]);
        let outcomes = history(
            &store,
            vec![
                item("o", "p1", 1, Some(1), Some(10)),
                item("o", "p2", 2, Some(2), Some(20)),
            ],
        );
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ImportOutcome::Written(_)))
        );
        assert_eq!(
            versions_of(&store, "o"),
            [(3, at(30), false), (2, at(20), false), (1, at(10), false)]
        );
        let current = store.read(rt("Observation"), &id("o")).unwrap().unwrap();
        assert_eq!(current.meta.version, 3);
        assert_eq!(
            std::str::from_utf8(&current.body).unwrap(),
            format!(
                r#"{{"resourceType":"Observation","id":"o","meta":{{"versionId":"3","lastUpdated":"{}"}},"status":"final","subject":{{"reference":"Patient/p3"}}}}"#,
                at(30)
            )
        );
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 1,
                versions: 3
            }
        );
        // Snapshots, change windows and compartments see each version at
        // its own instant.
        let scan = |ms| all(store.scan_type(rt("Observation"), at(ms), None).unwrap());
        assert!(scan(5).is_empty());
        assert_eq!(subject(&scan(15)[0]), "Patient/p1");
        assert_eq!(subject(&scan(25)[0]), "Patient/p2");
        assert_eq!(subject(&scan(35)[0]), "Patient/p3");
        let changed = all(store.changed(rt("Observation"), at(15), at(25)).unwrap());
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].meta.version, 2);
        assert!(all(store.changed(rt("Observation"), at(30), at(40)).unwrap()).is_empty());
        let members = |p: &str, ms| all(store.compartment(&id(p), at(ms)).unwrap()).len();
        assert_eq!((members("p1", 15), members("p1", 25)), (1, 0));
        assert_eq!((members("p2", 25), members("p3", 25)), (1, 0));
        assert_eq!(members("p3", 35), 1);
        let system = store
            .history(
                &HistoryScope::System,
                &HistoryQuery {
                    count: 100,
                    ..Default::default()
                },
            )
            .unwrap();
        let order: Vec<u64> = system.entries.iter().map(|v| v.meta.version).collect();
        assert_eq!(order, [3, 2, 1]);
    }

    #[test]
    fn missing_versions_and_instants_are_assigned() {
        let (_dir, store) = fresh();
        history(
            &store,
            vec![
                item("o", "p", 1, Some(2), Some(20)),
                item("o", "p", 2, Some(5), Some(50)),
            ],
        );
        let outcomes = history(
            &store,
            vec![
                // Before version 2: version 1.
                item("o", "p", 3, None, Some(10)),
                // Between 2 and 5: the number after 2.
                item("o", "p", 4, None, Some(30)),
                // Between 3 and 5 at 40: 4.
                item("o", "p", 5, None, Some(40)),
                // Between 4 (40) and 5 (50): no number left.
                item("o", "p", 6, None, Some(45)),
                // The instant of version 2.
                item("o", "p", 7, None, Some(20)),
                // Neither: after the newest, at the batch's instant.
                item("o", "p", 8, None, None),
            ],
        );
        let batch_ts = store.last_commit().unwrap().unwrap();
        assert!(batch_ts >= Instant::from_millis(T0));
        let versions: Vec<Option<u64>> = outcomes
            .iter()
            .map(|o| match o {
                ImportOutcome::Written(m) => Some(m.version),
                _ => None,
            })
            .collect();
        assert_eq!(versions, [Some(1), Some(3), Some(4), None, None, Some(6)]);
        assert_eq!(
            outcomes[3],
            ImportOutcome::Rejected(ImportConflict::NoVersionFits {
                last_updated: at(45)
            })
        );
        assert_eq!(
            outcomes[4],
            ImportOutcome::Rejected(ImportConflict::LastUpdatedTaken(2))
        );
        assert_eq!(versions_of(&store, "o")[0], (6, batch_ts, false));
        // Bodies carry the version and instant decided under the lock, also
        // when they differ from what was serialised ahead of it.
        for (version, ts) in [(6, batch_ts), (1, at(10))] {
            let stored = store
                .vread(rt("Observation"), &id("o"), version)
                .unwrap()
                .unwrap();
            let meta = format!(r#""meta":{{"versionId":"{version}","lastUpdated":"{ts}"}}"#);
            assert!(
                String::from_utf8_lossy(&stored.body).contains(&meta),
                "{stored:?}"
            );
        }
        let created = import(
            &store,
            ImportWrites::CreateOnly,
            vec![item("n", "p", 20, None, None)],
        );
        let ImportOutcome::Written(meta) = &created[0] else {
            panic!("{created:?}")
        };
        let stored = store.read(rt("Observation"), &id("n")).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&stored.body).contains(&format!(
            r#""meta":{{"versionId":"1","lastUpdated":"{}"}}"#,
            meta.last_updated
        )));
        // Below version 1 there is no number (the store keeps versions ≥ 1).
        let below = history(&store, vec![item("o", "p", 9, None, Some(1))]);
        assert_eq!(
            below[0],
            ImportOutcome::Rejected(ImportConflict::NoVersionFits {
                last_updated: at(1)
            })
        );
        assert_eq!(
            rejections(&store)
                .iter()
                .map(|(l, _)| *l)
                .collect::<Vec<_>>(),
            [6, 7, 9]
        );
    }

    #[test]
    fn history_must_be_in_time_order_and_not_in_the_future() {
        let (_dir, store) = fresh();
        history(&store, vec![item("o", "p", 1, Some(2), Some(20))]);
        let outcomes = history(
            &store,
            vec![
                item("o", "p", 2, Some(1), Some(25)),
                item("o", "p", 3, Some(3), Some(20)),
                item("o", "p", 4, Some(4), Some(2_000_000)),
                item("o", "p", 5, Some(3), Some(21)),
            ],
        );
        assert_eq!(
            outcomes[0],
            ImportOutcome::Rejected(ImportConflict::OutOfOrder {
                version: 1,
                last_updated: at(25),
                neighbour: 2,
                neighbour_last_updated: at(20)
            })
        );
        // Version 3 at the instant of version 2 displaces it (the higher
        // version stays), and its duplicate at 21 loses to it (the earlier
        // instant stays).
        assert!(matches!(outcomes[1], ImportOutcome::Written(_)));
        assert!(matches!(
            outcomes[2],
            ImportOutcome::Rejected(ImportConflict::Future { .. })
        ));
        assert_eq!(
            outcomes[3],
            ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(3) })
        );
        assert_eq!(versions_of(&store, "o"), [(3, at(20), false)]);
        let lost: Vec<u64> = rejections(&store).iter().map(|(l, _)| *l).collect();
        assert_eq!(lost, [1, 2, 4, 5]);
        assert_eq!(store.stats().unwrap().versions, 1);
        let members = all(store.compartment(&id("p"), at(30)).unwrap());
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].meta.version, 3);
    }

    /// Every order of five lines, one batch each: the same versions stay and
    /// the same lines are rejected.
    #[test]
    fn lines_out_of_time_order_settle_alike_in_any_order() {
        // (line, version, lastUpdated): 2 displaces 1 (instants go back);
        // 4 takes version 3 from 3 (earlier) and so displaces 2 and 1 too;
        // 5 is after all of them.
        let lines = [(1, 1, 30), (2, 2, 20), (3, 3, 25), (4, 3, 19), (5, 4, 40)];
        let (_dir, store) = fresh();
        let mut orders = vec![Vec::new()];
        for _ in 0..lines.len() {
            orders = orders
                .into_iter()
                .flat_map(|order: Vec<usize>| {
                    (0..lines.len())
                        .filter(|i| !order.contains(i))
                        .map(|i| [order.clone(), vec![i]].concat())
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        assert_eq!(orders.len(), 120);
        for (n, order) in orders.iter().enumerate() {
            let name = format!("o{n}");
            for &i in order {
                let (l, v, t) = lines[i];
                history(
                    &store,
                    vec![item(&name, "p", n as u64 * 10 + l, Some(v), Some(t))],
                );
            }
            assert_eq!(
                versions_of(&store, &name),
                [(4, at(40), false), (3, at(19), false)],
                "order {order:?}"
            );
        }
        let mut lost: Vec<u64> = rejections(&store).iter().map(|(l, _)| *l).collect();
        lost.sort_unstable();
        let expected: Vec<u64> = (0..120)
            .flat_map(|n| [n * 10 + 1, n * 10 + 2, n * 10 + 3])
            .collect();
        assert_eq!(lost, expected);
        assert_eq!(store.stats().unwrap().versions, 240);
        assert_eq!(all(store.compartment(&id("p"), at(50)).unwrap()).len(), 120);
    }

    #[test]
    fn soft_deleted_versions_are_tombstones_in_their_compartment() {
        let (_dir, store) = fresh();
        let mut deleted = item("o", "p", 2, Some(2), Some(20));
        deleted.deleted = true;
        history(&store, vec![deleted, item("o", "p", 1, Some(1), Some(10))]);
        let current = store.read(rt("Observation"), &id("o")).unwrap().unwrap();
        assert!(current.meta.deleted && current.body.is_empty());
        assert_eq!(store.stats().unwrap().live_resources, 0);
        let members = all(store.compartment(&id("p"), at(30)).unwrap());
        assert_eq!(members.len(), 1);
        assert!(members[0].meta.deleted);
        // A live version above the tombstone brings it back.
        history(&store, vec![item("o", "p", 3, Some(3), Some(30))]);
        assert_eq!(store.stats().unwrap().live_resources, 1);
    }

    #[test]
    fn duplicate_versions_keep_the_first_line_whatever_the_order() {
        for first_written in [10, 5] {
            let (_dir, store) = fresh();
            // Line 5 and line 10 both claim version 2, at different instants
            // and for different patients.
            let early = item("o", "p5", 5, Some(2), Some(20));
            let late = item("o", "p10", 10, Some(2), Some(22));
            let (a, b) = if first_written == 10 {
                (late, early)
            } else {
                (early, late)
            };
            history(&store, vec![a]);
            let second = history(&store, vec![b]);
            let current = store.read(rt("Observation"), &id("o")).unwrap().unwrap();
            assert_eq!(subject(&current), "Patient/p5", "{first_written}");
            assert_eq!(current.meta.last_updated, at(20));
            assert_eq!(versions_of(&store, "o"), [(2, at(20), false)]);
            assert_eq!(
                rejections(&store),
                [(
                    10,
                    "Observation/o line 10: Duplicate { winner: LineRef { input: 0, line: 5, offset: 500 } }"
                        .to_owned()
                )]
            );
            let expected = if first_written == 10 {
                ImportOutcome::Written(VersionMeta {
                    version: 2,
                    last_updated: at(20),
                    deleted: false,
                })
            } else {
                ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(5) })
            };
            assert_eq!(second[0], expected);
            // One version, one log entry each, one compartment.
            assert_eq!(store.stats().unwrap().versions, 1);
            let type_history = store
                .history(
                    &HistoryScope::Type(rt("Observation")),
                    &HistoryQuery {
                        count: 10,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(type_history.entries.len(), 1);
            assert_eq!(all(store.compartment(&id("p10"), at(30)).unwrap()).len(), 0);
            assert_eq!(all(store.compartment(&id("p5"), at(30)).unwrap()).len(), 1);
        }
    }

    #[test]
    fn duplicates_within_one_batch() {
        let (_dir, store) = fresh();
        let outcomes = history(
            &store,
            vec![
                // The earliest lastUpdated, then the first line, wins.
                item("o", "p9", 9, Some(1), Some(11)),
                item("o", "p3", 3, Some(1), Some(10)),
                item("o", "p4", 4, Some(1), Some(10)),
            ],
        );
        assert_eq!(
            outcomes[0],
            ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(3) })
        );
        assert!(matches!(outcomes[1], ImportOutcome::Written(_)));
        assert_eq!(
            outcomes[2],
            ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(3) })
        );
        let current = store.read(rt("Observation"), &id("o")).unwrap().unwrap();
        assert_eq!(
            (subject(&current), current.meta.last_updated),
            ("Patient/p3".to_owned(), at(10))
        );
        assert_eq!(
            rejections(&store)
                .iter()
                .map(|(l, _)| *l)
                .collect::<Vec<_>>(),
            [4, 9]
        );
        assert_eq!(store.stats().unwrap().versions, 1);
    }

    #[test]
    fn versions_from_elsewhere_are_not_replaced() {
        let (_dir, store) = fresh();
        store
            .commit(
                vec![WriteOp::Update {
                    id: id("o"),
                    resource: observation("o", "rest"),
                    precondition: Precondition::None,
                }],
                CommitMode::AllOrNothing,
            )
            .unwrap();
        let outcomes = history(&store, vec![item("o", "p", 1, Some(1), Some(10))]);
        assert_eq!(
            outcomes[0],
            ImportOutcome::Rejected(ImportConflict::VersionExists(1))
        );
        // Another import's versions neither.
        let other = ImportBatch {
            session: ImportSession(8),
            writes: ImportWrites::History,
            items: vec![item("x", "p", 1, Some(1), Some(10))],
            rejected: Vec::new(),
            progress: None,
        };
        store.import(other, &render).unwrap();
        let outcomes = history(&store, vec![item("x", "p", 0, Some(1), Some(10))]);
        assert_eq!(
            outcomes[0],
            ImportOutcome::Rejected(ImportConflict::VersionExists(1))
        );
        // Later versions go on top of the REST one, in time order.
        let outcomes = history(
            &store,
            vec![
                item("o", "p", 2, Some(2), Some(10)),
                item("o", "p", 3, None, None),
            ],
        );
        assert!(matches!(
            outcomes[0],
            ImportOutcome::Rejected(ImportConflict::OutOfOrder { neighbour: 1, .. })
        ));
        let ImportOutcome::Written(meta) = &outcomes[1] else {
            panic!("{outcomes:?}")
        };
        assert_eq!(meta.version, 2);
        assert_eq!(
            store
                .read(rt("Observation"), &id("o"))
                .unwrap()
                .unwrap()
                .meta,
            *meta
        );
    }

    #[test]
    fn applying_a_batch_again_changes_nothing() {
        let (_dir, store) = fresh();
        let items = vec![
            item("o", "p", 1, Some(1), Some(10)),
            item("o", "p", 2, Some(2), Some(20)),
            item("b", "p", 3, Some(1), Some(10)),
        ];
        history(&store, items.clone());
        let before = (store.stats().unwrap(), store.last_commit().unwrap());
        let again = history(&store, items);
        assert!(
            again
                .iter()
                .all(|o| matches!(o, ImportOutcome::AlreadyWritten(_)))
        );
        assert_eq!(
            (store.stats().unwrap(), store.last_commit().unwrap()),
            before
        );
        assert!(rejections(&store).is_empty());
        // The same for create-only.
        let create = vec![item("c", "p", 4, None, None)];
        import(&store, ImportWrites::CreateOnly, create.clone());
        let again = import(&store, ImportWrites::CreateOnly, create);
        assert!(matches!(again[0], ImportOutcome::AlreadyWritten(_)));
        assert_eq!(store.stats().unwrap().versions, 4);
    }

    #[test]
    fn create_only_keeps_the_highest_claim() {
        let (_dir, store) = fresh();
        store
            .commit(
                vec![WriteOp::Create {
                    id: id("rest"),
                    resource: observation("rest", "p"),
                }],
                CommitMode::AllOrNothing,
            )
            .unwrap();
        let claim = |mut i: ImportItem, version: u64, ms: i64| {
            i.precedence = (version, at(ms));
            i
        };
        let first = import(
            &store,
            ImportWrites::CreateOnly,
            vec![
                item("rest", "p", 1, None, None),
                claim(item("o", "p2", 2, None, None), 2, 10),
            ],
        );
        assert_eq!(first[0], ImportOutcome::Rejected(ImportConflict::Exists));
        let ImportOutcome::Written(written) = first[1].clone() else {
            panic!("{first:?}")
        };
        assert_eq!(written.version, 1);
        // A higher versionId wins; at equal versionId the later lastUpdated;
        // at equal claims the earlier line.
        let later = import(
            &store,
            ImportWrites::CreateOnly,
            vec![
                claim(item("o", "p1", 1, None, None), 2, 5),
                claim(item("o", "p3", 3, None, None), 3, 0),
                claim(item("o", "p4", 4, None, None), 3, 0),
            ],
        );
        assert_eq!(
            later[0],
            ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(2) })
        );
        assert!(matches!(later[1], ImportOutcome::Written(_)));
        assert_eq!(
            later[2],
            ImportOutcome::Rejected(ImportConflict::Duplicate { winner: line(3) })
        );
        let current = store.read(rt("Observation"), &id("o")).unwrap().unwrap();
        assert_eq!(subject(&current), "Patient/p3");
        // The first write's instant stays.
        assert_eq!(current.meta, written);
        assert_eq!(
            rejections(&store)
                .iter()
                .map(|(l, _)| *l)
                .collect::<Vec<_>>(),
            [1, 2, 4]
        );
        let members = |p: &str| all(store.compartment(&id(p), Instant::MAX).unwrap()).len();
        assert_eq!((members("p2"), members("p3")), (0, 1));
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                live_resources: 2,
                versions: 2
            }
        );
    }

    #[test]
    fn progress_and_rejected_lines_live_until_the_end() {
        let (_dir, store) = fresh();
        let batch = |part: u32, state: &str, rejected: Vec<(LineRef, Vec<u8>)>| ImportBatch {
            session: SESSION,
            writes: ImportWrites::History,
            items: Vec::new(),
            rejected,
            progress: Some((part, state.as_bytes().to_vec())),
        };
        let line_of = |input, n| LineRef {
            input,
            line: n,
            offset: 0,
        };
        store
            .import(
                batch(0, "a", vec![(line_of(1, 20), b"x".to_vec())]),
                &render,
            )
            .unwrap();
        store
            .import(
                batch(
                    1,
                    "b",
                    vec![
                        (line_of(0, 300), b"y".to_vec()),
                        (line_of(1, 3), b"z".to_vec()),
                    ],
                ),
                &render,
            )
            .unwrap();
        store.import(batch(0, "c", Vec::new()), &render).unwrap();
        // Nothing was written: no instant used.
        assert_eq!(store.last_commit().unwrap(), None);
        assert_eq!(
            store.import_progress(SESSION).unwrap(),
            [(0, b"c".to_vec()), (1, b"b".to_vec())]
        );
        assert!(store.import_progress(ImportSession(8)).unwrap().is_empty());
        let listed: Vec<(u32, u64, Vec<u8>)> = store
            .import_rejections(SESSION)
            .unwrap()
            .map(|r| {
                let (i, l, b) = r.unwrap();
                (i, l, b.to_vec())
            })
            .collect();
        assert_eq!(
            listed,
            [
                (0, 300, b"y".to_vec()),
                (1, 3, b"z".to_vec()),
                (1, 20, b"x".to_vec())
            ]
        );
        store.end_import(SESSION).unwrap();
        assert!(store.import_progress(SESSION).unwrap().is_empty());
        assert_eq!(store.import_rejections(SESSION).unwrap().count(), 0);
    }
}
