//! Azure Blob inputs and error files.
//!
//! # Inputs
//!
//! A URL that [`Accounts::resolve`] maps to a configured account is read as
//! a blob, with that account's credentials, only when `[import]
//! blob_sources` lists the account (`"<account>"`: every container) or the
//! container (`"<account>/<container>"`); any other URL under the account is
//! refused ([`SourceError::NotAllowed`]), whatever `allowed_http` says. The
//! URL's query is ignored: credentials never come from a request.
//!
//! The entity tag is the blob's own `ETag`. Every read starts with the
//! blob's properties (its length, and its tag compared with the planned
//! one), then fetches the bytes with ranged GETs carrying `If-Match`, so a
//! blob replaced in the middle of a read fails the read (412 from the
//! service) instead of mixing two contents. The reader fetches up to the
//! range end the caller names in pieces of at most [`MAX_GET`], then
//! [`TAIL_GET`] at a time for the line that straddles it: memory stays
//! bounded by one piece whatever the blob's size.
//!
//! # Error files
//!
//! An import with at least one blob input writes its error files as blobs
//! to the account of its first blob input (an import of local files only
//! does too when `[import] error_account` names an account); the container
//! is the request's `errorContainerName`, else `[import] error_container`
//! (`fhirlogs`), created when missing. Each file is the blob
//! `<job id>/<Type>-<n>.ndjson`, written as staged blocks and committed in
//! one `Put Block List`: a reader sees the whole file or none, and a finish
//! repeated after a crash replaces it with the same content.
//!
//! Transient failures (the service unreachable, 5xx, 408, 429) are retried
//! with backoff within `[import] blob_retry_seconds`; then the import fails with
//! the cause named.

use std::future::Future;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use azure_core::prelude::IfMatchCondition;
use azure_storage_blobs::prelude::{
    BlobBlockType, BlobClient, BlockId, BlockList, ContainerClient,
};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::request::ImportRequest;
use super::source::{Source, SourceError, SourceInfo, SourceKind, check_etag};
use crate::azure::retry::{Failure, GaveUp, RetryPolicy, retry};
use crate::azure::{Accounts, BlobLocation, is_container_name};

/// The most one ranged GET fetches.
const MAX_GET: u64 = 4 << 20;
/// What a GET past the caller's range end fetches: the rest of a line.
const TAIL_GET: u64 = 64 << 10;
/// Bytes of an error blob staged per block.
const BLOCK_BYTES: usize = 4 << 20;

/// One entry of `[import] blob_sources`: an account (by its local name in
/// `[azure.accounts]`), or one container of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobSource {
    pub account: String,
    pub container: Option<String>,
}

impl TryFrom<String> for BlobSource {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (account, container) = match text.split_once('/') {
            Some((a, c)) => (a, Some(c)),
            None => (text.as_str(), None),
        };
        if account.is_empty() {
            return Err(format!("'{text}' names no account"));
        }
        if let Some(c) = container.filter(|c| !is_container_name(c)) {
            return Err(format!(
                "'{c}' in '{text}' is not a container name (3-63 lowercase letters, digits and single hyphens)"
            ));
        }
        Ok(BlobSource {
            account: account.to_owned(),
            container: container.map(str::to_owned),
        })
    }
}

impl From<BlobSource> for String {
    fn from(s: BlobSource) -> String {
        match s.container {
            Some(c) => format!("{}/{c}", s.account),
            None => s.account,
        }
    }
}

impl BlobSource {
    fn covers(&self, at: &BlobLocation) -> bool {
        self.account == at.account && self.container.as_ref().is_none_or(|c| *c == at.container)
    }
}

/// What the blob side of imports is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobSettings {
    pub sources: Vec<BlobSource>,
    /// Container of error files when the request names none.
    pub error_container: String,
    /// Account of the error files of imports that read no blob.
    pub error_account: Option<String>,
    pub retry: RetryPolicy,
}

impl BlobSettings {
    pub const DEFAULT_ERROR_CONTAINER: &'static str = "fhirlogs";
}

