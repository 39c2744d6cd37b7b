//! Semantics synthea does not exercise, on small resources built here with
//! hand-counted answers: date precision and offsets, open Periods,
//! significant figures, `ap`, escapes, accents, contained chains, absolute
//! and logical references, uri `:above`/`:below`, `:missing`, meta
//! parameters.

use serde_json::{Value, json};

/// The ids `query` selects among `resources`, in order.
pub fn hits(resource_type: &str, query: &str, resources: &[Value]) -> Vec<String> {
    let filter = fhir_search::compile(resource_type, query).unwrap_or_else(|rejections| {
        let why: Vec<String> = rejections
            .iter()
            .map(|r| format!("{}: {}", r.code, r.diagnostics))
            .collect();
        panic!("{resource_type}?{query} was rejected: {}", why.join("; "))
    });
    let mut ndjson = Vec::new();
    for r in resources {
        ndjson.extend_from_slice(r.to_string().as_bytes());
        ndjson.push(b'\n');
    }
    let verdicts = filter
        .evaluate(&ndjson)
        .unwrap_or_else(|e| panic!("{resource_type}?{query}: line {}: {}", e.line, e.message));
    assert_eq!(verdicts.len(), resources.len(), "{resource_type}?{query}");
    resources
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| *v)
        .map(|(r, _)| r["id"].as_str().expect("fixtures have ids").to_owned())
        .collect()
}

/// Checks every `(query, expected ids)` pair, reporting all mismatches at once.
fn expect(resource_type: &str, resources: &[Value], table: &[(&str, &[&str])]) {
    let failures: Vec<String> = table
        .iter()
        .filter_map(|(query, expected)| {
            let actual = hits(resource_type, query, resources);
            (actual != *expected)
                .then(|| format!("{resource_type}?{query}: expected {expected:?}, got {actual:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn observation_at(id: &str, effective: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"text": "x"}, "effectiveDateTime": effective})
}

#[test]
fn dates_are_ranges_at_their_precision_and_offsets_count() {
    let data = [
        observation_at("a", "2019-03-05T10:00:00+02:00"),
        observation_at("b", "2019-12-31T23:30:00-02:00"),
        observation_at("c", "2020-01-01T00:30:00+02:00"),
        observation_at("d", "2019"),
        observation_at("e", "2019-03-05"),
        observation_at("f", "2018-12-31T23:59:59Z"),
    ];
    expect(
        "Observation",
        &data,
        &[
            // b is 2020-01-01T01:30Z, c is 2019-12-31T22:30Z.
            ("date=eq2019", &["a", "c", "d", "e"]),
            ("date=2019", &["a", "c", "d", "e"]),
            ("date=ge2020", &["b"]),
            ("date=2019-03-05", &["a", "e"]),
            ("date=ne2019", &["b", "f"]),
            // The year 2019 reaches past 2019-03-06: "the range above overlaps".
            ("date=gt2019-03-05", &["b", "c", "d"]),
            ("date=sa2019-03-05", &["b", "c"]),
            ("date=lt2019", &["f"]),
            ("date=eb2019-03-05", &["f"]),
            ("date=le2019-03-05", &["a", "d", "e", "f"]),
            ("date=2019-03-05T08:00:00Z", &["a"]),
            ("date=2019-03-05T10:00:00%2B02:00", &["a"]),
            // No offset: UTC.
            ("date=2019-12-31T22:30:00", &["c"]),
            ("date=2020-01-01T01:30", &["b"]),
            ("date=ge2019-03-05&date=lt2019-03-06", &["a", "d", "e"]),
        ],
    );
}

fn encounter(id: &str, period: Value) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "finished",
           "class": {"code": "AMB"}, "period": period})
}

#[test]
fn periods_with_an_open_end_reach_infinity() {
    let data = [
        encounter("open-end", json!({"start": "2019-05-01"})),
        encounter("open-start", json!({"end": "2019-05-01"})),
        encounter(
            "closed",
            json!({"start": "2019-02-01T10:00:00Z", "end": "2019-02-01T11:00:00Z"}),
        ),
    ];
    expect(
        "Encounter",
        &data,
        &[
            ("date=gt2020", &["open-end"]),
            ("date=sa2019-01-01", &["open-end", "closed"]),
            ("date=eb2025", &["open-start", "closed"]),
            ("date=eq2019", &["closed"]),
            ("date=ne2019", &["open-end", "open-start"]),
            ("date=lt1900", &["open-start"]),
            ("date=lt2019-06-01", &["open-end", "open-start", "closed"]),
            ("date=ge2019-05-01", &["open-end"]),
            ("date=le2019-05-01", &["open-start", "closed"]),
        ],
    );
}

fn risk(id: &str, probability: Value) -> Value {
    json!({"resourceType": "RiskAssessment", "id": id, "status": "final",
           "subject": {"reference": "Patient/p"}, "prediction": [{"probabilityDecimal": probability}]})
}

fn weighed(id: &str, value: Value, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "w"},
           "valueQuantity": {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}})
}

