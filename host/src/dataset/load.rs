//! Bulk-loading a data set folder straight into a [`Store`], bypassing HTTP:
//! for benchmarks and for seeding a data directory before a server starts.

use std::path::Path;

use super::{DatasetError, read_dir_resources};
use crate::fhir::resource::Resource;
use crate::store::{CommitMode, Store, WriteOp};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub resources: u64,
    /// NDJSON bytes read, newlines included.
    pub bytes: u64,
}

/// Creates every resource of `dir` with its own id, `batch` per atomic
/// commit. Fails on the first resource that cannot be created (ids must be
/// new).
pub fn load(store: &dyn Store, dir: &Path, batch: usize) -> Result<LoadSummary, DatasetError> {
    let batch = batch.max(1);
    let mut summary = LoadSummary::default();
    let mut ops = Vec::with_capacity(batch);
    for item in read_dir_resources(dir)? {
        let (_, line) = item?;
        summary.bytes += line.len() as u64 + 1;
        summary.resources += 1;
        let resource =
            Resource::from_slice(&line).map_err(|source| DatasetError::Load(source.to_string()))?;
        let id = resource
            .id
            .clone()
            .ok_or_else(|| DatasetError::Load("a resource has no id".into()))?;
        ops.push(WriteOp::Create { id, resource });
        if ops.len() == batch {
            commit(
                store,
                std::mem::replace(&mut ops, Vec::with_capacity(batch)),
            )?;
        }
    }
    if !ops.is_empty() {
        commit(store, ops)?;
    }
    store
        .flush()
        .map_err(|e| DatasetError::Load(e.to_string()))?;
    Ok(summary)
}

fn commit(store: &dyn Store, ops: Vec<WriteOp>) -> Result<(), DatasetError> {
    store
        .commit(ops, CommitMode::AllOrNothing)
        .map(drop)
        .map_err(|e| DatasetError::Load(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::{Instant, ResourceType};
    use crate::store::sled::SledStore;

    #[test]
    fn loads_every_resource() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(
            data.path().join("Patient.ndjson"),
            "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let summary = load(&store, data.path(), 1).unwrap();
        assert_eq!(summary.resources, 2);
        let patient = ResourceType::parse("Patient").unwrap();
        let ids: Vec<String> = store
            .scan_type(patient, Instant::MAX, None)
            .unwrap()
            .map(|v| v.unwrap().id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        // Loading again collides with the ids already there.
        assert!(load(&store, data.path(), 10).is_err());
    }
}
