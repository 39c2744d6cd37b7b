//! Each check of the validator on a small resource built here.

use import_validator_core::{
    Config, ConfigError, Issue, MAX_DEPTH, MAX_RESOURCE_DEPTH, Severity, UnknownElements,
    Validator, is_resource_type, lines,
};
use serde_json::{Value, json};

fn check_as(declared: Option<&str>, config: Config, line: &[u8]) -> Vec<Issue> {
    Validator::new(declared, config).unwrap().check(line)
}

fn check(resource: &Value) -> Vec<Issue> {
    check_as(None, Config::default(), resource.to_string().as_bytes())
}

/// (code, location) of each issue.
fn found(issues: &[Issue]) -> Vec<(&'static str, Option<String>)> {
    issues
        .iter()
        .map(|i| (i.code, i.expression.clone()))
        .collect()
}

#[track_caller]
fn accepted(resource: Value) {
    let issues = check(&resource);
    assert!(issues.is_empty(), "{resource}: {issues:#?}");
}

/// Exactly one issue, with this code and location; its diagnostics.
#[track_caller]
fn rejected(resource: Value, code: &str, expression: &str) -> String {
    let issues = check(&resource);
    assert_eq!(
        found(&issues),
        [(code_static(code), Some(expression.to_owned()))],
        "{resource}: {issues:#?}"
    );
    issues.into_iter().next().unwrap().diagnostics
}

fn code_static(code: &str) -> &'static str {
    ["structure", "value", "required", "invalid"]
        .into_iter()
        .find(|c| *c == code)
        .unwrap()
}

/// A whole-line problem: one structure issue without a location.
#[track_caller]
fn line_rejected(line: &[u8], diagnostics_start: &str) {
    let issues = check_as(None, Config::default(), line);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(
        (issues[0].code, issues[0].expression.as_deref()),
        ("structure", None)
    );
    assert!(
        issues[0].diagnostics.starts_with(diagnostics_start),
        "{}",
        issues[0].diagnostics
    );
}

#[test]
fn the_line_must_be_a_json_object() {
    line_rejected(b"{\"resourceType\":\"Patient\"", "the line is not JSON");
    line_rejected(b"{\"resourceType\":\"Patient\"} x", "the line is not JSON");
    line_rejected(b"", "the line is not JSON");
    line_rejected(
        b"{\"resourceType\":\"Patient\",\"id\":\"\xff\"}",
        "the line is not JSON: invalid UTF-8 at byte 32",
    );
    line_rejected(
        b"[{\"resourceType\":\"Patient\"}]",
        "the line is not a JSON object",
    );
    line_rejected(b"\"Patient\"", "the line is not a JSON object");
    line_rejected(b"null", "the line is not a JSON object");
    // A CR before the newline is JSON whitespace.
    assert!(check_as(None, Config::default(), b"{\"resourceType\":\"Patient\"}\r").is_empty());
}

#[test]
fn resource_type_is_known_r4_and_the_declared_one() {
    accepted(json!({"resourceType": "Patient"}));
    accepted(
        json!({"resourceType": "Parameters", "parameter": [{"name": "x", "valueBoolean": true}]}),
    );
    let d = rejected(json!({"resourceType": "Patinet"}), "value", "resourceType");
    assert_eq!(d, "'Patinet' is not an R4 resource type");
    // Medplum's own types are in the vendored schema, but not R4.
    rejected(json!({"resourceType": "Project"}), "value", "resourceType");
    rejected(json!({"id": "x"}), "required", "resourceType");
    rejected(json!({"resourceType": 3}), "required", "resourceType");
    assert!(is_resource_type("Observation") && !is_resource_type("Bot"));

    let line = br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#;
    let issues = check_as(Some("Patient"), Config::default(), line);
    assert_eq!(
        found(&issues),
        [("invalid", Some("resourceType".to_owned()))]
    );
    assert_eq!(
        issues[0].diagnostics,
        "a Observation in a file declared to hold Patient"
    );
    assert!(check_as(Some("Observation"), Config::default(), line).is_empty());
    assert_eq!(
        Validator::new(Some("Nope"), Config::default())
            .unwrap_err()
            .to_string(),
        "'Nope' is not an R4 resource type"
    );
}

