//! OperationOutcome: the one shape every error and warning takes on the wire.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// The subset of the R4 `issue-type` value set Hearth reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Processing,
    NotSupported,
    NotFound,
    Deleted,
    Conflict,
    Duplicate,
    TooLong,
    Exception,
    Informational,
    Security,
    Forbidden,
    LockError,
    Timeout,
    TooCostly,
    Transient,
    Throttled,
    Incomplete,
}

#[derive(Clone, Debug, Serialize)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "resourceType")]
pub struct OperationOutcome {
    pub issue: Vec<Issue>,
}

impl OperationOutcome {
    pub fn single(
        severity: IssueSeverity,
        code: IssueType,
        diagnostics: impl Into<String>,
    ) -> Self {
        OperationOutcome {
            issue: vec![Issue {
                severity,
                code,
                diagnostics: Some(diagnostics.into()),
                expression: Vec::new(),
            }],
        }
    }

    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::single(IssueSeverity::Error, code, diagnostics)
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self::single(
            IssueSeverity::Information,
            IssueType::Informational,
            diagnostics,
        )
    }

    /// Points the (first) issue at a FHIRPath expression in the offending input.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        if let Some(issue) = self.issue.first_mut() {
            issue.expression.push(expression.into());
        }
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| serde_json::json!({"resourceType":"OperationOutcome"}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_fhir() {
        let oo =
            OperationOutcome::error(IssueType::NotFound, "Patient/x is not known").at("Patient.id");
        assert_eq!(
            serde_json::to_string(&oo).unwrap(),
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Patient/x is not known","expression":["Patient.id"]}]}"#
        );
    }
}
