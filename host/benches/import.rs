//! `$import` throughput, kick-off to the 200 status, through the real server.
//!
//! ```text
//! cargo bench -p hearth --bench import                  # factors 1 and 10
//! cargo bench -p hearth --bench import -- --factor 10 --mode initial
//! cargo bench -p hearth --bench import -- --factor 1 --source both
//! ```
//!
//! Options: `--factor N[,N...]` (repeatable; default 1 and 10), `--mode
//! incremental|initial|both` (default incremental, the issue's target),
//! `--source file|azurite|both` (default file): with `azurite`, the files
//! are uploaded (untimed) to a local Azurite, which the server is configured
//! with as a blob source, and the inputs are their blob URLs.
//!
//! For each factor and mode: generate the scaled Synthea set
//! (`hearth::dataset::scale`, one plain NDJSON file per type) into the
//! `import` folder of a fresh data directory (the default import source),
//! start `hearth serve` on that directory (127.0.0.1, random port, default
//! configuration: the embedded import-validator, 2 ranges in parallel),
//! `POST /$import` every file with its `type`, and poll the status URL to the
//! 200. Timed from the kick-off to the 200; MB/s counts input NDJSON bytes;
//! peak RSS is the server process's `VmHWM`, read from /proc before it is
//! stopped. Generating the data is not timed and happens in this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as Clock};

use hearth::azure::emulator::Azurite;
use hearth::azure::{Accounts, AzureConfig};
use hearth::dataset;
use serde_json::{Value, json};

mod support;
use support::Server;

const TARGET_RES_S: f64 = 60_000.0;
const TARGET_RSS_MB: f64 = 500.0;
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/synthea-100");

struct Run {
    factor: u32,
    mode: &'static str,
    source: &'static str,
    secs: f64,
    resources: u64,
    errors: u64,
    bytes: u64,
    rss_mb: f64,
}

/// Every `<Type>.ndjson` of `dir` as an `input` part (its URL made by
/// `url`), with their size.
fn inputs(dir: &Path, url: impl Fn(&Path) -> String) -> (Vec<Value>, u64) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("data folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    let bytes = files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let parts = files
        .iter()
        .map(|p| {
            let rtype = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            json!({"name": "input", "part": [
                {"name": "type", "valueString": rtype},
                {"name": "url", "valueUri": url(p)},
            ]})
        })
        .collect();
    (parts, bytes)
}

/// Azurite with every `<Type>.ndjson` of `dir` uploaded to the container
/// `bench`; the accounts, and the server's environment to read them.
fn azurite(tmp: &Path, dir: &Path) -> (Azurite, Accounts, Vec<(&'static str, String)>) {
    let azurite = Azurite::start(&tmp.join("azurite")).expect("start Azurite");
    let mut config = AzureConfig::default();
    config.accounts.insert("bench".into(), azurite.account());
    let accounts = Accounts::new(&config).expect("accounts");
    let container = accounts.container("bench", "bench").expect("container");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        container.create().await.expect("create the container");
        for entry in std::fs::read_dir(dir).expect("data folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("read an input");
            container
                .blob_client(name)
                .put_block_blob(bytes)
                .await
                .expect("upload an input");
        }
    });
    let env = vec![
        (
            "HEARTH_AZURE__ACCOUNTS__BENCH__ACCOUNT",
            "devstoreaccount1".into(),
        ),
        (
            "HEARTH_AZURE__ACCOUNTS__BENCH__ENDPOINT",
            azurite.endpoint(),
        ),
        (
            "HEARTH_AZURE__ACCOUNTS__BENCH__CREDENTIAL__KIND",
            "emulator".into(),
        ),
        ("HEARTH_IMPORT__BLOB_SOURCES", "[\"bench/bench\"]".into()),
    ];
    (azurite, accounts, env)
}

