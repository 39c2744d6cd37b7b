//! A [`Destination`] in Azure Blob Storage: one configured account
//! (`export.destination`), reached through the SDK clients of
//! [`crate::azure::Accounts`].
//!
//! Folders map to the seed docs' layout: `[<job-id>]` is a container of its
//! own, `[<container>, <timestamp>-<job-id>]` the blobs under the prefix
//! `<timestamp>-<job-id>/` of that container (created when missing; the
//! folder is new per export, so nothing is ever reused).
//!
//! A file is a block blob built from staged blocks: `append` fills a buffer
//! of `block_bytes` and stages it as one block, so memory stays bounded
//! whatever the file's size; `commit` stages the rest and commits the block
//! list, which is the one moment the blob appears (or replaces one of its
//! name), whole. Until then the blocks are uncommitted: invisible to
//! listings and reads, and discarded by Azure when another writer commits
//! the name or after a week without writes. So abort and leftovers of a
//! crash need no request at all. Block ids are a random writer id plus a
//! sequence number, of one length for every writer (Azure refuses blocks of
//! different id lengths on one blob): two writers of one name never mix
//! blocks. A commit discards the blocks another writer staged so far, so
//! that writer's own commit then fails rather than publish a mixture (a
//! stale worker cannot overwrite the file of the one that replaced it).
//!
//! The trait is blocking and the SDK async: each call runs its future on
//! the server's runtime with [`Handle::block_on`], from the blocking threads
//! exports, downloads and the janitor run on (never from async code).
//! Transient failures (network errors, timeouts, 408, 429, 5xx) are retried
//! with exponential backoff for up to `retry`; then, or at once for anything
//! else (authorisation, a missing container), the error names the account,
//! container, operation and cause.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_storage::shared_access_signature::service_sas::BlobSasPermissions;
use azure_storage_blobs::blob::{BlobBlockType, BlockList};
use azure_storage_blobs::prelude::{BlobClient, BlobServiceClient, BlockId};
use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Handle;

use super::{
    Destination, DestinationError, DestinationKind, DirectUrl, Download, Folder, PendingFile,
    check_file_name,
};
use crate::azure::retry::{self, RetryPolicy};
use crate::azure::{Accounts, AzureError, is_container_name};
use crate::fhir::Instant;

/// The block size of staged uploads: each file holds at most this much in
/// memory.
pub const BLOCK_BYTES: usize = 4 * 1024 * 1024;
const CONTENT_TYPE: &str = "application/fhir+ndjson";

/// How the destination writes and publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobOptions {
    /// How long one operation is retried on transient failures.
    pub retry: Duration,
    /// How long the read SAS URLs listed in manifests stay valid; `None`
    /// lists plain blob URLs.
    pub sas: Option<Duration>,
    /// Bytes per staged block.
    pub block_bytes: usize,
}

pub struct BlobDestination {
    accounts: Accounts,
    /// The local name of the account (`[azure.accounts.<name>]`).
    account: String,
    service: BlobServiceClient,
    options: BlobOptions,
    link: Arc<Link>,
}

/// What every request of the destination and its files shares: where it
/// runs, how long it is retried, and how the account is named in errors.
struct Link {
    runtime: Handle,
    retry: RetryPolicy,
    /// `'<name>' (<endpoint>)`
    account: String,
    /// Containers this process created or found: one create call per
    /// container, not per file. A container the service reports missing
    /// is forgotten, so that the next file creates it again.
    known: Mutex<HashSet<String>>,
}

/// A folder's place in the account.
struct Place {
    container: String,
    /// Empty, or `<folder>/`.
    prefix: String,
}

impl BlobDestination {
    /// Writes to configured account `account`; `runtime` is a multi-thread
    /// runtime the SDK's futures run on.
    pub fn new(
        accounts: Accounts,
        account: &str,
        options: BlobOptions,
        runtime: Handle,
    ) -> Result<BlobDestination, AzureError> {
        let service = accounts.service(account)?.clone();
        let endpoint = accounts.endpoint(account)?;
        let link = Arc::new(Link {
            runtime,
            retry: RetryPolicy::within(options.retry),
            account: format!("'{account}' ({endpoint})"),
            known: Mutex::new(HashSet::new()),
        });
        Ok(BlobDestination {
            account: account.to_owned(),
            service,
            options: BlobOptions {
                block_bytes: options.block_bytes.max(1),
                ..options
            },
            link,
            accounts,
        })
    }

