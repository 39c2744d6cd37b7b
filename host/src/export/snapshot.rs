//! The store as of the export's transaction time: point reads, version
//! windows and the last live body of a deleted resource.

use std::sync::Arc;

use serde_json::Map;

use crate::fhir::resource::Resource;
use crate::fhir::{Instant, ResourceId, ResourceType};
use crate::store::{HistoryQuery, HistoryScope, Store, StoreError, StoredVersion, VersionMeta};

/// Versions asked for per history page when listing one resource's versions.
const VERSIONS_PAGE: usize = 1000;

#[derive(Clone)]
pub struct Snapshot {
    store: Arc<dyn Store>,
    at: Instant,
}

impl Snapshot {
    pub fn new(store: Arc<dyn Store>, at: Instant) -> Self {
        Snapshot { store, at }
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    /// The same store at another instant.
    pub fn as_of(&self, at: Instant) -> Snapshot {
        Snapshot {
            store: self.store.clone(),
            at,
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The version current at the snapshot (possibly a tombstone): the
    /// newest of the instance history up to it.
    pub fn read(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let query = HistoryQuery {
            until: Some(self.at),
            count: 1,
            ..HistoryQuery::default()
        };
        let page = self
            .store
            .history(&HistoryScope::Instance(rtype, id.clone()), &query)?;
        Ok(page.entries.into_iter().next())
    }

    /// Like [`Snapshot::read`], but `None` for a tombstone.
    pub fn live(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<StoredVersion>, StoreError> {
        Ok(self.read(rtype, id)?.filter(|v| !v.meta.deleted))
    }

    /// The live version a tombstone deleted. Deleting a deleted resource
    /// writes nothing, so it is the version just before; the walk back is
    /// only a guard. An imported soft-deleted line can be a resource's first
    /// version (or follow only deleted ones): nothing live precedes it and
    /// the tombstone keeps no body, so the bare resource (type, id, and the
    /// tombstone's version and instant) stands for it.
    pub fn deleted_body(&self, tombstone: &StoredVersion) -> Result<StoredVersion, StoreError> {
        for version in (1..tombstone.meta.version).rev() {
            match self.store.vread(tombstone.rtype, &tombstone.id, version)? {
                Some(v) if !v.meta.deleted => return Ok(v),
                _ => continue,
            }
        }
        let bare = Resource {
            rtype: tombstone.rtype,
            id: Some(tombstone.id.clone()),
            body: Map::new(),
        };
        Ok(StoredVersion {
            rtype: tombstone.rtype,
            id: tombstone.id.clone(),
            meta: VersionMeta {
                deleted: false,
                ..tombstone.meta
            },
            body: bare
                .to_stored_bytes(
                    &tombstone.id,
                    tombstone.meta.version,
                    tombstone.meta.last_updated,
                )
                .into(),
        })
    }

    /// Every version of one resource with `since < lastUpdated <= at`,
    /// oldest first.
    pub fn versions(
        &self,
        rtype: ResourceType,
        id: &ResourceId,
        since: Option<Instant>,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let scope = HistoryScope::Instance(rtype, id.clone());
        let mut query = HistoryQuery {
            since,
            until: Some(self.at),
            cursor: None,
            count: VERSIONS_PAGE,
        };
        let mut out = Vec::new();
        loop {
            let page = self.store.history(&scope, &query)?;
            out.extend(page.entries);
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        out.reverse();
        Ok(out)
    }
}
