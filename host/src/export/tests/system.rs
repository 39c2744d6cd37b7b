//! System-level exports: files, snapshots, `_since`, `_typeFilter`,
//! `_elements`, `includeAssociatedData`, failures.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::config::{PluginConfig, PluginsConfig};
use crate::export::manifest;
use crate::export::request::{TypeFilter, Warning};
use crate::plugins::{PluginRegistry, Runtime};
use crate::store::Store;

#[test]
fn system_export_writes_one_file_per_type_as_stored() {
    let env = Env::new();
    fixture(&env);
    let at = env.now();
    let export = env.export(&request(ExportLevel::System, at));

    let counts: Vec<(&str, usize)> = export
        .output
        .iter()
        .map(|(t, lines)| (t.as_str(), lines.len()))
        .collect();
    assert_eq!(
        counts,
        [
            ("Condition", 1),
            ("Encounter", 1),
            ("Group", 1),
            ("Observation", 4),
            ("Patient", 3),
            ("Practitioner", 1)
        ]
    );
    assert_eq!(export.files("Observation"), ["Observation-1-1.ndjson"]);
    assert!(export.result.deleted.is_empty() && export.result.error.is_empty());

    // Bytes as stored: the file is the stored bodies, in id order.
    let job = &export.job;
    let Some(Download::File(path)) = env.handler().download(job, "Patient-1-1.ndjson").unwrap()
    else {
        panic!()
    };
    let mut expected = String::new();
    for p in ["p1", "p2", "p3"] {
        let stored = env.store.read(rt("Patient"), &id(p)).unwrap().unwrap();
        expected.push_str(std::str::from_utf8(&stored.body).unwrap());
        expected.push('\n');
    }
    assert_eq!(std::fs::read_to_string(path).unwrap(), expected);

    // The manifest the status endpoint answers.
    let m = manifest(job, |name| {
        format!("http://hearth.test/_operations/export/x/files/{name}")
    });
    assert_eq!(m["transactionTime"], at.to_fhir());
    assert_eq!(m["requiresAccessToken"], false);
    assert!(
        m["request"]
            .as_str()
            .unwrap()
            .starts_with("http://hearth.test/$export")
    );
    assert_eq!(
        m["output"][0],
        json!({"type": "Condition", "url": "http://hearth.test/_operations/export/x/files/Condition-1-1.ndjson", "count": 1})
    );
    assert_eq!(m["output"].as_array().unwrap().len(), 6);
    assert_eq!(m["error"], json!([]));

    // Only listed files are served; the folder holds exactly them.
    assert_eq!(env.handler().download(job, "../db").unwrap(), None);
    assert_eq!(
        env.handler().download(job, "Nope-1-1.ndjson").unwrap(),
        None
    );
    assert_eq!(env.folder_files(job).len(), 6);
    env.handler().remove_files(job).unwrap();
    assert!(env.folder_files(job).is_empty());
}

#[test]
fn files_roll_over_at_the_count_and_size_limits() {
    let mut env = Env::new();
    fixture(&env);
    let at = env.now();
    env.config.file_max_resources = 2;
    let mut r = request(ExportLevel::System, at);
    r.types = vec![rt("Observation"), rt("Patient")];
    let export = env.export(&r);
    assert_eq!(
        export.files("Observation"),
        ["Observation-1-1.ndjson", "Observation-1-2.ndjson"]
    );
    assert_eq!(
        export.files("Patient"),
        ["Patient-1-1.ndjson", "Patient-1-2.ndjson"]
    );
    assert_eq!(export.result.output.iter().map(|f| f.count).sum::<u64>(), 7);
    assert_eq!(
        export.output.keys().collect::<Vec<_>>(),
        ["Observation", "Patient"]
    );

    // A byte limit below one line: one resource per file.
    env.config.file_max_resources = 5_000;
    env.config.file_max_bytes = 10;
    let export = env.export(&r);
    assert_eq!(export.files("Observation").len(), 4);
    assert_eq!(export.files("Patient").len(), 3);
}