#[test]
fn ids_and_meta() {
    accepted(json!({"resourceType": "Patient", "id": "a-Z.0", "meta": {
        "versionId": "3", "lastUpdated": "2024-05-01T12:00:00.123+02:00",
        "profile": ["http://example.org/p"], "_profile": [{"extension": [{"url": "u", "valueCode": "c"}]}],
        "tag": [{"system": "s", "code": "c"}]}}));
    let d = rejected(
        json!({"resourceType": "Patient", "id": "a b"}),
        "value",
        "Patient.id",
    );
    assert_eq!(d, r#""a b" is not a valid id ([A-Za-z0-9-.]{1,64})"#);
    rejected(
        json!({"resourceType": "Patient", "id": "x".repeat(65)}),
        "value",
        "Patient.id",
    );
    rejected(
        json!({"resourceType": "Patient", "id": 7}),
        "structure",
        "Patient.id",
    );
    rejected(
        json!({"resourceType": "Patient", "meta": {"versionId": "v/1"}}),
        "value",
        "Patient.meta.versionId",
    );
    let d = rejected(
        json!({"resourceType": "Patient", "meta": {"lastUpdated": "2024-05-01"}}),
        "value",
        "Patient.meta.lastUpdated",
    );
    assert!(
        d.starts_with(r#""2024-05-01" is not a valid instant"#),
        "{d}"
    );
    rejected(
        json!({"resourceType": "Patient", "meta": {"lastUpdated": "2024-05-01T12:00:00"}}),
        "value",
        "Patient.meta.lastUpdated",
    );
    // Medplum's additions to Meta are not R4.
    rejected(
        json!({"resourceType": "Patient", "meta": {"project": "p"}}),
        "structure",
        "Patient.meta.project",
    );
}

#[test]
fn unknown_elements_at_any_depth() {
    let d = rejected(
        json!({"resourceType": "Patient", "name": [{"family": "F"}, {"fmaily": "F"}]}),
        "structure",
        "Patient.name[1].fmaily",
    );
    assert_eq!(d, "unknown element 'fmaily'");
    rejected(
        json!({"resourceType": "Patient", "colour": "red"}),
        "structure",
        "Patient.colour",
    );
    rejected(
        json!({"resourceType": "Observation", "code": {"coding": [{"system": "s", "cod": "c"}]}}),
        "structure",
        "Observation.code.coding[0].cod",
    );
    // `_name` exists only next to primitives, and `resourceType` only at a
    // resource's top.
    rejected(
        json!({"resourceType": "Patient", "_name": [{"id": "x"}]}),
        "structure",
        "Patient._name",
    );
    rejected(
        json!({"resourceType": "Patient", "name": [{"resourceType": "HumanName"}]}),
        "structure",
        "Patient.name[0].resourceType",
    );
    rejected(
        json!({"resourceType": "Patient", "birthDate": "2000", "_birthDate": {"extension": [{"url": "u", "valueCode": "c"}], "x": 1}}),
        "structure",
        "Patient.birthDate.x",
    );
    // Medplum's `Reference.resource` is not R4 either.
    rejected(
        json!({"resourceType": "Patient", "managingOrganization": {"resource": {"resourceType": "Organization"}}}),
        "structure",
        "Patient.managingOrganization.resource",
    );
}

#[test]
fn unknown_elements_can_be_ignored() {
    let config = Config {
        unknown_elements: UnknownElements::Ignore,
        ..Config::default()
    };
    let line =
        json!({"resourceType": "Patient", "name": [{"fmaily": {"deep": [1, 2]}}], "x": null});
    assert!(check_as(None, config.clone(), line.to_string().as_bytes()).is_empty());
    let line = json!({"resourceType": "Patient", "x": 1, "birthDate": "1970-13"});
    let issues = check_as(None, config, line.to_string().as_bytes());
    assert_eq!(
        found(&issues),
        [("value", Some("Patient.birthDate".to_owned()))]
    );
}

#[test]
fn json_kinds() {
    let cases = [
        (
            json!({"gender": ["male"]}),
            "Patient.gender",
            "expected a string (code), found an array",
        ),
        (
            json!({"name": {"family": "F"}}),
            "Patient.name",
            "expected an array, found an object",
        ),
        (
            json!({"maritalStatus": "M"}),
            "Patient.maritalStatus",
            "expected an object, found a string",
        ),
        (
            json!({"active": "true"}),
            "Patient.active",
            "expected a boolean, found a string",
        ),
        (
            json!({"birthDate": 1970}),
            "Patient.birthDate",
            "expected a string (date), found a number",
        ),
        (
            json!({"birthDate": {"value": "1970"}}),
            "Patient.birthDate",
            "expected a string (date), found an object",
        ),
        (
            json!({"multipleBirthInteger": "2"}),
            "Patient.multipleBirthInteger",
            "expected a number (integer), found a string",
        ),
        (
            json!({"active": null}),
            "Patient.active",
            "expected a boolean, found null",
        ),
        (
            json!({"name": [null]}),
            "Patient.name[0]",
            "expected an object, found null",
        ),
        (
            json!({"name": []}),
            "Patient.name",
            "an empty array (R4 JSON has no empty arrays)",
        ),
        (
            json!({"maritalStatus": {}}),
            "Patient.maritalStatus",
            "an empty object (R4 JSON has no empty objects)",
        ),
        (
            json!({"_birthDate": "x"}),
            "Patient.birthDate",
            "expected an object (a primitive's id and extensions), found a string",
        ),
        (
            json!({"contained": [7]}),
            "Patient.contained[0]",
            "expected a resource (an object), found a number",
        ),
    ];
    for (members, expression, diagnostics) in cases {
        let mut resource = members;
        resource["resourceType"] = json!("Patient");
        assert_eq!(rejected(resource, "structure", expression), diagnostics);
    }
}

#[test]
fn primitive_arrays_and_their_extensions() {
    accepted(json!({"resourceType": "Patient", "name": [{
        "given": ["A", null, "C"],
        "_given": [null, {"extension": [{"url": "http://e", "valueString": "B"}]}, null]
    }]}));
    accepted(json!({"resourceType": "Patient",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}}));
    rejected(
        json!({"resourceType": "Patient", "name": [{"given": ["A", 3]}]}),
        "structure",
        "Patient.name[0].given[1]",
    );
    rejected(
        json!({"resourceType": "Patient", "name": [{"given": ["A", ""]}]}),
        "value",
        "Patient.name[0].given[1]",
    );
}

/// Every primitive through `Extension.value[x]`, where the schema spells
/// them out inline: (type, valid values, invalid values).
#[test]
fn primitive_formats() {
    let cases: [(&str, Vec<Value>, Vec<Value>); 19] = [
        (
            "Base64Binary",
            vec![json!("SGVsbG8="), json!("SGVs bG8=")],
            vec![json!("SGVsbG8"), json!("SG=Vs*G8=")],
        ),
        ("Boolean", vec![json!(true), json!(false)], vec![]),
        (
            "Canonical",
            vec![json!("http://x/StructureDefinition/y|1.0")],
            vec![json!("http://x y"), json!("")],
        ),
        (
            "Code",
            vec![json!("final"), json!("a b")],
            vec![json!(" final"), json!("a  b"), json!("")],
        ),
        (
            "Date",
            vec![json!("2024"), json!("2024-02"), json!("2024-02-29")],
            vec![json!("2023-02-29"), json!("2024-00"), json!("20240101")],
        ),
        (
            "DateTime",
            vec![json!("2024-05"), json!("2024-05-01T00:00:00Z")],
            vec![json!("2024-05-01T00:00Z"), json!("2024-05-01T00:00:00")],
        ),
        (
            "Decimal",
            vec![
                json!(0),
                json!(-1.5),
                json!(1e300),
                json!(12345678901234567890u64),
            ],
            vec![],
        ),
        (
            "Id",
            vec![json!("abc-1.2")],
            vec![json!("abc_1"), json!("")],
        ),
        (
            "Instant",
            vec![json!("2024-05-01T00:00:00.000Z")],
            vec![json!("2024-05-01"), json!("2024-05-01T00:00:00+15:00")],
        ),
        (
            "Integer",
            vec![json!(0), json!(-2147483648i64), json!(2147483647)],
            vec![json!(2147483648i64), json!(1.5), json!(1e2)],
        ),
        (
            "Markdown",
            vec![json!("# Title\n\n* item")],
            vec![json!(""), json!("a\u{0C}b")],
        ),
        (
            "Oid",
            vec![json!("urn:oid:1.2.840.10008")],
            vec![json!("1.2.840"), json!("urn:oid:1.02")],
        ),
        (
            "PositiveInt",
            vec![json!(1), json!(2147483647)],
            vec![json!(0), json!(-1), json!(2.0)],
        ),
        (
            "String",
            vec![json!(" any\ttext\r\n"), json!("日本")],
            vec![json!(""), json!("a\u{2028}b")],
        ),
        (
            "Time",
            vec![json!("08:30:00"), json!("23:59:59.999")],
            vec![json!("8:30:00"), json!("08:30")],
        ),
        (
            "UnsignedInt",
            vec![json!(0), json!(7)],
            vec![json!(-1), json!(4294967296u64)],
        ),
        (
            "Uri",
            vec![json!("urn:x:y"), json!("http://a/b?c=d")],
            vec![json!("a b")],
        ),
        (
            "Url",
            vec![json!("https://example.org/fhir")],
            vec![json!("https://example.org/ fhir")],
        ),
        (
            "Uuid",
            vec![json!("urn:uuid:0b5e1c0e-8c5e-4c8e-9b1e-2a3b4c5d6e7f")],
            vec![json!("urn:uuid:0B5E1C0E-8C5E-4C8E-9B1E-2A3B4C5D6E7F")],
        ),
    ];
    for (ty, valid, invalid) in cases {
        let resource = |value: &Value| json!({"resourceType": "Patient", "extension": [{"url": "http://e", format!("value{ty}"): value}]});
        for value in &valid {
            accepted(resource(value));
        }
        for value in &invalid {
            rejected(
                resource(value),
                "value",
                &format!("Patient.extension[0].value{ty}"),
            );
        }
    }
    // Kinds: a decimal is a JSON number, a boolean a JSON boolean.
    let wrong_kind = [
        ("Decimal", json!("1.5")),
        ("Boolean", json!("true")),
        ("Integer", json!(true)),
        ("String", json!(1)),
    ];
    for (ty, value) in wrong_kind {
        let resource = json!({"resourceType": "Patient", "extension": [{"url": "http://e", format!("value{ty}"): value}]});
        rejected(
            resource,
            "structure",
            &format!("Patient.extension[0].value{ty}"),
        );
    }
}

#[test]
fn required_elements_codes_and_choices() {
    let d = rejected(
        json!({"resourceType": "Observation", "status": "final"}),
        "required",
        "Observation.code",
    );
    assert_eq!(d, "missing required element 'code'");
    rejected(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "component": [{"valueString": "v"}]}),
        "required",
        "Observation.component[0].code",
    );
    rejected(
        json!({"resourceType": "Patient", "text": {"status": "generated"}}),
        "required",
        "Patient.text.div",
    );

    let d = rejected(
        json!({"resourceType": "Patient", "gender": "man"}),
        "value",
        "Patient.gender",
    );
    assert_eq!(
        d,
        r#""man" is not a code of the required value set (male, female, other, unknown)"#
    );

    let d = rejected(
        json!({"resourceType": "Patient", "deceasedBoolean": false, "deceasedDateTime": "2020"}),
        "invalid",
        "Patient.deceasedDateTime",
    );
    assert_eq!(
        d,
        "'deceasedBoolean' and 'deceasedDateTime' are both given: a choice element has one type"
    );
    // A value and its extensions are one choice.
    accepted(
        json!({"resourceType": "Patient", "deceasedDateTime": "2020", "_deceasedDateTime": {"id": "d"}}),
    );
    // Not a choice: two elements that happen to share a prefix.
    accepted(
        json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p"},
        "instantiatesCanonical": ["http://a"], "instantiatesUri": ["http://b"]}),
    );
}

