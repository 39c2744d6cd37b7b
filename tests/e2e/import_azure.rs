//! `$import` from Azure Blob, on Azurite: synthea-100 uploaded as blobs and
//! imported with the blobs' etags (counts equal the files', resources
//! readable), an etag mismatch (412), blob URLs of an account or container
//! not configured as a source (400), and a hand-made file with bad lines
//! read in 64-byte ranges (many ranged GETs): its error lines land as a blob
//! in `fhirlogs` (or the request's error container), exactly the lines the
//! same file gives when imported from the local file system. Then the
//! failures: SIGKILL mid-import (resumed, each error line once), blobs
//! replaced mid-import (412), the blob service gone (bounded retries, then a
//! 500 naming the cause).

use std::time::Instant as Clock;

use azure_storage_blobs::prelude::ContainerClient;
use hearth::azure::Accounts;
use hearth::azure::emulator::Azurite;
use serde_json::{Value, json};

use crate::support::{
    IMPORT_SOURCES_ENV, RANGE_BYTES_ENV, Sandbox, Server, azurite, counts_by_input,
    dev_account_env, file_url, import_body, import_input, write_synthea,
};

/// A server with the account `dev` (Azurite) configured through the
/// environment, blob sources `blob_sources` (a TOML list), inputs cut into
/// `range_bytes`, and the sandbox folder `in` as local source.
async fn server(
    sandbox: &mut Sandbox,
    azurite: &Azurite,
    blob_sources: &str,
    range_bytes: &str,
) -> Server {
    let local = format!("[\"{}\"]", sandbox.dir("in").display());
    let endpoint = azurite.endpoint();
    let mut env = dev_account_env(&endpoint).to_vec();
    env.extend([
        ("HEARTH_IMPORT__BLOB_SOURCES", blob_sources),
        ("HEARTH_IMPORT__BLOB_RETRY_SECONDS", "2"),
        (RANGE_BYTES_ENV, range_bytes),
        (IMPORT_SOURCES_ENV, local.as_str()),
    ]);
    sandbox.start_env(&[], &env).await
}

