//! System `$export` throughput, kick-off to manifest, through the real server.
//!
//! ```text
//! cargo bench -p hearth --bench export                 # factors 1 and 10
//! cargo bench -p hearth --bench export -- --factor 1
//! cargo bench -p hearth --bench export -- --azurite    # to Azure Blob (Azurite)
//! cargo bench -p hearth --bench export -- --store-dir DIR  # keep the loaded stores in DIR, reuse them
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
//!    HTTP), against the system export's time: medians of alternating runs,
//!    timed by the client and by the server's job records (created to
//!    finished), then once more on a fresh server for its own peak RSS.
//!
//! Every export's status is polled at the same short interval, so polling
//! adds about as much to a short export as to a long one.
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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as Clock};

use hearth::dataset;
use hearth::fhir::ResourceType;
use hearth::store::Store;
use hearth::store::sled::SledStore;
use serde_json::Value;

mod support;
use support::Server;

const TARGET_MB_S: f64 = 250.0;
const TARGET_RSS_MB: f64 = 300.0;
const TARGET_FILTER_RATIO: f64 = 1.5;
const TARGET_GROUP_RATIO: f64 = 0.15;
const GROUP_EXPORT: &str = "/Group/bench-tenth/$export";
/// Alternating system and Group exports whose medians give the ratio.
const RATIO_ROUNDS: usize = 3;
/// Status poll interval, the same for every export: a coarser one adds up
/// to its length to each time, a larger share of a short export's.
const POLL: Duration = Duration::from_millis(5);
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/synthea-100");

