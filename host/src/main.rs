use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use hearth::cli::{Cli, Command, DatasetCommand, PluginCommand};
use hearth::config::{LogConfig, LogFormat};

// The store's write path allocates heavily (parsed JSON trees, sled's
// copy-on-write nodes); mimalloc measured ~20% faster bulk writes than glibc
// malloc here (`cargo bench -p hearth --bench store`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let source = args.source();
            let config = source.load()?;
            init_tracing(&config.log);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(hearth::server::run(config, source))?;
        }
        Command::Config(args) => {
            let config = args.source().load()?;
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
        Command::Plugin(PluginCommand::Check { file, set }) => {
            let report = hearth::plugins::check_component(&file, set.into_iter().collect())?;
            print!("{report}");
            if !report.passed() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// mimalloc asks for transparent huge pages on its arenas (and a kernel in
/// THP "always" mode gives them anyway): a 2 MiB page counts whole in RSS
/// however little of it is in use, which measured 40-60 MB more RSS idle and
/// at the ×10 export's peak (README, Export). Turning THP off for the
/// process applies to the arenas already mapped, for their next faults.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; the
    // unused arguments must be zero.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
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
