//! Why an export stops, and how the job engine records it.

use crate::destinations::DestinationError;
use crate::fhir::outcome::Issue;
use crate::fhir::{IssueType, OperationOutcome, ResourceId};
use crate::jobs::{JobError, JobFailure};
use crate::plugins::PluginError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the export was cancelled")]
    Cancelled,
    /// This worker lost the job (or the engine is stopping): stop quietly.
    #[error("the job is no longer held by this worker")]
    Lost,
    /// Another unit of the same export failed first; its error is the one
    /// reported.
    #[error("stopped after another part of the export failed")]
    Stopped,
    /// Boxed: a plugin error is large, and every export function returns
    /// this type.
    #[error(transparent)]
    Plugin(Box<PluginError>),
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the export files: {0}")]
    Destination(#[from] DestinationError),
    #[error("Group/{0} does not exist at the export's transaction time")]
    GroupNotFound(ResourceId),
    #[error("the group resolver cannot resolve Group/{id}")]
    GroupRefused { id: ResourceId, issues: Vec<Issue> },
    /// `patient` names patients outside the export's population (strict
    /// handling; lenient handling ignores them with a warning).
    #[error("patient: {}", .0.join("; "))]
    PatientsOutOfScope(Vec<String>),
    #[error("the _typeFilter '{filter}' is not supported")]
    FilterRefused { filter: String, issues: Vec<Issue> },
    #[error("the job's {what} cannot be read: {message}")]
    Corrupt { what: &'static str, message: String },
    /// The export was started with `_sink=<name>`, and a reload has since
    /// removed that sink from the configuration.
    #[error(
        "the export sink '{0}' this export was started with is no longer configured (plugins.sinks)"
    )]
    SinkGone(String),
    /// The engine could not save a checkpoint.
    #[error("{}", .0.outcome)]
    Job(JobError),
}

impl From<PluginError> for ExportError {
    fn from(e: PluginError) -> Self {
        ExportError::Plugin(Box::new(e))
    }
}

impl From<JobFailure> for ExportError {
    fn from(f: JobFailure) -> Self {
        match f {
            JobFailure::Cancelled => ExportError::Cancelled,
            JobFailure::Lost => ExportError::Lost,
            JobFailure::Failed(e) => ExportError::Job(e),
        }
    }
}

impl ExportError {
    /// The failure the engine records: client-caused problems are 4xx with
    /// the reasons, everything else 500 naming the plugin, store or file.
    pub fn into_failure(self) -> JobFailure {
        let failed =
            |status, outcome: OperationOutcome| JobFailure::Failed(JobError::new(status, &outcome));
        match self {
            ExportError::Cancelled => JobFailure::Cancelled,
            ExportError::Lost | ExportError::Stopped => JobFailure::Lost,
            ExportError::Job(e) => JobFailure::Failed(e),
            ExportError::Plugin(ref e) => failed(500, OperationOutcome::from(&**e)),
            ExportError::PatientsOutOfScope(_) => failed(
                400,
                OperationOutcome::error(IssueType::Invalid, self.to_string()).at("patient"),
            ),
            ExportError::GroupNotFound(_) => failed(
                404,
                OperationOutcome::error(IssueType::NotFound, self.to_string()),
            ),
            ExportError::GroupRefused { ref issues, .. }
            | ExportError::FilterRefused { ref issues, .. } => {
                // A search engine that failed while the resolver checked a
                // query is the server's fault, not the Group's.
                let status = if issues.iter().any(|i| i.code == IssueType::Exception) {
                    500
                } else {
                    400
                };
                let mut outcome = OperationOutcome::error(IssueType::Processing, self.to_string());
                outcome.issue.extend(issues.iter().cloned());
                failed(status, outcome)
            }
            ExportError::Store(_)
            | ExportError::Destination(_)
            | ExportError::Corrupt { .. }
            | ExportError::SinkGone(_) => failed(
                500,
                OperationOutcome::error(IssueType::Exception, self.to_string()),
            ),
        }
    }
}
