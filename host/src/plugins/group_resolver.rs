//! Group membership through a `group-resolver-plugin`.

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::bindings::group_resolver::GroupResolverPlugin;
use super::error::{PluginError, convert_issues, reported};
use super::runtime::{Instance, LoadedPlugin, WorldPre};
use crate::fhir::Instant;
use crate::fhir::outcome::Issue;

const RESOLVE: &str = "group-resolver resolve";
const NEXT_PAGE: &str = "group-resolver next-page";

/// The store as of an export's snapshot, as the plugin's `fhir-read`
/// import sees it. Implemented by the export (over `Store`), and by tests.
pub trait SnapshotReader: Send + Sync {
    /// The resource's JSON at the snapshot; `None` when it did not exist
    /// or was deleted then. `Err` is a message for the plugin.
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Vec<u8>>, String>;
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
