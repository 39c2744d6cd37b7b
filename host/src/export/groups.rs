//! Group membership for a Group-level export: the Group read at the
//! snapshot, resolved by the group-resolver plugin, which reads and searches
//! the store through [`Search`] (its `fhir-read` and `fhir-search`
//! imports); and, for `_since`, the members added since then.
//!
//! Criteria (`member-filter`) queries run on the configured type-filter
//! plugin over a scan of their type at the snapshot, so the engine that
//! evaluates `_typeFilter` is the one that selects a Group's members.

use std::sync::Arc;

use crate::fhir::compartment::{can_be_in_compartment, patients_of};
use crate::fhir::outcome::{Issue, IssueSeverity};
use crate::fhir::resource::Resource;
use crate::fhir::{Instant, IssueType, OperationOutcome, ResourceId, ResourceType};
use crate::plugins::{
    GroupMembers, LoadedPlugin, PluginSet, Reported, SearchError, SnapshotReader, TypeFilter,
};
use crate::store::{Store, StoredVersion};

use super::ExportConfig;
use super::error::ExportError;
use super::snapshot::Snapshot;

/// Patient ids asked of the group resolver per call.
const MEMBERS_PAGE: u32 = 1000;

/// Resources handed to the type-filter plugin per call during a search.
const SEARCH_BATCH_LINES: usize = ExportConfig::DEFAULT_BATCH_LINES;
/// ...or fewer, once they hold this many bytes.
const SEARCH_BATCH_BYTES: usize = 4 << 20;

/// The store at one snapshot, as a group resolver sees it: point reads, and
/// searches evaluated with the type-filter plugin.
pub struct Search {
    snapshot: Arc<Snapshot>,
    type_filter: Arc<LoadedPlugin>,
}

impl Search {
    pub fn new(snapshot: Arc<Snapshot>, type_filter: Arc<LoadedPlugin>) -> Self {
        Search {
            snapshot,
            type_filter,
        }
    }

    /// `Type?params` compiled for its type.
    fn compile(&self, query: &str) -> Result<(ResourceType, TypeFilter), SearchError> {
        let refuse = |code, message: String| {
            SearchError::Refused(vec![Issue {
                severity: IssueSeverity::Error,
                code,
                diagnostics: Some(message),
                expression: Vec::new(),
            }])
        };
        let Some((name, params)) = query.split_once('?').filter(|(_, p)| !p.is_empty()) else {
            return Err(refuse(
                IssueType::Invalid,
                format!("'{query}' is not a query like Patient?gender=female"),
            ));
        };
        let Some(rtype) = ResourceType::parse(name).filter(|t| t.is_storable()) else {
            return Err(refuse(
                IssueType::Value,
                format!("'{name}' in '{query}' is not a resource type"),
            ));
        };
        if !can_be_in_compartment(rtype) {
            return Err(refuse(
                IssueType::NotSupported,
                format!(
                    "'{query}': {rtype} resources are in no Patient compartment, so they cannot select Patients"
                ),
            ));
        }
        match TypeFilter::compile(&self.type_filter, rtype.as_str(), params) {
            Ok(Ok(filter)) => Ok((rtype, filter)),
            Ok(Err(issues)) => Err(SearchError::Refused(issues)),
            Err(e) => Err(SearchError::Failed(e.to_string())),
        }
    }

    /// The Patients the matching resources among `batch` select.
    fn select(
        &self,
        rtype: ResourceType,
        filter: &mut TypeFilter,
        batch: &mut Vec<StoredVersion>,
        ndjson: &mut Vec<u8>,
        out: &mut Vec<String>,
    ) -> Result<(), SearchError> {
        if batch.is_empty() {
            return Ok(());
        }
        let verdicts = filter
            .evaluate(ndjson)
            .map_err(|e| SearchError::Failed(e.to_string()))?;
        for (v, matched) in batch.drain(..).zip(verdicts) {
            if !matched {
                continue;
            }
            if rtype.as_str() == "Patient" {
                out.push(v.id.into_string());
                continue;
            }
            let resource = Resource::from_slice(&v.body)
                .map_err(|e| SearchError::Failed(format!("stored {rtype}/{}: {e}", v.id)))?;
            out.extend(patients_of(rtype, &v.id, &resource.body));
        }
        ndjson.clear();
        Ok(())
    }
}

impl SnapshotReader for Search {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        // A type or id that cannot exist is simply not there.
        let (Some(rtype), Some(id)) = (ResourceType::parse(resource_type), ResourceId::parse(id))
        else {
            return Ok(None);
        };
        self.snapshot
            .live(rtype, &id)
            .map(|v| v.map(|v| v.body.to_vec()))
            .map_err(|e| e.to_string())
    }

    fn check(&self, query: &str) -> Result<(), SearchError> {
        self.compile(query).map(drop)
    }

    fn patients_matching(&self, query: &str) -> Result<Vec<String>, SearchError> {
        let (rtype, mut filter) = self.compile(query)?;
        let failed = |e: crate::store::StoreError| SearchError::Failed(e.to_string());
        let scan = self
            .snapshot
            .store()
            .scan_type(rtype, self.snapshot.at(), None)
            .map_err(failed)?;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut ndjson = Vec::new();
        for v in scan {
            let v = v.map_err(failed)?;
            if v.meta.deleted {
                continue;
            }
            ndjson.extend_from_slice(&v.body);
            ndjson.push(b'\n');
            batch.push(v);
            if batch.len() >= SEARCH_BATCH_LINES || ndjson.len() >= SEARCH_BATCH_BYTES {
                self.select(rtype, &mut filter, &mut batch, &mut ndjson, &mut out)?;
            }
        }
        self.select(rtype, &mut filter, &mut batch, &mut ndjson, &mut out)?;
        out.sort_unstable();
        out.dedup();
        if rtype.as_str() != "Patient" {
            // A reference may name a Patient that does not exist (any more).
            let patient = ResourceType::parse("Patient")
                .ok_or_else(|| SearchError::Failed("Patient is not a known type".into()))?;
            let mut live = Vec::with_capacity(out.len());
            for id in out {
                let exists = match ResourceId::parse(&id) {
                    Some(rid) => self.snapshot.live(patient, &rid).map_err(failed)?.is_some(),
                    None => false,
                };
                if exists {
                    live.push(id);
                }
            }
            out = live;
        }
        Ok(out)
    }
}

