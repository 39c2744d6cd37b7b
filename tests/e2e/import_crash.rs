//! `$import` survives SIGKILL. In each mode, an import of two copies of
//! synthea-100 (read in small ranges: many checkpoints to land between) is
//! killed three times while it runs (once it has made progress; after the
//! restart, once the resumed job got further; then at a seeded point
//! between 40% and 75%), the server restarted on the same data dir each
//! time. The job resumes and completes with every resource imported exactly
//! once: no line rejected (a line written twice would be a duplicate), and
//! every id with exactly one version.

use std::time::{Duration, Instant as Clock};

use crate::support::{
    IMPORT_SOURCES_ENV, RANGE_BYTES_ENV, Sandbox, import_body, imported_count, typed_inputs,
    write_synthea_copies,
};

const COPIES: usize = 2;
const RANGE_BYTES: &str = "65536";
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_import_resumes_exactly_once() {
    let mut rng = fastrand::Rng::with_seed(0x1a2b_3c4d);
    for mode in ["IncrementalLoad", "InitialLoad"] {
        let mut sandbox = Sandbox::new();
        let dir = sandbox.dir("in");
        let sources = format!("[\"{}\"]", dir.display());
        let env = [
            (IMPORT_SOURCES_ENV, sources.as_str()),
            (RANGE_BYTES_ENV, RANGE_BYTES),
        ];
        let files = write_synthea_copies(&dir, COPIES);
        let mut srv = sandbox.start_env(&[], &env).await;
        let status = srv
            .start_import(&import_body(Some(mode), &[], &typed_inputs(&files)))
            .await;
        let id = status.rsplit('/').next().unwrap().to_owned();
        let status = format!("/_operations/import/{id}");
        let started = Clock::now();
        let mut at_kill = 0;
        for cycle in 0..KILLS {
            let mut delay = Duration::from_millis(2);
            let mut target = None;
            let late = loop {
                let resp = srv.get(&status).await;
                assert_eq!(
                    resp.status,
                    202,
                    "{mode}: cycle {cycle}: the import ended before the kill (make it bigger): {}",
                    resp.text()
                );
                let (done, total) = resp.progress();
                let fire = match cycle {
                    0 => done > 0,
                    1 => done > at_kill,
                    _ => {
                        let total = total.expect("X-Progress with a total");
                        let target =
                            *target.get_or_insert_with(|| rng.u64(total * 2 / 5..total * 3 / 4));
                        done >= target.max(at_kill + 1)
                    }
                };
                if fire {
                    break done;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "{mode}: cycle {cycle}: no trigger within 180 s (X-Progress {:?})",
                    resp.header("x-progress")
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(20));
            };
            at_kill = late;
            let killed = srv.kill().await;
            assert!(!killed.success(), "SIGKILL is not a clean exit: {killed}");
            eprintln!(
                "import crash: {mode}: kill {cycle} at {:.2} s, progress {late}",
                started.elapsed().as_secs_f64()
            );
            srv = sandbox.start_env(&[], &env).await;
        }

        let done = srv.await_import(&status).await;
        assert_eq!(done["error"], serde_json::json!([]), "{mode}: {done}");
        let imported = imported_count(&done);
        let total: u64 = files.iter().map(|f| f.lines).sum();
        assert_eq!(imported, total, "{mode}: {done}");
        let mut per_type = std::collections::BTreeMap::<String, u64>::new();
        for f in &files {
            *per_type.entry(f.rtype.clone()).or_default() += f.lines;
        }
        for (rtype, lines) in per_type {
            let history = srv.type_history(&rtype).await;
            assert_eq!(history.len() as u64, lines, "{mode}: {rtype} ids");
            let versions: usize = history.values().map(Vec::len).sum();
            assert_eq!(
                versions as u64, lines,
                "{mode}: {rtype}: versions (a resource imported twice has two)"
            );
        }
        srv.terminate().await;
    }
}
