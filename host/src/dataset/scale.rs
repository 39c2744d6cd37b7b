//! `hearth dataset scale`: a data set `factor` times larger, made by cloning
//! every patient's records with fresh ids.
//!
//! Rule: resources of the [`SHARED_TYPES`] (Organization, Practitioner,
//! Location, Medication: directory-like resources that many patients point
//! at) are written once, unchanged. Every other resource is copied `factor`
//! times: copy 0 is the input line byte for byte; copy `k >= 1` gets the id
//! [`clone_id`]`(id, k)` and every relative reference `Type/id` (or
//! `Type/id/_history/n`) to a non-shared type is rewritten to
//! `Type/clone_id(id, k)`. So if every reference of the input resolves
//! within the input, every reference of the output resolves within the output,
//! and copy `k` of a patient's graph only points into copy `k` or at shared
//! resources. Absolute, `urn:` and contained (`#x`) references are left alone.
//!
//! Streams line by line: memory does not grow with the size of the input.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{DatasetError, ndjson_files, read_lines};
use crate::fhir::id::is_valid;
use crate::fhir::resource::{Resource, for_each_reference_mut};
use crate::fhir::{ResourceId, ResourceType};

/// Types written once and shared by all copies.
pub const SHARED_TYPES: [&str; 4] = ["Organization", "Practitioner", "Location", "Medication"];

pub fn is_shared(rtype: ResourceType) -> bool {
    SHARED_TYPES.contains(&rtype.as_str())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScaleSummary {
    /// Resources (lines) written.
    pub resources: u64,
    /// Bytes written, line ends included.
    pub bytes: u64,
    /// Files written (one per resource type).
    pub files: usize,
}

/// The id of copy `k` of the resource with id `id`: `id` itself for copy 0,
/// `{id}-c{k}` when that is a valid id (at most 64 characters), otherwise
/// `{h}-c{k}` with `h` the 32 hex digits of the FNV-1a 128-bit hash of `id`.
/// Deterministic, so references can be rewritten without a lookup table.
pub fn clone_id(id: &str, k: u32) -> String {
    if k == 0 {
        return id.to_owned();
    }
    let plain = format!("{id}-c{k}");
    if is_valid(&plain) {
        return plain;
    }
    format!("{:032x}-c{k}", fnv1a_128(id.as_bytes()))
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ b as u128).wrapping_mul(PRIME))
}

/// The reference of copy `k`, or `None` when it stays as it is.
fn rewrite_reference(reference: &str, k: u32) -> Option<String> {
    let mut parts = reference.splitn(3, '/');
    let (rtype, id, rest) = (parts.next()?, parts.next()?, parts.next());
    let rtype = ResourceType::parse(rtype)?;
    if is_shared(rtype) || !is_valid(id) {
        return None;
    }
    if let Some(rest) = rest {
        // Only `Type/id/_history/n` is a relative reference with more parts.
        if !rest.starts_with("_history/") {
            return None;
        }
    }
    let mut out = format!("{rtype}/{}", clone_id(id, k));
    if let Some(rest) = rest {
        out.push('/');
        out.push_str(rest);
    }
    Some(out)
}

