//! Export sinks chosen per export with `_sink=<name>`, configured by a config
//! file the test writes and pointing at the example components
//! (examples/plugins): the de-identification sink on synthea-100 (nothing
//! identifying survives, dates move consistently, references still
//! resolve), the gzip sink (files decompress to the default export's lines),
//! an unknown name (400), and a sink that traps (the job fails cleanly, the
//! server goes on).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::plugins::component;
use crate::support::{
    ExportFile, Http, Sandbox, gunzip, parameters, parse_ndjson, read_dataset, references,
    synthea_dir,
};

const SECRET: &str = "e2e de-identification secret";

/// `[plugins.sinks.*]` for the three example/test components.
fn write_config(sandbox: &Sandbox) -> PathBuf {
    let path = sandbox.dir("config").join("hearth.toml");
    let text = format!(
        "[plugins.sinks.deid]\ncomponent = {deid:?}\n\
         [plugins.sinks.deid.config]\nsecret = {SECRET:?}\n\
         [plugins.sinks.gzip]\ncomponent = {gzip:?}\nextension = \"ndjson.gz\"\n\
         [plugins.sinks.trap]\ncomponent = {trap:?}\n\
         [plugins.sinks.trap.config]\ntrap_type = \"Patient\"\n",
        deid = component("deid_sink"),
        gzip = component("gzip_sink"),
        trap = component("trapping_sink"),
    );
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// HMAC-SHA256 as RFC 2104 defines it, written here independently of the
/// plugin: the README promises ids become `hex(HMAC-SHA256(secret, id))`.
fn hmac_hex(key: &[u8], message: &str) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message.as_bytes())
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

fn day_number(date: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(&date[..10], format)
        .unwrap_or_else(|e| panic!("{date} is not a date: {e}"));
    i64::from(date.to_julian_day())
}

/// Days `shifted` lies after `original`, checking that only the date part
/// changed (time of day, zone and precision stay).
fn shift_between(original: &str, shifted: &str) -> i64 {
    assert_eq!(original.len(), shifted.len(), "{original} -> {shifted}");
    assert_eq!(original[10..], shifted[10..], "{original} -> {shifted}");
    day_number(shifted) - day_number(original)
}

/// Every string in `value`.
fn strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// What must not survive de-identification: ids, identifier values,
/// telecom values and address lines of the source, and names: name parts as
/// stored when Synthea appended digits (`Abram53`), and Patients' and
/// Practitioners' names as the references' displays write them
/// (`Dr. Quincy Bayer`: "Quincy Bayer"). Single words such as "White" stay
/// legitimate elsewhere ("White oak IgE Ab").
struct Secrets {
    ids: Vec<String>,
    values: Vec<String>,
    name_parts: BTreeSet<String>,
    full_names: BTreeSet<String>,
}

