//! End-to-end cases: queries compiled and evaluated on small resources
//! written here, the definition coverage, garbage input, and a timing over
//! the vendored synthea Observations.

use std::io::Read;
use std::time::Instant;

use super::*;

fn matches(resource_type: &str, query: &str, json: &str) -> bool {
    let filter = compile(resource_type, query).unwrap_or_else(|r| panic!("{query}: {r:?}"));
    filter
        .matches(json.as_bytes())
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn rejection(resource_type: &str, query: &str) -> Rejection {
    let mut r = compile(resource_type, query).expect_err(query);
    assert_eq!(r.len(), 1, "{query}: {r:?}");
    r.remove(0)
}

/// Which of `resources` match, by index.
fn which(resource_type: &str, query: &str, resources: &[&str]) -> Vec<usize> {
    let filter = compile(resource_type, query).unwrap_or_else(|r| panic!("{query}: {r:?}"));
    let batch = resources.join("\n");
    let verdicts = filter.evaluate(batch.as_bytes()).unwrap();
    assert_eq!(verdicts.len(), resources.len());
    (0..resources.len()).filter(|i| verdicts[*i]).collect()
}

const OBS: &str = r#"{"resourceType":"Observation","id":"o1","meta":{"lastUpdated":"2024-05-01T10:00:00Z","tag":[{"system":"http://t","code":"x"}],"profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns"],"source":"http://src/1"},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},"effectiveDateTime":"2019-03-05T10:30:00+01:00","identifier":[{"system":"http://ids","value":"123","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}],"text":"Medical record"}}],"valueQuantity":{"value":72.5,"unit":"beats/min","system":"http://unitsofmeasure.org","code":"/min"}}"#;

#[test]
fn tokens() {
    for (query, want) in [
        ("code=http://loinc.org|8867-4", true),
        ("code=http%3A%2F%2Floinc.org%7C8867-4", true),
        ("code=8867-4", true),
        ("code=http://loinc.org|", true),
        ("code=|8867-4", false),
        ("code=http://snomed.info/sct|8867-4", false),
        ("code=x,8867-4", true),
        ("code=x&code=8867-4", false),
        ("status=final", true),
        ("status=Final", false),
        ("status=final,amended", true),
        ("category=vital-signs", true),
        (
            "category=social-history,vital-signs,imaging,laboratory",
            true,
        ),
        ("category=laboratory", false),
        ("identifier=http://ids|123", true),
        ("identifier=|123", false),
        ("identifier=123", true),
        ("_id=o1", true),
        ("_id=o2,o1", true),
        ("_id=o2", false),
        ("_tag=http://t|x", true),
        ("_tag=http://t|y", false),
        ("_security=x", false),
        ("status:not=final", false),
        ("status:not=amended", true),
        ("category:not=laboratory", true),
        ("category:not=laboratory,vital-signs", false),
        ("code:text=heart", true),
        ("code:text=HEART%20R", true),
        ("code:text=rate", false),
        ("category:text=vital", true),
        (
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123",
            true,
        ),
        (
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|124",
            false,
        ),
        (
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|123",
            false,
        ),
        ("identifier:text=medical", true),
    ] {
        assert_eq!(matches("Observation", query, OBS), want, "{query}");
    }
    let patient = r#"{"resourceType":"Patient","id":"p","active":true,"gender":"male","telecom":[{"system":"phone","value":"555-1"},{"system":"email","value":"a@b.c"}],"deceasedDateTime":"2020-01-01"}"#;
    for (query, want) in [
        ("active=true", true),
        ("active=false", false),
        ("gender=male", true),
        ("phone=555-1", true),
        ("phone=a@b.c", false),
        ("email=a@b.c", true),
        ("telecom=a@b.c", true),
        ("deceased=true", true),
        ("deceased=false", false),
        ("deceased:not=true", false),
    ] {
        assert_eq!(matches("Patient", query, patient), want, "{query}");
    }
    let alive = r#"{"resourceType":"Patient","id":"q"}"#;
    assert!(matches("Patient", "deceased=false", alive));
    assert!(!matches("Patient", "deceased=true", alive));
    assert!(!matches("Patient", "active=true", alive));
    assert!(
        matches("Patient", "active:not=true", alive),
        ":not includes absent values"
    );
    assert!(
        !matches("Observation", "_id=o1", alive),
        "another type never matches"
    );
}

#[test]
fn escapes_in_values() {
    let json = r#"{"resourceType":"Patient","identifier":[{"system":"s|1","value":"a,b$c"}]}"#;
    assert!(matches("Patient", r"identifier=s\|1|a\,b$c", json));
    assert!(matches("Patient", r"identifier=a\,b$c", json));
    assert!(!matches("Patient", "identifier=a,b", json));
    let backslash = r#"{"resourceType":"Patient","identifier":[{"value":"x\\y"}]}"#;
    assert!(matches("Patient", r"identifier=x\\y", backslash));
    assert!(matches("Patient", "identifier=x%5C%5Cy", backslash));
    let escaped = r#"{"resourceType":"Patient","gender":"m\u0061le"}"#;
    assert!(matches("Patient", "gender=male", escaped));
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","name":[{"use":"official","family":"Müller-Lüdenscheidt","given":["Jörg","Peter"],"prefix":["Dr."]},{"text":"Joe Miller"}],"address":[{"line":["1 Main St"],"city":"Zürich","postalCode":"8001","country":"CH"}],"birthDate":"1965-01-13","gender":"male"}"#;

#[test]
fn strings() {
    for (query, want) in [
        ("family=muller", true),
        ("family=MÜLL", true),
        ("family=lüdenscheidt", false),
        ("family:contains=lüdenscheidt", true),
        ("family:exact=Müller-Lüdenscheidt", true),
        ("family:exact=müller-lüdenscheidt", false),
        ("family:exact=Müller", false),
        ("given=jorg", true),
        ("given=pet", true),
        ("given=joe", false),
        ("name=joe", true),
        ("name=dr", true),
        ("name=lüden", false),
        ("name:contains=lüden", true),
        ("name=smith,pet", true),
        ("name=smith&name=pet", false),
        ("address=zur", true),
        ("address=1%20main", true),
        ("address-city=zurich", true),
        ("address-city=zurich&address-postalcode=80", true),
        ("address-country=ch", true),
        ("address-state=ch", false),
    ] {
        assert_eq!(matches("Patient", query, PATIENT), want, "{query}");
    }
}

#[test]
fn dates() {
    let patient = PATIENT;
    for (query, want) in [
        ("birthdate=1965", true),
        ("birthdate=1965-01", true),
        ("birthdate=1965-01-13", true),
        ("birthdate=1965-01-14", false),
        ("birthdate=eq1965-01-13T10:00", false),
        ("birthdate=ge1965-01-13", true),
        ("birthdate=gt1965-01-13", false),
        ("birthdate=gt1965-01-12", true),
        ("birthdate=lt1965-01-14", true),
        ("birthdate=le1965", true),
        ("birthdate=ne1965", false),
        ("birthdate=ne1966", true),
        ("birthdate=sa1964", true),
        ("birthdate=eb1966-01-01", true),
        ("birthdate=eb1965", false),
        ("birthdate=ap1965-02", true),
        ("birthdate=ap1965-04", false),
        ("birthdate=ge1960&birthdate=lt1970", true),
        ("birthdate=ge1966,lt1965-02", true),
    ] {
        assert_eq!(matches("Patient", query, patient), want, "{query}");
    }
    for (query, want) in [
        // 10:30 at +01:00 is 09:30 UTC.
        ("date=2019-03-05T09:30:00Z", true),
        ("date=2019-03-05T09:30", true),
        ("date=2019-03-05T10:30", false),
        ("date=2019-03-05T10:30:00%2B01:00", true),
        ("date=2019-03-05T10:30:00+01:00", true),
        ("date=gt2019-03-05T09:30:00Z", false),
        ("date=ge2019-03-05T09:30:00Z", true),
        ("date=lt2019-03-05T09:30:01Z", true),
        ("_lastUpdated=gt2024-05-01T09:59:59Z", true),
        ("_lastUpdated=2024-04", false),
    ] {
        assert_eq!(matches("Observation", query, OBS), want, "{query}");
    }
    let periods = [
        r#"{"resourceType":"Encounter","id":"a","period":{"start":"2019-01-10T08:00:00Z","end":"2019-01-10T09:00:00Z"}}"#,
        r#"{"resourceType":"Encounter","id":"b","period":{"start":"2019-01-31"}}"#,
        r#"{"resourceType":"Encounter","id":"c","period":{"end":"2018-12-31"}}"#,
        r#"{"resourceType":"Encounter","id":"d"}"#,
    ];
    assert_eq!(which("Encounter", "date=2019-01", &periods), [0]);
    assert_eq!(which("Encounter", "date=gt2019-01", &periods), [1]);
    assert_eq!(which("Encounter", "date=ge2019-01", &periods), [0, 1]);
    assert_eq!(which("Encounter", "date=lt2019", &periods), [2]);
    assert_eq!(which("Encounter", "date=ne2019-01", &periods), [1, 2]);
    assert_eq!(which("Encounter", "date=sa2019-01-10", &periods), [1]);
    assert_eq!(which("Encounter", "date=eb2019-01-10", &periods), [2]);
    assert_eq!(which("Encounter", "date=ap2019-02", &periods), [0, 1]);
    assert_eq!(which("Encounter", "date:missing=true", &periods), [3]);
    // CarePlan.activity.detail.scheduled[x] reaches a Timing: the hull of
    // its events and bounds, here [2019-01-05, 2019-07-01).
    let careplan = r#"{"resourceType":"CarePlan","id":"c","activity":[{"detail":{"scheduledTiming":{"event":["2019-01-05"],"repeat":{"boundsPeriod":{"start":"2019-02-01","end":"2019-06-30"}}}}}]}"#;
    for (query, want) in [
        ("activity-date=2019", true),
        ("activity-date=2019-03", false),
        ("activity-date=ge2019-06-15", true),
        ("activity-date=ge2019-06", false),
        ("activity-date=le2019-01-10", true),
        ("activity-date=le2019-01-05", false),
        ("activity-date=gt2019-07", false),
        ("activity-date=ap2019-07", true),
    ] {
        assert_eq!(matches("CarePlan", query, careplan), want, "{query}");
    }
}

#[test]
fn references() {
    for (query, want) in [
        ("subject=Patient/p1", true),
        ("subject=Patient/p1/_history/3", true),
        ("subject=p1", true),
        ("subject=p2", false),
        ("subject:Patient=p1", true),
        ("subject:Group=p1", false),
        ("patient=Patient/p1", true),
        ("patient=p1", true),
        ("patient:missing=false", true),
        ("encounter=Encounter/e1", true),
        ("subject=http://other.org/fhir/Patient/p1", false),
        ("subject=Patient/p1,Patient/p2", true),
    ] {
        assert_eq!(matches("Observation", query, OBS), want, "{query}");
    }
    let by_url = r#"{"resourceType":"Observation","subject":{"reference":"http://other.org/fhir/Patient/p1/_history/2"}}"#;
    assert!(matches(
        "Observation",
        "subject=http://other.org/fhir/Patient/p1",
        by_url
    ));
    assert!(!matches("Observation", "subject=Patient/p1", by_url));
    let device = r#"{"resourceType":"Observation","subject":{"reference":"Device/p1"}}"#;
    assert!(matches("Observation", "subject=p1", device));
    assert!(
        !matches("Observation", "patient=p1", device),
        "patient = subject that is a Patient"
    );
    let group = r#"{"resourceType":"Observation","subject":{"reference":"Group/g"}}"#;
    assert!(
        !matches("Observation", "patient=g", group),
        "a Group is not a Patient"
    );
    let by_id = r#"{"resourceType":"Observation","subject":{"type":"Patient","identifier":{"system":"http://ssn","value":"999"}}}"#;
    assert!(matches(
        "Observation",
        "subject:identifier=http://ssn|999",
        by_id
    ));
    assert!(matches("Observation", "patient:identifier=999", by_id));
    assert!(!matches(
        "Observation",
        "subject:identifier=http://ssn|998",
        by_id
    ));
    assert!(!matches("Observation", "subject=999", by_id));
}

#[test]
fn chains_through_contained_resources() {
    let contained = r##"{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"c1","name":[{"family":"Peters"}],"gender":"female"}],"subject":{"reference":"#c1"}}"##;
    for (query, want) in [
        ("subject:Patient.name=peter", true),
        ("subject.name=peter", true),
        ("subject.name=smith", false),
        ("subject.gender=female", true),
        ("subject.gender=male", false),
        ("patient.gender=female", true),
        ("subject:Patient.name:exact=Peters", true),
        ("subject.gender=male,female", true),
    ] {
        assert_eq!(matches("Observation", query, contained), want, "{query}");
    }
    // Not contained: the store would have to be read to prove it.
    assert!(!matches("Observation", "subject.name=peter", OBS));
    assert!(!matches("Observation", "subject.gender:missing=true", OBS));
    assert_eq!(
        rejection("Observation", "subject.organization.name=x").code,
        "not-supported"
    );
    assert_eq!(
        rejection("Observation", "subject.nothing=x").code,
        "not-supported"
    );
    assert_eq!(rejection("Observation", "status.x=y").code, "invalid");
    assert_eq!(
        rejection("Observation", "subject:Medication.code=x").code,
        "invalid"
    );
}

#[test]
fn quantities_and_numbers() {
    let values = [
        r#"{"resourceType":"Observation","id":"a","valueQuantity":{"value":100,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}"#,
        r#"{"resourceType":"Observation","id":"b","valueQuantity":{"value":99.6,"unit":"milligram","system":"http://unitsofmeasure.org","code":"mg"}}"#,
        r#"{"resourceType":"Observation","id":"c","valueQuantity":{"value":140,"unit":"mg"}}"#,
        r#"{"resourceType":"Observation","id":"d","valueCodeableConcept":{"text":"x"}}"#,
        r#"{"resourceType":"Observation","id":"e","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}"#,
    ];
    assert_eq!(which("Observation", "value-quantity=100", &values), [0, 1]);
    assert_eq!(
        which("Observation", "value-quantity=1e2", &values),
        [0, 1, 2]
    );
    assert_eq!(
        which(
            "Observation",
            "value-quantity=100|http://unitsofmeasure.org|mg",
            &values
        ),
        [0, 1]
    );
    assert_eq!(
        which("Observation", "value-quantity=100||milligram", &values),
        [1]
    );
    assert_eq!(
        which("Observation", "value-quantity=gt99.6||mg", &values),
        [0, 2]
    );
    assert_eq!(
        which("Observation", "value-quantity=ge99.6", &values),
        [0, 1, 2]
    );
    assert_eq!(which("Observation", "value-quantity=lt100", &values), [1]);
    assert_eq!(which("Observation", "value-quantity=ap140", &values), [2]);
    assert_eq!(which("Observation", "value-quantity=ne100", &values), [2]);
    assert_eq!(
        which("Observation", "value-quantity:missing=true", &values),
        [3, 4]
    );
    assert_eq!(
        which("Observation", "component-value-quantity=120", &values),
        [4]
    );
    assert_eq!(
        which("Observation", "combo-value-quantity=gt110", &values),
        [2, 4]
    );
    assert_eq!(
        which(
            "Observation",
            "component-code-value-quantity=http://loinc.org|8480-6$gt100",
            &values
        ),
        [4]
    );
    assert_eq!(
        which(
            "Observation",
            "component-code-value-quantity=8480-6$lt100",
            &values
        ),
        Vec::<usize>::new()
    );
    assert_eq!(
        which("Observation", "code-value-quantity=8480-6$120", &values),
        Vec::<usize>::new()
    );

    let risks = [
        r#"{"resourceType":"RiskAssessment","id":"a","prediction":[{"probabilityDecimal":0.25}]}"#,
        r#"{"resourceType":"RiskAssessment","id":"b","prediction":[{"probabilityRange":{"low":{"value":0.1},"high":{"value":0.3}}}]}"#,
        r#"{"resourceType":"RiskAssessment","id":"c","prediction":[{"probabilityDecimal":0.9}]}"#,
    ];
    assert_eq!(which("RiskAssessment", "probability=0.25", &risks), [0]);
    assert_eq!(
        which("RiskAssessment", "probability=gt0.2", &risks),
        [0, 1, 2]
    );
    assert_eq!(which("RiskAssessment", "probability=lt0.2", &risks), [1]);
    assert_eq!(
        which("RiskAssessment", "probability=0.2", &risks),
        Vec::<usize>::new()
    );
    assert_eq!(which("RiskAssessment", "probability=ap0.85", &risks), [2]);
    let claims = [
        r#"{"resourceType":"ChargeItem","id":"a","priceOverride":{"value":12.5,"currency":"USD"}}"#,
        r#"{"resourceType":"ChargeItem","id":"b","priceOverride":{"value":12.5,"currency":"EUR"}}"#,
    ];
    assert_eq!(
        which(
            "ChargeItem",
            "price-override=12.5|urn:iso:std:iso:4217|USD",
            &claims
        ),
        [0]
    );
    assert_eq!(
        which("ChargeItem", "price-override=12.5||EUR", &claims),
        [1]
    );
}

#[test]
fn uris_and_meta() {
    for (query, want) in [
        (
            "_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns",
            true,
        ),
        (
            "_profile=http://hl7.org/fhir/StructureDefinition/vital",
            false,
        ),
        (
            "_profile:below=http://hl7.org/fhir/StructureDefinition/",
            true,
        ),
        (
            "_profile:above=http://hl7.org/fhir/StructureDefinition/vitalsigns/extra",
            true,
        ),
        ("_profile:above=http://hl7.org/fhir/", false),
        ("_source=http://src/1", true),
        ("_source:missing=true", false),
    ] {
        assert_eq!(matches("Observation", query, OBS), want, "{query}");
    }
}

#[test]
fn missing() {
    let resources = [
        r#"{"resourceType":"Patient","id":"a","birthDate":"2000"}"#,
        r#"{"resourceType":"Patient","id":"b"}"#,
    ];
    assert_eq!(which("Patient", "birthdate:missing=true", &resources), [1]);
    assert_eq!(which("Patient", "birthdate:missing=false", &resources), [0]);
    assert_eq!(
        which(
            "Patient",
            "name:missing=true&birthdate:missing=true",
            &resources
        ),
        [1]
    );
    assert_eq!(rejection("Patient", "name:missing=yes").code, "value");
}

#[test]
fn composites_on_the_resource_itself() {
    for (query, want) in [
        ("code-value-quantity=http://loinc.org|8867-4$72.5", true),
        (
            "code-value-quantity=8867-4$gt70|http://unitsofmeasure.org|/min",
            true,
        ),
        ("code-value-quantity=8867-4$lt70", false),
        ("code-value-quantity=1234-5$72.5", false),
        ("code-value-quantity=1234-5$72.5,8867-4$ap75", true),
        ("combo-code-value-quantity=8867-4$72.5", true),
    ] {
        assert_eq!(matches("Observation", query, OBS), want, "{query}");
    }
}

#[test]
fn filters_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Filter>();
}

#[test]
fn empty_query_matches_the_type() {
    let filter = compile("Patient", "").unwrap();
    assert_eq!(filter.resource_type(), "Patient");
    assert!(filter.matches(PATIENT.as_bytes()).unwrap());
    assert!(!filter.matches(OBS.as_bytes()).unwrap());
}

#[test]
fn rejections() {
    for (query, code, text) in [
        (
            "_count=10",
            "invalid",
            "result parameter _count is not allowed in a filter",
        ),
        (
            "_include=Observation:subject",
            "invalid",
            "result parameter _include",
        ),
        ("_sort=date", "invalid", "result parameter _sort"),
        ("_has:Observation:patient:code=x", "not-supported", "_has"),
        (
            "nonsense=1",
            "not-supported",
            "unsupported parameter 'nonsense' for Observation",
        ),
        ("_text=x", "not-supported", "unsupported parameter '_text'"),
        (
            "_content=x",
            "not-supported",
            "unsupported parameter '_content'",
        ),
        (
            "_query=x",
            "not-supported",
            "unsupported parameter '_query'",
        ),
        ("code:in=http://vs", "not-supported", "terminology"),
        ("code:below=http://x|1", "not-supported", "terminology"),
        (
            "code:exact=x",
            "not-supported",
            "unsupported modifier 'code:exact'",
        ),
        ("date:exact=2019", "not-supported", "unsupported modifier"),
        (
            "status:text=fin",
            "not-supported",
            "unsupported modifier 'status:text'",
        ),
        ("status=http://x|final", "not-supported", "no system"),
        ("date=2019-02-30", "value", "not a date"),
        ("date=xx2019", "value", "not a date"),
        ("value-quantity=abc", "value", "not a number"),
        ("value-quantity=5|x", "value", "not a quantity"),
        ("code=", "invalid", "empty value"),
        ("code=a,", "invalid", "empty value between commas"),
        ("_profile:below=,x", "invalid", "empty value between commas"),
        ("code:text=heart,,", "invalid", "empty value between commas"),
        ("code:text=%CC%81", "invalid", "no text to search"),
        ("code=a|b|c", "invalid", "more than one"),
        ("code", "invalid", "name=value"),
        ("code=%zz", "invalid", "percent-encoding"),
        (
            "subject=Medication/1",
            "invalid",
            "cannot refer to a Medication",
        ),
        ("subject=#c1", "invalid", "not a reference value"),
        (
            "subject:Nope=1",
            "not-supported",
            "unsupported modifier 'subject:Nope'",
        ),
        (
            "component-code-value-quantity=a",
            "invalid",
            "separated by '$'",
        ),
        ("identifier:of-type=a|b", "invalid", "of-type"),
    ] {
        let r = rejection("Observation", query);
        assert_eq!(r.code, code, "{query}: {r:?}");
        assert!(r.diagnostics.contains(text), "{query}: {r:?}");
    }
    let near = rejection("Location", "near=1|2|3|km");
    assert!(
        near.diagnostics.contains("unsupported parameter 'near'"),
        "{near:?}"
    );
    let composition = rejection("Bundle", "composition=Composition/1");
    assert_eq!(composition.code, "not-supported");
    let all = compile("Observation", "date=ge2020&foo=1&status=final&_count=2").unwrap_err();
    assert_eq!(all.len(), 2, "{all:?}");
    let unknown = compile("Nope", "a=b").unwrap_err();
    assert!(unknown[0].diagnostics.contains("unknown resource type"));
    assert!(
        compile("Quantity", "").is_err(),
        "a data type is not a resource type"
    );
}

#[test]
fn batches_and_garbage() {
    let filter = compile("Observation", "status=final").unwrap();
    let batch = format!("{OBS}\n{}\r\n", OBS.replace("final", "amended"));
    assert_eq!(
        filter.evaluate(batch.as_bytes()).unwrap(),
        vec![true, false]
    );
    assert_eq!(filter.evaluate(OBS.as_bytes()).unwrap(), vec![true]);
    assert_eq!(filter.evaluate(b"").unwrap(), Vec::<bool>::new());
    let err = filter.evaluate(b"{}\nnot json\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().starts_with("line 2: "), "{err}");
    assert_eq!(
        filter.evaluate(b"{}\n\n{}").unwrap_err().line,
        2,
        "an empty line is an error"
    );

    let filters: Vec<Filter> = [
        ("Observation", "status=final"),
        ("Observation", "code=http://loinc.org|8867-4&date=ge2019"),
        ("Observation", "value-quantity=gt5||mg"),
        ("Observation", "subject.name=x"),
        ("Observation", "patient=p1"),
        ("Observation", "component-code-value-quantity=a$1"),
        ("Patient", "name=a&birthdate=2000&deceased=true"),
        ("Patient", "_id:missing=false"),
        (
            "Observation",
            "subject:Patient.name=pet&combo-code-value-quantity=a$1&date=ap2019",
        ),
        (
            "Patient",
            "name:contains=x&address=y&phone=1&deceased=false",
        ),
    ]
    .iter()
    .map(|(t, q)| compile(t, q).unwrap())
    .collect();
    let nested = format!(
        r#"{{"resourceType":"Observation","status":{}1{}}}"#,
        "[".repeat(500),
        "]".repeat(500)
    );
    let mut garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        b"{\"resourceType\":".to_vec(),
        b"{\"resourceType\":\"Observation\",\"status\":".to_vec(),
        b"{\"resourceType\":\"Observation\",\"status\":\"fin".to_vec(),
        b"{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"code\":1e999999999}]}}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":1e99999999999999999999,\"code\":\"mg\"}}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":-0.0000000000000000000000000000000000000000001}}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"effectiveDateTime\":\"\xff\xfe\"}".to_vec(),
        b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xc3\x28\"}]}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"#\"},\"contained\":7}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"subject\":[[[{}]]]}".to_vec(),
        b"{\"resourceType\":\"Observation\",\"status\":\"\\ud800\"}".to_vec(),
        nested.into_bytes(),
    ];
    // Every prefix and a pseudo-random corruption of a real resource, and
    // resources with a few bytes replaced by JSON's structural characters.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let contained_obs = r##"{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"c1","name":[{"family":"Peters"}]}],"subject":{"reference":"#c1"},"component":[{"code":{"coding":[{"code":"a"}]},"valueQuantity":{"value":1}}],"effectivePeriod":{"start":"2019"}}"##;
    let alphabet: &[u8] = b"{}[]\\\",:0u\xff9-eE. ";
    for round in 0..300 {
        for base in [OBS, contained_obs, PATIENT] {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(round % 7 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % bytes.len() as u64) as usize;
                bytes[at] = alphabet[(seed >> 40) as usize % alphabet.len()];
            }
            garbage.push(bytes);
        }
    }
    for cut in 0..OBS.len() {
        garbage.push(OBS.as_bytes()[..cut].to_vec());
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bytes = OBS.as_bytes().to_vec();
        bytes[cut] = (seed >> 24) as u8;
        garbage.push(bytes);
    }
    for bytes in &garbage {
        for filter in &filters {
            // Either answer is fine; a panic is not.
            let _ = filter.matches(bytes);
            let _ = filter.evaluate(bytes);
        }
    }
    assert!(
        filters[0]
            .matches(b"{\"resourceType\":\"Observation\",\"status\":")
            .is_err()
    );
    assert!(
        filters[0]
            .matches(
                format!(
                    r#"{{"resourceType":"Observation","x":{}1{},"status":"final"}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                )
                .as_bytes()
            )
            .unwrap_err()
            .contains("deeper")
    );
}

