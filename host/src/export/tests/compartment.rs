//! Patient- and Group-level exports: compartments, deduplication, the
//! `patient` parameter, Group members through the default resolver.

use serde_json::json;

use super::*;
use crate::export::request::TypeFilter;

#[test]
fn patient_level_exports_every_compartment_each_resource_once() {
    let env = Env::new();
    fixture(&env);
    let export = env.export(&request(ExportLevel::Patient, env.now()));
    // Group g's members' compartments and p3's; the Practitioner is in
    // nobody's.
    let mut every = GROUP_G.to_vec();
    every.extend(["Observation/o4", "Patient/p3"]);
    every.sort();
    assert_eq!(export.refs(), every);
    // Two partitions of patients (parallelism 2), each with its files.
    let names: Vec<&str> = export
        .result
        .output
        .iter()
        .map(|f| f.file.as_str())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with("-1-1.ndjson") || n.ends_with("-2-1.ndjson")),
        "{names:?}"
    );
    assert!(export.warnings().is_empty());
}

#[test]
fn linked_patients_and_types_at_patient_level() {
    let env = Env::new();
    fixture(&env);
    // p4 links to p1: it is in p1's compartment and its own.
    env.put(&[json!({"resourceType": "Patient", "id": "p4",
                     "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]})]);
    let mut r = request(ExportLevel::Patient, env.now());
    r.types = vec![rt("Patient"), rt("Practitioner")];
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        ["Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"]
    );
    // A type no compartment holds is dropped, not silently.
    assert!(
        export.warnings()[0].contains("_type Practitioner was ignored"),
        "{:?}",
        export.warnings()
    );
}

#[test]
fn the_patient_parameter_narrows_to_those_compartments() {
    let env = Env::new();
    fixture(&env);
    let mut r = request(ExportLevel::Patient, env.now());
    r.patients = vec![id("p2"), id("nobody")];
    // Strict: a patient that does not exist fails the export, naming it.
    let (_, f) = failure(&env, &r);
    assert_failed(&f, 400, &["Patient/nobody"]);
    // Lenient: it is left out with a warning.
    r.lenient = true;
    let export = env.export(&r);
    // o3 is also p1's, but p1 is not exported: it goes out under p2.
    assert_eq!(
        export.refs(),
        [
            "Condition/c1",
            "Group/g",
            "Observation/o2",
            "Observation/o3",
            "Patient/p2"
        ]
    );
    let warnings = export.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("Patient/nobody"), "{warnings:?}");
}

#[test]
fn filters_since_and_deletions_apply_in_compartments() {
    let env = Env::new();
    fixture(&env);
    let since = env.now();
    env.delete("Observation", "o2");
    env.put(&[
        observation("o5", "p3", "8302-2"),
        observation("o6", "p3", "1-1"),
    ]);
    let at = env.now();

    let mut r = request(ExportLevel::Patient, at);
    r.types = vec![rt("Observation")];
    r.type_filters = vec![TypeFilter {
        rtype: rt("Observation"),
        query: "code=http://loinc.org|8302-2".into(),
    }];
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        ["Observation/o1", "Observation/o3", "Observation/o5"]
    );

    r.type_filters.clear();
    r.since = Some(since);
    let export = env.export(&r);
    assert_eq!(export.refs(), ["Observation/o5", "Observation/o6"]);
    let bundles: Vec<&serde_json::Value> = export.deleted.values().flatten().collect();
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0]["entry"][0]["request"]["url"], "Observation/o2");
}

#[test]
fn group_level_exports_the_members_compartments() {
    let env = Env::new();
    fixture(&env);
    let r = request(ExportLevel::Group { id: id("g") }, env.now());
    let export = env.export(&r);
    assert_eq!(export.refs(), GROUP_G);

    let mut narrowed = r.clone();
    narrowed.patients = vec![id("p1"), id("p3")];
    narrowed.types = vec![rt("Observation")];
    let (_, f) = failure(&env, &narrowed);
    assert_failed(&f, 400, &["Patient/p3 is not a member of Group/g"]);
    narrowed.lenient = true;
    let export = env.export(&narrowed);
    assert_eq!(export.refs(), ["Observation/o1", "Observation/o3"]);
    let warnings = export.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("not a member of Group/g"),
        "{warnings:?}"
    );
}

#[test]
fn a_missing_or_unresolvable_group_fails_the_job() {
    let env = Env::new();
    fixture(&env);
    let (_, f) = failure(
        &env,
        &request(ExportLevel::Group { id: id("nope") }, env.now()),
    );
    assert_failed(&f, 404, &["Group/nope"]);

    env.put(&[json!({"resourceType": "Group", "id": "def", "type": "person", "actual": false})]);
    let (_, f) = failure(
        &env,
        &request(ExportLevel::Group { id: id("def") }, env.now()),
    );
    assert_failed(&f, 400, &["definitional"]);
}
