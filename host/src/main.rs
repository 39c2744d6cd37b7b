use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use hearth::cli::{Cli, Command, DatasetCommand};
use hearth::config::{Config, LogConfig, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref(), &args.overrides())?;
            init_tracing(&config.log);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(hearth::server::run(config))?;
        }
        Command::Config(args) => {
            let config = Config::load(args.config.as_deref(), &args.overrides())?;
            print!("{}", toml::to_string_pretty(&config)?);
        }
        Command::Dataset(DatasetCommand::Scale { input, factor, output }) => {
            let summary = hearth::dataset::scale(&input, factor, &output)?;
            println!(
                "wrote {} resources ({} bytes) in {} files to {}",
                summary.resources,
                summary.bytes,
                summary.files,
                output.display()
            );
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