#[test]
fn capability_parameters() {
    let params = parameters("Observation");
    let codes: Vec<&str> = params.iter().map(|p| p.code).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted);
    for code in [
        "_id",
        "_lastUpdated",
        "_profile",
        "_tag",
        "_security",
        "_source",
        "code",
        "date",
        "patient",
        "value-quantity",
        "component-code-value-quantity",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    assert!(
        !["_text", "_content", "_query"]
            .iter()
            .any(|c| codes.contains(c))
    );
    let code = params.iter().find(|p| p.code == "code").unwrap();
    assert_eq!(
        (code.kind, code.definition),
        ("token", "http://hl7.org/fhir/SearchParameter/clinical-code")
    );
    assert!(parameters("Nope").is_empty());
    for p in parameters("Patient") {
        assert!(
            compile("Patient", &format!("{}:missing=true", p.code)).is_ok(),
            "{}",
            p.code
        );
    }
}

/// The types the issue's tests and clients care most about.
const COMMON: [&str; 11] = [
    "Patient",
    "Observation",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "Procedure",
    "Claim",
    "DiagnosticReport",
    "Immunization",
    "AllergyIntolerance",
    "CarePlan",
];

#[test]
fn definition_coverage() {
    let unsupported = unsupported_definitions();
    let total = model::all_definitions().len();
    println!(
        "R4 definitions (base, code): {total}, supported {}, unsupported {}",
        total - unsupported.len(),
        unsupported.len()
    );
    for u in &unsupported {
        println!("  unsupported {}.{}: {}", u.base, u.code, u.reason);
    }
    // `_text`, `_content` and `_query` apply to every type but R4 gives
    // them no expression (their matching is the server's own): they are
    // counted, and also left out for the share of what can be evaluated.
    let (mut all, mut with_expression, mut supported) = (0, 0, 0);
    for ty in COMMON {
        let definitions: Vec<_> = model::definitions_for(ty).collect();
        let expressed = definitions
            .iter()
            .filter(|d| d.expression.is_some())
            .count();
        let accepted = parameters(ty).len();
        println!(
            "  {ty}: {accepted}/{} supported ({expressed} with an expression)",
            definitions.len()
        );
        all += definitions.len();
        with_expression += expressed;
        supported += accepted;
    }
    let share = supported as f64 / with_expression as f64;
    println!(
        "common types: {supported}/{all} supported = {:.1}%; {:.1}% of the {with_expression} with an expression",
        100.0 * supported as f64 / all as f64,
        share * 100.0
    );
    assert!(share > 0.95, "{share}");
    // Every listed definition is rejected, naming the parameter.
    for u in unsupported.iter().filter(|u| model::is_resource(u.base)) {
        let r = rejection(u.base, &format!("{}=x", u.code));
        assert_eq!(r.code, "not-supported", "{r:?}");
        assert!(
            r.diagnostics
                .contains(&format!("unsupported parameter '{}'", u.code)),
            "{r:?}"
        );
    }
}

