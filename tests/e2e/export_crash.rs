//! `$export` survives SIGKILL. A system-level export of synthea-100, then a
//! Patient-level one, are each killed three times mid-export (once the
//! first output file is on disk; after the restart, once the resumed job
//! has exported more; after the next restart, at a seeded point between 40%
//! and 75% of the job), the server restarted on the same data dir each
//! time. Each job resumes and completes with exactly the expected
//! resources: no line missing, none repeated, no half-written file, no
//! leftover file in the job's folder; and a completed job outlives a clean
//! restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant as Clock};

use serde_json::Value;

use crate::support::{
    ExportFile, FILE_MAX_ENV, Resp, Sandbox, Server, by_key, count_by_type, count_lines_gz,
    expected_compartments, key_of, read_dataset, synthea_dir, version_of, without_server_meta,
};

/// Small files: many rollovers (and checkpoints) to land the kills between.
const FILE_MAX: &str = "100";
const ENV: &[(&str, &str)] = &[(FILE_MAX_ENV, FILE_MAX)];
const KILLS: usize = 3;

/// Files under `dir` whose name contains `.ndjson` (an export file, maybe
/// still being written), outside the plugin cache.
fn ndjson_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if !path.ends_with("plugin-cache") {
                n += ndjson_files(&path);
            }
        } else if e.file_name().to_string_lossy().contains(".ndjson") {
            n += 1;
        }
    }
    n
}

