//! Which versions of a resource an export writes, and as what: the current
//! one, or with `includeAssociatedData=_history` every version in the
//! window; deletions as `deleted` Bundles (with `_since`) or, with
//! `_deleted`, as the resource carrying the soft-delete marker.

use bytes::Bytes;

use crate::fhir::Instant;
use crate::store::{StoreError, StoredVersion, VersionMeta};

use super::request::ExportRequest;
use super::snapshot::Snapshot;

/// The part of the request that decides which versions count.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// `_since`: only versions written after it.
    pub since: Option<Instant>,
    pub history: bool,
    pub deleted: bool,
}

impl Window {
    pub fn of(request: &ExportRequest) -> Window {
        Window {
            since: request.since,
            history: request.associated.history,
            deleted: request.associated.deleted,
        }
    }

    /// The window of a patient whose compartment is exported whole despite
    /// `_since` (a member added to the Group since then).
    pub fn whole(self) -> Window {
        Window {
            since: None,
            ..self
        }
    }

    /// Whether a resource whose version current at the snapshot is `cur`
    /// can produce anything: with `_since`, only if it changed after it
    /// (its current version is its newest up to the snapshot).
    pub fn touches(&self, cur: &StoredVersion) -> bool {
        self.since.is_none_or(|since| cur.meta.last_updated > since)
    }
}

/// One line to write for a resource.
pub enum Emit {
    /// A live version, written as stored.
    Live(StoredVersion),
    /// A deletion written as the deleted resource with the soft-delete marker.
    Marked {
        tombstone: VersionMeta,
        live: StoredVersion,
    },
    /// A deletion listed in the `deleted` files.
    Deleted {
        tombstone: VersionMeta,
        live: StoredVersion,
    },
}

impl Emit {
    /// What `_typeFilter` judges: the version itself, or for a deletion the
    /// version it deleted (a filter on `code` still says whether a deleted
    /// Observation is one the client follows).
    pub fn body(&self) -> &Bytes {
        match self {
            Emit::Live(v) | Emit::Marked { live: v, .. } | Emit::Deleted { live: v, .. } => &v.body,
        }
    }
}

/// The lines for one resource, oldest version first; `cur` is its version
/// at the snapshot (from a scan).
pub fn select(
    snapshot: &Snapshot,
    cur: StoredVersion,
    window: &Window,
) -> Result<Vec<Emit>, StoreError> {
    if !window.touches(&cur) {
        return Ok(Vec::new());
    }
    let current = cur.meta.version;
    let versions = if window.history && current > 1 {
        snapshot.versions(cur.rtype, &cur.id, window.since)?
    } else {
        vec![cur]
    };
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        if !v.meta.deleted {
            out.push(Emit::Live(v));
        } else if window.deleted {
            let live = snapshot.deleted_body(&v)?;
            out.push(Emit::Marked {
                tombstone: v.meta,
                live,
            });
        } else if window.since.is_some() && v.meta.version == current {
            // Only the resource's present state is a deletion the client
            // must apply; a delete undone later in the window is not.
            let live = snapshot.deleted_body(&v)?;
            out.push(Emit::Deleted {
                tombstone: v.meta,
                live,
            });
        }
    }
    Ok(out)
}
