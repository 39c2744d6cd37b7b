//! Loads all of synthea-100 through transaction Bundles, reads every resource
//! back, counts per type, then checks Patient compartments in the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant as Clock;

use hearth::fhir::{ResourceId, ResourceType};
use hearth::store::Store;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    Sandbox, collect_versions, count_lines_gz, history_key, latest, open_store, read_dataset,
    synthea_dir, without_server_meta,
};

const ENTRIES_PER_BUNDLE: usize = 500;
const READERS: usize = 4;

/// Where synthea-100 puts `Patient/...` references, per type, as dotted
/// element paths (array levels are transparent). `contained.*` paths of
/// ExplanationOfBenefit always name the same patient as its `patient`.
///
/// For every type here except Device, each path is named by the type's
/// params in the R4 Patient CompartmentDefinition (`patient`, `subject`,
/// `participant` → CareTeam.participant.member, ...). R4 lists Device with no
/// params, so a Device is in no Patient compartment although `Device.patient`
/// points at one. Hence, for this data set, "a resource of a type other than
/// Device (or the Patient itself) is in the compartment of Patient/x iff any
/// `reference` anywhere in it equals `Patient/x`" is the CompartmentDefinition's
/// rule; [`check_reference_paths`] verifies the premise on the data.
const PATIENT_REFERENCE_PATHS: &[(&str, &[&str])] = &[
    ("AllergyIntolerance", &["patient"]),
    ("CarePlan", &["subject"]),
    ("CareTeam", &["subject", "participant.member"]),
    ("Claim", &["patient"]),
    ("Condition", &["subject"]),
    ("Device", &["patient"]),
    ("DiagnosticReport", &["subject"]),
    ("Encounter", &["subject"]),
    (
        "ExplanationOfBenefit",
        &["patient", "contained.subject", "contained.beneficiary"],
    ),
    ("ImagingStudy", &["subject"]),
    ("Immunization", &["patient"]),
    ("MedicationRequest", &["subject"]),
    ("Observation", &["subject"]),
    ("Procedure", &["subject"]),
];

/// `(dotted path, reference)` of every `reference` string in `value`.
fn references(value: &Value, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == "reference" => out.push((path.join("."), s.clone())),
                    _ => {
                        path.push(k.clone());
                        references(v, path, out);
                        path.pop();
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, path, out)),
        _ => {}
    }
}

fn patient_references(resource: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    references(resource, &mut Vec::new(), &mut out);
    out.retain(|(_, r)| r.starts_with("Patient/"));
    out
}

/// The premise of the oracle: Patient references only at the listed paths,
/// and EOB's contained ones agree with `ExplanationOfBenefit.patient`.
fn check_reference_paths(data: &[(String, Value)]) {
    let allowed: HashMap<&str, &[&str]> = PATIENT_REFERENCE_PATHS.iter().copied().collect();
    let mut devices_with_patient = 0;
    for (rtype, r) in data {
        for (path, reference) in patient_references(r) {
            let ok = allowed
                .get(rtype.as_str())
                .is_some_and(|paths| paths.contains(&path.as_str()));
            assert!(ok, "{rtype}/{} has a Patient reference at {path}", r["id"]);
            if path.starts_with("contained.") {
                assert_eq!(
                    r["patient"]["reference"],
                    reference.as_str(),
                    "{rtype}/{}",
                    r["id"]
                );
            }
            if rtype == "Device" {
                devices_with_patient += 1;
            }
        }
    }
    assert!(
        devices_with_patient > 0,
        "the data set was expected to have Devices pointing at patients"
    );
}

/// The oracle: patient id → `Type/id` of every member of its compartment.
fn expected_compartments(data: &[(String, Value)]) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (rtype, r) in data {
        let key = format!("{rtype}/{}", r["id"].as_str().unwrap());
        if rtype == "Patient" {
            out.entry(r["id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(key.clone());
        }
        if rtype == "Device" || rtype == "Patient" {
            continue;
        }
        for (_, reference) in patient_references(r) {
            let patient = reference.strip_prefix("Patient/").unwrap().to_owned();
            out.entry(patient).or_default().insert(key.clone());
        }
    }
    out
}

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
    for chunk in data.chunks(ENTRIES_PER_BUNDLE) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|(rtype, r)| {
                let url = format!("{rtype}/{}", r["id"].as_str().expect("id"));
                json!({"resource": r, "request": {"method": "PUT", "url": url}})
            })
            .collect();
        let n = entries.len();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let resp = srv.post("/", &bundle).await.ok(200).json();
        let out = resp["entry"]
            .as_array()
            .expect("transaction-response entries");
        assert_eq!(out.len(), n);
        for e in out {
            assert!(
                e["response"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("201"),
                "{e}"
            );
        }
    }
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