fn synthea(resource_type: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/data/synthea-100/{resource_type}.ndjson.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn synthea_end_to_end_and_timing() {
    let observations = synthea("Observation");
    let lines = observations
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    for (query, at_least) in [
        ("category=vital-signs,laboratory", 1000),
        ("code=http://loinc.org|8302-2", 10),
        ("date=ge2015-01-01&date=lt2016", 10),
        ("value-quantity=gt100||cm", 10),
        ("subject=Patient/6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2", 10),
        ("code:text=body%20h", 10),
    ] {
        let filter = compile("Observation", query).unwrap();
        let verdicts = filter.evaluate(&observations).unwrap();
        assert_eq!(verdicts.len(), lines);
        let count = verdicts.iter().filter(|v| **v).count();
        assert!(
            count >= at_least && count < lines,
            "{query}: {count} of {lines}"
        );
        let rounds = 5;
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(filter.evaluate(&observations).unwrap());
        }
        let rate = (rounds * lines) as f64 / start.elapsed().as_secs_f64();
        println!("{query}: {count}/{lines} match, {rate:.0} resources/s");
    }
    let patients = synthea("Patient");
    for query in [
        "family=lemke",
        "birthdate=lt1950",
        "gender=female&address-city=boston",
    ] {
        let verdicts = compile("Patient", query)
            .unwrap()
            .evaluate(&patients)
            .unwrap();
        println!(
            "{query}: {} of 100",
            verdicts.iter().filter(|v| **v).count()
        );
    }
    let requests = synthea("MedicationRequest");
    let verdicts = compile("MedicationRequest", "status=active&authoredon=ge2019-01-01")
        .unwrap()
        .evaluate(&requests)
        .unwrap();
    println!(
        "MedicationRequest?status=active&authoredon=ge2019-01-01: {}",
        verdicts.iter().filter(|v| **v).count()
    );
}
