//! What an export records in its job checkpoint, and so what a resumed
//! attempt starts from.
//!
//! The work is split into units (one per resource type at system level, one
//! per patient partition at Patient/Group level), each scanning resources in
//! a fixed order and writing them to streams (one per type and kind). A
//! stream's files are committed at the destination *before* a checkpoint
//! lists them; a resumed attempt deletes every file the checkpoint does not
//! list, rescans each unit after `resume_after`, and skips in each stream
//! whatever is at or before its `last` position: nothing is lost, nothing
//! written twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::fhir::ResourceType;

/// Where a resource stands in its unit's scan order: `(patient, id)`, with
/// the patient the resource is exported under (empty at system level, where
/// the order is by id alone). Versions of one resource share a position.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub patient: String,
    pub id: String,
}

/// One committed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub file: String,
    /// NDJSON lines in it.
    pub count: u64,
    /// Where the export-sink plugin stored the file itself, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One stream's committed output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// In the order written; the next file's sequence number is `len + 1`.
    pub files: Vec<FileEntry>,
    /// The position of the last resource in the last committed file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Position>,
}

impl StreamState {
    pub fn lines(&self) -> u64 {
        self.files.iter().map(|f| f.count).sum()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub done: bool,
    /// Everything the scan yields up to this key (a resource id at system
    /// level, a patient id at Patient/Group level) is in committed files or
    /// produced no output; the scan resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<String>,
    /// `output` files, per type.
    #[serde(default)]
    pub output: BTreeMap<ResourceType, StreamState>,
    /// `deleted` files (transaction Bundles of DELETEs), per type.
    #[serde(default)]
    pub deleted: BTreeMap<ResourceType, StreamState>,
    /// Patient/Group level with referenced types: `Type/id` of every
    /// resource of those types referenced by a line this unit wrote (or
    /// will write again on resume), for the `referenced` unit.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub referenced: BTreeSet<String>,
}

/// The job's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// How many partitions the patients were split into (Patient/Group
    /// level), fixed by the first attempt so that a resumed one, perhaps
    /// configured differently, splits them the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// The error file(s) with the warnings found while planning; `None`
    /// until written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<StreamState>,
    /// By unit name.
    #[serde(default)]
    pub units: BTreeMap<String, UnitState>,
}

impl Checkpoint {
    /// Every committed file of the job.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        let streams = self
            .units
            .values()
            .flat_map(|u| u.output.values().chain(u.deleted.values()));
        self.errors
            .iter()
            .chain(streams)
            .flat_map(|s| s.files.iter())
    }

    /// Lines in committed `output` files: the progress reported.
    pub fn exported(&self) -> u64 {
        self.units
            .values()
            .flat_map(|u| u.output.values())
            .map(StreamState::lines)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_patient_then_id() {
        let p = |patient: &str, id: &str| Position {
            patient: patient.into(),
            id: id.into(),
        };
        assert!(p("", "a") < p("", "b"));
        assert!(p("a", "z") < p("b", "a"));
        assert!(p("a", "a") < p("a-1", "a"));
    }

    #[test]
    fn round_trips_through_json() {
        let obs = ResourceType::parse("Observation").unwrap();
        let mut cp = Checkpoint {
            partitions: Some(2),
            ..Checkpoint::default()
        };
        cp.units.insert(
            "part-1".into(),
            UnitState {
                done: false,
                resume_after: Some("p1".into()),
                output: BTreeMap::from([(
                    obs,
                    StreamState {
                        files: vec![FileEntry {
                            file: "Observation-1-1.ndjson".into(),
                            count: 3,
                            location: None,
                        }],
                        last: Some(Position {
                            patient: "p1".into(),
                            id: "o3".into(),
                        }),
                    },
                )]),
                deleted: BTreeMap::new(),
                referenced: BTreeSet::new(),
            },
        );
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(
            json["units"]["part-1"]["output"]["Observation"]["last"],
            serde_json::json!({"patient": "p1", "id": "o3"})
        );
        assert_eq!(serde_json::from_value::<Checkpoint>(json).unwrap(), cp);
        assert_eq!(cp.exported(), 3);
        assert_eq!(cp.files().count(), 1);
    }
}