struct Run {
    /// Kick-off to manifest, as the client sees it.
    secs: f64,
    /// Created to finished, as the server recorded the job.
    job_secs: f64,
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
    let manifest: Value = loop {
        let poll = client.get(&status_url).send().expect("poll");
        match poll.status().as_u16() {
            200 => break poll.json().expect("manifest"),
            202 => std::thread::sleep(POLL),
            other => panic!("export failed with {other}: {:?}", poll.text()),
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let job = status_url.rsplit('/').next().unwrap_or_default().to_owned();
    let job_secs = job_secs(client, server, &job);
    let output = manifest["output"].as_array().cloned().unwrap_or_default();
    let resources = output.iter().filter_map(|o| o["count"].as_u64()).sum();
    let run = Run {
        secs,
        job_secs,
        resources,
        bytes: 0,
    };
    (run, job)
}

/// The server's own record of job `job`: created (at kick-off) to finished,
/// in seconds (millisecond instants), from the operator's job list.
fn job_secs(client: &reqwest::blocking::Client, server: &Server, job: &str) -> f64 {
    let list: Value = client
        .get(format!("{}/_operations/export", server.base))
        .send()
        .and_then(|r| r.json())
        .expect("job list");
    let record = list["exports"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == job))
        .unwrap_or_else(|| panic!("job {job} not in {list}"));
    let instant = |field: &str| {
        let text = record[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} of {record}"));
        hearth::fhir::Instant::parse(text)
            .unwrap_or_else(|e| panic!("{field} of {record}: {e}"))
            .as_millis()
    };
    (instant("finished") - instant("created")) as f64 / 1e3
}

fn median(secs: &mut [f64]) -> f64 {
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

/// The medians of the client's and the server's times of `runs`.
fn medians(runs: &[Run]) -> (f64, f64) {
    let mut client: Vec<f64> = runs.iter().map(|r| r.secs).collect();
    let mut server: Vec<f64> = runs.iter().map(|r| r.job_secs).collect();
    (median(&mut client), median(&mut server))
}

/// A Group export of a tenth of the patients against the system export.
struct Ratio {
    members: usize,
    resources: u64,
    /// Medians, (kick-off to manifest, job created to finished).
    group: (f64, f64),
    system: (f64, f64),
    /// Peak RSS of a server that ran only the Group export.
    group_rss: f64,
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

/// The value after flag `name`, if given.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
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
    let kept = arg("--store-dir").map(PathBuf::from);
    let root = kept.as_deref().unwrap_or(tmp.path());
    let client = reqwest::blocking::Client::new();
    let mut rows = Vec::new();
    for factor in factors() {
        let data = tmp.path().join(format!("data-x{factor}"));
        let store_dir: PathBuf = root.join(format!("store-x{factor}"));
        let loaded = store_dir.join("bench-loaded");
        let group = {
            let store = SledStore::open(&store_dir).expect("open store");
            if !loaded.exists() {
                dataset::scale(Path::new(SOURCE), factor, &data).expect("generate");
                dataset::load(&store, &data, 1000).expect("load");
                let _ = std::fs::remove_dir_all(&data);
                std::fs::write(&loaded, b"").expect("mark the store loaded");
            }
            tenth_of_the_patients(&store)
        };
        let server = Server::start(&store_dir, &[]);
        let export_dir = store_dir.join("exports");
        let all = export(&client, &server, &export_dir, "/$export");
        let plain = export(&client, &server, &export_dir, "/$export?_type=Observation");
        let filtered = export(
            &client,
            &server,
            &export_dir,
            "/$export?_type=Observation&_typeFilter=Observation%3Fstatus%3Dfinal%26category%3Dvital-signs",
        );
        let put = client
            .put(format!("{}/Group/bench-tenth", server.base))
            .header("Content-Type", "application/fhir+json")
            .json(&group)
            .send()
            .expect("PUT the Group");
        assert!(put.status().is_success(), "{:?}", put.text());
        // The ratio is taken on medians of alternating runs: on a shared
        // machine one run of either can be off by a factor of two.
        let mut system = vec![all];
        let mut grouped = Vec::new();
        for round in 0..RATIO_ROUNDS {
            if round > 0 {
                system.push(export(&client, &server, &export_dir, "/$export"));
            }
            grouped.push(export(&client, &server, &export_dir, GROUP_EXPORT));
        }
        let rss = server.peak_rss_mb();
        drop(server);
        // The Group export's own peak: a fresh server that runs only it.
        let group_rss = {
            let server = Server::start(&store_dir, &[]);
            export(&client, &server, &export_dir, GROUP_EXPORT);
            server.peak_rss_mb()
        };
        let ratio = Ratio {
            members: group["member"].as_array().map_or(0, Vec::len),
            resources: grouped[0].resources,
            group: medians(&grouped),
            system: medians(&system),
            group_rss,
        };
        let all = system.swap_remove(0);
        eprintln!(
            "x{factor}: {} resources, {:.1} MB in {:.2} s",
            all.resources,
            all.bytes as f64 / 1e6,
            all.secs
        );
        eprintln!(
            "x{factor}: Group of {} patients: {} resources in {:.2} s",
            ratio.members, ratio.resources, ratio.group.0
        );
        rows.push((factor, all, plain, filtered, rss, ratio));
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
        "\n| scale | Group members | resources | Group export s | system export s | Group / system | by the server's job records: Group s / system s | Group / system | Group export alone: peak RSS MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (factor, _, _, _, _, r) in &rows {
        println!(
            "| ×{factor} | {} | {} | {:.3} | {:.3} | {:.1}% | {:.3} / {:.3} | {:.1}% | {:.0} |",
            r.members,
            r.resources,
            r.group.0,
            r.system.0,
            100.0 * r.group.0 / r.system.0,
            r.group.1,
            r.system.1,
            100.0 * r.group.1 / r.system.1,
            r.group_rss,
        );
    }
    println!(
        "\nMedians of {RATIO_ROUNDS} alternating system and Group exports; kick-off to manifest with a {} ms status poll, and created to finished as the server recorded the jobs.",
        POLL.as_millis()
    );
    println!(
        "\nTargets: ≥ {TARGET_MB_S} MB/s; peak RSS < {TARGET_RSS_MB} MB and not growing with data size; filtered within {TARGET_FILTER_RATIO}× of unfiltered; a Group of 10% of the patients within {:.0}% of the system export.",
        TARGET_GROUP_RATIO * 100.0
    );
}

/// A Group of every tenth Patient of the loaded set (sorted by id).
fn tenth_of_the_patients(store: &SledStore) -> Value {
    let patient = ResourceType::parse("Patient").expect("Patient type");
    let now = store.now().expect("store instant");
    let mut ids: Vec<String> = store
        .scan_type(patient, now, None)
        .expect("scan Patients")
        .map(|v| v.expect("Patient version"))
        .filter(|v| !v.meta.deleted)
        .map(|v| v.id.into_string())
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
        let server = Server::start(
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