    fn place(folder: &Folder) -> Result<Place, DestinationError> {
        let (container, prefix) = match folder.segments() {
            [container] => (container, String::new()),
            [container, sub] => (container, format!("{sub}/")),
            _ => return Err(DestinationError::BadName(folder.to_string())),
        };
        if !is_container_name(container) {
            return Err(DestinationError::BadName(container.clone()));
        }
        Ok(Place {
            container: container.clone(),
            prefix,
        })
    }

    /// Creates `container` unless this process already saw it.
    fn ensure_container(&self, container: &str) -> Result<(), DestinationError> {
        if self.link.known().contains(container) {
            return Ok(());
        }
        let client = self.service.container_client(container);
        self.link.run(container, "creating the container", || {
            let client = client.clone();
            async move {
                match client.create().await {
                    Err(e) if retry::error_code(&e) == Some("ContainerAlreadyExists") => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })?;
        self.link.known().insert(container.to_owned());
        Ok(())
    }

    /// The committed blobs directly under `prefix` (their full names).
    fn blobs(&self, place: &Place) -> Result<Vec<String>, DestinationError> {
        let client = self.service.container_client(&place.container);
        let prefix = place.prefix.clone();
        self.link.run(&place.container, "listing the blobs", || {
            let client = client.clone();
            let prefix = prefix.clone();
            async move {
                let mut names = Vec::new();
                let mut pages = client.list_blobs().prefix(prefix.clone()).into_stream();
                while let Some(page) = pages.next().await {
                    let page = match page {
                        Ok(page) => page,
                        Err(e) if retry::status_of(&e) == Some(404) => break,
                        Err(e) => return Err(e),
                    };
                    names.extend(
                        page.blobs
                            .blobs()
                            .filter(|b| !b.name[prefix.len()..].contains('/'))
                            .map(|b| b.name.clone()),
                    );
                }
                Ok(names)
            }
        })
    }

    fn delete_blob(&self, container: &str, blob: &str) -> Result<(), DestinationError> {
        let client = self.service.container_client(container).blob_client(blob);
        self.link.run(container, &format!("deleting '{blob}'"), || {
            let client = client.clone();
            async move {
                match client.delete().await {
                    Err(e) if retry::status_of(&e) == Some(404) => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })
    }

    /// The URL clients fetch `blob` at: a read SAS URL valid until the
    /// returned instant, or the plain blob URL.
    fn url(&self, container: &str, blob: &str) -> Result<DirectUrl, DestinationError> {
        let Some(validity) = self.options.sas else {
            let url = self
                .accounts
                .blob_url(&self.account, container, blob)
                .map_err(|e| self.link.failure(container, "naming a blob", e.to_string()))?;
            return Ok(DirectUrl { url, expires: None });
        };
        let validity_ms = i64::try_from(validity.as_millis()).unwrap_or(i64::MAX);
        let expires = Instant::from_millis(Instant::now().as_millis().saturating_add(validity_ms));
        let expiry = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(expires.as_millis()) * 1_000_000,
        )
        .map_err(|e| self.link.failure(container, "signing a URL", e.to_string()))?;
        let client = self.service.container_client(container).blob_client(blob);
        let permissions = BlobSasPermissions {
            read: true,
            ..BlobSasPermissions::default()
        };
        // Signing is local (an HMAC of the account key): no request, so no
        // retries either.
        let signed = self
            .link
            .runtime
            .block_on(client.shared_access_signature(permissions, expiry))
            .and_then(|sas| client.generate_signed_blob_url(&sas))
            .map_err(|e| {
                self.link
                    .failure(container, "signing a URL", retry::cause(&e))
            })?;
        Ok(DirectUrl {
            url: signed.to_string(),
            expires: Some(expires),
        })
    }
}

impl Destination for BlobDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Blob
    }

    fn create(
        &self,
        folder: &Folder,
        name: &str,
    ) -> Result<Box<dyn PendingFile>, DestinationError> {
        check_file_name(name)?;
        let place = Self::place(folder)?;
        self.ensure_container(&place.container)?;
        let blob = format!("{}{name}", place.prefix);
        Ok(Box::new(BlobFile::new(
            self.link.clone(),
            self.service
                .container_client(&place.container)
                .blob_client(&blob),
            place.container,
            self.options.block_bytes,
        )))
    }

    fn list(&self, folder: &Folder) -> Result<Vec<String>, DestinationError> {
        let place = Self::place(folder)?;
        Ok(self
            .blobs(&place)?
            .into_iter()
            .map(|name| name[place.prefix.len()..].to_owned())
            .collect())
    }

    fn remove(&self, folder: &Folder, name: &str) -> Result<(), DestinationError> {
        check_file_name(name)?;
        let place = Self::place(folder)?;
        self.delete_blob(&place.container, &format!("{}{name}", place.prefix))
    }

    /// Pending files are uncommitted blocks: never visible, discarded by
    /// Azure when the name is next committed (or after a week), and not
    /// deletable on their own. Nothing to do.
    fn remove_pending(&self, folder: &Folder) -> Result<(), DestinationError> {
        Self::place(folder).map(|_| ())
    }

    fn remove_folder(&self, folder: &Folder) -> Result<(), DestinationError> {
        let place = Self::place(folder)?;
        if !place.prefix.is_empty() {
            for blob in self.blobs(&place)? {
                self.delete_blob(&place.container, &blob)?;
            }
            return Ok(());
        }
        // A container of its own: it goes whole. Azure refuses to create a
        // container of that name again for a while; job ids are never
        // reused, so nothing will.
        self.link.known().remove(&place.container);
        let client = self.service.container_client(&place.container);
        self.link
            .run(&place.container, "deleting the container", || {
                let client = client.clone();
                async move {
                    match client.delete().await {
                        Err(e) if retry::status_of(&e) == Some(404) => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            })
    }

    fn locate(&self, folder: &Folder, name: &str) -> Result<Option<Download>, DestinationError> {
        check_file_name(name)?;
        let place = Self::place(folder)?;
        let blob = format!("{}{name}", place.prefix);
        let client = self
            .service
            .container_client(&place.container)
            .blob_client(&blob);
        let exists = self
            .link
            .run(&place.container, &format!("reading '{blob}'"), || {
                let client = client.clone();
                async move { client.exists().await }
            })?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(Download::Url(self.url(&place.container, &blob)?.url)))
    }

    fn direct_url(
        &self,
        folder: &Folder,
        name: &str,
    ) -> Result<Option<DirectUrl>, DestinationError> {
        check_file_name(name)?;
        let place = Self::place(folder)?;
        self.url(&place.container, &format!("{}{name}", place.prefix))
            .map(Some)
    }
}

/// A block blob being staged.
struct BlobFile {
    link: Arc<Link>,
    client: BlobClient,
    container: String,
    /// Random, so that two writers of one name never share a block id.
    writer: [u8; 16],
    staged: Vec<BlockId>,
    buffer: Vec<u8>,
    block_bytes: usize,
}

impl BlobFile {
    fn new(link: Arc<Link>, client: BlobClient, container: String, block_bytes: usize) -> Self {
        BlobFile {
            link,
            client,
            container,
            writer: uuid::Uuid::new_v4().into_bytes(),
            staged: Vec::new(),
            buffer: Vec::new(),
            block_bytes,
        }
    }

    /// Writer id and sequence number: 24 bytes for every block of every
    /// writer.
    fn next_id(&self) -> BlockId {
        let mut id = Vec::with_capacity(24);
        id.extend_from_slice(&self.writer);
        id.extend_from_slice(&(self.staged.len() as u64).to_be_bytes());
        BlockId::new(id)
    }

    /// Stages the buffer as the next block.
    fn stage(&mut self) -> Result<(), DestinationError> {
        let data = Bytes::from(std::mem::take(&mut self.buffer));
        let id = self.next_id();
        let client = self.client.clone();
        let operation = format!("staging a block of '{}'", self.client.blob_name());
        self.link.run(&self.container, &operation, || {
            let (client, id, data) = (client.clone(), id.clone(), data.clone());
            async move { client.put_block(id, data).await.map(|_| ()) }
        })?;
        self.staged.push(id);
        Ok(())
    }
}

impl PendingFile for BlobFile {
    fn append(&mut self, mut bytes: &[u8]) -> Result<(), DestinationError> {
        while !bytes.is_empty() {
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(self.block_bytes);
            }
            let take = bytes.len().min(self.block_bytes - self.buffer.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == self.block_bytes {
                self.stage()?;
            }
        }
        Ok(())
    }

    /// Azure stores a block durably before acknowledging it, so committing
    /// the list is the one step that makes the file visible.
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        if !self.buffer.is_empty() {
            self.stage()?;
        }
        let list = BlockList {
            blocks: self
                .staged
                .iter()
                .cloned()
                .map(BlobBlockType::Uncommitted)
                .collect(),
        };
        let client = self.client.clone();
        let operation = format!("committing '{}'", self.client.blob_name());
        self.link.run(&self.container, &operation, || {
            let (client, list) = (client.clone(), list.clone());
            async move {
                client
                    .put_block_list(list)
                    .content_type(CONTENT_TYPE)
                    .await
                    .map(|_| ())
            }
        })
    }

    /// The staged blocks stay uncommitted: invisible, and garbage-collected
    /// by Azure (at the next commit of the name, or after a week).
    fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        Ok(())
    }
}