#[test]
fn numbers_and_quantities_use_significant_figures() {
    let decimal = |t: &str| Value::Number(t.parse().expect("a JSON number"));
    let data = [
        risk("99.6", decimal("99.6")),
        risk("100.4", decimal("100.4")),
        risk("100.5", decimal("100.5")),
        risk("99.4", decimal("99.4")),
        risk("100.04", decimal("100.04")),
    ];
    expect(
        "RiskAssessment",
        &data,
        &[
            ("probability=100", &["99.6", "100.4", "100.04"]),
            ("probability=eq100", &["99.6", "100.4", "100.04"]),
            ("probability=100.0", &["100.04"]),
            ("probability=ne100", &["100.5", "99.4"]),
            ("probability=gt100.45", &["100.5"]),
            ("probability=lt99.5", &["99.4"]),
            ("probability=ge100.4&probability=le100.45", &["100.4"]),
            ("probability=99.4,100.5", &["100.5", "99.4"]),
        ],
    );
    let near = [
        risk("80", json!(80)),
        risk("95", json!(95)),
        risk("104", json!(104)),
        risk("120", json!(120)),
    ];
    expect(
        "RiskAssessment",
        &near,
        &[("probability=ap100", &["95", "104"])],
    );

    let data = [
        weighed("99.6mg", decimal("99.6"), "mg"),
        weighed("100.4mg", decimal("100.4"), "mg"),
        weighed("100.5mg", decimal("100.5"), "mg"),
        weighed("100g", json!(100), "g"),
    ];
    expect(
        "Observation",
        &data,
        &[
            ("value-quantity=100", &["99.6mg", "100.4mg", "100g"]),
            (
                "value-quantity=100|http://unitsofmeasure.org|mg",
                &["99.6mg", "100.4mg"],
            ),
            ("value-quantity=100||g", &["100g"]),
            (
                "value-quantity=lt100.0|http://unitsofmeasure.org|mg",
                &["99.6mg"],
            ),
            ("value-quantity=ge100.45||mg", &["100.5mg"]),
            (
                "value-quantity=ap100||mg",
                &["99.6mg", "100.4mg", "100.5mg"],
            ),
            ("value-quantity=100|http://unitsofmeasure.org|kg", &[]),
        ],
    );
}

fn person(id: &str, name: Value) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [name]})
}

#[test]
fn strings_ignore_case_and_accents_unless_exact() {
    let mut montreal = person("muller", json!({"family": "Müller", "given": ["José"]}));
    montreal["address"] =
        json!([{"line": ["12 Rue Émile Zola"], "city": "Montréal", "country": "CA"}]);
    let data = [
        montreal,
        person("MULLER", json!({"family": "MULLER", "given": ["Jose"]})),
        person(
            "mullins",
            json!({"family": "Mullins", "given": ["Joseph"], "prefix": ["Dr."]}),
        ),
        person("smith-jr", json!({"family": "Smith,Jr", "given": ["Ann"]})),
        person("angstrom", json!({"text": "Ångström Anders"})),
    ];
    expect(
        "Patient",
        &data,
        &[
            ("family=muller", &["muller", "MULLER"]),
            ("family=m%C3%BCl", &["muller", "MULLER", "mullins"]),
            ("family:exact=M%C3%BCller", &["muller"]),
            ("family:exact=Muller", &[]),
            ("given=jose", &["muller", "MULLER", "mullins"]),
            ("given=JOS%C3%89", &["muller", "MULLER", "mullins"]),
            ("given:exact=Jose", &["MULLER"]),
            ("given:contains=SEP", &["mullins"]),
            ("name=%C3%A5ngstr%C3%B6m", &["angstrom"]),
            ("name=dr", &["mullins"]),
            ("name:contains=ULL", &["muller", "MULLER", "mullins"]),
            ("family=smith\\,jr", &["smith-jr"]),
            ("family=smith%5C,jr", &["smith-jr"]),
            (
                "family=smith\\,j,mull",
                &["muller", "MULLER", "mullins", "smith-jr"],
            ),
            ("family=smith,zz", &["smith-jr"]),
            ("family=smith\\,zz", &[]),
            ("address=montreal", &["muller"]),
            ("address=12", &["muller"]),
            ("address=rue", &[]),
            ("address:contains=emile", &["muller"]),
            ("address-city=MONTR%C3%89AL", &["muller"]),
            ("address-country=ca", &["muller"]),
        ],
    );
}

