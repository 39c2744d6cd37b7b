//! What can go wrong with a plugin, named so that an operator can act on it,
//! and the OperationOutcome a job that used the plugin ends with.

use crate::config::ConfigError;
use crate::fhir::outcome::{Issue, IssueSeverity, IssueType, OperationOutcome};

use super::bindings::types;

/// A plugin failed: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {fault}")]
pub struct PluginError {
    /// The config role and the component, e.g. `type_filter (text_filter.wasm)`.
    pub plugin: String,
    pub fault: Fault,
}

#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("{operation} exceeded its deadline of {deadline_ms} ms")]
    Deadline {
        operation: &'static str,
        deadline_ms: u64,
    },
    #[error("{operation} needed more than its memory cap of {memory_mib} MiB")]
    MemoryCap {
        operation: &'static str,
        memory_mib: u64,
    },
    #[error("{operation} used up its fuel budget of {fuel} units")]
    Fuel { operation: &'static str, fuel: u64 },
    #[error("{operation} trapped: {message}")]
    Trap {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} broke the plugin contract: {message}")]
    Contract {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} failed ({code}): {message}")]
    Reported {
        operation: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("the instance was discarded after an earlier fault and is not called again")]
    Discarded,
    #[error(
        "it implements {package}@{found}, which this host does not accept: \
         this host implements {package}@{host} and accepts {accepted}"
    )]
    VersionRefused {
        package: &'static str,
        found: semver::Version,
        host: semver::Version,
        accepted: String,
    },
    #[error("loading failed: {0}")]
    Load(String),
}

/// A reload that changed nothing: the configuration could not be read, or
/// one of the plugins it names could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reading the configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl PluginError {
    pub(super) fn new(plugin: &str, fault: Fault) -> Self {
        PluginError {
            plugin: plugin.to_owned(),
            fault,
        }
    }

    /// The OperationOutcome issue type of this failure.
    pub fn issue_type(&self) -> IssueType {
        match self.fault {
            Fault::Deadline { .. } => IssueType::Timeout,
            Fault::MemoryCap { .. } | Fault::Fuel { .. } => IssueType::TooCostly,
            Fault::VersionRefused { .. } => IssueType::NotSupported,
            Fault::Reported {
                code: "invalid-input",
                ..
            } => IssueType::Invalid,
            Fault::Reported { .. } => IssueType::Processing,
            Fault::Trap { .. } | Fault::Contract { .. } | Fault::Discarded | Fault::Load(_) => {
                IssueType::Exception
            }
        }
    }
}

/// The outcome a job ends with when a plugin it uses fails: one error
/// issue whose diagnostics name the plugin and the cause.
impl From<&PluginError> for OperationOutcome {
    fn from(e: &PluginError) -> Self {
        OperationOutcome::error(e.issue_type(), e.to_string())
    }
}

/// Maps a plugin's issues to OperationOutcome issues. Codes must be R4
/// `issue-type` codes; the ones Hearth's [`IssueType`] has no variant for
/// are reported as their parent in the R4 hierarchy. Anything else, or an
/// empty list where issues were promised, is a contract violation.
pub(super) fn convert_issues(issues: Vec<types::Issue>) -> Result<Vec<Issue>, String> {
    if issues.is_empty() {
        return Err("rejected without any issue".into());
    }
    issues
        .into_iter()
        .map(|i| {
            let code = issue_type(&i.code)
                .ok_or_else(|| format!("'{}' is not an R4 issue-type code", i.code))?;
            Ok(Issue {
                severity: match i.severity {
                    types::Severity::Fatal => IssueSeverity::Fatal,
                    types::Severity::Error => IssueSeverity::Error,
                    types::Severity::Warning => IssueSeverity::Warning,
                    types::Severity::Information => IssueSeverity::Information,
                },
                code,
                diagnostics: Some(i.diagnostics).filter(|d| !d.is_empty()),
                expression: i.expression,
            })
        })
        .collect()
}