#[test]
fn duplicate_keys() {
    let line = br#"{"resourceType":"Patient","gender":"male","gender":"female"}"#;
    let issues = check_as(None, Config::default(), line);
    assert_eq!(
        found(&issues),
        [("structure", Some("Patient.gender".to_owned()))]
    );
    assert_eq!(issues[0].diagnostics, "duplicate key 'gender'");
    let line = br#"{"resourceType":"Patient","resourceType":"Patient"}"#;
    let issues = check_as(None, Config::default(), line);
    assert_eq!(
        found(&issues),
        [("structure", Some("Patient.resourceType".to_owned()))]
    );
}

#[test]
fn escaped_keys_and_members_before_resource_type() {
    assert!(
        check_as(
            None,
            Config::default(),
            br#"{"resourceType":"Patient","g\u0065nder":"male"}"#
        )
        .is_empty()
    );
    // R4 JSON puts resourceType first, but any order is one object.
    let line = br#"{"id":"p 1","name":[{"fmaily":"F"}],"resourceType":"Patient","gender":"x"}"#;
    let issues = check_as(Some("Patient"), Config::default(), line);
    assert_eq!(
        found(&issues),
        [
            ("value", Some("Patient.id".to_owned())),
            ("structure", Some("Patient.name[0].fmaily".to_owned())),
            ("value", Some("Patient.gender".to_owned())),
        ]
    );
    // Read again as they were: duplicates inside them still show.
    let line = br#"{"name":[{"family":"A","family":"B"}],"resourceType":"Patient"}"#;
    let issues = check_as(None, Config::default(), line);
    assert_eq!(
        found(&issues),
        [("structure", Some("Patient.name[0].family".to_owned()))]
    );
    let line = br#"{"contained":[{"id":"c","resourceType":"Organization","nme":"x"}],"resourceType":"Patient"}"#;
    let issues = check_as(None, Config::default(), line);
    assert_eq!(
        found(&issues),
        [("structure", Some("Patient.contained[0].nme".to_owned()))]
    );
}