/// Writes `<Type>.ndjson` files to `output` (created if missing) holding
/// `factor` copies of the `*.ndjson` / `*.ndjson.gz` data set in `input`.
/// Output files of the same names are overwritten.
pub fn scale(input: &Path, factor: u32, output: &Path) -> Result<ScaleSummary, DatasetError> {
    if factor == 0 {
        return Err(DatasetError::Factor);
    }
    let files = ndjson_files(input)?;
    std::fs::create_dir_all(output).map_err(|e| DatasetError::io(output, e))?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(input, output) {
        return Err(DatasetError::SameFolder(output.to_owned()));
    }

    let mut writers: HashMap<ResourceType, (PathBuf, BufWriter<File>)> = HashMap::new();
    let mut summary = ScaleSummary::default();
    let mut buf = Vec::new();
    for file in &files {
        let mut lines = read_lines(file)?;
        let path = lines.path().to_owned();
        let shared = is_shared(file.rtype);
        let (out_path, w) = match writers.entry(file.rtype) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let out = output.join(format!("{}.ndjson", file.rtype));
                let f = File::create(&out).map_err(|e| DatasetError::io(&out, e))?;
                e.insert((out, BufWriter::with_capacity(1 << 20, f)))
            }
        };
        for item in &mut lines {
            let (line_no, line) = item?;
            let resource =
                Resource::from_slice(&line).map_err(|source| DatasetError::Resource {
                    path: path.clone(),
                    line: line_no,
                    source,
                })?;
            if resource.rtype != file.rtype {
                return Err(DatasetError::TypeMismatch {
                    path: path.clone(),
                    line: line_no,
                    expected: file.rtype,
                    found: resource.rtype,
                });
            }
            let Some(id) = resource
                .id
                .as_ref()
                .map(ResourceId::as_str)
                .map(str::to_owned)
            else {
                return Err(DatasetError::MissingId {
                    path: path.clone(),
                    line: line_no,
                });
            };

            let io = |e| DatasetError::io(out_path, e);
            w.write_all(&line).map_err(io)?;
            w.write_all(b"\n").map_err(io)?;
            summary.resources += 1;
            summary.bytes += line.len() as u64 + 1;
            if shared || factor == 1 {
                continue;
            }

            // Rewrite the same tree in place for each copy; the traversal
            // order is fixed, so the i-th reference is always the same one.
            let mut value = Value::Object(resource.body);
            let mut originals = Vec::new();
            for_each_reference_mut(&mut value, &mut |s| originals.push(s.clone()));
            for k in 1..factor {
                let mut i = 0;
                for_each_reference_mut(&mut value, &mut |s| {
                    if let Some(new) = rewrite_reference(&originals[i], k) {
                        *s = new;
                    }
                    i += 1;
                });
                value["id"] = Value::String(clone_id(&id, k));
                buf.clear();
                serde_json::to_writer(&mut buf, &value).expect("a JSON value serialises");
                buf.push(b'\n');
                w.write_all(&buf).map_err(io)?;
                summary.resources += 1;
                summary.bytes += buf.len() as u64;
            }
        }
    }
    for (path, mut w) in writers.into_values() {
        w.flush().map_err(|e| DatasetError::io(&path, e))?;
        w.into_inner()
            .map_err(|e| DatasetError::io(&path, e.into_error()))?
            .sync_all()
            .map_err(|e| DatasetError::io(&path, e))?;
        summary.files += 1;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::dataset::read_dir_resources;

    const LONG_ID: &str = "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghi";

    fn fixture() -> Vec<(&'static str, String)> {
        vec![
            ("Organization", r#"{"resourceType":"Organization","id":"o1","name":"Clinic"}"#.into()),
            ("Practitioner", r#"{"resourceType":"Practitioner","id":"d1"}"#.into()),
            ("Patient", r#"{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/o1"}}"#.into()),
            ("Patient", format!(r#"{{"resourceType":"Patient","id":"{LONG_ID}"}}"#)),
            ("Encounter", r#"{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/p1"},"participant":[{"individual":{"reference":"Practitioner/d1"}}],"serviceProvider":{"reference":"Organization/o1"}}"#.into()),
            ("Observation", r#"{"resourceType":"Observation","id":"ob1","subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1/_history/1"},"valueQuantity":{"value":1.50},"hasMember":[{"reference":"Observation/ob2"}]}"#.into()),
            ("Observation", format!(r##"{{"resourceType":"Observation","id":"ob2","subject":{{"reference":"Patient/{LONG_ID}"}},"contained":[{{"resourceType":"Device","id":"dev"}}],"device":{{"reference":"#dev"}}}}"##)),
        ]
    }

    fn write_fixture(dir: &Path) -> Vec<String> {
        let mut by_type: BTreeMap<&str, String> = BTreeMap::new();
        for (t, line) in fixture() {
            let s = by_type.entry(t).or_default();
            s.push_str(&line);
            s.push('\n');
        }
        for (t, text) in &by_type {
            std::fs::write(dir.join(format!("{t}.ndjson")), text).unwrap();
        }
        fixture().into_iter().map(|(_, l)| l).collect()
    }

    fn output(dir: &Path) -> Vec<(ResourceType, Value)> {
        read_dir_resources(dir)
            .unwrap()
            .map(|r| {
                let (t, b) = r.unwrap();
                (t, serde_json::from_slice(&b).unwrap())
            })
            .collect()
    }

    #[test]
    fn triples_the_fixture() {
        let input = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let lines = write_fixture(input.path());
        let summary = scale(input.path(), 3, out.path()).unwrap();
        let got = output(out.path());

        // Counts: 2 shared resources once, 5 others three times.
        assert_eq!(summary.resources, 2 + 5 * 3);
        assert_eq!(got.len() as u64, summary.resources);
        assert_eq!(summary.files, 5);
        let bytes: u64 = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(summary.bytes, bytes);
        let count = |t: &str| got.iter().filter(|(rt, _)| rt.as_str() == t).count();
        assert_eq!(count("Organization"), 1);
        assert_eq!(count("Practitioner"), 1);
        assert_eq!(count("Patient"), 6);
        assert_eq!(count("Encounter"), 3);
        assert_eq!(count("Observation"), 6);

        // Ids unique per type and valid.
        let mut ids = HashSet::new();
        for (t, v) in &got {
            let id = v["id"].as_str().unwrap();
            assert!(is_valid(id), "{id}");
            assert!(ids.insert(format!("{t}/{id}")), "duplicate {t}/{id}");
        }

        // Every relative reference resolves within the output.
        let mut refs = 0;
        for (_, v) in &got {
            let mut v = v.clone();
            for_each_reference_mut(&mut v, &mut |s| {
                if s.starts_with('#') {
                    return;
                }
                let target: Vec<&str> = s.split('/').take(2).collect();
                assert!(ids.contains(&target.join("/")), "dangling {s}");
                refs += 1;
            });
        }
        assert_eq!(refs, 3 * 8);

        // Copy 0 is the input verbatim; copy k points into copy k or at shared resources.
        let all_text: String = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        for line in &lines {
            assert!(
                all_text.lines().any(|l| l == line),
                "copy 0 of {line} missing"
            );
        }
        let ob1_c2 = got
            .iter()
            .find(|(_, v)| v["id"] == "ob1-c2")
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(ob1_c2["subject"]["reference"], "Patient/p1-c2");
        assert_eq!(
            ob1_c2["encounter"]["reference"],
            "Encounter/e1-c2/_history/1"
        );
        assert_eq!(ob1_c2["hasMember"][0]["reference"], "Observation/ob2-c2");
        assert_eq!(ob1_c2["valueQuantity"]["value"].to_string(), "1.50");
        let e1_c1 = got
            .iter()
            .find(|(_, v)| v["id"] == "e1-c1")
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(e1_c1["serviceProvider"]["reference"], "Organization/o1");
        assert_eq!(
            e1_c1["participant"][0]["individual"]["reference"],
            "Practitioner/d1"
        );
        let ob2_c1 = got
            .iter()
            .find(|(_, v)| v["id"] == "ob2-c1")
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(ob2_c1["device"]["reference"], "#dev");
        assert_eq!(ob2_c1["contained"][0]["id"], "dev");
        let long_c1 = clone_id(LONG_ID, 1);
        assert!(long_c1.len() <= 64 && long_c1.ends_with("-c1"));
        assert_eq!(ob2_c1["subject"]["reference"], format!("Patient/{long_c1}"));

        // Deterministic.
        let again = tempfile::tempdir().unwrap();
        assert_eq!(scale(input.path(), 3, again.path()).unwrap(), summary);
        assert_eq!(output(again.path()), got);
    }

    #[test]
    fn factor_one_copies_and_bad_input_fails() {
        let input = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        write_fixture(input.path());
        assert_eq!(scale(input.path(), 1, out.path()).unwrap().resources, 7);
        assert!(matches!(
            scale(input.path(), 0, out.path()),
            Err(DatasetError::Factor)
        ));
        assert!(matches!(
            scale(input.path(), 2, input.path()),
            Err(DatasetError::SameFolder(_))
        ));
        std::fs::write(
            input.path().join("Condition.ndjson"),
            "{\"resourceType\":\"Patient\",\"id\":\"x\"}\n",
        )
        .unwrap();
        assert!(matches!(
            scale(input.path(), 2, out.path()),
            Err(DatasetError::TypeMismatch { line: 1, .. })
        ));
    }
}