#[test]
fn output_is_the_snapshot_at_the_transaction_time() {
    let env = Env::new();
    env.put(&[patient("p1", "female")]);
    let before = env.now();
    fixture(&env);
    let at = env.now();
    env.put(&[patient("p1", "other"), patient("p9", "male")]);
    env.delete("Observation", "o1");

    let export = env.export(&request(ExportLevel::System, at));
    assert!(!export.refs().contains(&"Patient/p9".to_owned()));
    assert!(export.refs().contains(&"Observation/o1".to_owned()));
    let p1 = &export.output["Patient"][0];
    assert_eq!(
        (p1["id"].as_str(), p1["gender"].as_str()),
        (Some("p1"), Some("female"))
    );

    // `_till` in the past: the old state, nothing written after it.
    let mut till = request(ExportLevel::System, before);
    till.until_given = true;
    let export = env.export(&till);
    assert_eq!(export.refs(), ["Patient/p1"]);
    assert_eq!(export.output["Patient"][0]["meta"]["versionId"], "1");
}

#[test]
fn since_lists_deletions_as_bundles_never_as_output() {
    let env = Env::new();
    fixture(&env);
    let since = env.now();
    env.delete("Observation", "o1");
    env.put(&[
        observation("o2", "p2", "8302-2"),
        observation("o5", "p3", "1-1"),
    ]);
    // Deleted and recreated in the window: it is there now.
    env.delete("Patient", "p3");
    env.put(&[patient("p3", "female")]);
    let at = env.now();

    let mut r = request(ExportLevel::System, at);
    r.since = Some(since);
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        ["Observation/o2", "Observation/o5", "Patient/p3"]
    );
    assert_eq!(export.result.deleted.len(), 1);
    assert_eq!(
        export.result.deleted[0].file,
        "Observation-deleted-1-1.ndjson"
    );
    let bundles = &export.deleted["Bundle"];
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0]["resourceType"], "Bundle");
    assert_eq!(bundles[0]["type"], "transaction");
    assert_eq!(
        bundles[0]["entry"],
        json!([{"request": {"method": "DELETE", "url": "Observation/o1"}}])
    );
    let m = manifest(&export.job, |name| format!("http://h/files/{name}"));
    assert_eq!(
        m["deleted"],
        json!([{"type": "Bundle", "url": "http://h/files/Observation-deleted-1-1.ndjson", "count": 1}])
    );

    // A `_since` after the deletes: nothing.
    let mut r = request(ExportLevel::System, env.now());
    r.since = Some(at);
    let export = env.export(&r);
    assert!(export.output.is_empty() && export.deleted.is_empty());
}

fn filter(rtype: &str, query: &str) -> TypeFilter {
    TypeFilter {
        rtype: rt(rtype),
        query: query.into(),
    }
}

#[test]
fn type_filters_of_one_type_are_ored_and_other_types_unfiltered() {
    let mut env = Env::new();
    fixture(&env);
    let at = env.now();
    // Batches of one line: evaluation and its OR across batches too.
    env.config.batch_lines = 1;
    let mut r = request(ExportLevel::System, at);
    r.types = vec![rt("Observation"), rt("Patient")];
    r.type_filters = vec![
        filter("Observation", "code=http://loinc.org|8302-2"),
        filter("Observation", "_id=o4"),
    ];
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        [
            "Observation/o1",
            "Observation/o3",
            "Observation/o4",
            "Patient/p1",
            "Patient/p2",
            "Patient/p3"
        ]
    );

    env.config.batch_lines = 1000;
    r.type_filters = vec![filter("Patient", "gender=male")];
    let export = env.export(&r);
    assert_eq!(export.count("Observation"), 4);
    assert_eq!(export.count("Patient"), 1);
}

