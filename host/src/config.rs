//! One typed configuration, assembled once at start-up from embedded
//! defaults, an optional TOML file, `HEARTH_*` environment variables and
//! command-line flags (later sources win), then validated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::azure::retry::RetryPolicy;
use crate::azure::{AzureConfig, Credential, is_container_name};
use crate::destinations::BlobOptions;
use crate::destinations::azure::BLOCK_BYTES;
use crate::export::ExportConfig;
use crate::fhir::ResourceType;
use crate::fhir::compartment::can_be_in_compartment;
use crate::import::ImportConfig;
use crate::import::blob::{BlobSettings, BlobSource};
use crate::jobs::engine::EngineConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub plugins: PluginsConfig,
    pub jobs: JobsConfig,
    pub export: ExportSettings,
    pub import: ImportSettings,
    /// Azure storage accounts the export destination and import sources
    /// refer to by name.
    pub azure: AzureConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Public base URL used in `Location`, `fullUrl` and links. Empty: derived
    /// from the bound address (`http://127.0.0.1:8080`).
    pub base_url: String,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests before giving up.
    pub shutdown_grace_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store (created if missing).
    pub data_dir: PathBuf,
    /// Memory for the store's page cache, in MiB.
    pub cache_mib: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `_count` when a search or history request gives none.
    pub default_page_size: usize,
    /// Largest `_count` honoured.
    pub max_page_size: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `hearth=debug,tower_http=info`.
    /// `RUST_LOG` overrides it.
    pub filter: String,
    pub format: LogFormat,
}

/// The background job engine (`$export`, later `$import`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs run at once by this server (all kinds).
    pub workers: usize,
    /// How long a worker holds a job without renewing: a job whose worker
    /// is silent this long is presumed stuck and resumes on another worker.
    pub lease_seconds: u64,
    /// How often a running job's lease is renewed (less than the lease).
    pub heartbeat_seconds: u64,
    /// How often idle workers look for queued jobs; a kick-off wakes them
    /// at once anyway.
    pub poll_ms: u64,
    /// Exports queued or running at once; one more kick-off gets 429.
    pub max_concurrent_exports: usize,
    /// This server's name in job leases: stable across restarts (a restart
    /// resumes exactly its own interrupted jobs), distinct per server
    /// sharing a store.
    pub node: String,
}

/// `[export]`: where export files go and how they are cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Folder of export output; absent means `<data_dir>/exports`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// A file holds at most this many resources...
    pub file_max_resources: usize,
    /// ...and at most about this many bytes; then the next file starts.
    pub file_max_bytes: u64,
    /// Resource types one export writes at the same time.
    pub parallelism: usize,
    /// How long a finished export's files and status stay available.
    pub retention_hours: u64,
    /// Types in no Patient compartment (e.g. `["Practitioner",
    /// "Organization", "Location", "Medication"]`) that Patient- and
    /// Group-level exports add when exported resources reference them.
    pub include_referenced: Vec<ResourceType>,
    /// The `[azure.accounts.<name>]` export files go to; absent means the
    /// local folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Minutes the read SAS URLs a blob manifest lists stay valid; 0 lists
    /// plain blob URLs.
    pub sas_minutes: u64,
    /// How long a failing blob request is retried before the export fails.
    pub blob_retry_seconds: u64,
}