#[test]
fn escaped_separators_in_tokens_are_literal() {
    let with = |id: &str, system: &str, value: &str| json!({"resourceType": "Patient", "id": id, "identifier": [{"system": system, "value": value}]});
    let data = [
        with("pipe", "urn:x", "a|b"),
        with("comma", "urn:x", "c,d"),
        with("plain", "urn:y", "a"),
    ];
    expect(
        "Patient",
        &data,
        &[
            ("identifier=urn:x|a\\|b", &["pipe"]),
            ("identifier=a\\|b", &["pipe"]),
            ("identifier=urn:x|a%5C%7Cb", &["pipe"]),
            ("identifier=urn:x|c\\,d", &["comma"]),
            ("identifier=urn:x|c\\,d,urn:y|a", &["comma", "plain"]),
            ("identifier=urn:x|c,d", &[]),
            ("identifier=urn:y|", &["plain"]),
            ("identifier=|a", &[]),
        ],
    );
}

#[test]
fn chains_follow_contained_resources_only() {
    let contained = |id: &str, patient: Value| {
        json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "x"},
               "contained": [patient], "subject": {"reference": "#p1"}})
    };
    let data = [
        contained(
            "peterson",
            json!({"resourceType": "Patient", "id": "p1", "gender": "male", "name": [{"family": "Peterson"}]}),
        ),
        contained(
            "smith",
            json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]}),
        ),
        json!({"resourceType": "Observation", "id": "external", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/p1"}}),
        contained(
            "group",
            json!({"resourceType": "Group", "id": "p1", "type": "person", "actual": true, "name": "Peterson"}),
        ),
    ];
    expect(
        "Observation",
        &data,
        &[
            ("patient.family=peterson", &["peterson"]),
            ("subject:Patient.family=PETER", &["peterson"]),
            ("subject:Patient.gender=male", &["peterson"]),
            ("patient.family=smith", &["smith"]),
            ("patient.gender:missing=true", &["smith"]),
            (
                "patient.family=peterson,smith&status=final",
                &["peterson", "smith"],
            ),
            ("subject:Group.type=person", &["group"]),
        ],
    );
}

#[test]
fn references_by_type_id_url_and_identifier() {
    let about = |id: &str, subject: Value| json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "x"}, "subject": subject});
    // Whether `Patient/123` also names `http://example.org/fhir/Patient/123`
    // depends on the server's base, which a type filter does not know: the
    // absolute one is only checked against absolute search values.
    let data = [
        about("relative", json!({"reference": "Patient/123"})),
        about(
            "elsewhere",
            json!({"reference": "http://other.org/fhir/Patient/124"}),
        ),
        about("group", json!({"reference": "Group/123"})),
        about(
            "logical",
            json!({"identifier": {"system": "urn:mrn", "value": "M1"}}),
        ),
    ];
    expect(
        "Observation",
        &data,
        &[
            ("subject:Patient=123", &["relative"]),
            ("subject=Patient/123", &["relative"]),
            ("subject=123", &["relative", "group"]),
            ("subject:Group=123", &["group"]),
            ("subject=Patient/123,Group/123", &["relative", "group"]),
            ("subject=http://other.org/fhir/Patient/124", &["elsewhere"]),
            ("subject:identifier=urn:mrn|M1", &["logical"]),
            ("subject:identifier=M1", &["logical"]),
            ("subject:identifier=urn:other|M1", &[]),
        ],
    );
    let absolute = about(
        "absolute",
        json!({"reference": "http://example.org/fhir/Patient/123"}),
    );
    let all = [absolute, data[1].clone(), data[2].clone()];
    assert_eq!(
        hits(
            "Observation",
            "subject=http://example.org/fhir/Patient/123",
            &all
        ),
        ["absolute"]
    );
}