fn import(
    client: &reqwest::blocking::Client,
    factor: u32,
    mode: &'static str,
    source: &'static str,
) -> Run {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let folder = data_dir.join("import");
    dataset::scale(Path::new(SOURCE), factor, &folder).expect("generate");
    let (blobs, env) = match source {
        "azurite" => {
            let (azurite, accounts, env) = azurite(tmp.path(), &folder);
            (Some((azurite, accounts)), env)
        }
        _ => (None, Vec::new()),
    };
    let (inputs, bytes) = inputs(&folder, |p| match &blobs {
        Some((_, accounts)) => {
            let name = p.file_name().unwrap().to_string_lossy();
            accounts
                .blob_url("bench", "bench", &name)
                .expect("blob URL")
        }
        None => format!("file://{}", p.display()),
    });
    let mut parameters = vec![
        json!({"name": "inputFormat", "valueString": "application/fhir+ndjson"}),
        json!({"name": "mode", "valueString": mode}),
    ];
    parameters.extend(inputs);
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    let server = Server::start(&data_dir, &env);
    let t = Clock::now();
    let kickoff = client
        .post(format!("{}/$import", server.base))
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "respond-async")
        .body(body.to_string())
        .send()
        .expect("kick-off");
    assert_eq!(kickoff.status().as_u16(), 202, "{:?}", kickoff.text());
    let status_url = kickoff.headers()["content-location"]
        .to_str()
        .expect("url")
        .to_owned();
    let mut wait = Duration::from_millis(10);
    let status: Value = loop {
        let poll = client.get(&status_url).send().expect("poll");
        match poll.status().as_u16() {
            200 => break poll.json().expect("status body"),
            202 => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            other => panic!("import failed with {other}: {:?}", poll.text()),
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let count = |key: &str| -> u64 {
        status[key]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|o| o["count"].as_u64()).sum())
    };
    Run {
        factor,
        mode,
        source,
        secs,
        resources: count("output"),
        errors: count("error"),
        bytes,
        rss_mb: server.peak_rss_mb(),
    }
}

fn args() -> (Vec<u32>, Vec<&'static str>, Vec<&'static str>) {
    let args: Vec<String> = std::env::args().collect();
    let values = |flag: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .flat_map(|w| w[1].split(',').map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let mut factors: Vec<u32> = values("--factor")
        .iter()
        .map(|f| f.trim().parse().expect("--factor takes numbers"))
        .collect();
    if factors.is_empty() {
        factors = vec![1, 10];
    }
    let modes = match values("--mode").first().map(String::as_str) {
        None | Some("incremental") => vec!["IncrementalLoad"],
        Some("initial") => vec!["InitialLoad"],
        Some("both") => vec!["IncrementalLoad", "InitialLoad"],
        Some(other) => panic!("--mode takes incremental, initial or both, not {other}"),
    };
    let sources = match values("--source").first().map(String::as_str) {
        None | Some("file") => vec!["file"],
        Some("azurite") => vec!["azurite"],
        Some("both") => vec!["file", "azurite"],
        Some(other) => panic!("--source takes file, azurite or both, not {other}"),
    };
    (factors, modes, sources)
}

fn main() {
    let (factors, modes, sources) = args();
    let client = reqwest::blocking::Client::new();
    let mut runs = Vec::new();
    for &factor in &factors {
        for (&mode, &source) in modes
            .iter()
            .flat_map(|m| sources.iter().map(move |s| (m, s)))
        {
            let run = import(&client, factor, mode, source);
            eprintln!(
                "x{factor} {mode} from {source}: {} resources ({} rejected), {:.1} MB in {:.2} s",
                run.resources,
                run.errors,
                run.bytes as f64 / 1e6,
                run.secs
            );
            runs.push(run);
        }
    }
    println!(
        "\n`cargo bench -p hearth --bench import` (kick-off to 200, real server over 127.0.0.1, default validator)\n"
    );
    println!(
        "| scale | mode | source | resources | rejected | NDJSON MB | seconds | resources/s | MB/s | server peak RSS MB |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let mb = r.bytes as f64 / 1e6;
        println!(
            "| ×{} | {} | {} | {} | {} | {mb:.1} | {:.2} | {:.0} | {:.1} | {:.0} |",
            r.factor,
            r.mode,
            r.source,
            r.resources,
            r.errors,
            r.secs,
            r.resources as f64 / r.secs,
            mb / r.secs,
            r.rss_mb
        );
    }
    println!(
        "\nTargets (×10, IncrementalLoad): ≥ {TARGET_RES_S} resources/s, peak RSS < {TARGET_RSS_MB} MB."
    );
}
