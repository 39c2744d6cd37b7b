//! The plugin runtime: WebAssembly components, described by the WIT package
//! in `wit/` (`hearth:plugin`), that decide how `_typeFilter` is evaluated,
//! how Groups are resolved, what export files become and how imported
//! resources are validated. Deployments pick them in the config file.
//!
//! Architecture invariant: this is the only module that names wasmtime
//! types. The rest of the server sees [`PluginRegistry`], [`LoadedPlugin`]
//! and the per-kind session types, whose methods take and return plain Rust
//! and FHIR values.
//!
//! Layout:
//! - `runtime`: the one [`Runtime`] (wasmtime `Engine`, epoch ticker,
//!   loading: file → sha256 pin → version check → cached precompile →
//!   `InstancePre`) and the per-call fault containment every session uses;
//! - `cache`: precompiled components on disk, keyed by content hash and
//!   engine compatibility;
//! - `version`: which `hearth:plugin` versions this host accepts;
//! - `host`: the store state and the imports every plugin gets (logging,
//!   its config values, `fhir-read` for group resolvers);
//! - `bindings`: the `bindgen!` output, one module per world;
//! - `type_filter`, `group_resolver`, `export_sink`, `import_validator`: one
//!   file per world, each checking the plugin's answers against the contract;
//! - `registry`: the configured plugins as one swappable snapshot (reload);
//! - `check`: `hearth plugin check FILE.wasm`;
//! - `error`: [`PluginError`] and its OperationOutcome.
//!
//! Instance model: a session (a compiled filter, a Group being resolved, a
//! file being written or validated) owns one wasmtime `Store` and instance,
//! reused for all its calls. Every call gets a fresh deadline (and fuel);
//! after a trap or a contract violation the store is dropped and the session
//! only returns errors, so a faulted instance is never called again. New
//! sessions instantiate from the plugin's `InstancePre` in microseconds.

mod bindings;
mod cache;
mod check;
mod error;
mod export_sink;
mod group_resolver;
mod host;
mod import_validator;
mod registry;
mod runtime;
mod type_filter;
mod version;

#[cfg(test)]
mod tests;

pub use cache::CacheOutcome;
pub use check::{CheckReport, check_component};
pub use error::{Fault, PluginError, ReloadError};
pub use export_sink::{FileInfo, Finished, SinkWriter};
pub use group_resolver::{GroupMembers, Reported, SearchError, SnapshotReader};
pub use import_validator::{ValidationSession, Verdict};
pub use registry::{PluginRegistry, PluginSet};
pub use runtime::{LoadedPlugin, Runtime};
pub use type_filter::TypeFilter;
pub use version::{WIT_PACKAGE, WIT_VERSION, accepts_version};

use std::fmt;

/// The four plugin roles, one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    TypeFilter,
    GroupResolver,
    ExportSink,
    ImportValidator,
}

impl PluginKind {
    pub const ALL: [PluginKind; 4] = [
        PluginKind::TypeFilter,
        PluginKind::GroupResolver,
        PluginKind::ExportSink,
        PluginKind::ImportValidator,
    ];

    /// The name of its section in the config file (`[plugins.<name>]`).
    pub fn config_name(self) -> &'static str {
        match self {
            PluginKind::TypeFilter => "type_filter",
            PluginKind::GroupResolver => "group_resolver",
            PluginKind::ExportSink => "export_sink",
            PluginKind::ImportValidator => "import_validator",
        }
    }

    /// The interface its world exports (`hearth:plugin/<interface>`).
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::TypeFilter => "type-filter",
            PluginKind::GroupResolver => "group-resolver",
            PluginKind::ExportSink => "export-sink",
            PluginKind::ImportValidator => "import-validator",
        }
    }

    /// The WIT world a component of this kind implements.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::TypeFilter => "type-filter-plugin",
            PluginKind::GroupResolver => "group-resolver-plugin",
            PluginKind::ExportSink => "export-sink-plugin",
            PluginKind::ImportValidator => "import-validator-plugin",
        }
    }

    /// The component embedded in the binary, used when the config names none.
    pub fn embedded_default(self) -> &'static [u8] {
        match self {
            PluginKind::TypeFilter => include_bytes!(concat!(env!("OUT_DIR"), "/type_filter.wasm")),
            PluginKind::GroupResolver => {
                include_bytes!(concat!(env!("OUT_DIR"), "/group_resolver.wasm"))
            }
            PluginKind::ExportSink => include_bytes!(concat!(env!("OUT_DIR"), "/export_sink.wasm")),
            PluginKind::ImportValidator => {
                include_bytes!(concat!(env!("OUT_DIR"), "/import_validator.wasm"))
            }
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// Counts the lines of an NDJSON batch as the contract frames them (`\n`
/// ended, the last `\n` optional): the number of answers a plugin owes.
fn ndjson_lines(batch: &[u8]) -> usize {
    // Counted per block of 255 bytes into a `u8`, which cannot overflow:
    // with a `usize` counter the compiler widens every byte to a 64-bit lane
    // (two per SSE register), and this pass cost a fifth to a third of a
    // whole `_typeFilter` call (see plugins/README.md).
    let newlines: usize = batch
        .chunks(usize::from(u8::MAX))
        .map(|block| {
            let n = block.iter().fold(0u8, |n, b| n + u8::from(*b == b'\n'));
            usize::from(n)
        })
        .sum();
    newlines + usize::from(batch.last().is_some_and(|b| *b != b'\n'))
}
