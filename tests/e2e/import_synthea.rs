//! `$import` of synthea-100 in both modes, each into an empty server: per
//! input the count equals the file's lines and nothing is rejected; every
//! resource is in the store once, as version 1, at or after the import's
//! `transactionTime`; and the stored bytes of resources across every file
//! are the input line with only `meta` added.

use std::collections::BTreeMap;

use crate::support::{
    IMPORT_SOURCES_ENV, Sandbox, counts_by_input, import_body, typed_inputs, write_synthea,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_and_incremental_load_of_synthea() {
    for mode in ["InitialLoad", "IncrementalLoad"] {
        let mut sandbox = Sandbox::new();
        let dir = sandbox.dir("in");
        let sources = format!("[\"{}\"]", dir.display());
        let srv = sandbox
            .start_env(&[], &[(IMPORT_SOURCES_ENV, &sources)])
            .await;
        let files = write_synthea(&dir);
        let started = std::time::Instant::now();
        let (_, done) = srv
            .import(&import_body(Some(mode), &[], &typed_inputs(&files)))
            .await;
        let total: u64 = files.iter().map(|f| f.lines).sum();
        eprintln!(
            "{mode}: {total} resources of synthea-100 imported in {:.2} s (kick-off to status 200)",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(done["error"], serde_json::json!([]), "{mode}: {done}");
        let expected: BTreeMap<String, u64> =
            files.iter().map(|f| (f.url.clone(), f.lines)).collect();
        assert_eq!(counts_by_input(&done, "output"), expected, "{mode}");
        for (entry, file) in done["output"].as_array().unwrap().iter().zip(&files) {
            assert_eq!(entry["type"], file.rtype.as_str(), "{mode}: {entry}");
        }
        let transaction_time = done["transactionTime"].as_str().unwrap();

        for file in &files {
            let history = srv.type_history(&file.rtype).await;
            assert_eq!(history.len() as u64, file.lines, "{mode}: {}", file.rtype);
            for (id, versions) in &history {
                assert_eq!(
                    versions.len(),
                    1,
                    "{mode}: {}/{id}: {versions:?}",
                    file.rtype
                );
                let v = &versions[0];
                assert!(
                    v.version == 1 && !v.deleted && v.last_updated.as_str() >= transaction_time,
                    "{mode}: {}/{id}: {v:?} (transactionTime {transaction_time})",
                    file.rtype
                );
            }
            // Bytes: the first, middle and last line of every file.
            let text = std::fs::read(&file.path).unwrap();
            let lines: Vec<&[u8]> = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            for line in [lines[0], lines[lines.len() / 2], lines[lines.len() - 1]] {
                check_bytes(&srv, &file.rtype, line, mode).await;
            }
        }
    }
}

/// The stored resource is the input line with `"meta":{versionId,
/// lastUpdated}` inserted after `id`, every other byte the same.
async fn check_bytes(srv: &crate::support::Http, rtype: &str, line: &[u8], mode: &str) {
    let source: serde_json::Value = serde_json::from_slice(line).unwrap();
    let id = source["id"].as_str().unwrap();
    let resp = srv.get(&format!("/{rtype}/{id}")).await.ok(200);
    let stored: serde_json::Value = resp.json();
    let meta = format!(
        r#""meta":{{"versionId":"1","lastUpdated":"{}"}},"#,
        stored["meta"]["lastUpdated"].as_str().unwrap()
    );
    let head = format!(r#"{{"resourceType":"{rtype}","id":"{id}","#);
    let line = std::str::from_utf8(line).unwrap();
    let rest = line
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{rtype}/{id}: the input line does not start with {head}"));
    assert_eq!(
        resp.text(),
        format!("{head}{meta}{rest}"),
        "{mode}: {rtype}/{id}: stored bytes"
    );
}