#[test]
fn contained_resources_are_checked() {
    accepted(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "female"}],
        "subject": {"reference": "#p"}}),
    );
    rejected(
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient", "id": "p"}, {"resourceType": "Patient", "birthDate": "1990-02-30"}]}),
        "value",
        "Observation.contained[1].birthDate",
    );
    rejected(
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Medplum"}]}),
        "value",
        "Patient.contained[0].resourceType",
    );
    rejected(
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Observation", "status": "final"}]}),
        "required",
        "Patient.contained[0].code",
    );
    let d = rejected(
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Patient",
            "contained": [{"resourceType": "Patient"}]}]}),
        "invalid",
        "Patient.contained[0].contained",
    );
    assert!(d.contains("dom-2"), "{d}");
}

fn bundle(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({"resource": r}))
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[test]
fn bundle_entries_are_checked_to_a_depth() {
    accepted(bundle(vec![
        json!({"resourceType": "Patient"}),
        json!({"resourceType": "Organization", "name": "O"}),
    ]));
    rejected(
        bundle(vec![
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Patient", "gender": 1}),
        ]),
        "structure",
        "Bundle.entry[1].resource.gender",
    );
    rejected(
        json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "FETCH", "url": "x"}}]}),
        "value",
        "Bundle.entry[0].request.method",
    );

    let mut nested = json!({"resourceType": "Patient"});
    for _ in 0..MAX_RESOURCE_DEPTH {
        nested = bundle(vec![nested]);
    }
    accepted(nested.clone());
    let too_deep = bundle(vec![nested]);
    let expression = format!(
        "Bundle{}",
        ".entry[0].resource".repeat(MAX_RESOURCE_DEPTH + 1)
    );
    let d = rejected(too_deep, "structure", &expression);
    assert_eq!(
        d,
        format!("resources nested more than {MAX_RESOURCE_DEPTH} deep")
    );
}