impl Link {
    /// Runs the request `attempt` makes on the runtime, with the retries of
    /// [`retry::retry`]. Blocks: never call it from async code.
    fn run<T, F, Fut>(
        &self,
        container: &str,
        operation: &str,
        attempt: F,
    ) -> Result<T, DestinationError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = azure_core::Result<T>>,
    {
        self.runtime.block_on(async {
            retry::retry(&self.retry, operation, attempt)
                .await
                .map_err(|gave_up| {
                    if gave_up.code() == Some("ContainerNotFound") {
                        self.known().remove(container);
                    }
                    self.failure(container, operation, gave_up.to_string())
                })
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failure(&self, container: &str, operation: &str, cause: String) -> DestinationError {
        DestinationError::Blob {
            account: self.account.clone(),
            container: container.to_owned(),
            operation: operation.to_owned(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::emulator::Azurite;
    use crate::azure::{AccountConfig, AzureConfig, Credential};

    /// An Azurite, a runtime for the SDK and a destination writing to it.
    struct Fixture {
        azurite: Azurite,
        runtime: tokio::runtime::Runtime,
        accounts: Accounts,
        _dir: tempfile::TempDir,
    }

    fn options() -> BlobOptions {
        BlobOptions {
            retry: Duration::from_secs(2),
            sas: None,
            block_bytes: BLOCK_BYTES,
        }
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let azurite = Azurite::start(dir.path()).unwrap();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let accounts = Self::accounts(azurite.account());
            Fixture {
                azurite,
                runtime,
                accounts,
                _dir: dir,
            }
        }

        fn accounts(account: AccountConfig) -> Accounts {
            Accounts::new(&AzureConfig {
                accounts: [("dev".to_owned(), account)].into(),
            })
            .unwrap()
        }

        fn destination(&self, options: BlobOptions) -> BlobDestination {
            let handle = self.runtime.handle().clone();
            BlobDestination::new(self.accounts.clone(), "dev", options, handle).unwrap()
        }

        fn read(&self, container: &str, blob: &str) -> Vec<u8> {
            let client = self.container(container).blob_client(blob);
            self.runtime.block_on(client.get_content()).unwrap()
        }

        fn container(&self, container: &str) -> azure_storage_blobs::prelude::ContainerClient {
            self.accounts.container("dev", container).unwrap()
        }
    }

    #[test]
    fn keeps_the_destination_contract() {
        let f = Fixture::new();
        let d = f.destination(options());
        let folder = Folder::new(&["research", "20240501T120000Z-job"]).unwrap();
        // Another folder of the container is not this one's.
        let other = Folder::new(&["research", "20240501T120000Z-other"]).unwrap();
        d.create(&other, "Z-1-1.ndjson").unwrap().commit().unwrap();
        super::super::contract::check(&d, &folder, &|name| {
            f.read("research", &format!("20240501T120000Z-job/{name}"))
        });
        assert_eq!(d.list(&other).unwrap(), ["Z-1-1.ndjson"]);

        // Once one writer commits, the other's blocks are gone and its
        // commit fails instead of publishing a mixture.
        let tiny = f.destination(BlobOptions {
            block_bytes: 2,
            ..options()
        });
        let mut c = tiny.create(&folder, "X-1-1.ndjson").unwrap();
        let mut late = tiny.create(&folder, "X-1-1.ndjson").unwrap();
        c.append(b"c\n").unwrap();
        late.append(b"late\n").unwrap();
        c.commit().unwrap();
        let refused = late.commit().unwrap_err().to_string();
        assert!(refused.contains("HTTP 400 InvalidBlockList"), "{refused}");
        assert_eq!(
            f.read("research", "20240501T120000Z-job/X-1-1.ndjson"),
            b"c\n"
        );

        // A job's own container goes whole.
        let job = Folder::new(&["0f3c2d1e-aaaa-4bbb-8ccc-123456789012"]).unwrap();
        d.create(&job, "P-1-1.ndjson").unwrap().commit().unwrap();
        assert_eq!(d.list(&job).unwrap(), ["P-1-1.ndjson"]);
        d.remove_folder(&job).unwrap();
        d.remove_folder(&job).unwrap();
        let gone = f.container("0f3c2d1e-aaaa-4bbb-8ccc-123456789012");
        assert!(!f.runtime.block_on(gone.exists()).unwrap());
        assert!(d.list(&job).unwrap().is_empty());

        for bad in [
            Folder::new(&["Research", "x"]).unwrap(),
            Folder::new(&["a", "b", "c"]).unwrap(),
        ] {
            assert!(matches!(
                d.create(&bad, "P.ndjson").map(|_| ()),
                Err(DestinationError::BadName(_))
            ));
        }
    }

    #[test]
    fn large_files_are_staged_in_blocks_of_bounded_size() {
        let f = Fixture::new();
        let block_bytes = 64 * 1024;
        let d = f.destination(BlobOptions {
            block_bytes,
            ..options()
        });
        let folder = Folder::new(&["big-job"]).unwrap();
        d.ensure_container("big-job").unwrap();
        let mut file = BlobFile::new(
            d.link.clone(),
            d.service
                .container_client("big-job")
                .blob_client("Big-1-1.ndjson"),
            "big-job".into(),
            block_bytes,
        );
        let mut expected = Vec::new();
        for i in 0..120u32 {
            let line = format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(9_000));
            file.append(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
            assert!(file.buffer.capacity() <= block_bytes, "buffer grew");
            assert!(file.buffer.len() < block_bytes);
        }
        let blocks = expected.len().div_ceil(block_bytes);
        assert!(blocks > 10);
        Box::new(file).commit().unwrap();
        assert_eq!(d.list(&folder).unwrap(), ["Big-1-1.ndjson"]);
        assert_eq!(f.read("big-job", "Big-1-1.ndjson"), expected);
        let client = f.container("big-job").blob_client("Big-1-1.ndjson");
        let list = f
            .runtime
            .block_on(
                client
                    .get_block_list()
                    .block_list_type(azure_storage_blobs::prelude::BlockListType::All)
                    .into_future(),
            )
            .unwrap();
        assert_eq!(list.block_with_size_list.blocks.len(), blocks);
    }

    #[test]
    fn locate_gives_the_blob_url_or_a_read_sas_url() {
        let f = Fixture::new();
        let folder = Folder::new(&["out", "20240501T120000Z-j"]).unwrap();
        let plain = f.destination(options());
        let mut file = plain.create(&folder, "Patient-1-1.ndjson").unwrap();
        file.append(b"{\"resourceType\":\"Patient\"}\n").unwrap();
        file.commit().unwrap();
        let url = format!(
            "{}/out/20240501T120000Z-j/Patient-1-1.ndjson",
            f.azurite.endpoint()
        );
        assert_eq!(
            plain.locate(&folder, "Patient-1-1.ndjson").unwrap(),
            Some(Download::Url(url.clone()))
        );
        assert_eq!(
            plain.direct_url(&folder, "Patient-1-1.ndjson").unwrap(),
            Some(DirectUrl {
                url: url.clone(),
                expires: None
            })
        );
        assert_eq!(plain.locate(&folder, "Other-1-1.ndjson").unwrap(), None);

        let signed = f.destination(BlobOptions {
            sas: Some(Duration::from_secs(600)),
            ..options()
        });
        let before = Instant::now().as_millis();
        let direct = signed
            .direct_url(&folder, "Patient-1-1.ndjson")
            .unwrap()
            .unwrap();
        let expires = direct.expires.unwrap().as_millis();
        assert!((before + 600_000..=before + 660_000).contains(&expires));
        assert!(direct.url.starts_with(&format!("{url}?")), "{}", direct.url);
        assert!(direct.url.contains("sig="), "{}", direct.url);
        let get = |url: String| {
            f.runtime.block_on(async move {
                let resp = reqwest::get(url).await.unwrap();
                (resp.status().as_u16(), resp.bytes().await.unwrap())
            })
        };
        // Without credentials only the signed URL reads the blob.
        let (status, body) = get(direct.url);
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"{\"resourceType\":\"Patient\"}\n");
        assert_ne!(get(url).0, 200);
    }

    #[test]
    fn outages_are_retried_within_the_bound_and_refusals_fail_at_once() {
        let mut f = Fixture::new();
        let d = f.destination(options());
        let folder = Folder::new(&["outage", "t-j"]).unwrap();
        let mut file = d.create(&folder, "P-1-1.ndjson").unwrap();
        file.append(b"x\n").unwrap();
        f.azurite.stop();
        let started = std::time::Instant::now();
        let err = file.commit().unwrap_err().to_string();
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(1_500)..Duration::from_secs(10)).contains(&took),
            "{took:?}"
        );
        for part in [
            "'dev'",
            "container 'outage'",
            "'t-j/P-1-1.ndjson'",
            "gave up after",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(err.to_lowercase().contains("connect"), "{err}");

        // Back within the bound: the retries ride it out. The bound is
        // wider than Azurite's own restart (seconds on a loaded machine).
        // (A killed Azurite may forget what it was told just before, such
        // as the container above: a fresh one.)
        let d = f.destination(BlobOptions {
            retry: Duration::from_secs(30),
            ..options()
        });
        let fresh = Folder::new(&["after-outage", "t-j"]).unwrap();
        let (resumed, created) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                f.azurite.resume()
            });
            let created = d.create(&fresh, "P-1-2.ndjson");
            (waiter.join().unwrap(), created)
        });
        resumed.unwrap();
        let mut file = created.unwrap();
        file.append(b"y\n").unwrap();
        file.commit().unwrap();
        assert_eq!(d.list(&fresh).unwrap(), ["P-1-2.ndjson"]);

