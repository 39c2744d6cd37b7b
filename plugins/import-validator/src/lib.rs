//! The default `import-validator-plugin`: a thin wrapper that exposes
//! `import-validator-core` (a structural R4 check generated from the
//! vendored JSON schema; its crate doc lists the checks and the config keys)
//! through the WIT contract. It never changes a resource: every verdict is
//! `accept` or `reject`.

wit_bindgen::generate!({ path: "../../wit", world: "import-validator-plugin" });

use exports::hearth::plugin::import_validator::{Guest, GuestSession, Session, Verdict};
use hearth::plugin::host;
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};
use import_validator_core::{Config, Validator};

struct Component;

impl Guest for Component {
    type Session = Checked;
}

struct Checked(Validator);

impl GuestSession for Checked {
    fn begin(resource_type: Option<String>) -> Result<Session, PluginError> {
        let config = Config::from_lookup(host::get_config).map_err(|e| PluginError {
            code: ErrorCode::InvalidConfig,
            message: e.to_string(),
        })?;
        let validator =
            Validator::new(resource_type.as_deref(), config).map_err(|e| PluginError {
                code: ErrorCode::InvalidInput,
                message: e.to_string(),
            })?;
        Ok(Session::new(Checked(validator)))
    }

    fn validate(&self, ndjson: Vec<u8>) -> Result<Vec<Verdict>, PluginError> {
        Ok(import_validator_core::lines(&ndjson)
            .map(|line| {
                let issues = self.0.check(line);
                if issues.is_empty() {
                    Verdict::Accept
                } else {
                    Verdict::Reject(issues.into_iter().map(convert).collect())
                }
            })
            .collect())
    }
}

fn convert(issue: import_validator_core::Issue) -> Issue {
    Issue {
        severity: match issue.severity {
            import_validator_core::Severity::Error => Severity::Error,
            import_validator_core::Severity::Information => Severity::Information,
        },
        code: issue.code.to_owned(),
        diagnostics: issue.diagnostics,
        expression: issue.expression.into_iter().collect(),
    }
}

export!(Component);