/// `[import]`: where `$import` inputs may come from, where error files go,
/// and how inputs are cut and processed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSettings {
    /// Local folders whose files `file://` inputs may name; absent means
    /// `<data_dir>/import`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<PathBuf>>,
    /// `http://` / `https://` URL prefixes inputs may be fetched from.
    /// Empty (the default): no request can make the server fetch an address.
    pub allowed_http: Vec<String>,
    /// Folder of the per-job error files; absent means
    /// `<data_dir>/import-errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_dir: Option<PathBuf>,
    /// Blob inputs allowed: `"<account>"` (any container of the account
    /// named in `[azure.accounts]`) or `"<account>/<container>"`. Empty
    /// (the default): no blob URL is imported.
    pub blob_sources: Vec<BlobSource>,
    /// Container of the error files of imports that read blobs, when the
    /// request names none (`errorContainerName`).
    pub error_container: String,
    /// Account (in `[azure.accounts]`) receiving the error files of imports
    /// that read no blob; absent: those stay local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_account: Option<String>,
    /// How long a failing blob call is retried (the same rule as
    /// `export.blob_retry_seconds`) before the import fails.
    pub blob_retry_seconds: u64,
    /// Byte ranges one import processes at the same time.
    pub parallelism: usize,
    /// Inputs are cut into ranges of this many bytes.
    pub range_bytes: u64,
    /// Lines per validator call and per store batch.
    pub batch_lines: usize,
    /// Longer lines are rejected (an error line) without being read.
    pub max_line_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_url: String::new(),
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace_seconds: 30,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./hearth-data"),
            cache_mib: crate::store::sled::DEFAULT_CACHE_BYTES >> 20,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The engine's own defaults, so that the two cannot drift apart.
impl Default for JobsConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        JobsConfig {
            workers: engine.workers,
            lease_seconds: engine.lease.as_secs(),
            heartbeat_seconds: engine.heartbeat.as_secs(),
            poll_ms: u64::try_from(engine.poll.as_millis()).unwrap_or(u64::MAX),
            max_concurrent_exports: 4,
            node: engine.node,
        }
    }
}

/// The export handler's defaults (Azure's file cut: 5,000 resources or
/// 64 MB, whichever first) and a day's retention.
impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            output_dir: None,
            file_max_resources: ExportConfig::DEFAULT_FILE_MAX_RESOURCES,
            file_max_bytes: ExportConfig::DEFAULT_FILE_MAX_BYTES,
            parallelism: ExportConfig::DEFAULT_PARALLELISM,
            retention_hours: 24,
            include_referenced: Vec::new(),
            destination: None,
            sas_minutes: 0,
            blob_retry_seconds: 60,
        }
    }
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            sources: None,
            allowed_http: Vec::new(),
            error_dir: None,
            blob_sources: Vec::new(),
            error_container: BlobSettings::DEFAULT_ERROR_CONTAINER.into(),
            error_account: None,
            blob_retry_seconds: RetryPolicy::default().budget.as_secs(),
            parallelism: ImportConfig::DEFAULT_PARALLELISM,
            range_bytes: ImportConfig::DEFAULT_RANGE_BYTES,
            batch_lines: ImportConfig::DEFAULT_BATCH_LINES,
            max_line_bytes: ImportConfig::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl ImportSettings {
    fn validate(&self, azure: &AzureConfig) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("import.{m}")));
        let accounts = self
            .blob_sources
            .iter()
            .map(|s| &s.account)
            .chain(&self.error_account);
        if let Some(unknown) = accounts
            .into_iter()
            .find(|a| !azure.accounts.contains_key(*a))
        {
            return invalid(&format!(
                "blob_sources / error_account: no storage account '{unknown}' under [azure.accounts]"
            ));
        }
        if !is_container_name(&self.error_container) {
            return invalid(
                "error_container: not an Azure container name (3-63 lowercase letters, digits and single hyphens)",
            );
        }
        if self.blob_retry_seconds == 0 {
            return invalid("blob_retry_seconds must be at least 1");
        }
        if self.parallelism == 0 || self.range_bytes == 0 || self.batch_lines == 0 {
            return invalid("parallelism, range_bytes and batch_lines must be at least 1");
        }
        if self.max_line_bytes < 1024 {
            return invalid("max_line_bytes must be at least 1024");
        }
        if let Some(prefix) = self.allowed_http.iter().find(|p| {
            let rest = p
                .strip_prefix("http://")
                .or_else(|| p.strip_prefix("https://"));
            rest.is_none_or(|host| host.is_empty() || host.starts_with('/'))
        }) {
            return invalid(&format!(
                "allowed_http: '{prefix}' is not an http:// or https:// URL prefix with a host"
            ));
        }
        Ok(())
    }
}