#[test]
fn uris_match_exactly_or_by_path_above_and_below() {
    let set = |id: &str, url: &str| json!({"resourceType": "ValueSet", "id": id, "status": "active", "url": url});
    let data = [
        set("vs", "http://acme.org/fhir/ValueSet/123"),
        set("vs-history", "http://acme.org/fhir/ValueSet/123/_history/5"),
        set("cs", "http://acme.org/fhir/CodeSystem/9"),
        set("other", "http://other.org/fhir/ValueSet/123"),
    ];
    expect(
        "ValueSet",
        &data,
        &[
            ("url=http://acme.org/fhir/ValueSet/123", &["vs"]),
            ("url=http://acme.org/fhir/ValueSet", &[]),
            (
                "url:below=http://acme.org/fhir/ValueSet",
                &["vs", "vs-history"],
            ),
            (
                "url:below=http://acme.org/fhir/",
                &["vs", "vs-history", "cs"],
            ),
            (
                "url:above=http://acme.org/fhir/ValueSet/123/_history/5",
                &["vs", "vs-history"],
            ),
            ("url:above=http://acme.org/fhir/ValueSet/123", &["vs"]),
            ("url:missing=false", &["vs", "vs-history", "cs", "other"]),
        ],
    );
}

#[test]
fn missing_not_and_meta_parameters() {
    let data = [
        json!({"resourceType": "Patient", "id": "full", "gender": "male", "birthDate": "1970-01-01",
               "meta": {"lastUpdated": "2024-05-06T07:08:09.123Z", "source": "http://src.org/feed#1",
                        "profile": ["http://acme.org/StructureDefinition/patient"],
                        "tag": [{"system": "urn:tags", "code": "vip"}],
                        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}),
        json!({"resourceType": "Patient", "id": "female", "gender": "female",
               "meta": {"lastUpdated": "2023-01-01T00:00:00Z"}}),
        json!({"resourceType": "Patient", "id": "bare"}),
    ];
    expect(
        "Patient",
        &data,
        &[
            ("gender:missing=true", &["bare"]),
            ("gender:missing=false", &["full", "female"]),
            ("birthdate:missing=true", &["female", "bare"]),
            ("gender:not=male", &["female", "bare"]),
            ("gender:not=male,female", &["bare"]),
            ("_id=full,female&_id=female,bare", &["female"]),
            ("_lastUpdated=2024-05-06", &["full"]),
            ("_lastUpdated=lt2024", &["female"]),
            ("_lastUpdated:missing=true", &["bare"]),
            ("_tag=urn:tags|vip", &["full"]),
            ("_tag:not=urn:tags|vip", &["female", "bare"]),
            ("_security=R", &["full"]),
            ("_source=http://src.org/feed%231", &["full"]),
            (
                "_profile=http://acme.org/StructureDefinition/patient",
                &["full"],
            ),
            (
                "_profile:below=http://acme.org/StructureDefinition",
                &["full"],
            ),
        ],
    );
}

#[test]
fn deceased_follows_its_fhirpath_expression() {
    // `Patient.deceased.exists() and Patient.deceased != false`: true for a
    // dateTime, false when absent.
    let data = [
        json!({"resourceType": "Patient", "id": "yes", "deceasedBoolean": true}),
        json!({"resourceType": "Patient", "id": "no", "deceasedBoolean": false}),
        json!({"resourceType": "Patient", "id": "dated", "deceasedDateTime": "2020-02-03"}),
        json!({"resourceType": "Patient", "id": "silent"}),
    ];
    expect(
        "Patient",
        &data,
        &[
            ("deceased=true", &["yes", "dated"]),
            ("deceased=false", &["no", "silent"]),
            ("death-date=2020", &["dated"]),
            ("death-date:missing=true", &["yes", "no", "silent"]),
        ],
    );
}
