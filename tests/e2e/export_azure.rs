//! `$export` to Azure Blob, on Azurite: System, Patient and Group exports of
//! synthea-100 with and without `_container` (a container per export named
//! from the job id, or a `<timestamp>-<jobid>/` folder never reused), their
//! files read back from the blobs and equal, line for line, to the same
//! exports written to the local folder; read SAS URLs fetched without
//! credentials; an outage mid-export failing the job within the retry
//! bound with an OperationOutcome naming the account and cause, and a new
//! export succeeding once the service is back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant as Clock};

use futures::StreamExt;
use hearth::azure::emulator::Azurite;
use hearth::azure::{Accounts, BlobLocation};
use serde_json::{Value, json};

use crate::support::{
    FILE_MAX_ENV, Http, MAX_EXPORTS_ENV, Resp, Sandbox, Server, azurite, dev_account_env,
    parse_ndjson, patient, read_dataset, synthea_dir,
};

/// A server exporting to account `dev` on `azurite`, with `extra`
/// settings.
async fn blob_server(sandbox: &mut Sandbox, azurite: &Azurite, extra: &[(&str, &str)]) -> Server {
    let endpoint = azurite.endpoint();
    let mut env = dev_account_env(&endpoint).to_vec();
    env.push(("HEARTH_EXPORT__DESTINATION", "dev"));
    env.extend_from_slice(extra);
    sandbox.start_env(&[], &env).await
}

/// The job id at the end of a status URL.
fn job_id(status: &str) -> &str {
    status.rsplit('/').next().unwrap()
}

/// Polls to the end and returns the manifest, checking what a blob
/// manifest promises: 200, `Expires`, `requiresAccessToken` false, every
/// URL one of the account's blobs. Returns the manifest and `Expires`.
async fn blob_manifest(srv: &Http, status: &str, accounts: &Accounts) -> (Value, String) {
    let resp = srv.poll_export(status).await.ok(200);
    let expires = resp.header("expires").expect("Expires");
    let m = resp.json();
    assert_eq!(m["requiresAccessToken"], false, "{m}");
    for list in ["output", "error", "deleted"] {
        for e in m[list].as_array().into_iter().flatten() {
            let url = e["url"].as_str().unwrap();
            assert!(
                accounts.resolve(url).is_some(),
                "{list} url {url} is not a blob of the account"
            );
        }
    }
    (m, expires)
}

/// Where each output file of a blob manifest is: (type, location).
fn blob_files(m: &Value, accounts: &Accounts) -> Vec<(String, BlobLocation)> {
    m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let at = accounts.resolve(e["url"].as_str().unwrap()).unwrap();
            (e["type"].as_str().unwrap().to_owned(), at)
        })
        .collect()
}

/// Every output line of a blob export, by type, sorted (a multiset),
/// read with the account's credentials.
async fn blob_lines(m: &Value, accounts: &Accounts) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rtype, at) in blob_files(m, accounts) {
        let client = accounts.container("dev", &at.container).unwrap();
        let bytes = client
            .blob_client(&at.blob)
            .get_content()
            .await
            .unwrap_or_else(|e| panic!("reading {at:?}: {e}"));
        for line in parse_ndjson(&bytes, &at.blob) {
            assert_eq!(line["resourceType"], rtype.as_str(), "{at:?}");
            out.entry(rtype.clone()).or_default().push(line.to_string());
        }
    }
    out.values_mut().for_each(|lines| lines.sort());
    out
}

/// The same for an export to the local folder, downloaded from the server.
async fn local_lines(srv: &Http, m: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in srv.files(m, "output").await {
        let lines = out.entry(f.rtype.clone()).or_default();
        lines.extend(f.lines.iter().map(Value::to_string));
    }
    out.values_mut().for_each(|lines| lines.sort());
    out
}