impl JobsConfig {
    /// The engine's settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            node: self.node.clone(),
            workers: self.workers,
            lease: Duration::from_secs(self.lease_seconds),
            heartbeat: Duration::from_secs(self.heartbeat_seconds),
            poll: Duration::from_millis(self.poll_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("jobs.{m}")));
        if self.workers == 0 || self.max_concurrent_exports == 0 {
            return invalid("workers and max_concurrent_exports must be at least 1");
        }
        if self.heartbeat_seconds == 0 || self.heartbeat_seconds >= self.lease_seconds {
            return invalid("heartbeat_seconds must be at least 1 and less than lease_seconds");
        }
        if self.poll_ms < 10 {
            return invalid("poll_ms must be at least 10");
        }
        if self.node.is_empty() || self.node.contains('/') {
            return invalid("node must be a non-empty name without '/'");
        }
        Ok(())
    }
}

impl ExportSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("export.{m}")));
        if self.file_max_resources == 0 || self.parallelism == 0 || self.retention_hours == 0 {
            return invalid(
                "file_max_resources, parallelism and retention_hours must be at least 1",
            );
        }
        if self.file_max_bytes < 1024 {
            return invalid("file_max_bytes must be at least 1024");
        }
        if self.blob_retry_seconds == 0 {
            return invalid("blob_retry_seconds must be at least 1");
        }
        // A compartment type is exported with the compartments already;
        // referenced ones would be duplicates.
        if let Some(t) = self
            .include_referenced
            .iter()
            .find(|t| !t.is_storable() || can_be_in_compartment(**t))
        {
            return invalid(&format!(
                "include_referenced: {t} can be in a Patient compartment (or is never stored); list types outside every compartment"
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            plugins: PluginsConfig::default(),
            jobs: JobsConfig::default(),
            export: ExportSettings::default(),
            import: ImportSettings::default(),
            azure: AzureConfig::default(),
        }
    }
}

/// Which WebAssembly component plays each plugin role, and how it is
/// confined. Every role has an embedded default, so the section is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where compiled components are kept between starts; absent means
    /// `<data_dir>/plugin-cache`. Several servers may share one (entries are
    /// keyed by content and engine, and written atomically). Read at start
    /// only: a reload keeps the cache the server started with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Evaluates `_typeFilter`.
    pub type_filter: PluginConfig,
    /// Resolves the members of a Group for Group-level exports.
    pub group_resolver: PluginConfig,
    /// Receives each export output file's NDJSON.
    pub export_sink: PluginConfig,
    /// Validates imported resources.
    pub import_validator: PluginConfig,
    /// Named export sinks (`[plugins.sinks.<name>]`), one of which an export
    /// selects with `_sink=<name>` instead of `export_sink`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sinks: BTreeMap<String, PluginConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Path of a `.wasm` component; absent means the embedded default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<PathBuf>,
    /// Expected sha256 of the component file (hex); a mismatch refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub limits: PluginLimits,
    /// Free string values the plugin reads through its `host` import.
    pub config: BTreeMap<String, String>,
    pub grants: PluginGrants,
    /// Export sinks only: the extension of the files it writes (default
    /// `ndjson`), e.g. `ndjson.gz` for a compressing sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Wall-clock budget of one call into the plugin.
    pub deadline_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub memory_mib: u64,
    /// Optional instruction budget per call (deterministic, but slower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// Capabilities beyond pure computation; none by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginGrants {
    /// Directories preopened read-write, each at the same path inside the plugin.
    pub dirs: Vec<PathBuf>,
    /// `ip:port` addresses the plugin may open TCP/UDP sockets to.
    pub hosts: Vec<SocketAddr>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline_ms: 10_000,
            memory_mib: 256,
            fuel: None,
        }
    }
}