#[test]
fn a_refused_filter_fails_strict_and_is_dropped_with_a_warning_when_lenient() {
    let env = Env::new();
    fixture(&env);
    let at = env.now();
    let mut r = request(ExportLevel::System, at);
    r.types = vec![rt("Observation")];
    r.type_filters = vec![
        filter("Observation", "_id=o4"),
        filter("Observation", "code:in=http://example.org/vs"),
    ];
    let (job, f) = failure(&env, &r);
    assert_failed(&f, 400, &["code:in"]);
    assert!(env.folder_files(&job).is_empty());

    r.lenient = true;
    r.warnings = vec![Warning {
        parameter: "_foo".into(),
        message: "not a known parameter".into(),
    }];
    let export = env.export(&r);
    // Dropping one of the OR-ed filters leaves the type unfiltered.
    assert_eq!(export.count("Observation"), 4);
    assert_eq!(export.result.error.len(), 1);
    assert_eq!(export.result.error[0].file, "OperationOutcome-1-1.ndjson");
    assert_eq!(export.result.error[0].count, 2);
    let warnings = export.warnings();
    assert!(warnings[0].contains("_foo was ignored"), "{warnings:?}");
    assert!(
        warnings[1].contains("code:in=http://example.org/vs") && warnings[1].contains("lenient"),
        "{warnings:?}"
    );
    let oo = &export.error["OperationOutcome"][1];
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["severity"], "warning");
}

#[test]
fn elements_keep_the_listed_and_mandatory_elements_and_tag_subsetted() {
    let env = Env::new();
    fixture(&env);
    let at = env.now();
    let mut r = request(ExportLevel::System, at);
    r.types = vec![rt("Observation"), rt("Patient")];
    r.elements = vec![(Some(rt("Observation")), "status".into())];
    let export = env.export(&r);
    for obs in &export.output["Observation"] {
        let keys: Vec<&str> = obs
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "status", "code"]);
        assert_eq!(
            obs["meta"]["tag"],
            json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}])
        );
        assert_eq!(obs["meta"]["versionId"], "1");
    }
    // Patients are not subsetted: `_elements` named only Observation.
    assert_eq!(export.output["Patient"][0]["gender"], "female");
    assert!(export.output["Patient"][0]["meta"].get("tag").is_none());
}