/// The kick-offs both destinations run: System and Patient level with and
/// without `_container`, Group level, and a second System export into the
/// same `_container`.
const EXPORTS: [&str; 5] = [
    "/$export",
    "/$export?_container=research",
    "/Patient/$export?_container=research",
    "/Group/cohort/$export",
    "/$export?_type=Patient,Condition&_container=research",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_to_azurite_equal_the_local_ones() {
    let mut sandbox = Sandbox::new();
    let (azurite, accounts) = azurite(&sandbox);
    let srv = blob_server(&mut sandbox, &azurite, &[(MAX_EXPORTS_ENV, "8")]).await;
    let data = read_dataset(&synthea_dir());
    srv.load_transactions(&data, 500).await;
    let members: Vec<Value> = data
        .iter()
        .filter(|(t, _)| t == "Patient")
        .take(12)
        .map(|(_, r)| json!({"entity": {"reference": format!("Patient/{}", r["id"].as_str().unwrap())}}))
        .collect();
    let group = json!({"resourceType": "Group", "id": "cohort", "type": "person", "actual": true, "member": members});
    srv.put("/Group/cohort", &group).await.ok(201);

    // A `_container` Blob Storage cannot take is refused at kick-off.
    for bad in ["Research", "re_search", "ab"] {
        let oo = srv
            .kickoff(&format!("/$export?_container={bad}"))
            .await
            .outcome(400);
        assert_eq!(oo["issue"][0]["expression"][0], "_container", "{oo}");
    }

    let started = Clock::now();
    let mut statuses = Vec::new();
    for path in EXPORTS {
        statuses.push(srv.start_export(path).await);
    }
    let mut blob = Vec::new();
    for status in &statuses {
        blob.push(blob_manifest(&srv, status, &accounts).await.0);
    }
    eprintln!(
        "synthea: {} exports to Azurite in {:.1} s",
        EXPORTS.len(),
        started.elapsed().as_secs_f64()
    );

    // Naming: a container per export without `_container`, else a new
    // `<timestamp>-<jobid>/` folder in it, never shared.
    let mut folders = Vec::new();
    for ((path, status), m) in EXPORTS.iter().zip(&statuses).zip(&blob) {
        let id = job_id(status);
        let files = blob_files(m, &accounts);
        assert!(!files.is_empty(), "{path}: no output");
        let mut folder = None;
        for (_, at) in files {
            if path.contains("_container") {
                assert_eq!(at.container, "research", "{path}");
                let (dir, name) = at.blob.split_once('/').expect("a folder");
                let (stamp, job) = dir.split_once("Z-").expect("<timestamp>Z-<jobid>");
                assert_eq!(job, id, "{path}: {dir}");
                assert!(
                    stamp.len() == 15
                        && stamp.as_bytes()[8] == b'T'
                        && stamp.bytes().filter(u8::is_ascii_digit).count() == 14,
                    "{path}: timestamp {stamp}"
                );
                assert!(!name.contains('/'), "{path}: {}", at.blob);
                folder = Some(dir.to_owned());
            } else {
                assert_eq!(at.container, id, "{path}: the job's own container");
                assert!(!at.blob.contains('/'), "{path}: {}", at.blob);
            }
        }
        folders.extend(folder);
    }
    folders.dedup();
    assert_eq!(
        folders.len(),
        3,
        "each _container export has its own folder"
    );

    // The download route does not serve blob files: it sends the client to
    // the blob.
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = &blob[0]["output"][0]["url"];
    let name = first.as_str().unwrap().rsplit('/').next().unwrap();
    let resp = no_redirects
        .get(format!("{}/files/{name}", statuses[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 307);
    assert_eq!(resp.headers()["location"], first.as_str().unwrap());

    let mut blob_sets = Vec::new();
    for m in &blob {
        blob_sets.push(blob_lines(m, &accounts).await);
    }

    // Deleting an export removes its blobs: the job's container, or its
    // folder and nothing else of `research`.
    srv.delete(&statuses[0]).await.ok(202);
    srv.delete(&statuses[1]).await.ok(202);
    let own = accounts.container("dev", job_id(&statuses[0])).unwrap();
    assert!(!own.exists().await.unwrap(), "the job's container is gone");
    for (_, at) in blob_files(&blob[1], &accounts) {
        let client = accounts.container("dev", &at.container).unwrap();
        assert!(!client.blob_client(&at.blob).exists().await.unwrap());
    }
    for (_, at) in blob_files(&blob[2], &accounts) {
        let client = accounts.container("dev", &at.container).unwrap();
        assert!(client.blob_client(&at.blob).exists().await.unwrap());
    }
    assert!(srv.terminate().await.success());

    // The same exports of the same store to the local folder.
    let srv = sandbox.start_env(&[], &[(MAX_EXPORTS_ENV, "8")]).await;
    for (path, blob_set) in EXPORTS.iter().zip(&blob_sets) {
        let (_, m) = srv.export(path).await;
        let local = local_lines(&srv, &m).await;
        assert_eq!(
            local.keys().collect::<Vec<_>>(),
            blob_set.keys().collect::<Vec<_>>(),
            "{path}: types"
        );
        for (rtype, lines) in &local {
            assert!(lines == &blob_set[rtype], "{path}: {rtype} lines differ");
        }
    }
    assert!(srv.terminate().await.success());
}

/// An export's manifest and the failure of one whose blobs cannot be
/// written.
async fn failure_of(srv: &Http, status: &str) -> Resp {
    let resp = srv.poll_export(status).await;
    assert_ne!(resp.status, 200, "the export succeeded: {}", resp.text());
    resp
}

/// Patients of the SAS and outage test, written in files of 10: hundreds of
/// files, so the export is under way when the service stops.
const PATIENTS: usize = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_urls_then_an_outage_fails_the_job_and_the_next_export_succeeds() {
    let mut sandbox = Sandbox::new();
    let (mut azurite, accounts) = azurite(&sandbox);
    let retry_seconds = 3;
    let retry = retry_seconds.to_string();
    let srv = blob_server(
        &mut sandbox,
        &azurite,
        &[
            ("HEARTH_EXPORT__SAS_MINUTES", "5"),
            ("HEARTH_EXPORT__BLOB_RETRY_SECONDS", retry.as_str()),
            // Many small files: the export is still writing when the
            // service goes away.
            (FILE_MAX_ENV, "10"),
        ],
    )
    .await;
    let patients: Vec<(String, Value)> = (0..PATIENTS)
        .map(|i| ("Patient".to_owned(), patient(&format!("p{i:04}"))))
        .collect();
    srv.load_transactions(&patients, 500).await;

    // Signed URLs: read without credentials, and `Expires` is when the
    // signatures end, not the export's retention.
    let status = srv.start_export("/$export?_type=Patient").await;
    let (m, expires) = blob_manifest(&srv, &status, &accounts).await;
    let expires = time::PrimitiveDateTime::parse(
        &expires,
        time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .unwrap()
    .assume_utc();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        expires > now + time::Duration::minutes(4) && expires <= now + time::Duration::minutes(5),
        "Expires {expires}"
    );
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut lines = 0;
    for e in m["output"].as_array().unwrap() {
        let url = e["url"].as_str().unwrap();
        assert!(url.contains("sig="), "{url}");
        let resp = plain.get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        lines += parse_ndjson(&resp.bytes().await.unwrap(), url).len();
    }
    assert_eq!(lines, PATIENTS);

    // The service goes away mid-export: retries for about `retry_seconds`,
    // then the job fails naming the account and the cause; never hangs.
    let status = srv.start_export("/$export?_type=Patient").await;
    let own = accounts.container("dev", job_id(&status)).unwrap();
    let waiting = Clock::now();
    loop {
        let mut pages = own.list_blobs().into_stream();
        let written = match pages.next().await {
            Some(Ok(page)) => page.blobs.blobs().count(),
            _ => 0,
        };
        if written > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "no file written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    azurite.stop();
    let stopped = Clock::now();
    let resp = failure_of(&srv, &status).await;
    let took = stopped.elapsed();
    let oo = resp.outcome(500);
    let text = oo.to_string();
    for part in ["Azure Blob Storage account 'dev'", "gave up after"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(text.to_lowercase().contains("connect"), "{text}");
    // The failing call's retries, then those of removing the failed
    // export's files: well within three bounds.
    assert!(
        took < Duration::from_secs(3 * retry_seconds + 10),
        "failed after {took:?}"
    );
    eprintln!(
        "outage: the export failed {:.1} s after Azurite stopped",
        took.as_secs_f64()
    );

    azurite.resume().expect("resume Azurite");
    let status = srv.start_export("/$export?_type=Patient").await;
    let (m, _) = blob_manifest(&srv, &status, &accounts).await;
    let count: u64 = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(count, PATIENTS as u64);
    assert!(srv.terminate().await.success());
}