impl PluginsConfig {
    /// The four roles with their names in the file (`[plugins.<name>]`).
    pub fn roles(&self) -> [(&'static str, &PluginConfig); 4] {
        [
            ("type_filter", &self.type_filter),
            ("group_resolver", &self.group_resolver),
            ("export_sink", &self.export_sink),
            ("import_validator", &self.import_validator),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let sinks = self
            .sinks
            .iter()
            .map(|(name, sink)| (format!("sinks.{name}"), sink));
        let roles = self.roles().map(|(role, plugin)| (role.to_owned(), plugin));
        for name in self.sinks.keys() {
            if !is_sink_name(name) {
                return Err(ConfigError::Invalid(format!(
                    "plugins.sinks.{name}: a sink name is 1-64 of A-Z a-z 0-9 _ -"
                )));
            }
        }
        for (role, plugin) in roles.into_iter().chain(sinks) {
            let invalid = |m: &str| Err(ConfigError::Invalid(format!("plugins.{role}.{m}")));
            if let Some(extension) = &plugin.extension {
                if role != "export_sink" && !role.starts_with("sinks.") {
                    return invalid("extension applies to export sinks only");
                }
                if !is_extension(extension) {
                    return invalid("extension: 1-16 of a-z 0-9 and inner dots, e.g. ndjson.gz");
                }
            }
            if let Some(sha) = &plugin.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return invalid("sha256 must be 64 hexadecimal digits");
            }
            if plugin.limits.deadline_ms == 0 || plugin.limits.memory_mib == 0 {
                return invalid("limits: deadline_ms and memory_mib must be positive");
            }
            if plugin.limits.memory_mib > 4096 {
                return invalid("limits.memory_mib must be at most 4096 (32-bit linear memory)");
            }
            if plugin.component.is_none() && plugin.sha256.is_some() {
                return invalid("sha256 pins a component file, so it needs `component`");
            }
        }
        Ok(())
    }
}

/// The names `_sink` takes: plain enough to appear in a URL unencoded.
fn is_sink_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Lowercase words separated by single dots (`ndjson`, `ndjson.gz`).
fn is_extension(extension: &str) -> bool {
    extension.len() <= 16
        && extension.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_cache_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_dir: Option<PathBuf>,
}

/// Where the configuration comes from: the file and the command-line
/// values. Kept by the server so that a plugin reload reads the file again
/// under the same layering (defaults < file < environment < flags).
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub flags: Overrides,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.file.as_deref(), &self.flags)
    }
}

impl Config {
    /// Defaults < `file` < `HEARTH_SECTION__KEY` environment variables < `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("HEARTH_").split("__").ignore(&["config"]));
        let server = ServerFlags {
            listen: flags.listen,
            base_url: flags.base_url.clone(),
            max_body_bytes: flags.max_body_bytes,
        };
        figment = figment.merge(Serialized::default("server", server));
        if let Some(dir) = &flags.data_dir {
            figment = figment.merge(Serialized::default("storage.data_dir", dir));
        }
        if let Some(dir) = &flags.plugin_cache_dir {
            figment = figment.merge(Serialized::default("plugins.cache_dir", dir));
        }
        if let Some(dir) = &flags.export_dir {
            figment = figment.merge(Serialized::default("export.output_dir", dir));
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.storage.cache_mib < 16 {
            return invalid("storage.cache_mib must be at least 16");
        }
        if self.server.max_body_bytes < 1024 {
            return invalid("server.max_body_bytes must be at least 1024");
        }
        if self.api.default_page_size == 0 || self.api.default_page_size > self.api.max_page_size {
            return invalid("api.default_page_size must be between 1 and api.max_page_size");
        }
        let base = &self.server.base_url;
        if !base.is_empty() && !(base.starts_with("http://") || base.starts_with("https://")) {
            return invalid("server.base_url must start with http:// or https://");
        }
        self.plugins.validate()?;
        self.jobs.validate()?;
        self.export.validate()?;
        self.import.validate(&self.azure)?;
        self.azure
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.validate_export_destination()
    }

    /// `export.destination` names a configured account, and one that can
    /// sign SAS URLs when `export.sas_minutes` asks for them.
    fn validate_export_destination(&self) -> Result<(), ConfigError> {
        let Some(name) = &self.export.destination else {
            return Ok(());
        };
        let Some(account) = self.azure.accounts.get(name) else {
            return Err(ConfigError::Invalid(format!(
                "export.destination: no storage account named '{name}' is configured under [azure.accounts]"
            )));
        };
        if self.export.sas_minutes > 0 && matches!(account.credential, Credential::Sas { .. }) {
            return Err(ConfigError::Invalid(format!(
                "export.sas_minutes: signing read URLs needs the account key; azure.accounts.{name} has a SAS token (set sas_minutes = 0, or use a key credential)"
            )));
        }
        Ok(())
    }