#[test]
fn every_issue_of_a_line_up_to_the_cap() {
    let mut resource = json!({"resourceType": "Patient", "gender": "x", "birthDate": "x", "name": [{"fmaily": "F", "given": [1]}]});
    let issues = check(&resource);
    assert_eq!(issues.len(), 4, "{issues:#?}");

    for i in 0..30 {
        resource[format!("unknown{i:02}")] = json!(i);
    }
    let issues = check(&resource);
    assert_eq!(issues.len(), 21);
    assert!(issues[..20].iter().all(|i| i.severity == Severity::Error));
    assert_eq!(
        (
            issues[20].severity,
            issues[20].code,
            issues[20].diagnostics.as_str()
        ),
        (
            Severity::Information,
            "informational",
            "14 more issues in this line not listed"
        )
    );

    let config = Config {
        max_issues: 2,
        ..Config::default()
    };
    let issues = check_as(None, config, resource.to_string().as_bytes());
    assert_eq!(issues.len(), 3);
    assert_eq!(
        issues[2].diagnostics,
        "32 more issues in this line not listed"
    );
}

#[test]
fn config_from_the_plugin_table() {
    let lookup = |pairs: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert_eq!(Config::from_lookup(lookup(&[])), Ok(Config::default()));
    assert_eq!(
        Config::from_lookup(lookup(&[
            ("unknown_elements", "ignore"),
            ("max_issues", "5")
        ])),
        Ok(Config {
            unknown_elements: UnknownElements::Ignore,
            max_issues: 5
        })
    );
    assert_eq!(
        Config::from_lookup(lookup(&[("unknown_elements", "warn")])),
        Err(ConfigError::UnknownElements("warn".into()))
    );
    for bad in ["0", "1001", "many", "-1"] {
        let pairs: &'static [(&str, &str)] = Box::leak(Box::new([("max_issues", bad)]));
        assert_eq!(
            Config::from_lookup(lookup(pairs)),
            Err(ConfigError::MaxIssues(bad.into()))
        );
    }
}