/// The number in `X-Progress` (e.g. `28,957 resources exported`), 0 if none.
fn exported(resp: &Resp) -> u64 {
    let p = resp.header("x-progress").unwrap_or_default();
    let digits: String = p
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// Kicks off `path`, kills the server [`KILLS`] times while the job runs
/// (restarting it on the same data dir each time) and returns the server
/// running after the last restart, the status URL and the final manifest.
async fn export_through_kills(
    sandbox: &mut Sandbox,
    mut srv: Server,
    path: &str,
    total: u64,
    rng: &mut fastrand::Rng,
) -> (Server, String, Value) {
    let status = srv.start_export(path).await;
    let files_before = ndjson_files(&sandbox.data_dir());
    let started = Clock::now();
    let mut mid_export_kills = 0;
    let mut progress_at_kill = 0;
    for cycle in 0..KILLS {
        // Poll quickly until the trigger of this cycle (or the end of the job).
        let late = rng.u64(total * 2 / 5..total * 3 / 4);
        let mut delay = Duration::from_millis(2);
        let mut seen = BTreeSet::new();
        loop {
            let resp = srv.get(&srv.local(&status)).await;
            if resp.status != 202 {
                break;
            }
            let done = exported(&resp);
            seen.insert(done);
            let fire = match cycle {
                // The first export file of this job is on disk.
                0 => ndjson_files(&sandbox.data_dir()) > files_before,
                // The resumed job got further than where it was killed.
                1 => done > progress_at_kill,
                // A seeded point in the middle part of the job (progress
                // moves in bigger steps near the end).
                _ => done >= late,
            };
            if fire {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{path}: cycle {cycle}: no trigger within 120 s"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
        let before = srv.get(&srv.local(&status)).await;
        let running = before.status == 202;
        if running {
            progress_at_kill = exported(&before);
            mid_export_kills += 1;
        }
        let killed = srv.kill().await;
        assert!(!killed.success(), "SIGKILL is not a clean exit: {killed}");
        eprintln!(
            "export crash: {path}: kill {cycle} at {:.2} s (progress seen {seen:?}, target {late}), {} (X-Progress {:?}), {} .ndjson files on disk",
            started.elapsed().as_secs_f64(),
            if running {
                "running"
            } else {
                "already finished"
            },
            before.header("x-progress"),
            ndjson_files(&sandbox.data_dir()),
        );
        srv = sandbox.start_env(&[], ENV).await;
        // The job is known after the restart: running again or done.
        let after = srv.get(&srv.local(&status)).await;
        assert!(
            matches!(after.status, 200 | 202),
            "{path}: after restart {cycle}: {} {}",
            after.status,
            after.text()
        );
        if !running {
            break;
        }
    }
    assert_eq!(
        mid_export_kills, KILLS,
        "{path}: every kill should land while the export runs"
    );
    let m = srv.await_manifest(&srv.local(&status), None).await;
    eprintln!(
        "export crash: {path}: completed {:.1} s after kick-off",
        started.elapsed().as_secs_f64()
    );
    (srv, status, m)
}

/// The output is exactly `expected` (each line its source at version 1),
/// every file whole and within the size limit, and the job's folder holds
/// exactly the listed files.
async fn check_exactly_once(
    srv: &Server,
    sandbox: &Sandbox,
    status: &str,
    m: &Value,
    sources: &HashMap<String, &Value>,
    expected: &BTreeSet<String>,
    what: &str,
) -> Vec<ExportFile> {
    assert!(
        m["error"].as_array().is_some_and(Vec::is_empty),
        "{what}: errors {}",
        m["error"]
    );
    // Every listed file downloads whole (every line parses, the count
    // matches), no resource twice, none missing, each its source.
    let files = srv.files(m, "output").await;
    let got = by_key(&files);
    let got_keys: BTreeSet<String> = got.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got_keys).collect();
    let extra: Vec<_> = got_keys.difference(expected).collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut missing_by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for k in &missing {
            *missing_by_type
                .entry(k.split('/').next().unwrap())
                .or_default() += 1;
        }
        let names: Vec<(&str, usize)> = files.iter().map(|f| (f.name(), f.lines.len())).collect();
        panic!(
            "{what}: {} exported, {} expected; {} missing ({missing_by_type:?}), e.g. {:?}; {} unexpected, e.g. {:?}; files: {names:?}",
            got_keys.len(),
            expected.len(),
            missing.len(),
            &missing[..missing.len().min(10)],
            extra.len(),
            &extra[..extra.len().min(10)],
        );
    }
    for (key, line) in &got {
        assert_eq!(version_of(line), 1, "{what}: {key}");
        assert_eq!(
            without_server_meta(line),
            without_server_meta(sources[key]),
            "{what}: {key} differs from its source"
        );
    }
    let max: usize = FILE_MAX.parse().unwrap();
    let mut names = BTreeSet::new();
    for f in &files {
        assert!(f.lines.len() <= max, "{}: {} lines", f.url, f.lines.len());
        assert!(
            names.insert(f.name().to_owned()),
            "{what}: {} listed twice",
            f.name()
        );
    }
    // The job's folder (`<data-dir>/exports/<job id>`) holds exactly the
    // listed files, each as downloaded: no leftover of an interrupted file.
    let job = status.rsplit('/').next().unwrap();
    let folder = sandbox.data_dir().join("exports").join(job);
    let on_disk: BTreeSet<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk, names, "{what}: files in {}", folder.display());
    for f in &files {
        assert_eq!(
            std::fs::read(folder.join(f.name())).unwrap(),
            f.bytes,
            "{what}: {} on disk vs downloaded",
            f.name()
        );
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_completes_exactly_once_across_sigkills() {
    let seed = std::env::var("HEARTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("export crash: seed {seed} (set HEARTH_CRASH_SEED to repeat)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let data = read_dataset(&synthea_dir());
    let sources: HashMap<String, &Value> = data.iter().map(|(_, r)| (key_of(r), r)).collect();
    let all: BTreeSet<String> = sources.keys().cloned().collect();
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start_env(&[], ENV).await;
    srv.load_transactions(&data, 500).await;

    // System level.
    let (srv, status, m) =
        export_through_kills(&mut sandbox, srv, "/$export", all.len() as u64, &mut rng).await;
    let files = check_exactly_once(&srv, &sandbox, &status, &m, &sources, &all, "system").await;
    assert_eq!(count_by_type(&files), count_lines_gz(&synthea_dir()));

    // A completed job outlives a clean restart: same manifest, same files.
    let stopped = srv.terminate().await;
    assert!(stopped.success(), "SIGTERM: {stopped}");
    let srv = sandbox.start_env(&[], ENV).await;
    let again = srv.await_manifest(&srv.local(&status), None).await;
    assert_eq!(again["transactionTime"], m["transactionTime"]);
    let listed = |m: &Value| -> Vec<(String, u64)> {
        m["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let url = e["url"].as_str().unwrap();
                (
                    url.rsplit('/').next().unwrap().to_owned(),
                    e["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(listed(&again), listed(&m), "manifest after a restart");
    for f in files.iter().step_by(25) {
        let resp = srv.download(&srv.local(&f.url), &[]).await.ok(200);
        assert_eq!(resp.body, f.bytes, "{} after a restart", f.name());
    }
    drop(files);

    // Patient level: every compartment, each resource once.
    let compartments = expected_compartments(&data);
    let in_compartments: BTreeSet<String> = compartments.values().flatten().cloned().collect();
    let (srv, status, m) = export_through_kills(
        &mut sandbox,
        srv,
        "/Patient/$export",
        in_compartments.len() as u64,
        &mut rng,
    )
    .await;
    check_exactly_once(
        &srv,
        &sandbox,
        &status,
        &m,
        &sources,
        &in_compartments,
        "Patient level",
    )
    .await;

    let stopped = srv.terminate().await;
    assert!(stopped.success(), "SIGTERM: {stopped}");
}
