use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use hearth::cli::{Cli, Command, DatasetCommand, PluginCommand};
use hearth::config::{Config, LogConfig, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref(), &args.overrides())?;
            init_tracing(&config.log);
            // Loaded before serving so that a bad plugin config fails the start.
            let plugins =
                std::sync::Arc::new(hearth::plugins::PluginRegistry::for_config(&config)?);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let (file, flags) = (args.config.clone(), args.overrides());
                let reread = move || {
                    Config::load(file.as_deref(), &flags)
                        .map(|c| c.plugins)
                        .map_err(|e| e.to_string())
                };
                let _reloader = plugins
                    .clone()
                    .reload_on_sighup(reread)
                    .context("listening for SIGHUP")?;
                hearth::server::run(config)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
        }
        Command::Config(args) => {
            let config = Config::load(args.config.as_deref(), &args.overrides())?;
            print!("{}", toml::to_string_pretty(&config)?);
        }
        Command::Dataset(DatasetCommand::Scale {
            input,
            factor,
            output,
        }) => {
            let summary = hearth::dataset::scale(&input, factor, &output)?;
            println!(
                "wrote {} resources ({} bytes) in {} files to {}",
                summary.resources,
                summary.bytes,
                summary.files,
                output.display()
            );
        }
        Command::Plugin(PluginCommand::Check { file }) => {
            let report = hearth::plugins::check_component(&file)?;
            print!("{report}");
            if !report.passed() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

fn init_tracing(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
