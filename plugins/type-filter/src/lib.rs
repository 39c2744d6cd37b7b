//! The default `type-filter-plugin`: a thin wrapper that exposes
//! the `fhir-search` engine through the WIT contract.

wit_bindgen::generate!({ path: "../../wit", world: "type-filter-plugin" });

use exports::hearth::plugin::type_filter::{Filter, Guest, GuestFilter};
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};

struct Component;

impl Guest for Component {
    type Filter = Compiled;
}

struct Compiled(fhir_search::Filter);

impl GuestFilter for Compiled {
    fn compile(resource_type: String, query: String) -> Result<Filter, Vec<Issue>> {
        match fhir_search::compile(&resource_type, &query) {
            Ok(filter) => Ok(Filter::new(Compiled(filter))),
            Err(rejections) => Err(rejections
                .into_iter()
                .map(|r| Issue {
                    severity: Severity::Error,
                    code: r.code.to_owned(),
                    diagnostics: r.diagnostics,
                    expression: Vec::new(),
                })
                .collect()),
        }
    }

    fn evaluate(&self, ndjson: Vec<u8>) -> Result<Vec<bool>, PluginError> {
        self.0.evaluate(&ndjson).map_err(|e| PluginError {
            code: ErrorCode::InvalidInput,
            message: e.to_string(),
        })
    }
}

export!(Component);
