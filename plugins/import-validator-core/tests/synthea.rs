//! The vendored synthea-100 set (valid R4): every resource accepted, the
//! throughput printed, and mutated copies of real resources rejected with
//! the expected code and location.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use import_validator_core::{Config, Issue, Validator};
use serde_json::{Value, json};

/// (file name, its lines), read once for all the tests.
fn synthea() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/synthea-100");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let mut ndjson = Vec::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
                    .read_to_end(&mut ndjson)
                    .unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, ndjson)
            })
            .collect();
        files.sort();
        files
    })
}

fn resource_type(file: &str) -> &str {
    file.split('.').next().unwrap()
}

#[test]
fn every_synthea_resource_is_accepted() {
    let mut total = 0;
    let mut rejected = Vec::new();
    for (file, ndjson) in synthea() {
        let validator = Validator::new(Some(resource_type(file)), Config::default()).unwrap();
        for (n, issues) in validator.validate(ndjson).into_iter().enumerate() {
            total += 1;
            if !issues.is_empty() {
                rejected.push((file.clone(), n + 1, issues));
            }
        }
    }
    assert_eq!(total, 38_472);
    assert!(
        rejected.is_empty(),
        "{} rejected, first: {:#?}",
        rejected.len(),
        &rejected[..rejected.len().min(5)]
    );
}

/// Not a pass/fail test: prints what one core validates natively.
#[test]
fn throughput() {
    let bytes: usize = synthea().iter().map(|(_, n)| n.len()).sum();
    let mut best = f64::MAX;
    let mut lines = 0;
    for _ in 0..5 {
        let start = Instant::now();
        lines = 0;
        for (file, ndjson) in synthea() {
            let validator = Validator::new(Some(resource_type(file)), Config::default()).unwrap();
            lines += validator.validate(ndjson).len();
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "import validator, native, one thread: {lines} resources ({:.1} MB) in {:.1} ms (best of 5): {:.0} resources/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        best * 1e3,
        lines as f64 / best,
        bytes as f64 / 1e6 / best
    );
}

/// The first resource of `file`, parsed.
fn first(file: &str) -> Value {
    let (_, ndjson) = synthea()
        .iter()
        .find(|(f, _)| f == &format!("{file}.ndjson.gz"))
        .unwrap();
    let line = ndjson.split(|b| *b == b'\n').next().unwrap();
    serde_json::from_slice(line).unwrap()
}

fn check(resource: &Value) -> Vec<Issue> {
    let line = serde_json::to_vec(resource).unwrap();
    Validator::new(None, Config::default())
        .unwrap()
        .check(&line)
}

/// `resource` has exactly one issue, with this code and location.
fn rejected_once(resource: &Value, code: &str, expression: &str) -> Issue {
    let issues = check(resource);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let issue = issues.into_iter().next().unwrap();
    assert_eq!(
        (issue.code, issue.expression.as_deref()),
        (code, Some(expression)),
        "{issue:#?}"
    );
    issue
}

#[test]
fn mutated_synthea_resources_are_rejected() {
    let patient = first("Patient");
    assert!(check(&patient).is_empty());

    let mut typo = patient.clone();
    let name = typo["name"][0].as_object_mut().unwrap();
    let family = name.remove("family").unwrap();
    name.insert("fmaily".into(), family);
    let issue = rejected_once(&typo, "structure", "Patient.name[0].fmaily");
    assert!(issue.diagnostics.contains("unknown element 'fmaily'"));

    let mut bad_date = patient.clone();
    bad_date["birthDate"] = json!("1970-02-30");
    rejected_once(&bad_date, "value", "Patient.birthDate");

    let mut bad_id = patient.clone();
    bad_id["id"] = json!("not_an_id!");
    let issue = rejected_once(&bad_id, "value", "Patient.id");
    assert_eq!(
        issue.diagnostics,
        r#""not_an_id!" is not a valid id ([A-Za-z0-9-.]{1,64})"#
    );

    let mut no_type = patient.clone();
    no_type.as_object_mut().unwrap().remove("resourceType");
    rejected_once(&no_type, "required", "resourceType");

    let mut single_as_array = patient.clone();
    single_as_array["gender"] = json!([patient["gender"]]);
    let issue = rejected_once(&single_as_array, "structure", "Patient.gender");
    assert_eq!(
        issue.diagnostics,
        "expected a string (code), found an array"
    );

    let observation = first("Observation");
    assert!(check(&observation).is_empty());
    let mut number_as_string = observation.clone();
    let value = number_as_string["valueQuantity"]["value"].clone();
    assert!(value.is_number(), "{observation}");
    number_as_string["valueQuantity"]["value"] = json!(value.to_string());
    let issue = rejected_once(
        &number_as_string,
        "structure",
        "Observation.valueQuantity.value",
    );
    assert_eq!(
        issue.diagnostics,
        "expected a number (decimal), found a string"
    );

    let mut bad_instant = observation.clone();
    bad_instant["issued"] = json!("2020-01-01");
    rejected_once(&bad_instant, "value", "Observation.issued");

    let mut no_code = observation.clone();
    no_code.as_object_mut().unwrap().remove("code");
    rejected_once(&no_code, "required", "Observation.code");

    let mut bad_status = observation.clone();
    bad_status["status"] = json!("done");
    rejected_once(&bad_status, "value", "Observation.status");

    let mut two_values = observation.clone();
    two_values["valueString"] = json!("high");
    rejected_once(&two_values, "invalid", "Observation.valueString");

    let claim = first("Claim");
    assert!(check(&claim).is_empty());
    let mut deep = claim.clone();
    deep["item"][0]["productOrService"]["coding"][0]["sytem"] = json!("http://snomed.info/sct");
    rejected_once(
        &deep,
        "structure",
        "Claim.item[0].productOrService.coding[0].sytem",
    );

    let mut everything = typo.clone();
    everything["birthDate"] = json!("1970-13");
    everything["id"] = json!("");
    everything["gender"] = json!(1);
    let issues = check(&everything);
    let found: Vec<(&str, Option<&str>)> = issues
        .iter()
        .map(|i| (i.code, i.expression.as_deref()))
        .collect();
    for expected in [
        ("structure", Some("Patient.name[0].fmaily")),
        ("value", Some("Patient.birthDate")),
        ("value", Some("Patient.id")),
        ("structure", Some("Patient.gender")),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    assert_eq!(found.len(), 4, "{found:?}");
}
