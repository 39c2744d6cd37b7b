//! `$import`: the request (parsed at the edge) and the job that loads NDJSON
//! inputs into the store.

pub mod request;

pub use request::{ImportInput, ImportMode, ImportRequest, SourceUrl};
