//! The patients of a Patient- or Group-level export: which ones, how they
//! are split between units, and under which one a resource in several of
//! their compartments is written.
//!
//! Deduplication keeps no memory of what was written: a resource goes out
//! under the smallest-id exported patient whose compartment holds it and
//! whose window includes it (membership computed from the version's body
//! with the same rules the compartment index uses; with `_since`, an
//! unchanged resource is in the window of members added since only). Every
//! unit can decide that on its own, in any order, on a resumed attempt too.

use crate::fhir::compartment::patients_of;
use crate::fhir::resource::Resource;
use crate::fhir::{ResourceId, ResourceType};
use crate::store::{StoreError, StoredVersion};

use super::snapshot::Snapshot;

const PATIENT_REF: &[u8] = b"Patient/";

/// Whose compartments are exported.
#[derive(Debug)]
pub enum Patients {
    /// Every Patient live at the snapshot (Patient level without `patient`);
    /// carries the `Patient` type to scan.
    All(ResourceType),
    /// These, sorted and distinct: the `patient` parameter's, or the
    /// Group's members (memory grows with the Group, not the output).
    Listed(Vec<ResourceId>),
}

pub type PatientIter<'a> = Box<dyn Iterator<Item = Result<ResourceId, StoreError>> + 'a>;

impl Patients {
    /// How many units to split them into.
    pub fn partitions(&self, parallelism: usize) -> u32 {
        let n = match self {
            Patients::All(_) => parallelism,
            Patients::Listed(ids) => parallelism.min(ids.len()),
        };
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }

    /// The patients of unit `part` (1-based) of `parts`, in id order,
    /// after `after`.
    pub fn iter<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        part: u32,
        parts: u32,
        after: Option<&str>,
    ) -> Result<PatientIter<'a>, StoreError> {
        let mine = move |id: &ResourceId| partition(id.as_str(), parts) == part;
        match self {
            Patients::All(patient) => {
                let after = after.and_then(ResourceId::parse);
                let scan = snapshot
                    .store()
                    .scan_type(*patient, snapshot.at(), after.as_ref())?;
                Ok(Box::new(scan.filter_map(move |v| match v {
                    Ok(v) if !v.meta.deleted && mine(&v.id) => Some(Ok(v.id)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })))
            }
            Patients::Listed(ids) => {
                let start = after.map_or(0, |a| ids.partition_point(|id| id.as_str() <= a));
                Ok(Box::new(
                    ids[start..]
                        .iter()
                        .filter(move |id| mine(id))
                        .cloned()
                        .map(Ok),
                ))
            }
        }
    }

    /// Whether patient `id`'s compartment is exported.
    fn exports(&self, snapshot: &Snapshot, id: &str) -> Result<bool, StoreError> {
        match self {
            Patients::Listed(ids) => Ok(ids.binary_search_by(|p| p.as_str().cmp(id)).is_ok()),
            Patients::All(patient) => match ResourceId::parse(id) {
                Some(id) => Ok(snapshot.live(*patient, &id)?.is_some()),
                None => Ok(false),
            },
        }
    }

    /// Whether `cur`, found in `patient`'s compartment and in its window,
    /// is written under `patient`: no exported patient with a smaller id has
    /// it in its compartment and window. Every window holds a resource that
    /// changed after `_since` (`changed`); one that did not is only in the
    /// windows of the patients in `whole` (sorted: exported whole). Membership
    /// is judged on the version at the snapshot (a tombstone's on the version
    /// it deleted), like the compartment index.
    pub fn owns(
        &self,
        snapshot: &Snapshot,
        patient: &ResourceId,
        cur: &StoredVersion,
        changed: bool,
        whole: &[ResourceId],
    ) -> Result<bool, StoreError> {
        let body = if cur.meta.deleted {
            snapshot.deleted_body(cur)?.body
        } else {
            cur.body.clone()
        };
        // Most resources name only their own patient: a byte scan for
        // `Patient/<id>` (a superset of the members) settles them without
        // parsing.
        let own = (cur.rtype.as_str() == "Patient").then_some(cur.id.as_str().as_bytes());
        let smaller = mentioned(&body)
            .chain(own)
            .any(|q| q < patient.as_str().as_bytes());
        if !smaller {
            return Ok(true);
        }
        let resource = Resource::from_slice(&body)
            .map_err(|e| StoreError::Corrupt(format!("stored {}/{}: {e}", cur.rtype, cur.id)))?;
        for q in patients_of(cur.rtype, &cur.id, &resource.body) {
            if q.as_str() >= patient.as_str() {
                break;
            }
            let in_window = changed
                || whole
                    .binary_search_by(|w| w.as_str().cmp(q.as_str()))
                    .is_ok();
            if in_window && self.exports(snapshot, &q)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The ids written after every `Patient/` in `body` (stored JSON never
/// escapes `/`, and ids need no escaping). Runs on every compartment
/// resource exported: a SIMD substring search, not a byte-window scan.
fn mentioned(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let is_id = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    memchr::memmem::find_iter(body, PATIENT_REF)
        .map(move |i| {
            let rest = &body[i + PATIENT_REF.len()..];
            let len = rest.iter().take_while(|b| is_id(b)).count();
            &rest[..len]
        })
        .filter(|id| !id.is_empty())
}

/// The unit (1-based) patient `id` belongs to: FNV-1a of the id, stable
/// across processes and versions so that a resumed attempt splits alike.
fn partition(id: &str, parts: u32) -> u32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(parts.max(1))) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_patient_references() {
        let body = br#"{"subject":{"reference":"Patient/p-1.2"},"performer":[{"reference":"http://x/fhir/Patient/a/_history/2"},{"reference":"Practitioner/z"}],"note":"Patient/"}"#;
        let ids: Vec<&[u8]> = mentioned(body).collect();
        assert_eq!(ids, [b"p-1.2".as_slice(), b"a"]);
    }

    #[test]
    fn partitions_are_stable_and_cover_all() {
        assert_eq!(partition("anything", 1), 1);
        let parts: Vec<u32> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|id| partition(id, 2))
            .collect();
        assert!(parts.contains(&1) && parts.contains(&2), "{parts:?}");
        assert_eq!(partition("a", 2), partition("a", 2));
        let patient = ResourceType::parse("Patient").unwrap();
        assert_eq!(Patients::All(patient).partitions(2), 2);
        assert_eq!(Patients::Listed(Vec::new()).partitions(2), 1);
        assert_eq!(
            Patients::Listed(vec![ResourceId::parse("a").unwrap()]).partitions(4),
            1
        );
    }
}
