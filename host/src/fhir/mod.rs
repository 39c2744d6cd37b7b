//! FHIR R4 vocabulary Hearth needs everywhere: resource types, ids, instants,
//! OperationOutcome, the Patient compartment and `meta` normalisation.
//! Nothing here knows about HTTP or storage.

pub mod compartment;
pub mod id;
pub mod instant;
pub mod outcome;
pub mod resource;
pub mod types;

pub use id::ResourceId;
pub use instant::Instant;
pub use outcome::{IssueSeverity, IssueType, OperationOutcome};
pub use types::ResourceType;