#[test]
fn batches_are_framed_by_newlines() {
    let validator = Validator::new(None, Config::default()).unwrap();
    assert!(validator.validate(b"").is_empty());
    let batch = b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Nope\"}\n\n{\"resourceType\":\"Patient\"}";
    let results = validator.validate(batch);
    assert_eq!(results.len(), 4);
    assert_eq!(lines(batch).count(), 4);
    assert!(results[0].is_empty() && results[3].is_empty());
    assert_eq!(results[1][0].code, "value");
    assert_eq!(results[2][0].code, "structure");
    assert_eq!(
        validator
            .validate(b"{\"resourceType\":\"Patient\"}\n")
            .len(),
        1
    );
}

#[test]
fn any_bytes_get_a_verdict() {
    // Nesting deeper than the parser follows.
    line_rejected(&[b'['; 100_000], "the line is not JSON");
    let mut brackets = vec![b'['; 100_000];
    brackets.extend(vec![b']'; 100_000]);
    line_rejected(&brackets, "the line is not a JSON object");
    let mut deep = String::from(r#"{"resourceType":"Patient","extension":["#);
    for _ in 0..5_000 {
        deep.push_str(r#"{"url":"u","extension":["#);
    }
    line_rejected(deep.as_bytes(), "the line is not JSON");
    // Within the limit, deep extensions are walked.
    let mut ext = json!({"url": "u", "valueString": "leaf"});
    for _ in 0..40 {
        ext = json!({"url": "u", "extension": [ext]});
    }
    accepted(json!({"resourceType": "Patient", "extension": [ext]}));

    // A 16 MB string, checked and quoted short.
    let huge = "x ".repeat(8 << 20);
    accepted(json!({"resourceType": "Patient", "name": [{"text": huge}]}));
    let d = rejected(
        json!({"resourceType": "Patient", "id": huge}),
        "value",
        "Patient.id",
    );
    assert!(d.len() < 200 && d.contains("(16777216 bytes)"), "{d}");

    // Every prefix of a valid line is broken JSON: one issue each.
    let line = br#"{"resourceType":"Patient","id":"p","name":[{"given":["\u00e9",null],"_given":[null,{"id":"g"}]}],"multipleBirthInteger":-2,"deceasedBoolean":false}"#;
    assert!(check_as(None, Config::default(), line).is_empty());
    for end in 0..line.len() {
        let issues = check_as(None, Config::default(), &line[..end]);
        assert_eq!(issues.len(), 1, "prefix {end}: {issues:#?}");
    }
    // Each single byte flipped: a verdict, never a panic.
    for at in 0..line.len() {
        for byte in [0u8, b'"', b'{', b']', b'\\', 0xC3, 0xFF] {
            let mut mutated = line.to_vec();
            mutated[at] = byte;
            check_as(None, Config::default(), &mutated);
        }
    }
}

/// The deepest line walked (`MAX_DEPTH` objects and arrays), on a thread
/// with a quarter of the component's 1 MiB stack: recursion never traps,
/// also where members before a late `resourceType` are read again.
#[test]
fn the_deepest_line_fits_a_small_stack() {
    let nested = |levels: usize| {
        let mut ext = json!({"url": "u", "valueString": "leaf"});
        for _ in 0..levels {
            ext = json!({"url": "u", "extension": [ext]});
        }
        ext
    };
    // The resource and its extension array, then two levels per extension
    // (object and array) and the innermost object.
    let levels = (MAX_DEPTH - 3) / 2;
    let depth = |levels: usize| 2 + 2 * levels + 1;
    assert!(depth(levels) <= MAX_DEPTH && depth(levels + 1) > MAX_DEPTH);
    let deepest = json!({"resourceType": "Patient", "extension": [nested(levels)]}).to_string();
    let too_deep =
        json!({"resourceType": "Patient", "extension": [nested(levels + 1)]}).to_string();
    // Each resource buffers its members before resourceType, down to the
    // deepest nesting of resources.
    let mut buffered = format!(
        r#"{{"extension":[{}],"resourceType":"Patient"}}"#,
        nested(levels + 1)
    );
    for _ in 0..MAX_RESOURCE_DEPTH {
        buffered = format!(
            r#"{{"entry":[{{"resource":{buffered}}}],"resourceType":"Bundle","type":"collection"}}"#
        );
    }
    let outcomes = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let validator = Validator::new(None, Config::default()).unwrap();
            [deepest, too_deep, buffered].map(|line| validator.check(line.as_bytes()))
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(outcomes[0].is_empty(), "{:#?}", outcomes[0]);
    let too_deep = format!("objects and arrays nested more than {MAX_DEPTH} deep");
    assert_eq!(outcomes[1].len(), 1);
    assert_eq!(
        (outcomes[1][0].code, outcomes[1][0].diagnostics.as_str()),
        ("structure", too_deep.as_str())
    );
    assert_eq!(outcomes[2].len(), 1, "{:#?}", outcomes[2]);
    assert_eq!(outcomes[2][0].diagnostics, too_deep);
}
