//! Group membership through a `group-resolver-plugin`.

use std::collections::HashSet;
use std::mem;
use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::bindings::group_resolver::GroupResolverPlugin;
use super::error::{PluginError, convert_issues, reported};
use super::runtime::{Instance, LoadedPlugin, WorldPre};
use crate::fhir::Instant;
use crate::fhir::outcome::Issue;

const RESOLVE: &str = "group-resolver resolve";
const NEXT_PAGE: &str = "group-resolver next-page";

/// The store as of an export's snapshot, as the plugin's `fhir-read` and
/// `fhir-search` imports see it. Implemented by the export (over `Store`
/// and the type-filter plugin), and by tests.
pub trait SnapshotReader: Send + Sync {
    /// The resource's JSON at the snapshot; `None` when it did not exist
    /// or was deleted then. `Err` is a message for the plugin.
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Vec<u8>>, String>;

    /// Whether `query` (`Type?params`) can be evaluated, without evaluating it.
    fn check(&self, query: &str) -> Result<(), SearchError>;

    /// The ids, sorted and distinct, of the Patients live at the snapshot
    /// that match `query` or whose compartment holds a resource matching it.
    fn patients_matching(&self, query: &str) -> Result<Vec<String>, SearchError>;
}

/// Why a `fhir-search` query gave no answer.
#[derive(Debug)]
pub enum SearchError {
    /// The query cannot be evaluated: issues for the Group's author.
    Refused(Vec<Issue>),
    /// The store or the search engine failed.
    Failed(String),
}

/// What the plugin reported through `export-issues` during a session, for
/// the export's error file.
#[derive(Debug, Default)]
pub struct Reported {
    pub issues: Vec<Issue>,
    /// Issues beyond the cap the host keeps (`MAX_REPORTED`), counted only.
    pub dropped: u64,
}

/// The members of one Group, handed out page by page.
pub struct GroupMembers {
    instance: Instance<GroupResolverPlugin>,
    members: ResourceAny,
    /// Ids handed out so far: the contract says none repeats.
    seen: HashSet<String>,
}

impl GroupMembers {
    /// Starts resolving `group` (the Group's JSON) as of `snapshot`, with
    /// `reader` behind the plugin's `fhir-read`. The inner `Err` is the
    /// plugin's refusal of the Group.
    pub fn resolve(
        plugin: &Arc<LoadedPlugin>,
        group: &[u8],
        snapshot: Instant,
        reader: Arc<dyn SnapshotReader>,
    ) -> Result<Result<GroupMembers, Vec<Issue>>, PluginError> {
        let mut instance = Instance::new(plugin, Some(reader), |pre, store| match pre {
            WorldPre::GroupResolver(pre) => Some(pre.instantiate(store)),
            _ => None,
        })?;
        let snapshot = snapshot.to_fhir();
        let resolved = instance.call(RESOLVE, |world, store| {
            world
                .hearth_plugin_group_resolver()
                .members()
                .call_resolve(store, group, &snapshot)
        })?;
        check_reports(&mut instance, RESOLVE)?;
        match resolved {
            Ok(members) => Ok(Ok(GroupMembers {
                instance,
                members,
                seen: HashSet::new(),
            })),
            Err(issues) => match convert_issues(issues) {
                Ok(issues) => Ok(Err(issues)),
                Err(message) => Err(instance.violation(RESOLVE, message)),
            },
        }
    }

    /// Up to `max` (at least 1) further Patient ids; empty when done.
    pub fn next_page(&mut self, max: u32) -> Result<Vec<String>, PluginError> {
        let members = self.members;
        let max = max.max(1);
        let page = self
            .instance
            .call(NEXT_PAGE, |world, store| {
                world
                    .hearth_plugin_group_resolver()
                    .members()
                    .call_next_page(store, members, max)
            })?
            .map_err(|e| reported(self.instance.plugin().name(), NEXT_PAGE, e))?;
        check_reports(&mut self.instance, NEXT_PAGE)?;
        if page.len() > max as usize {
            let message = format!("{} ids for a page of at most {max}", page.len());
            return Err(self.instance.violation(NEXT_PAGE, message));
        }
        for id in &page {
            if !crate::fhir::id::is_valid(id) {
                return Err(self
                    .instance
                    .violation(NEXT_PAGE, format!("'{id}' is not a valid Patient id")));
            }
            if !self.seen.insert(id.clone()) {
                return Err(self
                    .instance
                    .violation(NEXT_PAGE, format!("Patient id '{id}' was handed out twice")));
            }
        }
        Ok(page)
    }
}

impl GroupMembers {
    /// Takes what the plugin reported so far.
    pub fn take_reported(&mut self) -> Reported {
        match self.instance.state_mut() {
            Some(state) => mem::take(&mut state.reported),
            None => Reported::default(),
        }
    }
}

/// A malformed report (an issue code outside R4's) breaks the contract like
/// a malformed answer: the call that made it fails.
fn check_reports(
    instance: &mut Instance<GroupResolverPlugin>,
    operation: &'static str,
) -> Result<(), PluginError> {
    let violation = instance
        .state_mut()
        .and_then(|state| state.report_violation.take());
    match violation {
        Some(message) => Err(instance.violation(operation, message)),
        None => Ok(()),
    }
}
