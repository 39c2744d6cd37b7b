//! The round trip: server A holds synthea-100 loaded through the REST API
//! plus updates, deletes and re-creations; its system export with
//! `includeAssociatedData=_history,_deleted` is downloaded and imported
//! (IncrementalLoad) into an empty server B. The two stores are then equal:
//!
//! - for every type and id, the same versions (numbers), each with the same
//!   `lastUpdated` and the same deleted state, as `GET /{type}/_history`
//!   lists them (a deleted version is a DELETE entry on both sides);
//! - every live version has the same bytes through `vread` on both;
//! - every deleted version answers `vread` with 410 on both.
//!
//! The one normalisation is the deleted state itself: A's tombstone has no
//! body, while the export writes it as the last live content carrying the
//! `deleted-state` marker and B stores it as a deleted version; neither
//! serves that content, so the API shows the two the same.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    HistoryVersion, Http, IMPORT_SOURCES_ENV, Sandbox, file_url, import_body, import_input,
    imported_count, read_dataset, synthea_dir,
};

/// Concurrent reads when comparing versions.
const READERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_with_history_and_deleted_imports_into_an_equal_store() {
    let data = read_dataset(&synthea_dir());
    let types: BTreeSet<String> = data.iter().map(|(t, _)| t.clone()).collect();

    // Server A: the data set, then a history of changes through the API.
    let mut sandbox_a = Sandbox::new();
    let a = sandbox_a.start(&[]).await;
    a.load_transactions(&data, 500).await;
    let of_type = |rtype: &str| -> Vec<&Value> {
        data.iter()
            .filter(|(t, _)| t == rtype)
            .map(|(_, r)| r)
            .collect()
    };
    let patients = of_type("Patient");
    let observations = of_type("Observation");
    let conditions = of_type("Condition");
    // Patients updated once or twice.
    for (i, p) in patients.iter().take(40).enumerate() {
        let id = p["id"].as_str().unwrap();
        let mut changed = (*p).clone();
        changed["gender"] = json!("other");
        a.put(&format!("/Patient/{id}"), &changed).await.ok(200);
        if i % 2 == 0 {
            changed["active"] = json!(false);
            a.put(&format!("/Patient/{id}"), &changed).await.ok(200);
        }
    }
    // Observations deleted, some after an update.
    for (i, o) in observations.iter().step_by(97).take(60).enumerate() {
        let id = o["id"].as_str().unwrap();
        if i % 3 == 0 {
            let mut changed = (*o).clone();
            changed["status"] = json!("amended");
            a.put(&format!("/Observation/{id}"), &changed).await.ok(200);
        }
        a.delete(&format!("/Observation/{id}")).await.ok(204);
    }
    // Conditions deleted, then created again: live after a tombstone.
    for c in conditions.iter().take(10) {
        let id = c["id"].as_str().unwrap();
        a.delete(&format!("/Condition/{id}")).await.ok(204);
        a.put(&format!("/Condition/{id}"), c).await.ok(201);
    }
    // A resource the data set does not have, created and deleted.
    let gone = json!({"resourceType": "Patient", "id": "short-lived", "gender": "male"});
    a.put("/Patient/short-lived", &gone).await.ok(201);
    a.delete("/Patient/short-lived").await.ok(204);

    let (_, manifest) = a
        .export("/$export?includeAssociatedData=_history,_deleted")
        .await;
    assert_eq!(manifest["error"], json!([]), "{manifest}");

    // The files, downloaded into B's import source.
    let mut sandbox_b = Sandbox::new();
    let dir = sandbox_b.dir("in");
    let files = a.files(&manifest, "output").await;
    let mut inputs = Vec::new();
    let mut lines = 0;
    for f in &files {
        let path = dir.join(f.name());
        std::fs::write(&path, &f.bytes).unwrap();
        inputs.push(import_input(Some(&f.rtype), &file_url(&path), None));
        lines += f.lines.len() as u64;
    }
    let sources = format!("[\"{}\"]", dir.display());
    let b = sandbox_b
        .start_env(&[], &[(IMPORT_SOURCES_ENV, &sources)])
        .await;
    let (_, done) = b
        .import(&import_body(Some("IncrementalLoad"), &[], &inputs))
        .await;
    assert_eq!(done["error"], json!([]), "{done}");
    let imported = imported_count(&done);
    assert_eq!(imported, lines);

    // Equal histories...
    let mut live = Vec::new();
    let mut deleted = Vec::new();
    let mut versions = 0;
    for rtype in &types {
        let (ha, hb) = (a.type_history(rtype).await, b.type_history(rtype).await);
        assert_eq!(ha.len(), hb.len(), "{rtype}: ids");
        for (id, va) in &ha {
            let vb = hb
                .get(id)
                .unwrap_or_else(|| panic!("{rtype}/{id} is not in B"));
            assert_eq!(va, vb, "{rtype}/{id}: versions");
            for HistoryVersion {
                version,
                deleted: d,
                ..
            } in va
            {
                let path = format!("/{rtype}/{id}/_history/{version}");
                if *d {
                    deleted.push(path)
                } else {
                    live.push(path)
                }
                versions += 1;
            }
        }
    }
    eprintln!(
        "round trip: {} types, {versions} versions ({} deleted) equal",
        types.len(),
        deleted.len()
    );
    assert!(deleted.len() > 60 + 10, "the deletes are in the histories");
    assert!(versions > data.len(), "the updates are in the histories");

    // ... equal bytes of every live version, 410 for every deleted one.
    let (a, b) = (Arc::new(a.http.clone()), Arc::new(b.http.clone()));
    let differences = compare_versions(&a, &b, live).await;
    assert!(differences.is_empty(), "vread differs: {differences:?}");
    for path in &deleted {
        a.get(path).await.outcome(410);
        b.get(path).await.outcome(410);
    }
}

/// `vread`s every path on both servers ([`READERS`] at a time); returns the
/// paths whose status or bytes differ.
async fn compare_versions(a: &Arc<Http>, b: &Arc<Http>, paths: Vec<String>) -> Vec<String> {
    let mut differences = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut paths = paths.into_iter();
    loop {
        while tasks.len() < READERS {
            let Some(path) = paths.next() else { break };
            let (a, b) = (a.clone(), b.clone());
            tasks.spawn(async move {
                let (ra, rb) = (a.get(&path).await, b.get(&path).await);
                let same = ra.status == 200 && rb.status == 200 && ra.body == rb.body;
                (path, same.then_some(()).ok_or((ra.text(), rb.text())))
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (path, result) = joined.expect("a vread task");
        if let Err((ra, rb)) = result {
            differences.insert(path, format!("A: {ra}\nB: {rb}"));
        }
    }
    differences
        .into_iter()
        .take(5)
        .map(|(path, diff)| format!("{path}:\n{diff}"))
        .collect()
}
