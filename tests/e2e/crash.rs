//! Crash safety: concurrent single-resource writes, SIGKILL while they are in
//! flight, restart on the same data dir, three times. Every acknowledged write
//! must survive; a write in flight may or may not have landed, but nothing
//! else. Then the store itself is checked for internal consistency.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hearth::fhir::{Instant, ResourceId, ResourceType};
use hearth::store::{HistoryQuery, HistoryScope, Store, StoredVersion};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::{
    Http, Sandbox, collect_versions, etag_version, latest, open_store, version_of,
    without_server_meta,
};

const WRITERS: usize = 4;
const CYCLES: usize = 3;
/// Acknowledged writes per cycle before the kill may happen.
const MIN_ACKED: u64 = 40;

/// An acknowledged write: the version the server answered and the body sent.
#[derive(Clone, Debug)]
struct Acked {
    version: u64,
    body: Value,
}

/// What one writer knows: ids are `Type/id`, each owned by exactly one
/// writer, so the writes to one id are sequential.
#[derive(Default, Debug)]
struct Model {
    acked: BTreeMap<String, Acked>,
    /// The one write that was sent but not acknowledged when the server died.
    in_flight: Option<(String, Value)>,
}

fn patient_body(id: &str, n: u64) -> Value {
    json!({"resourceType": "Patient", "id": id, "birthDate": format!("{}-01-01", 1900 + n % 100), "name": [{"given": [format!("n{n}")]}]})
}

fn observation_body(id: &str, patient: &str, n: u64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"text": "crash-test"},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueInteger": n
    })
}

/// Writes until the server stops answering. Writer `w` owns `Patient/p{w}`
/// and the Observations it creates (`o{w}-...`); Observations point at any
/// writer's patient and move between patients on update.
async fn writer(
    http: Http,
    w: usize,
    cycle: usize,
    seed: u64,
    mut model: Model,
    acked_count: Arc<watch::Sender<u64>>,
) -> Model {
    let mut rng = fastrand::Rng::with_seed(seed);
    let own_patient = format!("Patient/p{w}");
    for n in 0u64.. {
        let observations: Vec<String> = model
            .acked
            .keys()
            .filter(|k| k.starts_with("Observation/"))
            .cloned()
            .collect();
        let (key, body) = match rng.u8(0..10) {
            0 => (own_patient.clone(), patient_body(&format!("p{w}"), n)),
            1..=4 if !observations.is_empty() => {
                let key = observations[rng.usize(..observations.len())].clone();
                let id = key.trim_start_matches("Observation/").to_owned();
                let body = observation_body(&id, &format!("p{}", rng.usize(..WRITERS)), n);
                (key, body)
            }
            _ => {
                let id = format!("o{w}-{cycle}-{n}");
                (
                    format!("Observation/{id}"),
                    observation_body(&id, &format!("p{}", rng.usize(..WRITERS)), n),
                )
            }
        };
        let expected = model.acked.get(&key).map_or(1, |a| a.version + 1);
        model.in_flight = Some((key.clone(), body.clone()));
        let Ok(resp) = http
            .try_send(Method::PUT, &format!("/{key}"), Some(&body), &[])
            .await
        else {
            return model; // the server is gone; this write is in flight
        };
        let want = if expected == 1 { 201 } else { 200 };
        let resp = resp.ok(want);
        let version = etag_version(&resp.header("etag").expect("ETag"));
        assert_eq!(version, expected, "{key}: acknowledged version");
        model.in_flight = None;
        model.acked.insert(key, Acked { version, body });
        acked_count.send_modify(|c| *c += 1);
    }
    unreachable!()
}