#[test]
fn history_exports_every_version_and_deleted_the_marked_deletion() {
    let env = Env::new();
    fixture(&env);
    env.put(&[patient("p1", "other")]);
    env.put(&[patient("p1", "unknown")]);
    env.delete("Observation", "o1");
    let at = env.now();
    let mut r = request(ExportLevel::System, at);
    r.types = vec![rt("Observation"), rt("Patient")];

    let versions = |export: &Export, rtype: &str, i: &str| -> Vec<Value> {
        export.output[rtype]
            .iter()
            .filter(|r| r["id"] == i)
            .cloned()
            .collect()
    };

    r.associated.history = true;
    let export = env.export(&r);
    let p1 = versions(&export, "Patient", "p1");
    let ids: Vec<&str> = p1
        .iter()
        .map(|v| v["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(p1[2]["gender"], "unknown");
    // Without `_deleted`: the deleted resource's live versions only.
    let o1 = versions(&export, "Observation", "o1");
    assert_eq!(o1.len(), 1);
    assert!(o1[0]["meta"].get("extension").is_none());
    assert_eq!(export.count("Observation"), 4);

    r.associated.deleted = true;
    let export = env.export(&r);
    let o1 = versions(&export, "Observation", "o1");
    assert_eq!(o1.len(), 2);
    assert_eq!(o1[1]["meta"]["versionId"], "2");
    assert_eq!(
        o1[1]["meta"]["extension"],
        json!([{"url": "http://azurehealthcareapis.com/data-extensions/deleted-state", "valueString": "soft-deleted"}])
    );
    assert_eq!(o1[1]["code"], o1[0]["code"]);
    assert_ne!(o1[1]["meta"]["lastUpdated"], o1[0]["meta"]["lastUpdated"]);

    // `_deleted` alone: current versions, plus the marked deletion.
    r.associated.history = false;
    let export = env.export(&r);
    assert_eq!(versions(&export, "Patient", "p1").len(), 1);
    let o1 = versions(&export, "Observation", "o1");
    assert_eq!(o1.len(), 1);
    assert_eq!(o1[0]["meta"]["extension"][0]["valueString"], "soft-deleted");
    assert!(export.deleted.is_empty());
}

#[test]
fn container_exports_go_to_a_fresh_folder_in_it() {
    let env = Env::new();
    fixture(&env);
    let mut r = request(ExportLevel::System, env.now());
    r.container = Some("research".into());
    r.types = vec![rt("Patient")];
    let export = env.export(&r);
    let folder = env
        .config
        .output_dir
        .join("research")
        .join(format!("20240501T120000Z-{}", export.job.id));
    assert!(folder.join("Patient-1-1.ndjson").is_file(), "{folder:?}");
    assert_eq!(export.count("Patient"), 3);
}

#[test]
fn a_plugin_fault_fails_the_job_naming_the_plugin() {
    let env = Env::new();
    fixture(&env);
    let hostile = PluginsConfig {
        type_filter: PluginConfig {
            component: Some(Path::new(env!("GUEST_COMPONENTS_DIR")).join("hostile.wasm")),
            ..PluginConfig::default()
        },
        ..PluginsConfig::default()
    };
    let registry = Arc::new(PluginRegistry::load(Runtime::new(None).unwrap(), &hostile).unwrap());
    let handler = env.handler_with(registry);
    let mut r = request(ExportLevel::System, env.now());
    r.types = vec![rt("Observation"), rt("Patient")];
    r.type_filters = vec![filter("Observation", "fault=trap")];
    let job = env.job(&r);
    let f = handler.run(&job, &env.context(&job)).unwrap_err();
    assert_failed(&f, 500, &["hostile.wasm", "trapped"]);
    // A failed export's files are removed.
    assert!(env.folder_files(&job).is_empty());
}

#[test]
fn deleted_exports_an_imported_tombstone_with_nothing_live_before_it() {
    use crate::store::{ImportBatch, ImportItem, ImportSession, ImportWrites, LineRef};
    let env = Env::new();
    fixture(&env);
    let deleted_at = Instant::parse("2020-01-02T03:04:05Z").unwrap();
    let item = ImportItem {
        id: id("gone"),
        resource: Resource::from_value(observation("gone", "p1", "8302-2")).unwrap(),
        version: Some(1),
        last_updated: Some(deleted_at),
        deleted: true,
        line: LineRef {
            input: 0,
            line: 1,
            offset: 0,
        },
        precedence: (1, deleted_at),
    };
    let batch = ImportBatch {
        session: ImportSession(1),
        writes: ImportWrites::History,
        items: vec![item],
        rejected: Vec::new(),
        progress: None,
    };
    let outcomes = env.store.import(batch, &|_| Vec::new()).unwrap();
    assert!(
        matches!(&outcomes[..], [crate::store::ImportOutcome::Written(m)] if m.deleted),
        "{outcomes:?}"
    );
    let mut r = request(ExportLevel::System, env.now());
    r.types = vec![rt("Observation")];
    r.associated.deleted = true;
    let marked = |export: &Export| -> Vec<Value> {
        export.output["Observation"]
            .iter()
            .filter(|o| o["id"] == "gone")
            .cloned()
            .collect()
    };
    for history in [false, true] {
        r.associated.history = history;
        let export = env.export(&r);
        let gone = marked(&export);
        assert_eq!(gone.len(), 1, "history {history}: {gone:?}");
        assert_eq!(gone[0]["meta"]["versionId"], "1");
        assert_eq!(gone[0]["meta"]["lastUpdated"], deleted_at.to_fhir());
        assert_eq!(
            gone[0]["meta"]["extension"][0]["valueString"],
            "soft-deleted"
        );
    }
    // Through a compartment too: the tombstone is in p1's (the body it
    // carried on import named p1), and `_since` lists it as a deletion.
    let mut r = request(ExportLevel::Patient, env.now());
    r.types = vec![rt("Observation")];
    r.since = Some(Instant::parse("2019-01-01T00:00:00Z").unwrap());
    let export = env.export(&r);
    let deletions: Vec<&Value> = export
        .deleted
        .values()
        .flatten()
        .filter(|b| b["entry"][0]["request"]["url"] == "Observation/gone")
        .collect();
    assert_eq!(deletions.len(), 1, "{:?}", export.deleted);
}
