//! Why an import stops (a failed line never does: it becomes an error
//! record), and how the job engine records it.

use crate::fhir::{IssueType, OperationOutcome};
use crate::jobs::{JobError, JobFailure};
use crate::plugins::PluginError;
use crate::store::StoreError;

use super::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the import was cancelled")]
    Cancelled,
    /// This worker lost the job (or the engine is stopping): stop quietly.
    #[error("the job is no longer held by this worker")]
    Lost,
    /// Another part of the same import failed first; its error is the one
    /// reported.
    #[error("stopped after another part of the import failed")]
    Stopped,
    #[error("input {}: {source}", .input + 1)]
    Source { input: usize, source: SourceError },
    /// Boxed: a plugin error is large, and every import function returns
    /// this type.
    #[error(transparent)]
    Plugin(Box<PluginError>),
    #[error("writing to the store: {0}")]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the job's {what} cannot be read: {message}")]
    Corrupt { what: &'static str, message: String },
    /// The engine could not save a checkpoint.
    #[error("{}", .0.outcome)]
    Job(JobError),
}

impl From<PluginError> for ImportError {
    fn from(e: PluginError) -> Self {
        ImportError::Plugin(Box::new(e))
    }
}

impl From<JobFailure> for ImportError {
    fn from(f: JobFailure) -> Self {
        match f {
            JobFailure::Cancelled => ImportError::Cancelled,
            JobFailure::Lost => ImportError::Lost,
            JobFailure::Failed(e) => ImportError::Job(e),
        }
    }
}

impl ImportError {
    /// Wraps a source error of input `input` (0-based).
    pub fn at_input(input: usize) -> impl Fn(SourceError) -> ImportError + Copy {
        move |source| ImportError::Source { input, source }
    }

    /// The failure the engine records. What the import wrote before stays
    /// (the seed document: imported resources are not rolled back). An input
    /// that disappeared or is no longer allowed is the request's 400; one
    /// whose content changed 412 (its entity tag is the precondition the
    /// job runs under); plugin, store and file failures 500.
    pub fn into_failure(self) -> JobFailure {
        let failed = |status, code, message: String| {
            JobFailure::Failed(JobError::new(
                status,
                &OperationOutcome::error(code, message),
            ))
        };
        match self {
            ImportError::Cancelled => JobFailure::Cancelled,
            ImportError::Lost | ImportError::Stopped => JobFailure::Lost,
            ImportError::Job(e) => JobFailure::Failed(e),
            ImportError::Plugin(ref e) => {
                JobFailure::Failed(JobError::new(500, &OperationOutcome::from(&**e)))
            }
            ImportError::Source { ref source, .. } => {
                let message = format!("import operation failed for reason: {self}");
                match source {
                    SourceError::NotAllowed { .. } => failed(400, IssueType::Forbidden, message),
                    SourceError::NotFound { .. } => failed(400, IssueType::NotFound, message),
                    SourceError::EtagMismatch { .. } => failed(412, IssueType::Conflict, message),
                    SourceError::Io { .. } => failed(500, IssueType::Exception, message),
                }
            }
            ImportError::Store(_) | ImportError::Io { .. } | ImportError::Corrupt { .. } => failed(
                500,
                IssueType::Exception,
                format!("import operation failed for reason: {self}"),
            ),
        }
    }
}
