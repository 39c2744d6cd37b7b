//! Hearth: a FHIR R4 Bulk Data server. See ARCHITECTURE.md at the repository
//! root for the map of these modules and how a request flows through them.

pub mod api;
pub mod azure;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod destinations;
pub mod export;
pub mod fhir;
pub mod import;
pub mod jobs;
pub mod percent;
pub mod plugins;
pub mod server;
pub mod store;

#[cfg(test)]
mod tests;