/// No blob source, error files to `fhirlogs` (the seed document's).
impl Default for BlobSettings {
    fn default() -> Self {
        BlobSettings {
            sources: Vec::new(),
            error_container: Self::DEFAULT_ERROR_CONTAINER.into(),
            error_account: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Runs the SDK's futures for the blocking import code. Its own runtime,
/// made on first use, so that no caller depends on being inside (or
/// outside) another one; shut down without waiting, so that dropping it
/// is safe anywhere.
struct BlobRuntime(OnceLock<Option<tokio::runtime::Runtime>>);

impl BlobRuntime {
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, GaveUp>> + Send + 'static,
    ) -> Result<T, GaveUp> {
        let runtime = self.0.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("hearth-blob")
                .enable_all()
                .build()
                .inspect_err(|e| tracing::error!(error = %e, "starting the blob runtime failed"))
                .ok()
        });
        let Some(runtime) = runtime else {
            return Err(runtime_failure("the blob runtime could not be started"));
        };
        // Spawned and waited for over a channel rather than `block_on`,
        // which would panic on a thread that is itself driving a runtime.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(runtime_failure("the blob runtime stopped")))
    }
}

fn runtime_failure(message: &'static str) -> GaveUp {
    GaveUp {
        failure: Failure::Service(azure_core::Error::message(
            azure_core::error::ErrorKind::Other,
            message,
        )),
        attempts: 1,
        elapsed: std::time::Duration::ZERO,
    }
}

