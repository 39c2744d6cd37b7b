//! What the engine must refuse when a query is compiled, and the promise
//! behind `unsupported_definitions()`: every R4 definition is either
//! evaluated or refused as `not-supported`, never silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// The codes of the rejections of `query`, checking that each names why.
fn rejected(resource_type: &str, query: &str) -> Vec<&'static str> {
    match fhir_search::compile(resource_type, query) {
        Ok(_) => panic!("{resource_type}?{query} must be rejected"),
        Err(rejections) => {
            assert!(
                !rejections.is_empty(),
                "{resource_type}?{query}: an error with no issue"
            );
            for r in &rejections {
                assert!(
                    !r.diagnostics.trim().is_empty(),
                    "{resource_type}?{query}: {} without diagnostics",
                    r.code
                );
            }
            rejections.iter().map(|r| r.code).collect()
        }
    }
}

fn assert_codes(resource_type: &str, queries: &[&str], allowed: &[&str]) {
    let failures: Vec<String> = queries
        .iter()
        .filter_map(|query| {
            let codes = rejected(resource_type, query);
            (!codes.iter().all(|c| allowed.contains(c)))
                .then(|| format!("{resource_type}?{query}: {codes:?}, expected one of {allowed:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn result_parameters_are_invalid_in_a_filter() {
    assert_codes(
        "Observation",
        &[
            "_count=10",
            "code=http://loinc.org|8302-2&_count=10",
            "_sort=-date",
            "_include=Observation:patient",
            "_revinclude=Provenance:target",
            "_summary=count",
            "_elements=id",
            "_total=accurate",
            "_contained=true",
        ],
        &["invalid"],
    );
}

#[test]
fn features_left_out_are_not_supported() {
    assert_codes(
        "Observation",
        &[
            "_has:Observation:patient:code=1234",
            "code:in=http://hl7.org/fhir/ValueSet/observation-codes",
            "code:not-in=http://hl7.org/fhir/ValueSet/observation-codes",
            "code:below=http://snomed.info/sct|404684003",
            "code:above=http://snomed.info/sct|404684003",
        ],
        &["not-supported"],
    );
    assert_codes(
        "Patient",
        &["_has:Observation:patient:code=1234"],
        &["not-supported"],
    );
}

#[test]
fn unknown_parameters_and_modifiers_are_refused_by_name() {
    for (resource_type, query, name) in [
        ("Observation", "foo=bar", "foo"),
        (
            "Observation",
            "status=final&not-a-parameter=1",
            "not-a-parameter",
        ),
        ("Patient", "birthDate=2000", "birthDate"),
        ("Patient", "gender:contains=male", "contains"),
        ("Patient", "birthdate:exact=2000", "exact"),
        ("Patient", "family:below=smith", "below"),
        ("Observation", "value-quantity:text=5", "text"),
        ("Observation", "subject:Spaceship=1", "Spaceship"),
        ("Patient", "gender.name=x", "gender"),
    ] {
        let Err(rejections) = fhir_search::compile(resource_type, query) else {
            panic!("{resource_type}?{query} must be rejected");
        };
        assert!(
            rejections
                .iter()
                .any(|r| ["not-supported", "invalid"].contains(&r.code)
                    && r.diagnostics.contains(name)),
            "{resource_type}?{query}: {:?}",
            rejections
                .iter()
                .map(|r| (r.code, r.diagnostics.as_str()))
                .collect::<Vec<_>>()
        );
    }
    let codes = rejected("Spaceship", "_id=1");
    assert!(!codes.is_empty());
}

#[test]
fn malformed_values_are_refused() {
    assert_codes(
        "Observation",
        &[
            "date=2019-13-01",
            "date=2019-02-30",
            "date=xx2019",
            "date=ge",
            "date=2019-01-01T10:00:00+25:00",
            "date=20190101",
            "value-quantity=abc",
            "value-quantity=gt1.2.3",
            "value-quantity:missing=maybe",
        ],
        &["value", "invalid"],
    );
    assert_codes(
        "Patient",
        &["birthdate=19", "birthdate=zz1970", "gender:missing=yes"],
        &["value", "invalid"],
    );
    assert_codes(
        "RiskAssessment",
        &["probability=1,x", "probability=eq"],
        &["value", "invalid"],
    );
}

/// The vendored R4 SearchParameter definitions, as (base, code) → definition.
fn definitions() -> BTreeMap<(String, String), Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../host/assets/fhir-r4/search-parameters.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bundle: Value = serde_json::from_str(&text).expect("valid JSON");
    let mut out = BTreeMap::new();
    for entry in bundle["entry"].as_array().expect("a Bundle") {
        let definition = &entry["resource"];
        let code = definition["code"].as_str().expect("a code").to_owned();
        for base in definition["base"].as_array().expect("bases") {
            let base = base.as_str().expect("a type").to_owned();
            out.insert((base, code.clone()), definition.clone());
        }
    }
    out
}

/// A well-formed value for a parameter of the definition's type; composite values join
/// their components' values with `$`.
fn sample_value(definition: &Value, by_url: &BTreeMap<String, Value>) -> String {
    match definition["type"].as_str().unwrap_or_default() {
        "date" => "2020".into(),
        "number" | "quantity" => "1".into(),
        "uri" => "http://example.org/x".into(),
        "composite" => definition["component"]
            .as_array()
            .map(|components| {
                components
                    .iter()
                    .map(|c| {
                        c["definition"]
                            .as_str()
                            .and_then(|url| by_url.get(url))
                            .map_or_else(|| "x".to_owned(), |d| sample_value(d, by_url))
                    })
                    .collect::<Vec<_>>()
                    .join("$")
            })
            .unwrap_or_else(|| "x$x".into()),
        // A token may stand for a boolean (`deceased`), so the sample is
        // one that reads as both.
        "token" => "true".into(),
        _ => "x".into(),
    }
}

/// A concrete type to compile parameters of an abstract base on.
fn concrete(base: &str) -> &str {
    match base {
        "Resource" | "DomainResource" => "Patient",
        other => other,
    }
}

#[test]
fn every_r4_definition_is_evaluated_or_refused_as_not_supported() {
    let definitions = definitions();
    let by_url: BTreeMap<String, Value> = definitions
        .values()
        .filter_map(|d| Some((d["url"].as_str()?.to_owned(), d.clone())))
        .collect();
    let unsupported = fhir_search::unsupported_definitions();
    let listed: BTreeSet<(String, String)> = unsupported
        .iter()
        .map(|u| (u.base.to_owned(), u.code.to_owned()))
        .collect();
    for u in &unsupported {
        assert!(
            !u.reason.trim().is_empty(),
            "{}.{} is listed without a reason",
            u.base,
            u.code
        );
        assert!(
            definitions.contains_key(&(u.base.to_owned(), u.code.to_owned())),
            "{}.{} is listed but is no R4 definition",
            u.base,
            u.code
        );
    }
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for ((base, code), definition) in &definitions {
        let query = format!("{code}={}", sample_value(definition, &by_url));
        let result = fhir_search::compile(concrete(base), &query);
        match (listed.contains(&(base.clone(), code.clone())), result) {
            (false, Ok(_)) => evaluated += 1,
            (false, Err(r)) => failures.push(format!(
                "{base}?{query}: not listed as unsupported, yet rejected: {:?}",
                r.iter()
                    .map(|r| (r.code, r.diagnostics.as_str()))
                    .collect::<Vec<_>>()
            )),
            (true, Ok(_)) => failures.push(format!(
                "{base}?{query}: listed as unsupported, yet accepted"
            )),
            (true, Err(r)) => {
                if !r.iter().all(|r| r.code == "not-supported")
                    || !r.iter().any(|r| r.diagnostics.contains(code.as_str()))
                {
                    failures.push(format!(
                        "{base}?{query}: listed, refused as {:?}",
                        r.iter()
                            .map(|r| (r.code, r.diagnostics.as_str()))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    println!(
        "{} (base, code) definitions: {evaluated} evaluated, {} listed as unsupported",
        definitions.len(),
        listed.len()
    );
    assert!(
        failures.is_empty(),
        "{} definitions break the promise:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Without an expression there is nothing to evaluate.
    for code in ["_text", "_content", "_query"] {
        assert_eq!(
            rejected("Patient", &format!("{code}=x")),
            ["not-supported"],
            "{code}"
        );
    }
    assert!(
        evaluated > definitions.len() * 3 / 4,
        "most definitions are evaluated"
    );
}

#[test]
fn parameters_are_the_r4_definitions_of_the_type() {
    let definitions = definitions();
    let listed: BTreeSet<(String, String)> = fhir_search::unsupported_definitions()
        .into_iter()
        .map(|u| (u.base.to_owned(), u.code.to_owned()))
        .collect();
    for resource_type in [
        "Patient",
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "Procedure",
        "Claim",
    ] {
        let params = fhir_search::parameters(resource_type);
        let offered: BTreeSet<&str> = params.iter().map(|p| p.code).collect();
        for p in &params {
            let definition = ["Resource", "DomainResource", resource_type]
                .iter()
                .find_map(|base| definitions.get(&(base.to_string(), p.code.to_owned())))
                .unwrap_or_else(|| panic!("{resource_type}.{} is no R4 definition", p.code));
            assert_eq!(definition["type"], p.kind, "{resource_type}.{}", p.code);
            assert!(!p.definition.is_empty(), "{resource_type}.{}", p.code);
        }
        for ((base, code), _) in definitions
            .iter()
            .filter(|((base, _), _)| base == resource_type)
        {
            assert!(
                offered.contains(code.as_str()) || listed.contains(&(base.clone(), code.clone())),
                "{resource_type}.{code} is neither offered nor listed as unsupported"
            );
        }
        for code in [
            "_id",
            "_lastUpdated",
            "_profile",
            "_tag",
            "_security",
            "_source",
        ] {
            assert!(offered.contains(code), "{resource_type} offers {code}");
        }
    }
}