/// A Group's members at one snapshot, sorted and distinct, and what the
/// resolver reported about the members it left out.
pub struct Resolved {
    pub members: Vec<ResourceId>,
    pub reported: Reported,
}

fn group_type() -> Result<ResourceType, ExportError> {
    ResourceType::parse("Group").ok_or_else(|| ExportError::Corrupt {
        what: "resource type list",
        message: "it has no Group".into(),
    })
}

/// Starts resolving Group `id` as of `snapshot`: `Ok(None)` when the Group
/// does not exist (or is deleted) then.
fn start(
    id: &ResourceId,
    plugins: &PluginSet,
    snapshot: &Arc<Snapshot>,
) -> Result<Option<GroupMembers>, ExportError> {
    let Some(group) = snapshot.live(group_type()?, id)? else {
        return Ok(None);
    };
    let search = Arc::new(Search::new(snapshot.clone(), plugins.type_filter.clone()));
    match GroupMembers::resolve(&plugins.group_resolver, &group.body, snapshot.at(), search)? {
        Ok(members) => Ok(Some(members)),
        Err(issues) => Err(ExportError::GroupRefused {
            id: id.clone(),
            issues,
        }),
    }
}

/// Group `id`'s members at the snapshot; 404 when it does not exist then,
/// 400 when the resolver refuses it.
pub fn resolve(
    id: &ResourceId,
    plugins: &PluginSet,
    snapshot: &Arc<Snapshot>,
) -> Result<Resolved, ExportError> {
    match start(id, plugins, snapshot)? {
        Some(members) => drain(members),
        None => Err(ExportError::GroupNotFound(id.clone())),
    }
}

/// Every member the resolver hands out, page by page.
fn drain(mut members: GroupMembers) -> Result<Resolved, ExportError> {
    let mut ids = Vec::new();
    loop {
        let page = members.next_page(MEMBERS_PAGE)?;
        if page.is_empty() {
            break;
        }
        // The plugin module checked every id's syntax.
        ids.extend(page.iter().filter_map(|m| ResourceId::parse(m)));
    }
    ids.sort_unstable();
    Ok(Resolved {
        members: ids,
        reported: members.take_reported(),
    })
}

/// The kick-off's check of a Group-level export: the Group exists at the
/// snapshot and the resolver accepts it (a `member-filter` the search engine
/// cannot evaluate, a `characteristic`, is the client's 400 now rather
/// than a failed job). Members are not listed: that can take long.
pub fn check_group(
    id: &ResourceId,
    plugins: &PluginSet,
    store: Arc<dyn Store>,
    at: Instant,
) -> Result<(), ExportError> {
    let snapshot = Arc::new(Snapshot::new(store, at));
    match start(id, plugins, &snapshot)? {
        Some(_) => Ok(()),
        None => Err(ExportError::GroupNotFound(id.clone())),
    }
}

/// The members of `now` that were not members at `since` (the Group
/// resolved as of then): their compartments are exported whole despite
/// `_since` (the Bulk Data IG's MAY). A Group that did not exist then has
/// only new members; one the resolver refuses as of then (a version with a
/// characteristic, say) is treated the same, with a warning.
pub fn added_since(
    id: &ResourceId,
    now: &[ResourceId],
    since: Instant,
    plugins: &PluginSet,
    snapshot: &Snapshot,
    warnings: &mut Vec<OperationOutcome>,
) -> Result<Vec<ResourceId>, ExportError> {
    let then = Arc::new(snapshot.as_of(since));
    let before = match start(id, plugins, &then) {
        Ok(None) => Vec::new(),
        Ok(Some(members)) => drain(members)?.members,
        Err(ExportError::GroupRefused { issues, .. }) => {
            let reasons: Vec<&str> = issues
                .iter()
                .filter_map(|i| i.diagnostics.as_deref())
                .collect();
            warnings.push(OperationOutcome::single(
                IssueSeverity::Warning,
                IssueType::Processing,
                format!(
                    "Group/{id} as of _since ({since}) cannot be resolved ({}); every member is exported as newly added",
                    reasons.join("; ")
                ),
            ));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    Ok(now
        .iter()
        .filter(|m| before.binary_search(m).is_err())
        .cloned()
        .collect())
}

/// The error-file lines for what the resolver reported: one
/// OperationOutcome per issue, as warnings (the export went on).
pub fn report_lines(id: &ResourceId, reported: Reported) -> Vec<OperationOutcome> {
    let mut out: Vec<OperationOutcome> = reported
        .issues
        .into_iter()
        .map(|issue| OperationOutcome {
            issue: vec![Issue {
                severity: IssueSeverity::Warning,
                ..issue
            }],
        })
        .collect();
    if reported.dropped > 0 {
        out.push(OperationOutcome::single(
            IssueSeverity::Warning,
            IssueType::TooCostly,
            format!(
                "Group/{id}: {} further issues of the group resolver are not listed",
                reported.dropped
            ),
        ));
    }
    out
}