    /// The blob account export files go to and how it is written, or
    /// `None` for the local folder.
    pub fn export_blob(&self) -> Option<(String, BlobOptions)> {
        let account = self.export.destination.clone()?;
        let sas = (self.export.sas_minutes > 0)
            .then(|| Duration::from_secs(self.export.sas_minutes.saturating_mul(60)));
        Some((
            account,
            BlobOptions {
                retry: Duration::from_secs(self.export.blob_retry_seconds),
                sas,
                block_bytes: BLOCK_BYTES,
            },
        ))
    }

    /// Where compiled plugins are cached: `plugins.cache_dir`, by default
    /// next to the store.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.plugins
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("plugin-cache"))
    }

    /// Where export files are written: `export.output_dir`, by default next
    /// to the store.
    pub fn export_dir(&self) -> PathBuf {
        self.export
            .output_dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("exports"))
    }

    /// The export handler's settings.
    pub fn export_config(&self) -> ExportConfig {
        ExportConfig {
            output_dir: self.export_dir(),
            file_max_resources: self.export.file_max_resources,
            file_max_bytes: self.export.file_max_bytes,
            parallelism: self.export.parallelism,
            include_referenced: self.export.include_referenced.clone(),
            ..ExportConfig::for_data_dir(&self.storage.data_dir)
        }
    }

    /// The import handler's settings (sources, error folder, ranges).
    pub fn import_config(&self) -> ImportConfig {
        let defaults = ImportConfig::for_data_dir(&self.storage.data_dir);
        ImportConfig {
            sources: self.import.sources.clone().unwrap_or(defaults.sources),
            allowed_http: self.import.allowed_http.clone(),
            error_dir: self.import.error_dir.clone().unwrap_or(defaults.error_dir),
            blob: BlobSettings {
                sources: self.import.blob_sources.clone(),
                error_container: self.import.error_container.clone(),
                error_account: self.import.error_account.clone(),
                retry: RetryPolicy::within(Duration::from_secs(self.import.blob_retry_seconds)),
            },
            parallelism: self.import.parallelism,
            range_bytes: self.import.range_bytes,
            batch_lines: self.import.batch_lines,
            max_line_bytes: self.import.max_line_bytes,
        }
    }

    /// How long a finished export's files and status stay.
    pub fn export_retention(&self) -> Duration {
        Duration::from_secs(self.export.retention_hours.saturating_mul(3600))
    }

    /// The base URL, derived from the bound address when not configured.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        if self.server.base_url.is_empty() {
            format!("http://{bound}")
        } else {
            self.server.base_url.trim_end_matches('/').to_owned()
        }
    }
}