/// After a restart: every acknowledged write is there at its version or, if
/// the in-flight write to the same id landed, at the next one with that body.
/// Folds landed in-flight writes into the model.
async fn verify_and_resolve(http: &Http, models: &mut [Model]) -> (usize, usize) {
    let (mut landed, mut lost) = (0, 0);
    for model in models.iter_mut() {
        for (key, acked) in &model.acked {
            let in_flight_here = model.in_flight.as_ref().is_some_and(|(k, _)| k == key);
            let resp = http.get(&format!("/{key}")).await.ok(200);
            let got = resp.json();
            let version = etag_version(&resp.header("etag").expect("ETag"));
            assert_eq!(version, version_of(&got), "{key}: ETag and meta.versionId");
            if version == acked.version {
                assert_eq!(
                    without_server_meta(&got),
                    acked.body,
                    "{key}: acknowledged body"
                );
            } else {
                assert!(
                    in_flight_here && version == acked.version + 1,
                    "{key}: acknowledged version {}, found {version}",
                    acked.version
                );
            }
        }
        if let Some((key, body)) = model.in_flight.take() {
            let before = model.acked.get(&key).map_or(0, |a| a.version);
            let resp = http.get(&format!("/{key}")).await;
            if resp.status == 404 {
                assert_eq!(before, 0, "{key}: acknowledged, then lost");
                lost += 1;
                continue;
            }
            let got = resp.ok(200).json();
            let version = version_of(&got);
            if version == before {
                lost += 1;
            } else {
                assert_eq!(version, before + 1, "{key}");
                assert_eq!(without_server_meta(&got), body, "{key}: the in-flight body");
                model.acked.insert(key, Acked { version, body });
                landed += 1;
            }
        }
    }
    (landed, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed = std::env::var("HEARTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash: seed {seed} (set HEARTH_CRASH_SEED to repeat)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut sandbox = Sandbox::new();
    let mut srv = sandbox.start(&[]).await;
    let mut models: Vec<Model> = (0..WRITERS).map(|_| Model::default()).collect();
    for (w, model) in models.iter_mut().enumerate() {
        let body = patient_body(&format!("p{w}"), 0);
        srv.put(&format!("/Patient/p{w}"), &body).await.ok(201);
        model
            .acked
            .insert(format!("Patient/p{w}"), Acked { version: 1, body });
    }

    for cycle in 0..CYCLES {
        let (tx, mut rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let mut writers = JoinSet::new();
        for (w, model) in std::mem::take(&mut models).into_iter().enumerate() {
            let task_seed = rng.u64(..);
            writers.spawn(writer(
                srv.http.clone(),
                w,
                cycle,
                task_seed,
                model,
                tx.clone(),
            ));
        }
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|n| *n >= MIN_ACKED))
            .await
            .unwrap_or_else(|_| panic!("fewer than {MIN_ACKED} writes acknowledged in 60 s"))
            .expect("writers alive");
        tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        let status = srv.kill().await;
        assert!(!status.success(), "SIGKILL is not a clean exit: {status}");

        let mut results = Vec::new();
        while let Some(r) = writers.join_next().await {
            results.push(r.expect("writer task"));
        }
        // Restore writer order (JoinSet yields in completion order).
        results.sort_by_key(|m| {
            m.acked
                .keys()
                .find_map(|k| k.strip_prefix("Patient/p").map(str::to_owned))
                .unwrap_or_default()
        });
        models = results;
        let acked_this_cycle = *rx.borrow();

        srv = sandbox.start(&[]).await;
        let (landed, lost) = verify_and_resolve(&srv.http, &mut models).await;
        eprintln!(
            "crash: cycle {cycle}: {acked_this_cycle} acknowledged, in flight at the kill: {landed} landed, {lost} did not"
        );
    }

    let status = srv.terminate().await;
    assert!(
        status.success(),
        "SIGTERM should stop hearth cleanly, got {status}"
    );
    check_store(&sandbox, &models);
}

/// The store on its own: reads agree with instance history, stats with a full
/// scan, the model with the store, and the compartment index with the bodies
/// (now and at an earlier instant).
fn check_store(sandbox: &Sandbox, models: &[Model]) {
    let store = open_store(&sandbox.data_dir());
    let now = latest(&store);

    let mut live = 0u64;
    let mut versions = 0u64;
    let mut current: Vec<StoredVersion> = Vec::new();
    let mut histories: BTreeMap<String, Vec<StoredVersion>> = BTreeMap::new();
    for rtype in ResourceType::all().filter(|t| t.is_storable()) {
        for v in collect_versions(store.scan_type(rtype, now, None).expect("scan")) {
            let read = store
                .read(rtype, &v.id)
                .expect("read")
                .expect("scanned, so readable");
            assert_eq!(read, v, "{rtype}/{}: read vs scan", v.id);
            let scope = HistoryScope::Instance(rtype, v.id.clone());
            let page = store
                .history(
                    &scope,
                    &HistoryQuery {
                        count: 10_000,
                        ..Default::default()
                    },
                )
                .expect("history");
            assert!(page.next.is_none());
            assert_eq!(
                page.entries.first(),
                Some(&read),
                "{rtype}/{}: newest history entry vs read",
                v.id
            );
            let numbers: Vec<u64> = page.entries.iter().map(|e| e.meta.version).collect();
            let expected: Vec<u64> = (1..=read.meta.version).rev().collect();
            assert_eq!(numbers, expected, "{rtype}/{}: versions in history", v.id);
            versions += read.meta.version;
            if !read.meta.deleted {
                live += 1;
            }
            histories.insert(format!("{rtype}/{}", v.id), page.entries);
            current.push(read);
        }
    }
    let stats = store.stats().expect("stats");
    assert_eq!(stats.live_resources, live, "stats vs scan: live resources");
    assert_eq!(stats.versions, versions, "stats vs scan: versions");

    // The model (all in-flight writes resolved) is exactly the store.
    let model: BTreeMap<&String, &Acked> = models.iter().flat_map(|m| m.acked.iter()).collect();
    assert_eq!(
        model.len(),
        current.len(),
        "resources in the model vs the store"
    );
    for v in &current {
        let key = format!("{}/{}", v.rtype, v.id);
        let acked = model
            .get(&key)
            .unwrap_or_else(|| panic!("{key} was never written"));
        assert_eq!(v.meta.version, acked.version, "{key}");
        let body: Value = serde_json::from_slice(&v.body).expect("stored JSON");
        assert_eq!(without_server_meta(&body), acked.body, "{key}");
    }

    // Compartments, now and at the instant of a middle commit.
    let mut instants: Vec<Instant> = histories
        .values()
        .flatten()
        .map(|v| v.meta.last_updated)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    instants.sort();
    let middle = instants[instants.len() / 2];
    let mut moved = 0;
    for (snapshot, label) in [(now, "now"), (middle, "middle")] {
        for w in 0..WRITERS {
            let patient = format!("p{w}");
            let target = format!("Patient/{patient}");
            let mut expected = BTreeSet::new();
            for (key, history) in &histories {
                // The version as of `snapshot`: the newest with lastUpdated <= snapshot.
                let Some(v) = history.iter().find(|v| v.meta.last_updated <= snapshot) else {
                    continue;
                };
                let body: Value = serde_json::from_slice(&v.body).expect("stored JSON");
                if *key == target || body["subject"]["reference"] == target.as_str() {
                    expected.insert(key.clone());
                }
            }
            let got: BTreeSet<String> = collect_versions(
                store
                    .compartment(&ResourceId::parse(&patient).unwrap(), snapshot)
                    .expect("compartment"),
            )
            .iter()
            .map(|v| format!("{}/{}", v.rtype, v.id))
            .collect();
            assert_eq!(got, expected, "compartment of {target} at {label}");
        }
    }
    for history in histories.values() {
        let subjects: BTreeSet<String> = history
            .iter()
            .map(|v| {
                serde_json::from_slice::<Value>(&v.body).unwrap()["subject"]["reference"]
                    .to_string()
            })
            .collect();
        if subjects.len() > 1 {
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "no Observation changed patient: the compartment check would be weak"
    );
}
