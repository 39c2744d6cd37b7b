//! System `$export` throughput, kick-off to manifest, through the real server.
//!
//! ```text
//! cargo bench -p hearth --bench export                 # factors 1 and 10
//! cargo bench -p hearth --bench export -- --factor 1
//! cargo bench -p hearth --bench export -- --azurite    # to Azure Blob (Azurite)
//! ```
//!
//! For each factor: generate the scaled Synthea set (`hearth::dataset::scale`),
//! bulk-load it into a fresh data directory (`hearth::dataset::load`), start
//! `hearth serve` on it (127.0.0.1, random port), then time over HTTP:
//! 1. a system export of every type, kick-off to the 200 manifest;
//! 2. `_type=Observation` unfiltered, and with a `_typeFilter` through the
//!    default type-filter plugin (the same types, so the ratio isolates the
//!    filter's cost);
//! 3. `Group/{id}/$export` of a Group of every tenth Patient (10%, PUT over
//!    HTTP), against the system export's time.
//!
//! MB/s counts the bytes of the NDJSON files written; peak RSS is the server
//! process's `VmHWM`, read from /proc before it is stopped. Loading is not
//! timed and happens in this process, not the server's.
//!
//! With `--azurite` the server exports to Azure Blob Storage instead: an
//! Azurite on 127.0.0.1 (`make test` installs it) is the destination, and
//! only the system export is timed (best of `BLOB_ROUNDS`), MB/s counted
//! on the blobs written. Azurite runs on the same two cores, so its CPU
//! time over the export (utime + stime from /proc/<pid>/stat) against the
//! wall time is reported as its share, next to the server's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as Clock};

use hearth::dataset;
use hearth::store::sled::SledStore;
use serde_json::Value;

