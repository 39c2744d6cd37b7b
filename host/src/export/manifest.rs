//! A finished export's result (what the job records) and the HL7 manifest
//! the status endpoint answers with.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fhir::Instant;
use crate::jobs::JobRecord;

use super::request::ExportRequest;

/// The job's result: everything the manifest needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    pub transaction_time: Instant,
    /// The kick-off URL.
    pub request: String,
    #[serde(default)]
    pub output: Vec<ResultFile>,
    /// Transaction Bundles of DELETEs (`type` is `Bundle`).
    #[serde(default)]
    pub deleted: Vec<ResultFile>,
    /// OperationOutcome files.
    #[serde(default)]
    pub error: Vec<ResultFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultFile {
    #[serde(rename = "type")]
    pub rtype: String,
    /// Its name in the job's folder.
    pub file: String,
    pub count: u64,
    /// Where the export-sink plugin stored it itself, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl ExportResult {
    /// The result a job recorded; for a job without one (not completed),
    /// an empty result from its request.
    pub fn of(job: &JobRecord) -> ExportResult {
        if let Ok(result) = serde_json::from_value(job.result.clone()) {
            return result;
        }
        let request = serde_json::from_value::<ExportRequest>(job.request.clone()).ok();
        ExportResult {
            transaction_time: request.as_ref().map_or(job.created, |r| r.transaction_time),
            request: request.map(|r| r.request_url).unwrap_or_default(),
            output: Vec::new(),
            deleted: Vec::new(),
            error: Vec::new(),
        }
    }

    /// Whether `name` is one of the job's files (the only ones served).
    pub fn lists(&self, name: &str) -> bool {
        self.files().any(|f| f.file == name)
    }

    /// Every file: output, deleted, error.
    pub fn files(&self) -> impl Iterator<Item = &ResultFile> {
        self.output.iter().chain(&self.deleted).chain(&self.error)
    }
}

/// The HL7 Bulk Data manifest of a completed export job. A file's URL is
/// `url(file name)` (the edge's download route, or the destination's own
/// URL), unless the export-sink plugin stored the file itself at an
/// http(s) URL. Entries are sorted by type, then by file name with numbers
/// compared as numbers (`-2` before `-10`).
pub fn manifest(job: &JobRecord, url: impl Fn(&str) -> String) -> Value {
    let result = ExportResult::of(job);
    let entries = |files: &[ResultFile]| {
        let mut files: Vec<&ResultFile> = files.iter().collect();
        files.sort_by(|a, b| {
            a.rtype
                .cmp(&b.rtype)
                .then_with(|| natural(&a.file, &b.file))
        });
        files
            .into_iter()
            .map(|f| {
                let url = match &f.location {
                    Some(l) if l.starts_with("https://") || l.starts_with("http://") => l.clone(),
                    _ => url(&f.file),
                };
                json!({"type": f.rtype, "url": url, "count": f.count})
            })
            .collect::<Vec<_>>()
    };
    let mut manifest = json!({
        "transactionTime": result.transaction_time.to_fhir(),
        "request": result.request,
        "requiresAccessToken": false,
        "output": entries(&result.output),
        "deleted": entries(&result.deleted),
        "error": entries(&result.error),
    });
    // A POST kick-off's `request` omits its parameters: the manifest's
    // extension object (reserved by the Bulk Data IG) says which sink wrote
    // the files.
    let sink = serde_json::from_value::<ExportRequest>(job.request.clone())
        .ok()
        .and_then(|r| r.sink);
    if let Some(sink) = sink {
        manifest["extension"] = json!({"sink": sink});
    }
    manifest
}

/// Compares names by runs: digit runs as numbers, other runs as text.
fn natural(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(&str, bool)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((&s[start..i], bytes[start].is_ascii_digit()));
                start = i;
            }
        }
        out
    }
    for (x, y) in runs(a).into_iter().zip(runs(b)) {
        let order = match (x, y) {
            ((x, true), (y, true)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((x, _), (y, _)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobId, JobKind, JobState, Progress};

    fn file(rtype: &str, name: &str, count: u64) -> ResultFile {
        ResultFile {
            rtype: rtype.into(),
            file: name.into(),
            count,
            location: None,
        }
    }

    #[test]
    fn natural_order() {
        let mut names = vec![
            "Patient-1-10.ndjson",
            "Patient-1-2.ndjson",
            "Patient-2-1.ndjson",
            "Patient-1-1.ndjson",
        ];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(
            names,
            [
                "Patient-1-1.ndjson",
                "Patient-1-2.ndjson",
                "Patient-1-10.ndjson",
                "Patient-2-1.ndjson"
            ]
        );
        assert_eq!(natural("", ""), Ordering::Equal);
        assert_eq!(natural("a", ""), Ordering::Greater);
    }

    #[test]
    fn manifest_of_a_result() {
        let result = ExportResult {
            transaction_time: Instant::parse("2024-05-01T12:00:00Z").unwrap(),
            request: "http://h/fhir/$export?_type=Patient".into(),
            output: vec![
                file("Patient", "Patient-1-10.ndjson", 1),
                file("Observation", "Observation-1-1.ndjson", 3),
                file("Patient", "Patient-1-9.ndjson", 5000),
            ],
            deleted: vec![file("Bundle", "Patient-deleted-1-1.ndjson", 2)],
            error: Vec::new(),
        };
        let job = JobRecord {
            id: JobId("j".into()),
            kind: JobKind::Export,
            state: JobState::Completed,
            request: Value::Null,
            request_hash: String::new(),
            owner: None,
            created: Instant::from_millis(0),
            started: None,
            finished: None,
            lease: None,
            attempts: 1,
            cancel_requested: false,
            progress: Progress::default(),
            checkpoint: Value::Null,
            result: serde_json::to_value(&result).unwrap(),
            error: None,
        };
        let m = manifest(&job, |name| {
            format!("http://h/fhir/_operations/export/j/files/{name}")
        });
        assert_eq!(
            m,
            json!({
                "transactionTime": "2024-05-01T12:00:00.000Z",
                "request": "http://h/fhir/$export?_type=Patient",
                "requiresAccessToken": false,
                "output": [
                    {"type": "Observation", "url": "http://h/fhir/_operations/export/j/files/Observation-1-1.ndjson", "count": 3},
                    {"type": "Patient", "url": "http://h/fhir/_operations/export/j/files/Patient-1-9.ndjson", "count": 5000},
                    {"type": "Patient", "url": "http://h/fhir/_operations/export/j/files/Patient-1-10.ndjson", "count": 1},
                ],
                "deleted": [
                    {"type": "Bundle", "url": "http://h/fhir/_operations/export/j/files/Patient-deleted-1-1.ndjson", "count": 2},
                ],
                "error": [],
            })
        );
        assert!(ExportResult::of(&job).lists("Patient-deleted-1-1.ndjson"));
        assert!(!ExportResult::of(&job).lists("other.ndjson"));
    }
}