fn issue_type(code: &str) -> Option<IssueType> {
    Some(match code {
        "invalid" | "invariant" => IssueType::Invalid,
        "structure" => IssueType::Structure,
        "required" => IssueType::Required,
        "value" => IssueType::Value,
        "processing" | "multiple-matches" | "code-invalid" | "extension" | "business-rule" => {
            IssueType::Processing
        }
        "not-supported" => IssueType::NotSupported,
        "not-found" => IssueType::NotFound,
        "deleted" => IssueType::Deleted,
        "conflict" => IssueType::Conflict,
        "duplicate" => IssueType::Duplicate,
        "too-long" => IssueType::TooLong,
        "exception" => IssueType::Exception,
        "informational" => IssueType::Informational,
        "security" | "login" | "unknown" | "expired" | "suppressed" => IssueType::Security,
        "forbidden" => IssueType::Forbidden,
        "lock-error" => IssueType::LockError,
        "timeout" => IssueType::Timeout,
        "too-costly" => IssueType::TooCostly,
        "transient" | "no-store" => IssueType::Transient,
        "throttled" => IssueType::Throttled,
        "incomplete" => IssueType::Incomplete,
        _ => return None,
    })
}

/// OperationOutcome issues in the contract's shape, for answers the host
/// gives a plugin (a search engine's refusal of a query).
pub(super) fn issues_to_wit(issues: &[Issue]) -> Vec<types::Issue> {
    issues
        .iter()
        .map(|i| types::Issue {
            severity: match i.severity {
                IssueSeverity::Fatal => types::Severity::Fatal,
                IssueSeverity::Error => types::Severity::Error,
                IssueSeverity::Warning => types::Severity::Warning,
                IssueSeverity::Information => types::Severity::Information,
            },
            // `IssueType` serialises as its R4 code.
            code: serde_json::to_value(i.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "processing".into()),
            diagnostics: i.diagnostics.clone().unwrap_or_default(),
            expression: i.expression.clone(),
        })
        .collect()
}

/// A guest-reported `plugin-error`: the call ran to completion and the
/// instance stays usable.
pub(super) fn reported(
    plugin: &str,
    operation: &'static str,
    e: types::PluginError,
) -> PluginError {
    let code = match e.code {
        types::ErrorCode::InvalidConfig => "invalid-config",
        types::ErrorCode::InvalidInput => "invalid-input",
        types::ErrorCode::Unavailable => "unavailable",
        types::ErrorCode::Internal => "internal",
    };
    PluginError::new(
        plugin,
        Fault::Reported {
            operation,
            code,
            message: e.message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_plugin_and_cause() {
        let e = PluginError::new(
            "type_filter (hostile.wasm)",
            Fault::Deadline {
                operation: "type-filter evaluate",
                deadline_ms: 200,
            },
        );
        let json = OperationOutcome::from(&e).to_json();
        assert_eq!(json["issue"][0]["code"], "timeout");
        assert_eq!(
            json["issue"][0]["diagnostics"],
            "plugin type_filter (hostile.wasm): type-filter evaluate exceeded its deadline of 200 ms"
        );
        let e = PluginError::new(
            "x",
            Fault::MemoryCap {
                operation: "op",
                memory_mib: 16,
            },
        );
        assert_eq!(
            OperationOutcome::from(&e).to_json()["issue"][0]["code"],
            "too-costly"
        );
        let e = PluginError::new(
            "x",
            Fault::Contract {
                operation: "op",
                message: "3 verdicts for 2 lines".into(),
            },
        );
        let json = OperationOutcome::from(&e).to_json();
        assert_eq!(json["issue"][0]["code"], "exception");
        assert!(
            json["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("3 verdicts for 2 lines")
        );
    }

    #[test]
    fn issues_map_one_to_one() {
        let issue = |code: &str| types::Issue {
            severity: types::Severity::Warning,
            code: code.into(),
            diagnostics: "d".into(),
            expression: vec!["Patient.id".into()],
        };
        let out = convert_issues(vec![issue("value"), issue("business-rule")]).unwrap();
        assert_eq!(out[0].code, IssueType::Value);
        assert_eq!(out[0].severity, IssueSeverity::Warning);
        assert_eq!(out[0].expression, vec!["Patient.id".to_owned()]);
        assert_eq!(out[1].code, IssueType::Processing);
        assert!(
            convert_issues(vec![issue("nonsense")])
                .unwrap_err()
                .contains("nonsense")
        );
        assert!(convert_issues(Vec::new()).is_err());
    }
}