const TARGET_MB_S: f64 = 250.0;
const TARGET_RSS_MB: f64 = 300.0;
const TARGET_FILTER_RATIO: f64 = 1.5;
const TARGET_GROUP_RATIO: f64 = 0.15;
/// Alternating system and Group exports whose medians give the ratio.
const RATIO_ROUNDS: usize = 3;
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/synthea-100");

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        Self::start_env(data_dir, &[])
    }

    /// With these `HEARTH_*` settings.
    fn start_env(data_dir: &Path, env: &[(&str, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hearth");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("hearth: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, base }
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    secs: f64,
    resources: u64,
    bytes: u64,
}

/// Kicks off `path` (`/$export?...`, `/Group/{id}/$export`), polls to
/// completion, sums the files.
fn export(
    client: &reqwest::blocking::Client,
    server: &Server,
    export_dir: &Path,
    path: &str,
) -> Run {
    let (mut run, job) = export_job(client, server, path);
    run.bytes = dir_bytes(&export_dir.join(&job));
    let _ = client
        .delete(format!("{}/_operations/export/{job}", server.base))
        .send();
    run
}

/// Kicks off `path`, polls to completion: the time and resources (bytes
/// left at 0 for the caller to count) and the job id.
fn export_job(client: &reqwest::blocking::Client, server: &Server, path: &str) -> (Run, String) {
    let t = Clock::now();
    let kickoff = client
        .get(format!("{}{path}", server.base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .expect("kick-off");
    assert_eq!(kickoff.status().as_u16(), 202, "{:?}", kickoff.text());
    let status_url = kickoff.headers()["content-location"]
        .to_str()
        .expect("url")
        .to_owned();
    let mut wait = Duration::from_millis(10);
    let manifest: Value = loop {
        let poll = client.get(&status_url).send().expect("poll");
        match poll.status().as_u16() {
            200 => break poll.json().expect("manifest"),
            202 => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            other => panic!("export failed with {other}: {:?}", poll.text()),
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let job = status_url.rsplit('/').next().unwrap_or_default().to_owned();
    let output = manifest["output"].as_array().cloned().unwrap_or_default();
    let resources = output.iter().filter_map(|o| o["count"].as_u64()).sum();
    let run = Run {
        secs,
        resources,
        bytes: 0,
    };
    (run, job)
}

fn median(secs: &mut [f64]) -> f64 {
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn factors() -> Vec<u32> {
    let args: Vec<String> = std::env::args().collect();
    let given: Vec<u32> = args
        .windows(2)
        .filter(|w| w[0] == "--factor")
        .flat_map(|w| {
            w[1].split(',')
                .map(|f| f.trim().parse().expect("--factor takes numbers"))
                .collect::<Vec<_>>()
        })
        .collect();
    if given.is_empty() { vec![1, 10] } else { given }
}

fn main() {
    if std::env::args().any(|a| a == "--azurite") {
        return blob_main();
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let client = reqwest::blocking::Client::new();
    let mut rows = Vec::new();
    for factor in factors() {
        let data = tmp.path().join(format!("data-x{factor}"));
        let store_dir: PathBuf = tmp.path().join(format!("store-x{factor}"));
        dataset::scale(Path::new(SOURCE), factor, &data).expect("generate");
        let group = tenth_of_the_patients(&data);
        {
            let store = SledStore::open(&store_dir).expect("open store");
            dataset::load(&store, &data, 1000).expect("load");
        }
        let _ = std::fs::remove_dir_all(&data);
        let server = Server::start(&store_dir);
        let export_dir = store_dir.join("exports");
        let all = export(&client, &server, &export_dir, "/$export");
        let plain = export(&client, &server, &export_dir, "/$export?_type=Observation");
        let filtered = export(
            &client,
            &server,
            &export_dir,
            "/$export?_type=Observation&_typeFilter=Observation%3Fstatus%3Dfinal%26category%3Dvital-signs",
        );
        let members = group["member"].as_array().map_or(0, Vec::len);
        let put = client
            .put(format!("{}/Group/bench-tenth", server.base))
            .header("Content-Type", "application/fhir+json")
            .json(&group)
            .send()
            .expect("PUT the Group");
        assert!(put.status().is_success(), "{:?}", put.text());
        // The ratio is taken on medians of alternating runs: on a shared
        // machine one run of either can be off by a factor of two.
        let mut system_secs = vec![all.secs];
        let mut group_secs = Vec::new();
        let mut grouped = export(&client, &server, &export_dir, "/Group/bench-tenth/$export");
        group_secs.push(grouped.secs);
        for _ in 1..RATIO_ROUNDS {
            system_secs.push(export(&client, &server, &export_dir, "/$export").secs);
            grouped = export(&client, &server, &export_dir, "/Group/bench-tenth/$export");
            group_secs.push(grouped.secs);
        }
        grouped.secs = median(&mut group_secs);
        let system_median = median(&mut system_secs);
        let rss = server.peak_rss_mb();
        eprintln!(
            "x{factor}: {} resources, {:.1} MB in {:.2} s",
            all.resources,
            all.bytes as f64 / 1e6,
            all.secs
        );
        eprintln!(
            "x{factor}: Group of {members} patients: {} resources in {:.2} s",
            grouped.resources, grouped.secs
        );
        rows.push((
            factor,
            all,
            plain,
            filtered,
            rss,
            (members, grouped, system_median),
        ));
    }
    println!(
        "\n`cargo bench -p hearth --bench export` (system level, kick-off to manifest, real server over 127.0.0.1)\n"
    );
    println!(
        "| scale | resources | MB written | seconds | resources/s | MB/s | Observation s | Observation + `_typeFilter` s | filter ratio | server peak RSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (factor, all, plain, filtered, rss, _) in &rows {
        let mb = all.bytes as f64 / 1e6;
        println!(
            "| ×{factor} | {} | {mb:.1} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2} ({} of {} kept) | {:.2}× | {rss:.0} |",
            all.resources,
            all.secs,
            all.resources as f64 / all.secs,
            mb / all.secs,
            plain.secs,
            filtered.secs,
            filtered.resources,
            plain.resources,
            filtered.secs / plain.secs,
        );
    }
    println!(
        "\n| scale | Group members | resources | Group export s (median of {RATIO_ROUNDS}) | system export s (median of {RATIO_ROUNDS}) | Group / system |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (factor, _, _, _, _, (members, grouped, system)) in &rows {
        println!(
            "| ×{factor} | {members} | {} | {:.2} | {system:.2} | {:.1}% |",
            grouped.resources,
            grouped.secs,
            100.0 * grouped.secs / system
        );
    }
    println!(
        "\nTargets: ≥ {TARGET_MB_S} MB/s; peak RSS < {TARGET_RSS_MB} MB and not growing with data size; filtered within {TARGET_FILTER_RATIO}× of unfiltered; a Group of 10% of the patients within {:.0}% of the system export.",
        TARGET_GROUP_RATIO * 100.0
    );
}

/// A Group of every tenth Patient of the generated set (sorted by id).
fn tenth_of_the_patients(data: &Path) -> Value {
    let mut ids: Vec<String> = dataset::read_dir_resources(data)
        .expect("generated set")
        .filter_map(|item| {
            let (rtype, line) = item.expect("generated line");
            if rtype.as_str() != "Patient" {
                return None;
            }
            let patient: Value = serde_json::from_slice(&line).expect("JSON");
            patient["id"].as_str().map(str::to_owned)
        })
        .collect();
    ids.sort();
    let member: Vec<Value> = ids
        .iter()
        .step_by(10)
        .map(|id| serde_json::json!({"entity": {"reference": format!("Patient/{id}")}}))
        .collect();
    serde_json::json!({"resourceType": "Group", "id": "bench-tenth", "type": "person",
                       "actual": true, "member": member})
}

/// System exports to Azurite per timed round; the best is reported.
const BLOB_ROUNDS: usize = 2;

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime
    // and stime fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_sec
}

/// Bytes of the blobs of an export: the job's own container.
fn blob_bytes(accounts: &hearth::azure::Accounts, container: &str) -> u64 {
    use futures::StreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = accounts.container("bench", container).expect("account");
    runtime.block_on(async {
        let mut pages = client.list_blobs().into_stream();
        let mut bytes = 0;
        while let Some(page) = pages.next().await {
            let page = page.expect("list the export's blobs");
            bytes += page
                .blobs
                .blobs()
                .map(|b| b.properties.content_length)
                .sum::<u64>();
        }
        bytes
    })
}

/// `--azurite`: system exports of each factor to Azurite.
fn blob_main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let client = reqwest::blocking::Client::new();
    let mut rows = Vec::new();
    for factor in factors() {
        let data = tmp.path().join(format!("data-x{factor}"));
        let store_dir: PathBuf = tmp.path().join(format!("store-x{factor}"));
        dataset::scale(Path::new(SOURCE), factor, &data).expect("generate");
        {
            let store = SledStore::open(&store_dir).expect("open store");
            dataset::load(&store, &data, 1000).expect("load");
        }
        let _ = std::fs::remove_dir_all(&data);
        let azurite =
            hearth::azure::emulator::Azurite::start(&tmp.path().join(format!("azurite-x{factor}")))
                .expect("start Azurite (make test installs it)");
        let accounts = hearth::azure::Accounts::new(&hearth::azure::AzureConfig {
            accounts: [("bench".to_owned(), azurite.account())].into(),
        })
        .expect("account");
        let server = Server::start_env(
            &store_dir,
            &[
                (
                    "HEARTH_AZURE__ACCOUNTS__BENCH__ACCOUNT",
                    azurite.account().account,
                ),
                (
                    "HEARTH_AZURE__ACCOUNTS__BENCH__ENDPOINT",
                    azurite.endpoint(),
                ),
                (
                    "HEARTH_AZURE__ACCOUNTS__BENCH__CREDENTIAL__KIND",
                    "emulator".into(),
                ),
                ("HEARTH_EXPORT__DESTINATION", "bench".into()),
            ],
        );
        let azurite_pid = azurite.pid().expect("Azurite runs");
        let mut best: Option<(Run, f64, f64)> = None;
        for _ in 0..BLOB_ROUNDS {
            let (azurite_before, server_before) =
                (cpu_secs(azurite_pid), cpu_secs(server.child.id()));
            let (mut run, job) = export_job(&client, &server, "/$export");
            let azurite_cpu = cpu_secs(azurite_pid) - azurite_before;
            let server_cpu = cpu_secs(server.child.id()) - server_before;
            run.bytes = blob_bytes(&accounts, &job);
            let _ = client
                .delete(format!("{}/_operations/export/{job}", server.base))
                .send();
            if best.as_ref().is_none_or(|(b, _, _)| run.secs < b.secs) {
                best = Some((run, azurite_cpu, server_cpu));
            }
        }
        let (run, azurite_cpu, server_cpu) = best.expect("a round");
        let rss = server.peak_rss_mb();
        eprintln!(
            "x{factor} to Azurite: {} resources, {:.1} MB in {:.2} s",
            run.resources,
            run.bytes as f64 / 1e6,
            run.secs
        );
        rows.push((factor, run, rss, azurite_cpu, server_cpu));
    }
    println!(
        "\n`cargo bench -p hearth --bench export -- --azurite` (system level to Azure Blob on Azurite, kick-off to manifest, best of {BLOB_ROUNDS})\n"
    );
    println!(
        "| scale | resources | MB written | seconds | MB/s | server peak RSS MB | Azurite CPU s (share of wall) | server CPU s (share of wall) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (factor, run, rss, azurite_cpu, server_cpu) in &rows {
        let mb = run.bytes as f64 / 1e6;
        println!(
            "| ×{factor} | {} | {mb:.1} | {:.2} | {:.1} | {rss:.0} | {azurite_cpu:.1} ({:.0}%) | {server_cpu:.1} ({:.0}%) |",
            run.resources,
            run.secs,
            mb / run.secs,
            100.0 * azurite_cpu / run.secs,
            100.0 * server_cpu / run.secs,
        );
    }
}
