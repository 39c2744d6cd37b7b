//! `$export`: the request (parsed at the edge), the job handler that plans
//! and runs it against store snapshots and plugins, the files it writes, and
//! the manifest the status endpoint answers.

pub mod request;

pub use request::{Associated, ExportLevel, ExportRequest, TypeFilter, Warning};
