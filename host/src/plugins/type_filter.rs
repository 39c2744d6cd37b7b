//! `_typeFilter` evaluation through a `type-filter-plugin`.

use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::bindings::type_filter::TypeFilterPlugin;
use super::error::{PluginError, convert_issues, reported};
use super::ndjson_lines;
use super::runtime::{Instance, LoadedPlugin, WorldPre};
use crate::fhir::outcome::Issue;

const COMPILE: &str = "type-filter compile";
const EVALUATE: &str = "type-filter evaluate";

/// One `_typeFilter` query compiled inside its own plugin instance, which
/// evaluates every batch of a job.
pub struct TypeFilter {
    instance: Instance<TypeFilterPlugin>,
    filter: ResourceAny,
}

impl TypeFilter {
    /// Compiles `query` (the part after `?`, still percent-encoded) for
    /// `resource_type`. The inner `Err` is the plugin's refusal of the query
    /// (OperationOutcome issues for the client); the outer one a plugin fault.
    pub fn compile(
        plugin: &Arc<LoadedPlugin>,
        resource_type: &str,
        query: &str,
    ) -> Result<Result<TypeFilter, Vec<Issue>>, PluginError> {
        let mut instance = Instance::new(plugin, None, |pre, store| match pre {
            WorldPre::TypeFilter(pre) => Some(pre.instantiate(store)),
            _ => None,
        })?;
        let compiled = instance.call(COMPILE, |world, store| {
            world
                .hearth_plugin_type_filter()
                .filter()
                .call_compile(store, resource_type, query)
        })?;
        match compiled {
            Ok(filter) => Ok(Ok(TypeFilter { instance, filter })),
            Err(issues) => match convert_issues(issues) {
                Ok(issues) => Ok(Err(issues)),
                Err(message) => Err(instance.violation(COMPILE, message)),
            },
        }
    }

    /// One verdict per line of `ndjson` (`\n`-ended lines, the last `\n`
    /// optional, no empty lines).
    pub fn evaluate(&mut self, ndjson: &[u8]) -> Result<Vec<bool>, PluginError> {
        let filter = self.filter;
        let verdicts = self
            .instance
            .call(EVALUATE, |world, store| {
                world
                    .hearth_plugin_type_filter()
                    .filter()
                    .call_evaluate(store, filter, ndjson)
            })?
            .map_err(|e| reported(self.instance.plugin().name(), EVALUATE, e))?;
        let lines = ndjson_lines(ndjson);
        if verdicts.len() != lines {
            let message = format!("{} verdicts for {lines} lines", verdicts.len());
            return Err(self.instance.violation(EVALUATE, message));
        }
        Ok(verdicts)
    }

    /// Appends the lines of `ndjson` that match to `out`, byte for byte as
    /// they came (nothing is re-serialised); returns how many matched.
    pub fn select(&mut self, ndjson: &[u8], out: &mut Vec<u8>) -> Result<usize, PluginError> {
        let verdicts = self.evaluate(ndjson)?;
        let mut matched = 0;
        for (line, keep) in ndjson.split_inclusive(|b| *b == b'\n').zip(verdicts) {
            if keep {
                out.extend_from_slice(line);
                if !line.ends_with(b"\n") {
                    out.push(b'\n');
                }
                matched += 1;
            }
        }
        Ok(matched)
    }

    /// Whether a fault has discarded this filter's instance (every further
    /// call fails without running plugin code).
    pub fn is_discarded(&self) -> bool {
        self.instance.is_discarded()
    }
}