        // A container deleted behind the destination's back is created
        // again by the next file, not reported missing forever.
        let gone = f.container("after-outage");
        f.runtime.block_on(gone.delete().into_future()).unwrap();
        let mut file = d.create(&fresh, "P-1-3.ndjson").unwrap();
        file.append(b"z\n").unwrap();
        let missing = file.commit().unwrap_err().to_string();
        assert!(missing.contains("ContainerNotFound"), "{missing}");
        let retry_create = std::time::Instant::now();
        loop {
            // Azure (and Azurite) refuse the name while deleting it.
            match d.create(&fresh, "P-1-3.ndjson") {
                Ok(mut file) => {
                    file.append(b"z\n").unwrap();
                    file.commit().unwrap();
                    break;
                }
                Err(e) => assert!(retry_create.elapsed() < Duration::from_secs(30), "{e}"),
            }
        }
        assert_eq!(d.list(&fresh).unwrap(), ["P-1-3.ndjson"]);

        // A wrong key is refused: no retries.
        let mut wrong = f.azurite.account();
        wrong.credential = Credential::Key {
            key: "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=".into(),
        };
        let refused = BlobDestination::new(
            Fixture::accounts(wrong),
            "dev",
            options(),
            f.runtime.handle().clone(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = refused
            .create(&Folder::new(&["denied"]).unwrap(), "P.ndjson")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(1), "{err}");
        assert!(err.contains("HTTP 403"), "{err}");
        assert!(!err.contains("gave up"), "{err}");
    }
}
