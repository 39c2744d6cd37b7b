//! [`ApiError`]: every way a request can fail, and the one place a failure
//! becomes an HTTP status and an OperationOutcome.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::ConfigError;
use crate::export::ExportError;
use crate::fhir::outcome::Issue;
use crate::fhir::resource::ResourceError;
use crate::fhir::{IssueType, OperationOutcome};
use crate::import::source::SourceError;
use crate::jobs::{JobError, JobStoreError};
use crate::plugins::{Fault, PluginError, ReloadError};
use crate::store::{OpError, StoreError};

use super::export::RemoveError;
use super::response::{fhir_json, outcome_response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or names something that cannot exist.
    #[error("{message}")]
    Invalid {
        code: IssueType,
        message: String,
        expression: Option<String>,
    },
    /// 400: a valid FHIR request that Hearth does not implement.
    #[error("{0}")]
    NotSupported(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 405
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406
    #[error("{0}")]
    NotAcceptable(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 410: the current (or requested) version is a tombstone.
    #[error("{0}")]
    Gone(String),
    /// 412
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// 415
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 423: an initial import is queued or running; the REST API takes no
    /// writes until it ends.
    #[error("{0}")]
    Locked(String),
    /// 429 with `Retry-After: {retry_after}` (seconds): too much work is
    /// already under way; the same request may succeed later.
    #[error("{message}")]
    Throttled { message: String, retry_after: u64 },
    /// 400: a plugin refused a request parameter (e.g. a `_typeFilter` its
    /// compiler does not support). The outcome names the parameter, then
    /// carries the plugin's own issues.
    #[error("{message}")]
    Refused {
        parameter: String,
        message: String,
        issues: Vec<Issue>,
    },
    /// An `$import` input its source refuses (built by
    /// [`ApiError::source`]): 400 when the URL is not under a configured
    /// source or nothing is there, 412 when its entity tag is not the one
    /// the request named (a precondition on the source that does not hold,
    /// exactly what 412 means). `at` is the input's place in the body.
    #[error("{at}: {error}")]
    Source { at: String, error: SourceError },
    /// A job that failed: answered with the status and OperationOutcome
    /// stored when it failed, which a status poll repeats.
    #[error("the job failed with status {}", .0.status)]
    JobFailed(JobError),
    /// 500: the cause is logged where it happens ([`ApiError::internal`]);
    /// clients only learn that something broke.
    #[error("internal server error")]
    Internal,
    /// 503
    #[error("{0}")]
    Unavailable(String),
    /// A plugin could not be loaded or failed; the message names it and the
    /// cause. Boxed: it is several times larger than the other variants.
    #[error(transparent)]
    Plugin(Box<PluginError>),
    /// The failure of one entry of a batch or transaction: its status, and a
    /// message naming the entry.
    #[error("Bundle.entry[{index}]: {source}")]
    InEntry { index: usize, source: Box<ApiError> },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: IssueType::Invalid,
            message: message.into(),
            expression: None,
        }
    }

    /// 400 about one request parameter: the message starts with its name
    /// and the issue's expression is the name, so clients can tell which.
    pub fn parameter(code: IssueType, name: &str, message: impl std::fmt::Display) -> Self {
        ApiError::Invalid {
            code,
            message: format!("{name}: {message}"),
            expression: Some(name.to_owned()),
        }
    }

    /// Logs the real cause and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal
    }

    /// What a source said about the input at `at`. A source that cannot
    /// be read (storage unreachable, a refused request) is 502: the server
    /// was the client of the storage that failed, and the message names
    /// the input the request itself gave and the cause, so that the caller
    /// can tell an outage from a mistake.
    pub fn source(at: &str, error: SourceError) -> Self {
        if let SourceError::Io { .. } = &error {
            tracing::warn!(input = at, error = %error, "import input could not be read");
        }
        ApiError::Source {
            at: at.to_owned(),
            error,
        }
    }

    pub fn in_entry(self, index: usize) -> Self {
        ApiError::InEntry {
            index,
            source: Box::new(self),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::NotSupported(_) | ApiError::Refused { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Locked(_) => StatusCode::LOCKED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Source { error, .. } => match error {
                SourceError::NotAllowed { .. } | SourceError::NotFound { .. } => {
                    StatusCode::BAD_REQUEST
                }
                SourceError::EtagMismatch { .. } => StatusCode::PRECONDITION_FAILED,
                SourceError::Io { .. } => StatusCode::BAD_GATEWAY,
            },
            ApiError::JobFailed(e) => {
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(e) => match e.fault {
                // The configuration names a component this host cannot use:
                // the operator's input to fix, not a server fault.
                Fault::Load(_) | Fault::VersionRefused { .. } => StatusCode::BAD_REQUEST,
                // The plugin broke while running (trap, deadline, memory
                // cap, contract violation).
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::InEntry { source, .. } => source.status(),
        }
    }

    fn issue_type(&self) -> IssueType {
        match self {
            ApiError::Invalid { code, .. } => *code,
            ApiError::NotSupported(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::NotAcceptable(_)
            | ApiError::UnsupportedMediaType(_) => IssueType::NotSupported,
            ApiError::NotFound(_) => IssueType::NotFound,
            ApiError::Conflict(_) | ApiError::PreconditionFailed(_) => IssueType::Conflict,
            ApiError::Gone(_) => IssueType::Deleted,
            ApiError::TooLarge(_) => IssueType::TooLong,
            ApiError::Locked(_) => IssueType::LockError,
            ApiError::Throttled { .. } => IssueType::Throttled,
            ApiError::Source { error, .. } => match error {
                SourceError::NotAllowed { .. } => IssueType::Value,
                SourceError::NotFound { .. } => IssueType::NotFound,
                SourceError::EtagMismatch { .. } => IssueType::Conflict,
                SourceError::Io { .. } => IssueType::Transient,
            },
            ApiError::Refused { .. } => IssueType::NotSupported,
            ApiError::Internal | ApiError::JobFailed(_) => IssueType::Exception,
            ApiError::Unavailable(_) => IssueType::Transient,
            ApiError::Plugin(e) => match e.fault {
                Fault::Load(_) => IssueType::Invalid,
                _ => e.issue_type(),
            },
            ApiError::InEntry { source, .. } => source.issue_type(),
        }
    }

    fn expression(&self) -> Option<String> {
        match self {
            ApiError::Invalid { expression, .. } => expression.clone(),
            ApiError::Refused { parameter, .. } => Some(parameter.clone()),
            ApiError::Source { at, .. } => Some(at.clone()),
            ApiError::InEntry { index, .. } => Some(format!("Bundle.entry[{index}]")),
            _ => None,
        }
    }

    pub fn outcome(&self) -> OperationOutcome {
        let mut outcome = OperationOutcome::error(self.issue_type(), self.to_string());
        if let Some(expression) = self.expression() {
            outcome = outcome.at(expression);
        }
        if let ApiError::Refused { issues, .. } = self {
            outcome.issue.extend(issues.iter().cloned());
        }
        outcome
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            // The outcome was built (and checked) when the job failed.
            ApiError::JobFailed(e) => {
                fhir_json(status, serde_json::to_vec(&e.outcome).unwrap_or_default())
            }
            ApiError::Throttled { retry_after, .. } => {
                let mut response = outcome_response(status, &self.outcome());
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            _ => outcome_response(status, &self.outcome()),
        }
    }
}

/// The 500 answer for the server's panic-catching layer.
pub fn panic_response() -> Response {
    ApiError::Internal.into_response()
}

impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        let code = match e {
            ResourceError::Json(_) | ResourceError::NotObject => IssueType::Structure,
            ResourceError::MissingType => IssueType::Required,
            ResourceError::UnknownType(_) | ResourceError::BadId(_) => IssueType::Value,
        };
        ApiError::Invalid {
            code,
            message: e.to_string(),
            expression: None,
        }
    }
}

/// `If-Match` against a resource with no live version (never written, or
/// deleted: the store reports both as `current: None`) is a 409, there is
/// nothing it could match; against another live version it is a 412.
impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::VersionMismatch {
                rtype,
                id,
                current: None,
                ..
            } => ApiError::Conflict(format!(
                "{rtype}/{id} does not exist or is deleted, so If-Match cannot match it"
            )),
            OpError::VersionMismatch { .. } => ApiError::PreconditionFailed(e.to_string()),
            OpError::AlreadyExists(..) | OpError::DuplicateInCommit(..) => {
                ApiError::Conflict(e.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected { error, .. } => error.into(),
            StoreError::Backend(_) | StoreError::Corrupt(_) => ApiError::internal(e),
        }
    }
}

