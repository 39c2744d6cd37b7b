//! `$export` of synthea-100: the system level against the source files
//! (counts, content, file names, rollover), and the Patient and Group
//! levels against the independent compartment oracle of `support.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant as Clock;

use hearth::fhir::Instant;
use serde_json::{Value, json};

use crate::support::{
    ExportFile, Http, Sandbox, by_key, check_export_lines, check_reference_paths, count_by_type,
    count_lines_gz, enc, expected_compartments, key_of, outcome_issues, patient_ids,
    patient_parameters, patients_of, per_type, read_dataset, synthea_dir, version_of,
};

/// The default file size: a type's resources roll over to a new file after
/// this many.
const FILE_MAX: u64 = 5_000;
const LOINC: &str = "http://loinc.org";

/// Starts a server and loads synthea-100; returns the source and the
/// instant of the last load commit.
async fn with_synthea(
    sandbox: &mut Sandbox,
) -> (crate::support::Server, Vec<(String, Value)>, String) {
    let data = read_dataset(&synthea_dir());
    let srv = sandbox.start(&[]).await;
    let started = Clock::now();
    let last = srv.load_transactions(&data, 500).await;
    eprintln!("synthea loaded in {:.1} s", started.elapsed().as_secs_f64());
    (srv, data, last)
}

/// `<Type>-<n>-<m>.ndjson`
fn is_file_name(name: &str, rtype: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(rtype)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".ndjson"))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Downloads the output of a finished export and checks it is exactly
/// `expected` (`Type/id` set), each line equal to its source but for server
/// meta, at version 1, and no error file. Returns the files.
async fn check_output(
    srv: &Http,
    manifest: &Value,
    sources: &HashMap<String, &Value>,
    expected: &BTreeSet<String>,
    what: &str,
) -> Vec<ExportFile> {
    let files = check_export_lines(srv, manifest, sources, expected, what).await;
    for (key, line) in by_key(&files) {
        assert_eq!(version_of(line), 1, "{what}: {key}");
    }
    assert!(
        manifest["error"].as_array().is_some_and(Vec::is_empty),
        "{what}: errors {}",
        manifest["error"]
    );
    files
}