/// Writes blob `name` into `container` (created if missing); its URL and
/// entity tag.
async fn upload(
    accounts: &Accounts,
    container: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (String, String) {
    let client: ContainerClient = accounts.container("dev", container).unwrap();
    let _ = client.create().await;
    let blob = client.blob_client(name);
    blob.put_block_blob(bytes).await.expect("upload a blob");
    let etag = blob
        .get_properties()
        .await
        .expect("blob properties")
        .blob
        .properties
        .etag
        .to_string();
    (accounts.blob_url("dev", container, name).unwrap(), etag)
}

/// The content of the blob at `url`, read with the account's credentials.
async fn download(accounts: &Accounts, url: &str) -> Vec<u8> {
    let at = accounts
        .resolve(url)
        .unwrap_or_else(|| panic!("{url} is not a blob of the account"));
    accounts
        .container(&at.account, &at.container)
        .unwrap()
        .blob_client(at.blob)
        .get_content()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Polls until the import is done (200); its status body.
async fn done(srv: &Server, status: &str) -> Value {
    let body = srv.poll_export(status).await.ok(200).json();
    assert!(body["transactionTime"].is_string(), "{body}");
    body
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("an error line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_from_blobs_with_etags() {
    let mut sandbox = Sandbox::new();
    let (azurite, accounts) = azurite(&sandbox);
    // 256 KiB ranges: the larger files take several ranges and GETs each.
    let srv = server(&mut sandbox, &azurite, "[\"dev/bulk\"]", "262144").await;

    let files = write_synthea(&sandbox.dir("synthea"));
    let mut inputs = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    let mut first_ids = Vec::new();
    for file in &files {
        let bytes = std::fs::read(&file.path).unwrap();
        let first: Value = serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap())
            .expect("first line");
        first_ids.push((file.rtype.clone(), first["id"].as_str().unwrap().to_owned()));
        let name = format!("synthea/{}.ndjson", file.rtype);
        let (url, etag) = upload(&accounts, "bulk", &name, bytes).await;
        inputs.push(import_input(Some(&file.rtype), &url, Some(&etag)));
        expected.insert(url, file.lines);
    }
    let total: u64 = files.iter().map(|f| f.lines).sum();

    // A tag the blob does not have: the precondition fails.
    let (url, etag) = (
        expected.keys().next().unwrap().clone(),
        "\"0x8D000000DEADBEEF\"",
    );
    let resp = srv
        .kickoff_import(&import_body(
            None,
            &[],
            &[import_input(Some(&files[0].rtype), &url, Some(etag))],
        ))
        .await;
    let text = resp.outcome(412)["issue"][0]["diagnostics"].to_string();
    assert!(text.contains("0x8D000000DEADBEEF"), "{text}");

    // Blobs not listed as a source, and an endpoint that is no account's.
    let (other, _) = upload(&accounts, "other", "Patient.ndjson", b"{}\n".to_vec()).await;
    let elsewhere = url.replace(&azurite.endpoint(), "http://127.0.0.1:9/devstoreaccount1");
    for refused in [other.as_str(), elsewhere.as_str()] {
        srv.kickoff_import(&import_body(
            None,
            &[],
            &[import_input(Some("Patient"), refused, None)],
        ))
        .await
        .outcome(400);
    }

    let started = Clock::now();
    let status = srv.start_import(&import_body(None, &[], &inputs)).await;
    let body = done(&srv, &status).await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "synthea-100 from Azurite: {total} resources in {seconds:.2} s ({:.0} resources/s, kick-off to status 200)",
        total as f64 / seconds
    );
    assert_eq!(body["error"], json!([]), "{body}");
    assert_eq!(counts_by_input(&body, "output"), expected);
    for (rtype, id) in first_ids {
        let resource = srv.get(&format!("/{rtype}/{id}")).await.ok(200).json();
        assert_eq!(resource["id"], id.as_str(), "{rtype}/{id}");
    }
    drop(srv);
    drop(azurite);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_become_an_error_blob() {
    let mut sandbox = Sandbox::new();
    let (azurite, accounts) = azurite(&sandbox);
    let srv = server(&mut sandbox, &azurite, "[\"dev\"]", "64").await;

    // (line, offset) of each line that must be rejected.
    let mut bytes = Vec::new();
    let mut bad = Vec::new();
    let lines = [
        (true, json!({"resourceType": "Patient", "id": "p1"}).to_string()),
        (false, "{\"resourceType\": \"Patient\", \"id\":".to_owned()),
        (false, json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}).to_string()),
        (true, json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "y".repeat(300)}]}).to_string()),
        (false, json!({"resourceType": "Patient", "id": "bad id!"}).to_string()),
        (true, json!({"resourceType": "Patient", "id": "p3"}).to_string()),
    ];
    for (n, (good, line)) in lines.iter().enumerate() {
        if !good {
            bad.push(format!(
                "Failed to process resource at line: {} with stream start offset: {}",
                n + 1,
                bytes.len()
            ));
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(if n % 2 == 0 { b"\r\n" } else { b"\n" });
    }
    let (url, etag) = upload(&accounts, "inputs", "bad/Patient.ndjson", bytes.clone()).await;
    let body = done(
        &srv,
        &srv.start_import(&import_body(
            None,
            &[],
            &[import_input(Some("Patient"), &url, Some(&etag))],
        ))
        .await,
    )
    .await;
    assert_eq!(counts_by_input(&body, "output")[&url], 3, "{body}");
    let error = &body["error"][0];
    assert_eq!(
        (error["count"].as_u64(), error["inputUrl"].as_str()),
        (Some(3), Some(url.as_str()))
    );
    let error_url = error["url"].as_str().unwrap();
    let prefix = format!("{}/fhirlogs/", azurite.endpoint());
    assert!(
        error_url.starts_with(&prefix) && error_url.ends_with("/Patient-1.ndjson"),
        "{error_url}"
    );
    let from_blob = ndjson(&download(&accounts, error_url).await);
    let locators: Vec<&str> = from_blob
        .iter()
        .map(|l| l["issue"][0]["diagnostics"].as_str().unwrap())
        .collect();
    assert_eq!(locators, bad);

    // The same bytes from the local file system: the same error lines.
    let local = sandbox.dir("in").join("Patient.ndjson");
    std::fs::write(&local, &bytes).unwrap();
    let (_, local_done) = srv
        .import(&import_body(
            None,
            &[],
            &[import_input(Some("Patient"), &file_url(&local), None)],
        ))
        .await;
    let local_errors = srv.import_errors(&local_done).await;
    assert_eq!(local_errors[&file_url(&local)], from_blob);

    // The request's error container instead of the default.
    let (url2, _) = upload(&accounts, "inputs", "bad/Patient-2.ndjson", bytes).await;
    let body = done(
        &srv,
        &srv.start_import(&import_body(
            None,
            &[json!({"name": "errorContainerName", "valueString": "import-errors"})],
            &[import_input(Some("Patient"), &url2, None)],
        ))
        .await,
    )
    .await;
    let error_url = body["error"][0]["url"].as_str().unwrap();
    assert!(
        error_url.starts_with(&format!("{}/import-errors/", azurite.endpoint())),
        "{error_url}"
    );
    assert_eq!(ndjson(&download(&accounts, error_url).await), from_blob);
    // Not an Azure container name: refused at kick-off.
    srv.kickoff_import(&import_body(
        None,
        &[json!({"name": "errorContainerName", "valueString": "Import_Errors"})],
        &[import_input(Some("Patient"), &url2, None)],
    ))
    .await
    .outcome(400);
    drop(srv);
    drop(azurite);
}

