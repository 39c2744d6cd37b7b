//! The state of one plugin instance's store, and the imports every plugin
//! gets: logging into `tracing`, its own config values and, for group
//! resolvers, read and search access to the store at the export's snapshot
//! and a way to report issues to the export's error file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::group_resolver::hearth::plugin::{export_issues, fhir_read, fhir_search};
use super::bindings::{host_api, types};
use super::error::{convert_issues, issues_to_wit};
use super::group_resolver::{Reported, SearchError, SnapshotReader};

/// Longest log message kept from a plugin; the rest is cut, so a plugin
/// cannot flood the server's log with one call.
const MAX_LOG_BYTES: usize = 4096;

/// Tables of Rust guests hold a few hundred entries; this only stops a
/// plugin from growing one without bound.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Reported issues one session keeps; the rest are only counted, so a
/// plugin reporting in a loop cannot exhaust the host's memory.
pub(super) const MAX_REPORTED: usize = 10_000;

pub(super) struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    /// For log records: the plugin's display name.
    pub(super) plugin: Arc<str>,
    pub(super) config: Arc<BTreeMap<String, String>>,
    pub(super) reader: Option<Arc<dyn SnapshotReader>>,
    /// Issues the plugin reported through `export-issues`.
    pub(super) reported: Reported,
    /// Why a report broke the contract, for the call that made it to fail.
    pub(super) report_violation: Option<String>,
    /// Time spent in host imports (store reads, searches) since the call's
    /// deadline was armed: the deadline bounds the plugin's own work, so
    /// this is credited back when the deadline comes.
    pub(super) host_busy: Duration,
}

/// Caps the instance's linear memory and remembers whether it refused to
/// grow it, so a trap that follows is reported as the memory cap.
pub(super) struct MemoryLimiter {
    pub(super) max_bytes: usize,
    pub(super) refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host_api::Host for HostState {
    fn log(&mut self, level: host_api::LogLevel, message: String, fields: Vec<(String, String)>) {
        use host_api::LogLevel;
        let message = truncate(&message);
        let plugin = &*self.plugin;
        let fields = Fields(&fields);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "hearth::plugin", plugin, %fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "hearth::plugin", plugin, %fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "hearth::plugin", plugin, %fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "hearth::plugin", plugin, %fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "hearth::plugin", plugin, %fields, "{message}")
            }
        }
    }

    fn get_config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl HostState {
    /// The snapshot the call was given, timing the work done on it.
    fn with_reader<R>(
        &mut self,
        missing: impl FnOnce(types::PluginError) -> R,
        f: impl FnOnce(&dyn SnapshotReader) -> R,
    ) -> R {
        let Some(reader) = self.reader.clone() else {
            return missing(types::PluginError {
                code: types::ErrorCode::Unavailable,
                message: "no store access was given to this call".into(),
            });
        };
        let started = Instant::now();
        let out = f(&*reader);
        self.host_busy += started.elapsed();
        out
    }
}

impl fhir_read::Host for HostState {
    fn read(
        &mut self,
        resource_type: String,
        id: String,
    ) -> Result<Option<Vec<u8>>, types::PluginError> {
        self.with_reader(Err, |reader| {
            reader
                .read(&resource_type, &id)
                .map_err(|message| types::PluginError {
                    code: types::ErrorCode::Unavailable,
                    message,
                })
        })
    }
}

fn search_error(e: SearchError) -> fhir_search::SearchError {
    match e {
        SearchError::Refused(issues) => fhir_search::SearchError::Refused(issues_to_wit(&issues)),
        SearchError::Failed(message) => fhir_search::SearchError::Failed(types::PluginError {
            code: types::ErrorCode::Unavailable,
            message,
        }),
    }
}

impl fhir_search::Host for HostState {
    fn check(&mut self, query: String) -> Result<(), fhir_search::SearchError> {
        self.with_reader(
            |e| Err(fhir_search::SearchError::Failed(e)),
            |reader| reader.check(&query).map_err(search_error),
        )
    }

    fn patients_matching(
        &mut self,
        query: String,
    ) -> Result<Vec<String>, fhir_search::SearchError> {
        self.with_reader(
            |e| Err(fhir_search::SearchError::Failed(e)),
            |reader| reader.patients_matching(&query).map_err(search_error),
        )
    }
}

impl export_issues::Host for HostState {
    fn report(&mut self, issue: types::Issue) {
        match convert_issues(vec![issue]) {
            Ok(issues) if self.reported.issues.len() < MAX_REPORTED => {
                self.reported.issues.extend(issues);
            }
            Ok(_) => self.reported.dropped += 1,
            Err(message) => {
                self.report_violation
                    .get_or_insert(format!("export-issues report: {message}"));
            }
        }
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_LOG_BYTES {
        return s;
    }
    let mut end = MAX_LOG_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `key=value` pairs for a log record.
struct Fields<'a>(&'a [(String, String)]);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={:?}", truncate(k), truncate(v))?;
        }
        Ok(())
    }
}