fn secrets(data: &[(String, Value)]) -> Secrets {
    let mut ids = Vec::new();
    let mut values = BTreeSet::new();
    let mut name_parts = BTreeSet::new();
    let mut full_names = BTreeSet::new();
    for (rtype, r) in data {
        ids.push(r["id"].as_str().expect("id").to_owned());
        let each = |key: &str| r[key].as_array().cloned().unwrap_or_default();
        for identifier in each("identifier") {
            if let Some(v) = identifier["value"].as_str().filter(|v| v.len() >= 6) {
                values.insert(v.to_owned());
            }
        }
        for telecom in each("telecom") {
            values.extend(telecom["value"].as_str().map(str::to_owned));
        }
        for address in each("address") {
            let lines = address["line"].as_array().cloned().unwrap_or_default();
            values.extend(lines.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if rtype == "Patient" || rtype == "Practitioner" {
            for name in each("name") {
                let mut given = Vec::new();
                strings(&name["given"], &mut given);
                let family = name["family"].as_str().unwrap_or_default();
                let plain = |s: &str| s.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
                if let Some(first) = given.first() {
                    full_names.insert(format!("{} {}", plain(first), plain(family)));
                }
                // Parts without Synthea's digits can be plain words.
                let distinctive = given.iter().copied().chain([family]);
                name_parts.extend(
                    distinctive
                        .filter(|p| p.bytes().any(|b| b.is_ascii_digit()))
                        .map(str::to_owned),
                );
            }
        }
    }
    Secrets {
        ids,
        values: values.into_iter().collect(),
        name_parts,
        full_names,
    }
}

fn by_type(files: &[ExportFile]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in files {
        out.entry(f.rtype.clone())
            .or_default()
            .extend(f.lines.iter().cloned());
    }
    out
}

/// The de-identified export's date shift: the same for every date the check
/// compares (each Patient's birthDate, their Encounters' periods), which it
/// returns. Also checks every id and reference against the keyed hash.
fn check_deid(data: &[(String, Value)], out: &BTreeMap<String, Vec<Value>>) -> i64 {
    let key = SECRET.as_bytes();
    let index: HashMap<(&str, &str), &Value> = out
        .iter()
        .flat_map(|(t, lines)| {
            lines
                .iter()
                .map(move |r| ((t.as_str(), r["id"].as_str().expect("an id")), r))
        })
        .collect();
    let mut shifts = BTreeSet::new();
    for (rtype, original) in data {
        let id = original["id"].as_str().unwrap();
        let hashed = hmac_hex(key, id);
        let Some(deid) = index.get(&(rtype.as_str(), hashed.as_str())) else {
            panic!("{rtype}/{id} is not in the output as {rtype}/{hashed}");
        };
        match rtype.as_str() {
            "Patient" => {
                let (b, b2) = (&original["birthDate"], &deid["birthDate"]);
                shifts.insert(shift_between(b.as_str().unwrap(), b2.as_str().unwrap()));
            }
            "Encounter" => {
                let subject = original["subject"]["reference"].as_str().unwrap();
                let patient = subject.strip_prefix("Patient/").unwrap();
                assert_eq!(
                    deid["subject"]["reference"],
                    format!("Patient/{}", hmac_hex(key, patient))
                );
                for end in ["start", "end"] {
                    if let Some(at) = original["period"][end].as_str() {
                        let shifted = deid["period"][end].as_str().expect("period kept");
                        shifts.insert(shift_between(at, shifted));
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(shifts.len(), 1, "one shift per export: {shifts:?}");
    let shift = *shifts.first().unwrap();
    assert!(shift != 0 && shift.abs() <= 365, "{shift}");
    shift
}

/// Every `Type/id` reference to an exported type names a resource of the
/// output (contained `#id` references: one of the resource's contained ids).
fn check_references_resolve(out: &BTreeMap<String, Vec<Value>>) {
    let ids: HashSet<String> = out
        .iter()
        .flat_map(|(t, lines)| {
            lines
                .iter()
                .map(move |r| format!("{t}/{}", r["id"].as_str().unwrap()))
        })
        .collect();
    let mut checked = 0;
    for lines in out.values() {
        for r in lines {
            let mut refs = Vec::new();
            references(r, &mut Vec::new(), &mut refs);
            let contained: HashSet<String> = r["contained"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("#{}", c["id"].as_str().unwrap_or_default()))
                .collect();
            for (path, reference) in refs {
                if reference.starts_with('#') {
                    assert!(contained.contains(&reference), "{path}: {reference}");
                } else {
                    let rtype = reference.split('/').next().unwrap_or_default();
                    if !out.contains_key(rtype) {
                        continue;
                    }
                    assert!(
                        ids.contains(&reference),
                        "{path}: {reference} does not resolve"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "only {checked} references checked");
}

/// Looked for as tokens (runs of letters, digits and `-`: a UUID, a phone
/// number, one segment of a reference) and whole string values, not by
/// scanning the output for each of tens of thousands of ids.
fn check_nothing_identifying(secrets: &Secrets, files: &[ExportFile]) {
    let mut tokens = HashSet::new();
    let mut words = HashSet::new();
    let mut whole = HashSet::new();
    for f in files {
        for line in &f.lines {
            let mut all = Vec::new();
            strings(line, &mut all);
            for s in all {
                whole.insert(s);
                let token = |c: char| !(c.is_alphanumeric() || c == '-');
                tokens.extend(s.split(token).filter(|w| !w.is_empty()));
                words.extend(
                    s.split(|c: char| !c.is_alphanumeric())
                        .filter(|w| !w.is_empty()),
                );
            }
        }
    }
    for id in &secrets.ids {
        assert!(!tokens.contains(id.as_str()), "original id {id} survived");
    }
    for value in &secrets.values {
        let one_token = value.chars().all(|c| c.is_alphanumeric() || c == '-');
        let found = if one_token {
            tokens.contains(value.as_str())
        } else {
            whole.contains(value.as_str())
        };
        assert!(!found, "{value:?} survived");
    }
    // Only strings with a space can hold a "Given Family" name.
    let phrases: Vec<&str> = whole.iter().copied().filter(|s| s.contains(' ')).collect();
    let survived: Vec<&String> = secrets
        .name_parts
        .iter()
        .filter(|w| words.contains(w.as_str()))
        .chain(
            secrets
                .full_names
                .iter()
                .filter(|name| phrases.iter().any(|s| s.contains(name.as_str()))),
        )
        .collect();
    assert!(survived.is_empty(), "names survived: {survived:?}");
    assert!(secrets.full_names.len() > 100, "{:?}", secrets.full_names);
}

async fn deid_export(srv: &Http) -> (Value, Vec<ExportFile>) {
    let (_, manifest) = srv.export("/$export?_sink=deid").await;
    assert_eq!(manifest["extension"]["sink"], "deid", "{manifest}");
    let files = srv.files(&manifest, "output").await;
    (manifest, files)
}

#[tokio::test]
async fn deid_and_gzip_sinks_on_synthea() {
    let data = read_dataset(&synthea_dir());
    let mut sandbox = Sandbox::new();
    let config = write_config(&sandbox);
    let srv = sandbox.start(&["--config", config.to_str().unwrap()]).await;
    srv.load_transactions(&data, 500).await;

    let (_, plain) = srv.export("/$export").await;
    assert!(plain.get("extension").is_none(), "{plain}");
    let plain = by_type(&srv.files(&plain, "output").await);

    // gzip: `.ndjson.gz` files that decompress to the same lines.
    let (_, gz) = srv.export("/$export?_sink=gzip").await;
    assert_eq!(gz["extension"]["sink"], "gzip");
    let mut unzipped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in gz["output"].as_array().unwrap() {
        let url = entry["url"].as_str().unwrap();
        assert!(url.ends_with(".ndjson.gz"), "{url}");
        let resp = srv.download(url, &[]).await.ok(200);
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/gzip")
        );
        let lines = parse_ndjson(&gunzip(&resp.body), url);
        assert_eq!(Some(lines.len() as u64), entry["count"].as_u64(), "{url}");
        unzipped
            .entry(entry["type"].as_str().unwrap().to_owned())
            .or_default()
            .extend(lines);
    }
    let sorted = |m: &BTreeMap<String, Vec<Value>>| -> BTreeMap<String, BTreeSet<String>> {
        m.iter()
            .map(|(t, v)| (t.clone(), v.iter().map(Value::to_string).collect()))
            .collect()
    };
    assert_eq!(sorted(&unzipped), sorted(&plain));

    // De-identified: same resources per type, nothing identifying left.
    let (_, files) = deid_export(&srv).await;
    let out = by_type(&files);
    let counts = |m: &BTreeMap<String, Vec<Value>>| -> BTreeMap<String, usize> {
        m.iter().map(|(t, v)| (t.clone(), v.len())).collect()
    };
    assert_eq!(counts(&out), counts(&plain));
    for patient in &out["Patient"] {
        for gone in [
            "name",
            "address",
            "telecom",
            "identifier",
            "text",
            "extension",
        ] {
            assert!(patient.get(gone).is_none(), "{gone}: {patient}");
        }
        assert!(patient["gender"].is_string(), "kept: {patient}");
    }
    check_nothing_identifying(&secrets(&data), &files);
    let shift = check_deid(&data, &out);
    check_references_resolve(&out);

    // Another export: same pseudonyms (the hash is keyed by the secret
    // alone), other days (keyed by the job too). Two job ids give the same
    // shift with probability 1/730, so a third export settles a tie.
    let mut other = shift;
    for _ in 0..2 {
        let (_, files) = deid_export(&srv).await;
        let again = by_type(&files);
        other = check_deid(&data, &again);
        if other != shift {
            break;
        }
    }
    assert_ne!(other, shift, "three exports shifted dates by the same days");

    // A POST kick-off names the sink in its Parameters.
    let body = parameters(&[
        ("_type", "valueString", json!("Patient")),
        ("_sink", "valueString", json!("gzip")),
    ]);
    let (_, posted) = srv.export_post("/$export", &body).await;
    assert_eq!(posted["extension"]["sink"], "gzip");
    assert!(
        posted["output"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with(".ndjson.gz")
    );

    // An unknown name is refused at kick-off, naming `_sink` and the sinks.
    let refused = srv.kickoff("/$export?_sink=unknown").await.outcome(400);
    let text = refused.to_string();
    assert_eq!(refused["issue"][0]["expression"][0], "_sink", "{text}");
    assert!(text.contains("deid, gzip, trap"), "{text}");
}

#[tokio::test]
async fn a_trapping_sink_fails_its_job_cleanly() {
    let mut sandbox = Sandbox::new();
    let config = write_config(&sandbox);
    let srv = sandbox.start(&["--config", config.to_str().unwrap()]).await;
    let listed = srv.get("/_admin/plugins").await.ok(200).json().to_string();
    for name in [
        "deid_sink.wasm",
        "gzip_sink.wasm",
        "trapping_sink.wasm",
        "ndjson.gz",
    ] {
        assert!(listed.contains(name), "{name}: {listed}");
    }
    for i in 0..3 {
        srv.put(
            &format!("/Patient/p{i}"),
            &json!({"resourceType": "Patient", "id": format!("p{i}")}),
        )
        .await
        .ok(201);
        let observation = json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/p{i}")}});
        srv.put(&format!("/Observation/o{i}"), &observation)
            .await
            .ok(201);
    }

    // The sink passes Observations and traps on Patients.
    let status = srv.start_export("/$export?_sink=trap").await;
    let failed = srv.poll_export(&status).await.outcome(500).to_string();
    assert!(
        failed.contains("trapping_sink.wasm"),
        "names the plugin: {failed}"
    );
    assert!(failed.contains("trapped"), "names the cause: {failed}");
    // No file of the failed job is served, committed or not.
    for name in ["Observation-1-1.ndjson", "Patient-1-1.ndjson"] {
        let file = format!("{}/files/{name}", srv.local(&status));
        let resp = srv.download(&file, &[]).await;
        assert_eq!(resp.status, 404, "{name}");
    }

    // The server goes on: a read, the default sink, another named one.
    srv.get("/Patient/p1").await.ok(200);
    let (_, manifest) = srv.export("/$export").await;
    assert_eq!(srv.files(&manifest, "output").await.len(), 2);
    let (_, manifest) = srv.export("/$export?_sink=deid").await;
    let files = srv.files(&manifest, "output").await;
    let lines: usize = files.iter().map(|f| f.lines.len()).sum();
    assert_eq!(lines, 6);
}