impl Drop for BlobRuntime {
    fn drop(&mut self) {
        if let Some(Some(runtime)) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The configured accounts as import sources and error destinations.
pub struct Blobs {
    accounts: Arc<Accounts>,
    settings: BlobSettings,
    runtime: BlobRuntime,
}

impl Blobs {
    pub fn new(accounts: Arc<Accounts>, settings: BlobSettings) -> Arc<Blobs> {
        Arc::new(Blobs {
            accounts,
            settings,
            runtime: BlobRuntime(OnceLock::new()),
        })
    }

    /// Where the error files of `request` go: `None` for the local error
    /// folder.
    pub fn error_target(
        self: &Arc<Self>,
        request: &ImportRequest,
    ) -> Result<Option<ErrorContainer>, ErrorTargetError> {
        let account = request
            .inputs
            .iter()
            .find_map(|i| self.accounts.resolve(i.url.as_str()))
            .map(|at| at.account)
            .or_else(|| self.settings.error_account.clone());
        let Some(account) = account else {
            return Ok(None);
        };
        let container = request
            .error_location
            .clone()
            .unwrap_or_else(|| self.settings.error_container.clone());
        if !is_container_name(&container) {
            return Err(ErrorTargetError::Container(container));
        }
        let client = self.accounts.container(&account, &container)?;
        Ok(Some(ErrorContainer {
            blobs: self.clone(),
            account,
            name: container,
            client,
        }))
    }

    /// Runs `call` with the configured retries.
    fn call_raw<T: Send + 'static, F, Fut>(&self, what: &'static str, call: F) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = azure_core::Result<T>> + Send,
    {
        let policy = self.settings.retry;
        self.runtime
            .run(async move { retry(&policy, what, call).await })
    }

    /// [`Blobs::call_raw`], its failure as the source error of `url`.
    fn call<T: Send + 'static, F, Fut>(
        &self,
        url: &str,
        what: &'static str,
        call: F,
    ) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = azure_core::Result<T>> + Send,
    {
        self.call_raw(what, call).map_err(|e| blob_error(url, &e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorTargetError {
    #[error(
        "'{0}' is not an Azure container name (3-63 lowercase letters, digits and single hyphens), which the error files' blob container needs"
    )]
    Container(String),
    #[error(transparent)]
    Account(#[from] crate::azure::AzureError),
}

/// Blob URLs of the configured accounts, where `blob_sources` allows them.
pub struct BlobFiles(pub Arc<Blobs>);

impl SourceKind for BlobFiles {
    fn resolve(&self, url: &str) -> Option<Result<Box<dyn Source>, SourceError>> {
        let at = self.0.accounts.resolve(url)?;
        let not_allowed = || SourceError::NotAllowed {
            url: url.to_owned(),
        };
        // Only names the SDK addresses exactly: it trims slashes, and the
        // URL it builds would resolve dot segments into another blob.
        let exact = is_container_name(&at.container)
            && at
                .blob
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        let listed = self.0.settings.sources.iter().any(|s| s.covers(&at));
        if !exact || !listed {
            return Some(Err(not_allowed()));
        }
        Some(
            self.0
                .accounts
                .container(&at.account, &at.container)
                .map(|c| {
                    Box::new(BlobFile {
                        url: url.to_owned(),
                        client: c.blob_client(&at.blob),
                        blobs: self.0.clone(),
                    }) as Box<dyn Source>
                })
                .map_err(|_| not_allowed()),
        )
    }
}

#[derive(Clone)]
struct BlobFile {
    url: String,
    client: BlobClient,
    blobs: Arc<Blobs>,
}

impl Source for BlobFile {
    fn info(&self) -> Result<SourceInfo, SourceError> {
        let client = self.client.clone();
        let blob = self.blobs.call(&self.url, "get blob properties", move || {
            client.get_properties().into_future()
        })?;
        Ok(SourceInfo {
            len: blob.blob.properties.content_length,
            etag: blob.blob.properties.etag.to_string(),
        })
    }

    fn read_from(
        &self,
        offset: u64,
        until: u64,
        etag: &str,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let info = self.info()?;
        check_etag(etag, &info.etag)?;
        Ok(Box::new(BlobReader {
            file: self.clone(),
            etag: info.etag,
            len: info.len,
            pos: offset.min(info.len),
            until,
            piece: Bytes::new(),
        }))
    }
}

/// Ranged GETs from `pos`, one piece at a time.
struct BlobReader {
    file: BlobFile,
    /// The blob's tag when the read started: every GET requires it.
    etag: String,
    len: u64,
    pos: u64,
    until: u64,
    piece: Bytes,
}

impl BlobReader {
    fn fetch(&mut self) -> Result<(), SourceError> {
        let size = if self.pos < self.until {
            (self.until - self.pos).min(MAX_GET)
        } else {
            TAIL_GET
        }
        .min(self.len - self.pos);
        let (client, etag, start) = (self.file.client.clone(), self.etag.clone(), self.pos);
        let piece = self
            .file
            .blobs
            .call(&self.file.url, "get blob range", move || {
                let get = client
                    .get()
                    .range(start..start + size)
                    .chunk_size(size)
                    .if_match(IfMatchCondition::Match(etag.clone()));
                async move {
                    let response = get.into_stream().next().await.ok_or_else(|| {
                        azure_core::Error::message(
                            azure_core::error::ErrorKind::Other,
                            "the blob service answered a ranged GET with nothing",
                        )
                    })??;
                    response.data.collect().await
                }
            });
        let piece = match piece {
            Err(SourceError::EtagMismatch { .. }) => {
                let actual = self
                    .file
                    .info()
                    .map_or_else(|_| "(unknown)".into(), |i| i.etag);
                return Err(SourceError::EtagMismatch {
                    expected: self.etag.clone(),
                    actual,
                });
            }
            other => other?,
        };
        if piece.len() as u64 != size {
            return Err(SourceError::Io {
                url: self.file.url.clone(),
                message: format!(
                    "asked for {size} bytes at offset {start}, the blob service sent {}",
                    piece.len()
                ),
            });
        }
        self.piece = piece;
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.piece.is_empty() {
            if self.pos >= self.len || buf.is_empty() {
                return Ok(0);
            }
            self.fetch().map_err(io::Error::other)?;
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece.split_to(n));
        self.pos += n as u64;
        Ok(n)
    }
}

/// A container receiving an import's error files.
pub struct ErrorContainer {
    blobs: Arc<Blobs>,
    account: String,
    name: String,
    client: ContainerClient,
}

impl ErrorContainer {
    fn blob_name(job: &str, file: &str) -> String {
        format!("{job}/{file}")
    }

    /// Names the container in errors.
    fn label(&self) -> String {
        format!("{} ({})", self.name, self.account)
    }

    /// Creates the container unless it exists.
    pub fn ensure(&self) -> Result<(), SourceError> {
        let client = self.client.clone();
        match self
            .blobs
            .call_raw("create container", move || client.create().into_future())
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(blob_error(&self.label(), &e)),
        }
    }

    /// A new error file `file` of job `job`.
    pub fn create(&self, job: &str, file: &str) -> Result<ErrorBlob, SourceError> {
        let name = Self::blob_name(job, file);
        let url = self
            .blobs
            .accounts
            .blob_url(&self.account, &self.name, &name)
            .map_err(|e| SourceError::Io {
                url: name.clone(),
                message: e.to_string(),
            })?;
        Ok(ErrorBlob {
            client: self.client.blob_client(&name),
            blobs: self.blobs.clone(),
            url,
            buf: Vec::new(),
            blocks: Vec::new(),
        })
    }

    /// Deletes the error files of job `job` (a failed import leaves none).
    pub fn remove(&self, job: &str) -> Result<(), SourceError> {
        let client = self.client.clone();
        let prefix = format!("{job}/");
        let names = self.blobs.call(&self.label(), "list blobs", move || {
            let list = client.list_blobs().prefix(prefix.clone());
            async move {
                let mut names = Vec::new();
                let mut pages = list.into_stream();
                while let Some(page) = pages.next().await {
                    names.extend(page?.blobs.blobs().map(|b| b.name.clone()));
                }
                Ok(names)
            }
        });
        let names = match names {
            Err(SourceError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        for name in names {
            let blob = self.client.blob_client(&name);
            match self.blobs.call(&self.label(), "delete blob", move || {
                blob.delete().into_future()
            }) {
                Ok(_) | Err(SourceError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One error file being written: lines staged as blocks, visible once
/// committed.
pub struct ErrorBlob {
    client: BlobClient,
    blobs: Arc<Blobs>,
    url: String,
    buf: Vec<u8>,
    blocks: Vec<BlockId>,
}

impl ErrorBlob {
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), SourceError> {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        if self.buf.len() >= BLOCK_BYTES {
            self.stage()?;
        }
        Ok(())
    }

    fn stage(&mut self) -> Result<(), SourceError> {
        // Equal lengths, as the service requires of one blob's block ids.
        let id = BlockId::new(format!("{:08}", self.blocks.len()));
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let (client, block) = (self.client.clone(), id.clone());
        self.blobs.call(&self.url, "put block", move || {
            client.put_block(block.clone(), body.clone()).into_future()
        })?;
        self.blocks.push(id);
        Ok(())
    }

    /// Commits the file; its URL.
    pub fn commit(mut self) -> Result<String, SourceError> {
        if !self.buf.is_empty() {
            self.stage()?;
        }
        let list = BlockList {
            blocks: self
                .blocks
                .iter()
                .cloned()
                .map(BlobBlockType::new_uncommitted)
                .collect(),
        };
        let client = self.client.clone();
        self.blobs.call(&self.url, "put block list", move || {
            client
                .put_block_list(list.clone())
                .content_type("application/fhir+ndjson")
                .into_future()
        })?;
        Ok(self.url)
    }
}

/// The source error a failed blob call becomes, naming its cause.
fn blob_error(url: &str, gave_up: &GaveUp) -> SourceError {
    match gave_up.status() {
        Some(404) => SourceError::NotFound {
            url: url.to_owned(),
        },
        Some(412) => SourceError::EtagMismatch {
            expected: "the planned entity tag".into(),
            actual: "another (the blob changed)".into(),
        },
        status => {
            let message = match status {
                Some(401 | 403) => format!("the blob service refused the credentials: {gave_up}"),
                Some(_) => format!("the blob service answered {gave_up}"),
                None => format!("the blob service could not be reached: {gave_up}"),
            };
            SourceError::Io {
                url: url.to_owned(),
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::azure::AzureConfig;
    use crate::azure::emulator::Azurite;
    use crate::azure::retry::status_of;
    use crate::import::ImportConfig;
    use crate::import::ranges::tests::{by_ranges_with, reference, sample};
    use crate::import::request::{ImportInput, ImportMode, SourceUrl};
    use crate::import::source::ImportSources;

    /// Azurite (stopped when dropped, before its folder goes) and the
    /// account `dev` on it.
    fn start() -> (Azurite, Arc<Accounts>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let azurite = Azurite::start(&dir.path().join("azurite")).unwrap();
        let mut config = AzureConfig::default();
        config.accounts.insert("dev".into(), azurite.account());
        let accounts = Arc::new(Accounts::new(&config).unwrap());
        (azurite, accounts, dir)
    }

    fn settings(allowed: &[&str]) -> BlobSettings {
        BlobSettings {
            sources: allowed
                .iter()
                .map(|s| BlobSource::try_from(s.to_string()).unwrap())
                .collect(),
            retry: RetryPolicy {
                first_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::within(Duration::from_millis(200))
            },
            ..BlobSettings::default()
        }
    }

    fn sources(accounts: &Arc<Accounts>, allowed: &[&str]) -> ImportSources {
        let mut config = ImportConfig::for_data_dir(Path::new("/nowhere"));
        config.blob = settings(allowed);
        ImportSources::new(&config, Some(accounts.clone()))
    }

    /// Writes blob `name` of `container` (created if needed); its URL.
    fn upload(accounts: &Accounts, container: &str, name: &str, bytes: &[u8]) -> SourceUrl {
        let client = accounts.container("dev", container).unwrap();
        let bytes = bytes.to_vec();
        let name2 = name.to_owned();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let _ = client.create().await;
                client
                    .blob_client(name2)
                    .put_block_blob(bytes)
                    .await
                    .unwrap();
            });
        SourceUrl(accounts.blob_url("dev", container, name).unwrap())
    }

    fn read_all(mut r: impl Read) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn blob_urls_need_a_listed_account_or_container() {
        let (_azurite, accounts, _dir) = start();
        let a = upload(&accounts, "inputs", "dir/a b.ndjson", b"{}\n");
        let b = upload(&accounts, "other", "b.ndjson", b"{}\n");
        let base = accounts.blob_url("dev", "inputs", "x").unwrap();
        let base = base.trim_end_matches("/inputs/x");

        let only_in = sources(&accounts, &["dev/inputs"]);
        assert_eq!(only_in.check(&a, None).unwrap().len, 3);
        let refused = |s: &ImportSources, u: &str| {
            matches!(
                s.check(&SourceUrl(u.to_owned()), None),
                Err(SourceError::NotAllowed { .. })
            )
        };
        assert!(refused(&only_in, b.as_str()));
        // Dot segments would address another container.
        assert!(refused(
            &only_in,
            &format!("{base}/inputs/../other/b.ndjson")
        ));
        assert!(refused(
            &only_in,
            &format!("{base}/inputs/%2e%2e/other/b.ndjson")
        ));
        assert!(refused(&only_in, &format!("{base}/inputs//b.ndjson")));
        // Another port: no configured account, and no HTTP prefix either.
        assert!(refused(
            &only_in,
            &a.as_str()
                .replace(base, "http://127.0.0.1:1/devstoreaccount1")
        ));
        assert!(matches!(
            only_in.check(&SourceUrl(format!("{base}/inputs/none.ndjson")), None),
            Err(SourceError::NotFound { .. })
        ));

        let whole = sources(&accounts, &["dev"]);
        assert!(whole.check(&a, None).is_ok() && whole.check(&b, None).is_ok());
        let none = sources(&accounts, &[]);
        assert!(refused(&none, a.as_str()));
        // A SAS in the URL changes nothing: credentials are the account's.
        assert!(
            whole
                .check(&SourceUrl(format!("{}?sv=x&sig=y", a.as_str())), None)
                .is_ok()
        );
        assert!(BlobSource::try_from("dev/Bad_Name".to_owned()).is_err());
        assert!(BlobSource::try_from("/inputs".to_owned()).is_err());
    }

    #[test]
    fn etag_is_the_blobs_own_and_every_read_checks_it() {
        let (mut azurite, accounts, _dir) = start();
        let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let url = upload(&accounts, "inputs", "p.ndjson", &data);
        let s = sources(&accounts, &["dev"]);
        let info = s.check(&url, None).unwrap();
        assert_eq!(info.len, data.len() as u64);
        let client = accounts
            .container("dev", "inputs")
            .unwrap()
            .blob_client("p.ndjson");
        let own = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(client.get_properties().into_future())
            .unwrap()
            .blob
            .properties
            .etag
            .to_string();
        assert_eq!(info.etag, own);
        assert!(s.check(&url, Some(own.trim_matches('"'))).is_ok());
        assert!(matches!(
            s.check(&url, Some("\"0x1\"")),
            Err(SourceError::EtagMismatch { .. })
        ));

        let source = s.open(&url).unwrap();
        assert_eq!(
            read_all(source.read_from(199_990, 200_000, &info.etag).unwrap()),
            &data[199_990..]
        );
        assert!(read_all(source.read_from(200_000, 200_000, &info.etag).unwrap()).is_empty());
        // Replaced while a reader is half-way: its next GET fails.
        let mut reader = source.read_from(0, 10, &info.etag).unwrap();
        let mut first = [0u8; 10];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(&first, &data[..10]);
        upload(&accounts, "inputs", "p.ndjson", b"{}\n");
        let err = reader.read(&mut [0u8; 10]).unwrap_err().to_string();
        assert!(err.contains("entity tag"), "{err}");
        assert!(matches!(
            source.read_from(0, 3, &info.etag),
            Err(SourceError::EtagMismatch { .. })
        ));

        // The service gone: bounded retries, then the cause.
        azurite.stop();
        let err = source.info().unwrap_err().to_string();
        assert!(
            err.contains("could not be reached") && err.contains("gave up after"),
            "{err}"
        );
    }

    #[test]
    fn ranged_reads_own_every_line_once() {
        let (_azurite, accounts, _dir) = start();
        let s = sources(&accounts, &["dev"]);
        // A line longer than several tail GETs straddles the boundaries.
        let long = format!("{{\"long\":\"{}\"}}", "y".repeat(3 * TAIL_GET as usize));
        let mut big = sample();
        big.extend_from_slice(format!("\n{long}\r\n{{\"e\":5}}\n").as_bytes());
        for (name, data, sizes) in [
            (
                "sample",
                sample(),
                vec![3, 16, 41, sample().len() as u64 + 1],
            ),
            ("big", big, vec![50_000, 100_000, 1 << 20]),
        ] {
            let url = upload(&accounts, "inputs", name, &data);
            let source = s.open(&url).unwrap();
            let etag = source.info().unwrap().etag;
            for range_bytes in sizes {
                let lines = by_ranges_with(data.len() as u64, range_bytes, &|from, until| {
                    source.read_from(from, until, &etag).unwrap()
                });
                assert_eq!(lines, reference(&data), "{name} {range_bytes}");
            }
        }
    }

    #[test]
    fn error_blobs_appear_whole_in_the_account_of_the_first_blob_input() {
        let (_azurite, accounts, _dir) = start();
        let url = upload(&accounts, "inputs", "a.ndjson", b"{}\n");
        let blobs = Blobs::new(accounts.clone(), settings(&["dev"]));
        let request = |inputs: &[&str], error_location: Option<&str>| ImportRequest {
            request_url: "http://h/$import".into(),
            mode: ImportMode::IncrementalLoad,
            allow_negative_versions: false,
            inputs: inputs
                .iter()
                .map(|u| ImportInput {
                    resource_type: None,
                    url: SourceUrl((*u).to_owned()),
                    etag: None,
                })
                .collect(),
            error_location: error_location.map(str::to_owned),
        };
        assert!(
            blobs
                .error_target(&request(&["file:///inputs/a.ndjson"], Some("logs")))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            blobs.error_target(&request(&[url.as_str()], Some("Bad_Name"))),
            Err(ErrorTargetError::Container(_))
        ));
        let target = blobs
            .error_target(&request(&["file:///inputs/a.ndjson", url.as_str()], None))
            .unwrap()
            .unwrap();
        assert_eq!(target.name, "fhirlogs");
        target.ensure().unwrap();
        target.ensure().unwrap();

        let mut file = target.create("job1", "Patient-1.ndjson").unwrap();
        let line = vec![b'x'; 1000];
        // More than one block.
        let lines = 2 * BLOCK_BYTES / line.len() + 3;
        for _ in 0..lines {
            file.write_line(&line).unwrap();
        }
        let client = target.client.blob_client("job1/Patient-1.ndjson");
        let get = |client: BlobClient| {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { client.get_content().await })
        };
        assert_eq!(status_of(&get(client.clone()).unwrap_err()), Some(404));
        let committed = file.commit().unwrap();
        assert_eq!(
            committed,
            accounts
                .blob_url("dev", "fhirlogs", "job1/Patient-1.ndjson")
                .unwrap()
        );
        let content = get(client.clone()).unwrap();
        assert_eq!(content.len(), lines * (line.len() + 1));
        assert!(
            content
                .split(|b| *b == b'\n')
                .take(lines)
                .all(|l| l == line)
        );

        let with_own = Blobs::new(
            accounts.clone(),
            BlobSettings {
                error_account: Some("dev".into()),
                ..settings(&[])
            },
        );
        let own = with_own
            .error_target(&request(&["file:///inputs/a.ndjson"], Some("logs")))
            .unwrap()
            .unwrap();
        assert_eq!((own.account.as_str(), own.name.as_str()), ("dev", "logs"));

        target.remove("job1").unwrap();
        assert_eq!(status_of(&get(client).unwrap_err()), Some(404));
        target.remove("job1").unwrap();
    }
}