/// A Group-level export of the `cohort` Group: its output as
/// [`check_export_lines`] checks it, and an error file whose one warning
/// names the member that is no Patient of the store (left out, not fatal).
async fn check_group_output(
    srv: &Http,
    manifest: &Value,
    sources: &HashMap<String, &Value>,
    expected: &BTreeSet<String>,
    what: &str,
) -> Vec<ExportFile> {
    let files = check_export_lines(srv, manifest, sources, expected, what).await;
    let issues = outcome_issues(&srv.files(manifest, "error").await);
    assert_eq!(issues.len(), 1, "{what}: {issues:?}");
    assert_eq!(issues[0]["severity"], "warning", "{what}: {issues:?}");
    assert!(
        issues[0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("Patient/not-in-the-store does not exist")),
        "{what}: {issues:?}"
    );
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_export_of_synthea() {
    let file_counts = count_lines_gz(&synthea_dir());
    assert_eq!(file_counts["Observation"], 16_315);
    let mut sandbox = Sandbox::new();
    let (srv, data, last_load) = with_synthea(&mut sandbox).await;
    let sources: HashMap<String, &Value> = data.iter().map(|(_, r)| (key_of(r), r)).collect();
    assert_eq!(sources.len(), 38_472, "the data set has no duplicate ids");
    let all: BTreeSet<String> = sources.keys().cloned().collect();

    // The whole system, and concurrently `_typeFilter` OR at scale (two
    // LOINC codes, counted from the source).
    let a = format!("Observation?code={LOINC}|8302-2");
    let b = format!("Observation?code={LOINC}|29463-7");
    let filtered: BTreeSet<String> = data
        .iter()
        .filter(|(t, r)| {
            t == "Observation"
                && r["code"]["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c["system"] == LOINC && (c["code"] == "8302-2" || c["code"] == "29463-7")
                    })
        })
        .map(|(_, r)| key_of(r))
        .collect();
    assert_eq!(filtered.len(), 968 * 2);
    let filter_path = format!(
        "/$export?_type=Observation&_typeFilter={}&_typeFilter={}",
        enc(&a),
        enc(&b)
    );
    let started = Clock::now();
    let ((_, m), (_, m_filtered)) = tokio::join!(srv.export("/$export"), srv.export(&filter_path));
    eprintln!(
        "synthea: system export (with a filtered one alongside) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    check_output(&srv, &m_filtered, &sources, &filtered, "_typeFilter OR").await;
    let tt = Instant::parse(m["transactionTime"].as_str().unwrap()).unwrap();
    assert!(
        tt >= Instant::parse(&last_load).unwrap(),
        "transactionTime {tt} before the last load {last_load}"
    );
    let files = check_output(&srv, &m, &sources, &all, "system export").await;
    assert_eq!(count_by_type(&files), file_counts, "per-type counts");
    assert!(
        m["deleted"].as_array().is_none_or(Vec::is_empty),
        "deleted without _since"
    );

    // File names and rollover: one type per file, at most 5,000 lines each,
    // as few files as that allows.
    let mut names = BTreeSet::new();
    let mut files_per_type: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for f in &files {
        assert!(is_file_name(f.name(), &f.rtype), "file name {}", f.url);
        assert!(
            names.insert(f.name().to_owned()),
            "{} listed twice",
            f.name()
        );
        assert!(
            f.lines.len() as u64 <= FILE_MAX,
            "{}: {} lines",
            f.url,
            f.lines.len()
        );
        assert!(!f.lines.is_empty(), "{}: an empty file", f.url);
        files_per_type
            .entry(&f.rtype)
            .or_default()
            .push(f.lines.len() as u64);
    }
    for (rtype, sizes) in &files_per_type {
        let n = file_counts[*rtype];
        assert_eq!(
            sizes.len() as u64,
            n.div_ceil(FILE_MAX),
            "{rtype}: {n} resources in files of {sizes:?}"
        );
    }
    assert_eq!(files_per_type["Observation"].len(), 4);

    let status = srv.terminate().await;
    assert!(status.success(), "SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_group_export_of_synthea() {
    let mut sandbox = Sandbox::new();
    let (srv, mut data, _) = with_synthea(&mut sandbox).await;
    check_reference_paths(&data);
    let patients = patients_of(&data);
    assert_eq!(patients.len(), 100);
    fn union(
        compartments: &HashMap<String, BTreeSet<String>>,
        ids: &[&String],
    ) -> BTreeSet<String> {
        ids.iter()
            .flat_map(|p| compartments[p.as_str()].iter().cloned())
            .collect()
    }

    // Patient level: every compartment, each resource once, the Patients
    // themselves included, nothing outside any compartment (Device,
    // Organization, Practitioner).
    let compartments = expected_compartments(&data);
    let sources: HashMap<String, &Value> = data.iter().map(|(_, r)| (key_of(r), r)).collect();
    let started = Clock::now();
    let (_, m) = srv.export("/Patient/$export").await;
    eprintln!(
        "synthea: patient export in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let all_refs: Vec<&String> = patients.iter().collect();
    let expected = union(&compartments, &all_refs);
    let files = check_output(&srv, &m, &sources, &expected, "Patient level").await;
    assert_eq!(
        count_by_type(&files),
        per_type(&expected),
        "Patient level per type"
    );
    assert_eq!(patient_ids(&files).len(), 100);
    for t in ["Device", "Organization", "Practitioner"] {
        assert!(
            !files.iter().any(|f| f.rtype == t),
            "Patient level exported {t}"
        );
    }

    // `patient` narrows a Patient-level export.
    let chosen = [&patients[3], &patients[50], &patients[97]];
    let params = patient_parameters(chosen);
    let (_, m) = srv.export_post("/Patient/$export", &params).await;
    let expected = union(&compartments, &chosen);
    let files = check_output(&srv, &m, &sources, &expected, "Patient level, patient=").await;
    assert_eq!(count_by_type(&files), per_type(&expected));

    // A Group over 14 patients: 10 plain members (one listed twice), one
    // inactive, one whose period ended in 2001, one whose period started
    // in 2000 and is open, plus a member that is no Patient of the store.
    // R4 puts a Group in the compartment of every Patient its
    // `member.entity` names (param `member`), so the Group itself is part of
    // its members' compartments: the oracle gets it as one more resource.
    let members: Vec<&String> = patients.iter().skip(20).take(14).collect();
    let mut member = Vec::new();
    for p in &members[..10] {
        member.push(json!({"entity": {"reference": format!("Patient/{p}")}}));
    }
    member.push(json!({"entity": {"reference": format!("Patient/{}", members[0])}}));
    member.push(
        json!({"entity": {"reference": format!("Patient/{}", members[10])}, "inactive": true}),
    );
    member.push(
        json!({"entity": {"reference": format!("Patient/{}", members[11])},
        "period": {"start": "1990-01-01", "end": "2001-01-01"}}),
    );
    member.push(
        json!({"entity": {"reference": format!("Patient/{}", members[12])},
        "period": {"start": "2000-01-01"}}),
    );
    member.push(json!({"entity": {"reference": "Patient/not-in-the-store"}}));
    let group = json!({"resourceType": "Group", "id": "cohort", "type": "person", "actual": true, "member": member});
    srv.put("/Group/cohort", &group).await.ok(201);
    data.push(("Group".into(), group));
    let compartments = expected_compartments(&data);
    let sources: HashMap<String, &Value> = data.iter().map(|(_, r)| (key_of(r), r)).collect();
    assert!(compartments[members[10].as_str()].contains("Group/cohort"));
    let in_group: Vec<&String> = members[..10].iter().copied().chain([members[12]]).collect();
    let expected = union(&compartments, &in_group);
    let (_, m) = srv.export("/Group/cohort/$export").await;
    let files = check_group_output(&srv, &m, &sources, &expected, "Group level").await;
    assert_eq!(
        count_by_type(&files),
        per_type(&expected),
        "Group level per type"
    );
    assert_eq!(
        patient_ids(&files),
        in_group
            .iter()
            .map(|p| p.to_string())
            .collect::<BTreeSet<_>>(),
        "Group level: patients"
    );

    // `_type` at Group level.
    let (_, m) = srv
        .export("/Group/cohort/$export?_type=Patient,Encounter")
        .await;
    let narrowed: BTreeSet<String> = expected
        .iter()
        .filter(|k| k.starts_with("Patient/") || k.starts_with("Encounter/"))
        .cloned()
        .collect();
    check_group_output(&srv, &m, &sources, &narrowed, "Group level, _type").await;

    // `patient` narrows a Group-level export to members...
    let two = [members[1], members[12]];
    let params = patient_parameters(two);
    let (_, m) = srv.export_post("/Group/cohort/$export", &params).await;
    check_group_output(
        &srv,
        &m,
        &sources,
        &union(&compartments, &two),
        "Group level, patient=",
    )
    .await;

    // ...and a patient that is not a member (the inactive one; one outside
    // the Group) is an error, at kick-off or as the job's final status.
    for outsider in [members[10], &patients[0]] {
        let params = patient_parameters([outsider]);
        let resp = srv.kickoff_post("/Group/cohort/$export", &params).await;
        let failed = if resp.status == 202 {
            let status = resp.accepted(&srv.base);
            srv.poll_export(&status).await
        } else {
            resp
        };
        if !(400..500).contains(&failed.status) {
            let errors = if failed.status == 200 {
                let m = failed.json();
                let files = srv.files(&m, "error").await;
                files
                    .iter()
                    .flat_map(|f| f.lines.iter().map(Value::to_string))
                    .collect()
            } else {
                Vec::new()
            };
            panic!(
                "patient={outsider} (not in the Group): expected a 4xx OperationOutcome, got {} {}; error files: {errors:?}",
                failed.status,
                failed.text()
            );
        }
        failed.outcome(failed.status);
    }

    let status = srv.terminate().await;
    assert!(status.success(), "SIGTERM: {status}");
}