#[derive(Serialize)]
struct ServerFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each text, as a config file, must fail to load.
    fn rejects_each(jail: &mut figment::Jail, texts: &[&str]) -> figment::Result<()> {
        for text in texts {
            jail.create_file("bad.toml", text)?;
            assert!(
                Config::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err(),
                "{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn defaults_need_no_file() {
        figment::Jail::expect_with(|_| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(
                c.base_url("127.0.0.1:8080".parse().unwrap()),
                "http://127.0.0.1:8080"
            );
            Ok(())
        });
    }

    #[test]
    fn layers_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "h.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n[storage]\ndata_dir = \"/x\"\n",
            )?;
            jail.set_env("HEARTH_SERVER__MAX_BODY_BYTES", "8192");
            let flags = Overrides {
                data_dir: Some("/y".into()),
                ..Default::default()
            };
            let c = Config::load(Some(Path::new("h.toml")), &flags).unwrap();
            assert_eq!(c.server.listen.port(), 9000);
            assert_eq!(c.server.max_body_bytes, 8192);
            assert_eq!(c.storage.data_dir, PathBuf::from("/y"));
            Ok(())
        });
    }

    #[test]
    fn plugin_cache_dir_defaults_to_the_data_dir_and_layers() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                c.plugin_cache_dir(),
                PathBuf::from("./hearth-data/plugin-cache")
            );
            jail.create_file("c.toml", "[plugins]\ncache_dir = \"/from-file\"\n")?;
            let source = ConfigSource {
                file: Some("c.toml".into()),
                flags: Overrides::default(),
            };
            assert_eq!(
                source.load().unwrap().plugin_cache_dir(),
                PathBuf::from("/from-file")
            );
            jail.set_env("HEARTH_PLUGINS__CACHE_DIR", "/from-env");
            assert_eq!(
                source.load().unwrap().plugin_cache_dir(),
                PathBuf::from("/from-env")
            );
            let flags = Overrides {
                plugin_cache_dir: Some("/from-flag".into()),
                ..Default::default()
            };
            let c = ConfigSource { flags, ..source }.load().unwrap();
            assert_eq!(c.plugin_cache_dir(), PathBuf::from("/from-flag"));
            assert_eq!(c.plugins.type_filter, PluginConfig::default());
            Ok(())
        });
    }

    #[test]
    fn rejects_bad_values() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisten = \"nowhere\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            jail.create_file("typo.toml", "[sever]\nlisten = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("typo.toml")), &Overrides::default()).is_err());
            assert!(matches!(
                Config::load(Some(Path::new("missing.toml")), &Overrides::default()),
                Err(ConfigError::MissingFile(_))
            ));
            Ok(())
        });
    }

    #[test]
    fn jobs_and_export_sections() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c.jobs.max_concurrent_exports, 4);
            assert_eq!(c.jobs.engine().lease, Duration::from_secs(600));
            assert_eq!(c.export.retention_hours, 24);
            assert_eq!(c.export_dir(), PathBuf::from("./hearth-data/exports"));
            rejects_each(
                jail,
                &[
                    "[jobs]\nworkers = 0\n",
                    "[jobs]\nheartbeat_seconds = 600\n",
                    "[jobs]\nnode = \"a/b\"\n",
                    "[jobs]\nmax_concurrent_exports = 0\n",
                    "[export]\nretention_hours = 0\n",
                    "[export]\nfile_max_bytes = 10\n",
                    "[export]\nspeed = 1\n",
                    "[export]\ninclude_referenced = [\"Observation\"]\n",
                    "[export]\ninclude_referenced = [\"Nope\"]\n",
                ],
            )?;
            jail.create_file(
                "j.toml",
                "[jobs]\nworkers = 3\nlease_seconds = 60\nheartbeat_seconds = 5\nnode = \"a\"\n\
                 [export]\noutput_dir = \"/out\"\nfile_max_resources = 10\n",
            )?;
            jail.set_env("HEARTH_JOBS__MAX_CONCURRENT_EXPORTS", "1");
            let c = Config::load(Some(Path::new("j.toml")), &Overrides::default()).unwrap();
            let engine = c.jobs.engine();
            assert_eq!((engine.workers, engine.node.as_str()), (3, "a"));
            assert_eq!(engine.heartbeat, Duration::from_secs(5));
            assert_eq!(c.jobs.max_concurrent_exports, 1);
            assert_eq!(c.export.file_max_resources, 10);
            assert_eq!(c.export_dir(), PathBuf::from("/out"));
            assert!(c.export_config().include_referenced.is_empty());
            jail.set_env(
                "HEARTH_EXPORT__INCLUDE_REFERENCED",
                "[Practitioner,Organization]",
            );
            let c = Config::load(Some(Path::new("j.toml")), &Overrides::default()).unwrap();
            let names: Vec<&str> = c
                .export_config()
                .include_referenced
                .iter()
                .map(|t| t.as_str())
                .collect();
            assert_eq!(names, ["Practitioner", "Organization"]);
            let flags = Overrides {
                export_dir: Some("/flag".into()),
                ..Default::default()
            };
            let c = Config::load(Some(Path::new("j.toml")), &flags).unwrap();
            assert_eq!(c.export_dir(), PathBuf::from("/flag"));
            Ok(())
        });
    }

    #[test]
    fn export_to_a_blob_account() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(c.export_blob(), None);
            let accounts = "[azure.accounts.dev]\naccount = \"devstoreaccount1\"\n\
                            credential = { kind = \"emulator\" }\n\
                            [azure.accounts.sas]\naccount = \"contoso\"\n\
                            credential = { kind = \"sas\", token = \"sv=1&sig=x\" }\n";
            for (bad, says) in [
                (
                    "[export]\ndestination = \"nope\"\n",
                    "no storage account named 'nope'",
                ),
                (
                    "[export]\ndestination = \"sas\"\nsas_minutes = 5\n",
                    "export.sas_minutes",
                ),
                (
                    "[export]\ndestination = \"dev\"\nblob_retry_seconds = 0\n",
                    "blob_retry_seconds",
                ),
            ] {
                jail.create_file("bad.toml", &format!("{accounts}{bad}"))?;
                let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                    .unwrap_err()
                    .to_string();
                assert!(err.contains(says), "{bad}: {err}");
            }
            jail.create_file(
                "ok.toml",
                &format!("{accounts}[export]\ndestination = \"sas\"\n"),
            )?;
            jail.set_env("HEARTH_EXPORT__BLOB_RETRY_SECONDS", "5");
            let c = Config::load(Some(Path::new("ok.toml")), &Overrides::default()).unwrap();
            let (account, options) = c.export_blob().unwrap();
            assert_eq!(account, "sas");
            assert_eq!(options.retry, Duration::from_secs(5));
            assert_eq!(options.sas, None);
            jail.set_env("HEARTH_EXPORT__DESTINATION", "dev");
            jail.set_env("HEARTH_EXPORT__SAS_MINUTES", "15");
            let c = Config::load(Some(Path::new("ok.toml")), &Overrides::default()).unwrap();
            let (account, options) = c.export_blob().unwrap();
            assert_eq!(account, "dev");
            assert_eq!(options.sas, Some(Duration::from_secs(900)));
            Ok(())
        });
    }

    #[test]
    fn import_section() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None, &Overrides::default()).unwrap();
            let import = c.import_config();
            assert_eq!(import.sources, [PathBuf::from("./hearth-data/import")]);
            assert_eq!(
                import.error_dir,
                PathBuf::from("./hearth-data/import-errors")
            );
            assert!(import.allowed_http.is_empty());
            assert_eq!(import.range_bytes, 16 << 20);
            jail.create_file(
                "i.toml",
                "[import]\nsources = [\"/in\", \"/in2\"]\nerror_dir = \"/err\"\n\
                 allowed_http = [\"https://files.example.com/bulk/\"]\nrange_bytes = 64\n",
            )?;
            let c = Config::load(Some(Path::new("i.toml")), &Overrides::default()).unwrap();
            let import = c.import_config();
            assert_eq!(
                import.sources,
                [PathBuf::from("/in"), PathBuf::from("/in2")]
            );
            assert_eq!(import.error_dir, PathBuf::from("/err"));
            assert_eq!(import.allowed_http, ["https://files.example.com/bulk/"]);
            assert_eq!((import.range_bytes, import.parallelism), (64, 2));
            rejects_each(
                jail,
                &[
                    "[import]\nparallelism = 0\n",
                    "[import]\nmax_line_bytes = 10\n",
                    "[import]\nallowed_http = [\"ftp://x/\"]\n",
                    "[import]\nallowed_http = [\"http://\"]\n",
                    "[import]\nsource = []\n",
                ],
            )?;
            Ok(())
        });
    }

    #[test]
    fn import_blob_settings() {
        figment::Jail::expect_with(|jail| {
            let account = "[azure.accounts.dev]\naccount = \"devstoreaccount1\"\n\
                           credential = { kind = \"emulator\" }\n";
            jail.create_file(
                "b.toml",
                &format!(
                    "{account}[import]\nblob_sources = [\"dev\", \"dev/bulk-in\"]\n\
                     error_container = \"logs\"\nerror_account = \"dev\"\n\
                     blob_retry_seconds = 2\n"
                ),
            )?;
            jail.set_env("HEARTH_IMPORT__BLOB_RETRY_SECONDS", "3");
            let c = Config::load(Some(Path::new("b.toml")), &Overrides::default()).unwrap();
            let blob = c.import_config().blob;
            let sources: Vec<String> = blob.sources.into_iter().map(String::from).collect();
            assert_eq!(sources, ["dev", "dev/bulk-in"]);
            assert_eq!(blob.error_container, "logs");
            assert_eq!(blob.error_account.as_deref(), Some("dev"));
            assert_eq!(blob.retry.budget, Duration::from_secs(3));
            let defaults = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(defaults.import_config().blob.error_container, "fhirlogs");
            jail.clear_env();
            rejects_each(
                jail,
                &[
                    "[import]\nblob_sources = [\"dev\"]\n",
                    "[import]\nerror_account = \"dev\"\n",
                    &format!("{account}[import]\nblob_sources = [\"dev/Bad_Name\"]\n"),
                    &format!("{account}[import]\nerror_container = \"ab\"\n"),
                    &format!("{account}[import]\nblob_retry_seconds = 0\n"),
                ],
            )?;
            Ok(())
        });
    }

    #[test]
    fn plugins_section() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "[plugins.type_filter]\ncomponent = \"f.wasm\"\n\
                 [plugins.type_filter.limits]\ndeadline_ms = 50\n\
                 [plugins.type_filter.config]\nmode = \"strict\"\n\
                 [plugins.export_sink.grants]\ndirs = [\"/srv/out\"]\n",
            )?;
            let c = Config::load(Some(Path::new("p.toml")), &Overrides::default()).unwrap();
            let tf = &c.plugins.type_filter;
            assert_eq!(tf.component.as_deref(), Some(Path::new("f.wasm")));
            assert_eq!((tf.limits.deadline_ms, tf.limits.memory_mib), (50, 256));
            assert_eq!(tf.config.get("mode").map(String::as_str), Some("strict"));
            assert_eq!(
                c.plugins.export_sink.grants.dirs,
                vec![PathBuf::from("/srv/out")]
            );
            assert_eq!(c.plugins.group_resolver, PluginConfig::default());
            jail.create_file(
                "pin.toml",
                "[plugins.type_filter]\nsha256 = \"abc\"\ncomponent = \"f.wasm\"\n",
            )?;
            assert!(Config::load(Some(Path::new("pin.toml")), &Overrides::default()).is_err());
            jail.create_file("num.toml", "[plugins.type_filter.config]\nlimit = 3\n")?;
            assert!(Config::load(Some(Path::new("num.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn named_sinks() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "[plugins.sinks.deid]\ncomponent = \"d.wasm\"\n\
                 [plugins.sinks.deid.config]\nsecret = \"s\"\n\
                 [plugins.sinks.gz]\ncomponent = \"g.wasm\"\nextension = \"ndjson.gz\"\n",
            )?;
            let c = Config::load(Some(Path::new("s.toml")), &Overrides::default()).unwrap();
            let names: Vec<&str> = c.plugins.sinks.keys().map(String::as_str).collect();
            assert_eq!(names, ["deid", "gz"]);
            assert_eq!(
                c.plugins.sinks["gz"].extension.as_deref(),
                Some("ndjson.gz")
            );
            assert_eq!(c.plugins.sinks["deid"].config["secret"], "s");
            for (file, text) in [
                ("ext.toml", "[plugins.type_filter]\nextension = \"gz\"\n"),
                ("bad.toml", "[plugins.sinks.gz]\nextension = \"../x\"\n"),
                (
                    "dots.toml",
                    "[plugins.export_sink]\nextension = \"ndjson..gz\"\n",
                ),
                (
                    "name.toml",
                    "[plugins.sinks.\"a b\"]\ncomponent = \"g.wasm\"\n",
                ),
            ] {
                jail.create_file(file, text)?;
                assert!(
                    Config::load(Some(Path::new(file)), &Overrides::default()).is_err(),
                    "{file}"
                );
            }
            Ok(())
        });
    }
}