/// SIGKILL while an import of blobs with bad lines runs, then a restart:
/// the job resumes and its error blob holds every bad line exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_blob_import_writes_each_error_line_once() {
    let mut sandbox = Sandbox::new();
    let (azurite, accounts) = azurite(&sandbox);
    let mut srv = server(&mut sandbox, &azurite, "[\"dev/bulk\"]", "65536").await;

    // Every synthea file, Observation with every 300th line broken.
    let files = write_synthea(&sandbox.dir("synthea"));
    let mut inputs = Vec::new();
    let mut bad = Vec::new();
    let mut bad_url = String::new();
    for file in &files {
        let mut bytes = std::fs::read(&file.path).unwrap();
        let name = format!("{}.ndjson", file.rtype);
        if file.rtype == "Observation" {
            let mut out = Vec::with_capacity(bytes.len());
            for (n, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
                if n % 300 == 7 {
                    bad.push(format!(
                        "Failed to process resource at line: {} with stream start offset: {}",
                        n + 1,
                        out.len()
                    ));
                    out.extend_from_slice(b"{\"resourceType\": \"Observation\", broken\n");
                } else {
                    out.extend_from_slice(line);
                }
            }
            bytes = out;
        }
        let (url, _) = upload(&accounts, "bulk", &name, bytes).await;
        if file.rtype == "Observation" {
            bad_url = url.clone();
        }
        inputs.push(import_input(Some(&file.rtype), &url, None));
    }
    assert!(bad.len() > 10);
    let status = srv.start_import(&import_body(None, &[], &inputs)).await;
    let status = format!("/_operations/import/{}", status.rsplit('/').next().unwrap());
    srv.await_progress(&status).await;
    assert!(!srv.kill().await.success());
    srv = server(&mut sandbox, &azurite, "[\"dev/bulk\"]", "65536").await;
    let body = done(&srv, &status).await;
    let total: u64 = files.iter().map(|f| f.lines).sum();
    let imported: u64 = counts_by_input(&body, "output").values().sum();
    assert_eq!(imported + bad.len() as u64, total, "{body}");
    let errors = body["error"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["inputUrl"], bad_url.as_str());
    let lines = ndjson(&download(&accounts, errors[0]["url"].as_str().unwrap()).await);
    let locators: Vec<&str> = lines
        .iter()
        .map(|l| l["issue"][0]["diagnostics"].as_str().unwrap())
        .collect();
    assert_eq!(locators, bad);
    drop(srv);
    drop(azurite);
}

/// Uploads synthea-100 into container `bulk` as `<Type>.ndjson`; the
/// typed `input` parameters and the blob URLs.
async fn upload_synthea(sandbox: &Sandbox, accounts: &Accounts) -> (Vec<Value>, Vec<String>) {
    let (mut inputs, mut urls) = (Vec::new(), Vec::new());
    for file in write_synthea(&sandbox.dir("synthea")) {
        let bytes = std::fs::read(&file.path).unwrap();
        let (url, _) = upload(accounts, "bulk", &format!("{}.ndjson", file.rtype), bytes).await;
        inputs.push(import_input(Some(&file.rtype), &url, None));
        urls.push(url);
    }
    (inputs, urls)
}

/// Blobs replaced while an import reads them: the job fails with 412 (the
/// planned entity tags no longer hold), it does not mix two contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_replaced_mid_import_fail_the_job_with_412() {
    let mut sandbox = Sandbox::new();
    let (azurite, accounts) = azurite(&sandbox);
    let srv = server(&mut sandbox, &azurite, "[\"dev/bulk\"]", "65536").await;
    let (inputs, urls) = upload_synthea(&sandbox, &accounts).await;
    let status = srv.start_import(&import_body(None, &[], &inputs)).await;
    let status = format!("/_operations/import/{}", status.rsplit('/').next().unwrap());
    srv.await_progress(&status).await;
    for url in &urls {
        let at = accounts.resolve(url).unwrap();
        upload(&accounts, &at.container, &at.blob, b"{}\n".to_vec()).await;
    }
    let failed = srv.poll_export(&status).await;
    let text = failed.outcome(412)["issue"][0]["diagnostics"].to_string();
    assert!(text.contains("it changed"), "{text}");
    drop(srv);
    drop(azurite);
}

/// The blob service gone while an import runs: bounded retries, then the
/// job fails with an OperationOutcome naming the cause (never a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_outage_fails_the_job_naming_the_cause() {
    let mut sandbox = Sandbox::new();
    let (mut azurite, accounts) = azurite(&sandbox);
    let srv = server(&mut sandbox, &azurite, "[\"dev/bulk\"]", "65536").await;
    let (inputs, _) = upload_synthea(&sandbox, &accounts).await;
    let status = srv.start_import(&import_body(None, &[], &inputs)).await;
    let status = format!("/_operations/import/{}", status.rsplit('/').next().unwrap());
    srv.await_progress(&status).await;
    azurite.stop();
    let failed = srv.poll_export(&status).await;
    let text = failed.outcome(500)["issue"][0]["diagnostics"].to_string();
    assert!(
        text.contains("could not be reached") && text.contains("gave up after"),
        "{text}"
    );
    drop(srv);
    drop(azurite);
}