/// What the kick-off's checks of an export found (a Group missing at the
/// snapshot, one the group resolver refuses, a `patient` outside the
/// population) is the client's; anything else (the job's records, the
/// destination, a search engine that failed) is the server's problem,
/// logged.
impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::GroupNotFound(_) => ApiError::NotFound(e.to_string()),
            ExportError::GroupRefused { ref issues, .. }
                if !issues.iter().any(|i| i.code == IssueType::Exception) =>
            {
                ApiError::Refused {
                    parameter: "Group".into(),
                    message: e.to_string(),
                    issues: issues.clone(),
                }
            }
            ExportError::PatientsOutOfScope(_) => {
                ApiError::parameter(IssueType::Invalid, "patient", &e)
            }
            ExportError::Plugin(plugin) => ApiError::Plugin(plugin),
            _ => ApiError::internal(e),
        }
    }
}

impl From<RemoveError> for ApiError {
    fn from(e: RemoveError) -> Self {
        ApiError::internal(e)
    }
}

impl From<JobStoreError> for ApiError {
    fn from(e: JobStoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        ApiError::Plugin(Box::new(e))
    }
}

/// The configuration file a reload reads is the operator's input: a bad one
/// is a 400 that says what is wrong with it.
impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::invalid(e.to_string())
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Config(e) => e.into(),
            ReloadError::Plugin(e) => e.into(),
        }
    }
}
