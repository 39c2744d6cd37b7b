//! The `hearth` command line: parsing only; each subcommand calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigSource, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "FHIR R4 Bulk Data server extended by WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (defaults: 127.0.0.1:8080, data in ./hearth-data).
    Serve(ServeArgs),
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config(ServeArgs),
    /// Work with synthetic data sets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Inspect WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see examples/hearth.toml).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Public base URL for links (default: derived from the listen address).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Directory of precompiled plugins (default: <data-dir>/plugin-cache);
    /// servers sharing one skip compiling the same components again.
    #[arg(long)]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Directory of `$export` output files (default: <data-dir>/exports).
    #[arg(long)]
    pub export_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The file and flags, kept by the server to read the file again on a
    /// plugin reload.
    pub fn source(&self) -> ConfigSource {
        ConfigSource {
            file: self.config.clone(),
            flags: Overrides {
                listen: self.listen,
                base_url: self.base_url.clone(),
                max_body_bytes: self.max_body_bytes,
                data_dir: self.data_dir.clone(),
                plugin_cache_dir: self.plugin_cache_dir.clone(),
                export_dir: self.export_dir.clone(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Clone every patient of an NDJSON data set N times with fresh ids and
    /// rewritten references (for load tests and benchmarks).
    Scale {
        /// Folder of `<Type>.ndjson` or `<Type>.ndjson.gz` files.
        #[arg(long)]
        input: PathBuf,
        /// How many copies of each patient (1 = the input as is).
        #[arg(long)]
        factor: u32,
        /// Folder to write `<Type>.ndjson` files into.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Tell which plugin world and WIT version a component implements,
    /// whether this host accepts it, what it imports, and run a smoke call.
    /// Exits non-zero unless accepted and the call worked.
    Check {
        /// The component (`.wasm`) to inspect.
        file: PathBuf,
        /// A config value for the smoke call, as `[plugins.<kind>.config]`
        /// would give it (repeatable), for plugins that need one (the
        /// de-identification sink's `secret`).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<(String, String)>,
    },
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{arg}' is not KEY=VALUE"))
}
