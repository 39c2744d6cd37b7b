//! Group membership through the default resolver as an export sees it:
//! nested Groups, reported members, criteria Groups evaluated by the
//! type-filter plugin, `_since` with members added since, and referenced
//! resources outside the compartments.

use serde_json::{Value, json};

use super::*;
use crate::export::request::TypeFilter;

const MEMBER_FILTER: &str = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter";

fn member(reference: &str) -> Value {
    json!({"entity": {"reference": reference}})
}

fn criteria(id: &str, queries: &[&str]) -> Value {
    let filters: Vec<Value> = queries
        .iter()
        .map(|q| {
            json!({"url": MEMBER_FILTER, "valueExpression":
                {"language": "application/x-fhir-query", "expression": q}})
        })
        .collect();
    json!({"resourceType": "Group", "id": id, "type": "person", "actual": false,
           "name": id, "modifierExtension": filters})
}

fn group_request(env: &Env, id_: &str) -> ExportRequest {
    request(ExportLevel::Group { id: id(id_) }, env.now())
}

#[test]
fn nested_groups_loops_and_missing_members_are_reported_not_fatal() {
    let env = Env::new();
    fixture(&env);
    let mut inactive = member("Patient/p3");
    inactive["inactive"] = json!(true);
    env.put(&[
        json!({"resourceType": "Group", "id": "outer", "type": "person", "actual": true,
        "member": [member("Group/g"), inactive, member("Patient/ghost"), member("Group/outer"),
                   member("Group/none"), member("Group/g")]}),
    ]);
    let export = env.export(&group_request(&env, "outer"));
    // g's members' compartments; `outer` names p3 (inactive), so it is in
    // p3's compartment only, which is not exported.
    assert_eq!(export.refs(), GROUP_G);
    let mut warnings = export.warnings();
    warnings.sort();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("Patient/ghost does not exist"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("Group/none does not exist"),
        "{warnings:?}"
    );
    let severities: Vec<&Value> = export.error["OperationOutcome"]
        .iter()
        .map(|oo| &oo["issue"][0]["severity"])
        .collect();
    assert!(severities.iter().all(|s| *s == "warning"), "{severities:?}");

    // An empty Group exports nothing, never everything.
    env.put(&[json!({"resourceType": "Group", "id": "empty", "type": "person", "actual": true})]);
    let export = env.export(&group_request(&env, "empty"));
    assert!(export.refs().is_empty() && export.result.output.is_empty());
}

#[test]
fn criteria_groups_are_evaluated_with_the_type_filter_plugin() {
    let env = Env::new();
    fixture(&env);
    env.put(&[
        criteria("women", &["Patient?gender=female"]),
        criteria(
            "women-with-c1",
            &["Patient?gender=female", "Condition?_id=c1"],
        ),
        criteria("with-c1", &["Condition?_id=c1"]),
    ]);
    let mut r = group_request(&env, "women");
    r.types = vec![rt("Patient"), rt("Observation")];
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        [
            "Observation/o1",
            "Observation/o3",
            "Observation/o4",
            "Patient/p1",
            "Patient/p3"
        ]
    );
    // AND-ed: c1 is p2's, a man.
    let export = env.export(&group_request(&env, "women-with-c1"));
    assert!(export.refs().is_empty());
    let mut r = group_request(&env, "with-c1");
    r.types = vec![rt("Patient")];
    assert_eq!(env.export(&r).refs(), ["Patient/p2"]);

    // A query the engine cannot evaluate, or a characteristic: 400.
    env.put(&[
        criteria("born", &["Patient?birthdate=lt1970-01-01&_sort=name"]),
        json!({"resourceType": "Group", "id": "smokers", "type": "person", "actual": false,
               "characteristic": [{"code": {"text": "smoker"}, "valueBoolean": true,
                                   "exclude": false}]}),
    ]);
    for (group, expected) in [
        (
            "born",
            "member-filter 'Patient?birthdate=lt1970-01-01&_sort=name'",
        ),
        ("smokers", "Group.characteristic[0] ('smoker')"),
    ] {
        let (_, f) = failure(&env, &group_request(&env, group));
        assert_failed(&f, 400, &[expected, "not-supported"]);
    }
}

