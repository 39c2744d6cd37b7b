//! Loads all of synthea-100 through transaction Bundles, reads every resource
//! back, counts per type, then checks Patient compartments in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant as Clock;

use hearth::fhir::{ResourceId, ResourceType};
use hearth::store::Store;
use tokio::task::JoinSet;

use crate::support::{
    Sandbox, check_reference_paths, collect_versions, count_lines_gz, expected_compartments,
    history_key, latest, open_store, read_dataset, synthea_dir, without_server_meta,
};

const ENTRIES_PER_BUNDLE: usize = 500;
const READERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_read_back_count_and_compartments() {
    let started = Clock::now();
    let data = Arc::new(read_dataset(&synthea_dir()));
    let file_counts = count_lines_gz(&synthea_dir());
    assert_eq!(
        file_counts.values().sum::<u64>(),
        38_472,
        "tests/data/README.md promises 38,472 resources"
    );
    assert_eq!(data.len() as u64, 38_472);
    check_reference_paths(&data);

    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    // Load: transactions of PUT Type/id (ids kept).
    srv.load_transactions(&data, ENTRIES_PER_BUNDLE).await;
    eprintln!(
        "synthea: loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Read every resource back and compare with its source line.
    let mut readers = JoinSet::new();
    for worker in 0..READERS {
        let (http, data) = (srv.http.clone(), data.clone());
        readers.spawn(async move {
            for (rtype, source) in data.iter().skip(worker).step_by(READERS) {
                let path = format!("/{rtype}/{}", source["id"].as_str().unwrap());
                let got = http.get(&path).await.ok(200).json();
                assert_eq!(got["meta"]["versionId"], "1", "{path}");
                assert_eq!(
                    without_server_meta(&got),
                    without_server_meta(source),
                    "{path} differs from its source"
                );
            }
        });
    }
    while let Some(r) = readers.join_next().await {
        r.expect("reader task");
    }
    eprintln!(
        "synthea: read back in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Counts per type: type history (one version each) against the files.
    for (rtype, &expected) in &file_counts {
        let pages = srv
            .all_pages(&format!("/{rtype}/_history?_count=1000"))
            .await;
        let keys: BTreeSet<(String, u64)> = pages.iter().flatten().map(history_key).collect();
        assert_eq!(
            keys.len() as u64,
            expected,
            "{rtype}: distinct versions in type history"
        );
        assert_eq!(
            pages.iter().map(Vec::len).sum::<usize>() as u64,
            expected,
            "{rtype}: history entries"
        );
    }
    eprintln!(
        "synthea: counted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let status = srv.terminate().await;
    assert!(
        status.success(),
        "SIGTERM should stop hearth cleanly, got {status}"
    );

    // The store itself: counts and compartments.
    let store = open_store(&sandbox.data_dir());
    let now = latest(&store);
    let stats = store.stats().expect("stats");
    assert_eq!(stats.live_resources, 38_472);
    assert_eq!(stats.versions, 38_472);
    let mut scanned = BTreeMap::new();
    for rtype in ResourceType::all().filter(|t| t.is_storable()) {
        let n = collect_versions(store.scan_type(rtype, now, None).expect("scan")).len() as u64;
        if n > 0 {
            scanned.insert(rtype.to_string(), n);
        }
    }
    assert_eq!(scanned, file_counts);

    // Every patient's compartment (100 of them: cheap enough to check all).
    let patients: Vec<&str> = data
        .iter()
        .filter(|(t, _)| t == "Patient")
        .map(|(_, r)| r["id"].as_str().unwrap())
        .collect();
    let compartments = expected_compartments(&data);
    assert_eq!(patients.len(), 100);
    let mut members = 0;
    for patient in patients {
        let expected = &compartments[patient];
        let got = collect_versions(
            store
                .compartment(&ResourceId::parse(patient).unwrap(), now)
                .expect("compartment"),
        );
        let keys: Vec<String> = got
            .iter()
            .map(|v| format!("{}/{}", v.rtype, v.id))
            .collect();
        let mut sorted = got
            .iter()
            .map(|v| (v.rtype, v.id.clone()))
            .collect::<Vec<_>>();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            got.iter()
                .map(|v| (v.rtype, v.id.clone()))
                .collect::<Vec<_>>(),
            sorted,
            "compartment of {patient}: not ordered by type then id, or repeated"
        );
        assert_eq!(
            &keys.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "compartment of {patient}"
        );
        for v in &got {
            assert!(!v.meta.deleted);
            assert_eq!(Some(v), store.read(v.rtype, &v.id).expect("read").as_ref());
        }
        members += got.len();
    }
    eprintln!("synthea: {members} compartment members checked");
    eprintln!("synthea: done in {:.1} s", started.elapsed().as_secs_f64());
}
