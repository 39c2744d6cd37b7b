//! Validation of imported resources through an `import-validator-plugin`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::IgnoredAny;
use wasmtime::component::ResourceAny;

use super::bindings::import_validator::ImportValidatorPlugin;
use super::bindings::import_validator::exports::hearth::plugin::import_validator as wit;
use super::error::{PluginError, convert_issues, reported};
use super::ndjson_lines;
use super::runtime::{Instance, LoadedPlugin, WorldPre};
use crate::fhir::outcome::Issue;

const BEGIN: &str = "import-validator begin";
const VALIDATE: &str = "import-validator validate";

/// The plugin's decision on one line.
#[derive(Clone, Debug)]
pub enum Verdict {
    Accept,
    /// Store this JSON object (one line, no newline) instead of the input.
    AcceptWithChanges(Vec<u8>),
    Reject(Vec<Issue>),
}

/// One input file being validated.
pub struct ValidationSession {
    instance: Instance<ImportValidatorPlugin>,
    session: ResourceAny,
}

impl ValidationSession {
    /// `resource_type`: the type the import declares for the file, if any.
    pub fn begin(
        plugin: &Arc<LoadedPlugin>,
        resource_type: Option<&str>,
    ) -> Result<ValidationSession, PluginError> {
        let mut instance = Instance::new(plugin, None, |pre, store| match pre {
            WorldPre::ImportValidator(pre) => Some(pre.instantiate(store)),
            _ => None,
        })?;
        let session = instance
            .call(BEGIN, |world, store| {
                world
                    .hearth_plugin_import_validator()
                    .session()
                    .call_begin(store, resource_type)
            })?
            .map_err(|e| reported(plugin.name(), BEGIN, e))?;
        Ok(ValidationSession { instance, session })
    }

    /// One verdict per line of `ndjson`.
    pub fn validate(&mut self, ndjson: &[u8]) -> Result<Vec<Verdict>, PluginError> {
        let session = self.session;
        let verdicts = self
            .instance
            .call(VALIDATE, |world, store| {
                world
                    .hearth_plugin_import_validator()
                    .session()
                    .call_validate(store, session, ndjson)
            })?
            .map_err(|e| reported(self.instance.plugin().name(), VALIDATE, e))?;
        let lines = ndjson_lines(ndjson);
        if verdicts.len() != lines {
            let message = format!("{} verdicts for {lines} lines", verdicts.len());
            return Err(self.instance.violation(VALIDATE, message));
        }
        verdicts
            .into_iter()
            .enumerate()
            .map(|(i, verdict)| match verdict {
                wit::Verdict::Accept => Ok(Verdict::Accept),
                wit::Verdict::AcceptWithChanges(json) if is_one_json_object(&json) => {
                    Ok(Verdict::AcceptWithChanges(json))
                }
                wit::Verdict::AcceptWithChanges(_) => Err(format!(
                    "line {}: the changed resource is not one JSON object on one line",
                    i + 1
                )),
                wit::Verdict::Reject(issues) => convert_issues(issues)
                    .map(Verdict::Reject)
                    .map_err(|m| format!("line {}: {m}", i + 1)),
            })
            .collect::<Result<_, String>>()
            .map_err(|message| self.instance.violation(VALIDATE, message))
    }
}

fn is_one_json_object(json: &[u8]) -> bool {
    !json.contains(&b'\n') && serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(json).is_ok()
}