#[test]
fn since_exports_the_compartments_of_members_added_since_whole() {
    let env = Env::new();
    fixture(&env);
    env.put(&[
        json!({"resourceType": "Group", "id": "g2", "type": "person", "actual": true,
                     "member": [member("Patient/p1")]}),
    ]);
    let since = env.now();
    env.put(&[
        json!({"resourceType": "Group", "id": "g2", "type": "person", "actual": true,
               "member": [member("Patient/p1"), member("Patient/p2")]}),
        observation("o7", "p1", "8302-2"),
    ]);
    let mut r = group_request(&env, "g2");
    r.since = Some(since);
    let export = env.export(&r);
    // p1 (a member then): what changed since (o7, the Group). p2 (added
    // since): everything, o3 included although it is also p1's and did
    // not change.
    assert_eq!(
        export.refs(),
        [
            "Condition/c1",
            "Group/g",
            "Group/g2",
            "Observation/o2",
            "Observation/o3",
            "Observation/o7",
            "Patient/p2"
        ]
    );
    // A Group that did not exist at `_since` has only new members.
    env.put(&[
        json!({"resourceType": "Group", "id": "g3", "type": "person", "actual": true,
                     "member": [member("Patient/p3")]}),
    ]);
    let mut r = group_request(&env, "g3");
    r.since = Some(since);
    assert_eq!(
        env.export(&r).refs(),
        ["Group/g3", "Observation/o4", "Patient/p3"]
    );
}

#[test]
fn referenced_resources_are_added_once_filtered_and_only_when_asked() {
    let env = Env::new();
    fixture(&env);
    env.put(&[
        json!({"resourceType": "Practitioner", "id": "dr2", "active": true}),
        json!({"resourceType": "Organization", "id": "org1", "active": true}),
        json!({"resourceType": "Organization", "id": "org2"}),
    ]);
    let encounter = |i: &str, patient: &str, dr: &str| {
        json!({"resourceType": "Encounter", "id": i, "status": "finished", "class": {"code": "AMB"},
               "subject": {"reference": format!("Patient/{patient}")},
               "participant": [{"individual": {"reference": format!("Practitioner/{dr}")}}],
               "serviceProvider": {"reference": "Organization/org1"}})
    };
    env.put(&[
        encounter("e2", "p1", "dr1"),
        encounter("e3", "p2", "dr1"),
        encounter("e4", "p3", "dr2"),
        encounter("e5", "p3", "gone"),
    ]);
    let mut r = group_request(&env, "g");
    r.types = vec![rt("Encounter")];
    assert_eq!(
        env.export(&r).refs(),
        ["Encounter/e1", "Encounter/e2", "Encounter/e3"],
        "not asked for"
    );
    r.referenced = vec![rt("Practitioner"), rt("Organization")];
    let export = env.export(&r);
    assert_eq!(
        export.refs(),
        [
            "Encounter/e1",
            "Encounter/e2",
            "Encounter/e3",
            "Organization/org1",
            "Practitioner/dr1"
        ]
    );
    assert_eq!(export.files("Practitioner"), ["Practitioner-1-1.ndjson"]);

    // `_typeFilter` applies to them too; and they come from the lines
    // written, after the compartment types' filters.
    r.type_filters = vec![
        TypeFilter {
            rtype: rt("Organization"),
            query: "_id=org2".into(),
        },
        TypeFilter {
            rtype: rt("Encounter"),
            query: "_id=e1".into(),
        },
    ];
    assert_eq!(env.export(&r).refs(), ["Encounter/e1"]);

    // Patient level, every type: dr2 through p3's e4, the missing
    // Practitioner/gone skipped.
    let mut r = request(ExportLevel::Patient, env.now());
    r.referenced = vec![rt("Practitioner")];
    let export = env.export(&r);
    assert_eq!(export.count("Practitioner"), 2);
    assert_eq!(export.count("Organization"), 0);
    assert!(export.warnings().is_empty(), "{:?}", export.warnings());
}
