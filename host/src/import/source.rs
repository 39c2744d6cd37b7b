//! Where `$import` inputs are read from: a registry of source kinds, each
//! claiming the URLs it can read. Three kinds: local files (`file://` URLs
//! under the configured roots), Azure Blob (URLs of the configured storage
//! accounts that `blob_sources` lists, see [`super::blob`]) and plain HTTP
//! (`http://` URLs under an allow-listed prefix, read with ranged GETs).
//! No kind reads an address it was not configured for: a URL no kind
//! claims, or outside the roots, accounts and prefixes, is
//! [`SourceError::NotAllowed`].
//!
//! # Entity tags of local files
//!
//! `"<length>-<mtime>"`: the length in bytes and the modification time in
//! nanoseconds since the Unix epoch, both in lower-case hex, quoted (a strong
//! tag), e.g. `"1f4a-17c3b2a9d05e1f00"`. Cheap (one `stat`) and changed by
//! any write through the file system. A client learns it by computing it
//! the same way (`stat -c '%s %.9Y' FILE`). Tags compare without their quotes
//! and without a `W/` prefix.
//!
//! # HTTP inputs
//!
//! A URL is compared with the prefixes after normalisation (`..` and `.`
//! segments resolved, so they cannot climb out), must carry no user
//! information, and a prefix that does not end in `/` only covers URLs that
//! continue with `/`, `?` or nothing (`http://h` does not cover
//! `http://h.example/`). Redirects are not followed. The entity tag is the
//! server's `ETag`, or else a weak tag of the length and `Last-Modified`;
//! a server giving neither cannot be imported from (its content could change
//! unnoticed). Reads are `Range` GETs; a server that ignores the range is
//! read from the start and the bytes before the offset dropped. `https://`
//! prefixes are accepted by the configuration, but this build has no TLS:
//! reading one fails (the Azure Blob source brings it).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED, RANGE};

use super::ImportConfig;
use super::blob::{BlobFiles, Blobs, ErrorContainer, ErrorTargetError};
use super::request::{ImportRequest, SourceUrl};
use crate::azure::Accounts;

/// What an input is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// Bytes.
    pub len: u64,
    /// Its entity tag, quoted (see the module documentation).
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No configured source covers the URL (400 at kick-off).
    #[error("{url} is not under a configured import source")]
    NotAllowed { url: String },
    /// The URL is allowed but nothing is there (400 at kick-off; during a
    /// job, the input was deleted, renamed or moved).
    #[error("{url} does not exist or is not a file")]
    NotFound { url: String },
    /// The source no longer has the entity tag the client named, or the
    /// one the job was planned with: its content changed. 412 Precondition
    /// Failed at kick-off, since the tag is exactly a precondition the
    /// request makes on the source; a job whose input changes while it runs
    /// fails with it too (its byte ranges no longer mean anything).
    #[error("the input's entity tag is {actual}, not {expected}: it changed")]
    EtagMismatch { expected: String, actual: String },
    #[error("reading {url}: {message}")]
    Io { url: String, message: String },
}

/// One readable input.
pub trait Source: Send + Sync {
    fn info(&self) -> Result<SourceInfo, SourceError>;

    /// Its bytes from `offset` to the end, provided the source still has
    /// entity tag `etag` when reading starts. `until` is where the caller
    /// expects to need no more (it may read on, e.g. to finish a line): a
    /// remote source fetches up to there at once, and little at a time
    /// beyond.
    fn read_from(
        &self,
        offset: u64,
        until: u64,
        etag: &str,
    ) -> Result<Box<dyn Read + Send>, SourceError>;
}

/// A kind of place inputs come from.
pub trait SourceKind: Send + Sync {
    /// `None` when `url` is not of this kind; otherwise the source, or why
    /// this kind refuses it.
    fn resolve(&self, url: &str) -> Option<Result<Box<dyn Source>, SourceError>>;
}

/// The configured source kinds.
pub struct ImportSources {
    kinds: Vec<Box<dyn SourceKind>>,
    /// The storage accounts, when any is configured.
    blobs: Option<Arc<Blobs>>,
}

impl ImportSources {
    /// Without storage accounts: local files and allow-listed HTTP only.
    pub fn from_config(config: &ImportConfig) -> Self {
        Self::new(config, None)
    }

    /// With the storage accounts `accounts` as blob sources (those
    /// `config.blob.sources` allows) and error destinations.
    pub fn new(config: &ImportConfig, accounts: Option<Arc<Accounts>>) -> Self {
        let blobs = accounts
            .filter(|a| !a.is_empty())
            .map(|a| Blobs::new(a, config.blob.clone()));
        let mut kinds: Vec<Box<dyn SourceKind>> = vec![Box::new(LocalFiles {
            // Absolute, so that a relative root (the default is under a
            // relative data directory) compares with absolute URLs.
            roots: config
                .sources
                .iter()
                .map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()))
                .collect(),
        })];
        // Before plain HTTP: a blob URL is an http(s) URL too, and must be
        // read with its account's credentials or not at all.
        if let Some(blobs) = &blobs {
            kinds.push(Box::new(BlobFiles(blobs.clone())));
        }
        kinds.push(Box::new(HttpFiles {
            prefixes: config.allowed_http.clone(),
            client: OnceLock::new(),
        }));
        ImportSources { kinds, blobs }
    }

    /// The blob container the error files of `request` go to; `None`: the
    /// local error folder.
    pub fn error_target(
        &self,
        request: &ImportRequest,
    ) -> Result<Option<ErrorContainer>, ErrorTargetError> {
        match &self.blobs {
            Some(blobs) => blobs.error_target(request),
            None => Ok(None),
        }
    }

    /// The source behind `url`. Blocking (file system or network): call it
    /// off the async threads.
    pub fn open(&self, url: &SourceUrl) -> Result<Box<dyn Source>, SourceError> {
        self.kinds
            .iter()
            .find_map(|kind| kind.resolve(url.as_str()))
            .unwrap_or_else(|| {
                Err(SourceError::NotAllowed {
                    url: url.as_str().to_owned(),
                })
            })
    }

    /// Whether `url` is allowed and readable now, with entity tag `etag`
    /// when one is given. Blocking, like [`ImportSources::open`].
    pub fn check(&self, url: &SourceUrl, etag: Option<&str>) -> Result<SourceInfo, SourceError> {
        let info = self.open(url)?.info()?;
        if let Some(expected) = etag {
            check_etag(expected, &info.etag)?;
        }
        Ok(info)
    }
}

/// `expected` and `actual` name the same content.
pub fn check_etag(expected: &str, actual: &str) -> Result<(), SourceError> {
    if bare(expected) == bare(actual) {
        Ok(())
    } else {
        Err(SourceError::EtagMismatch {
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}

/// A tag without `W/` and quotes.
fn bare(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

/// `file://` URLs of files under one of `roots`.
struct LocalFiles {
    roots: Vec<PathBuf>,
}

impl SourceKind for LocalFiles {
    fn resolve(&self, url: &str) -> Option<Result<Box<dyn Source>, SourceError>> {
        let rest = url.strip_prefix("file://")?;
        Some(self.file(url, rest).map(|f| Box::new(f) as Box<dyn Source>))
    }
}

impl LocalFiles {
    /// Allowed only when the path is under a root both as written (no `..`,
    /// so the text cannot climb out) and once symbolic links are resolved
    /// (so a link cannot lead out); existence is looked at in between, so
    /// that a refused URL says nothing about what exists outside the roots.
    fn file(&self, url: &str, rest: &str) -> Result<LocalFile, SourceError> {
        let not_allowed = || SourceError::NotAllowed {
            url: url.to_owned(),
        };
        // `file:///p` or `file://localhost/p`: the local host only.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(not_allowed());
        }
        let path = PathBuf::from(crate::percent::decode(path).ok_or_else(not_allowed)?);
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain || !self.roots.iter().any(|root| path.starts_with(root)) {
            return Err(not_allowed());
        }
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound {
                    url: url.to_owned(),
                });
            }
            Err(e) => return Err(io_error(url, &e)),
        };
        let inside = self
            .roots
            .iter()
            .filter_map(|root| root.canonicalize().ok())
            .any(|root| real.starts_with(root));
        if !inside {
            return Err(not_allowed());
        }
        if !real.is_file() {
            return Err(SourceError::NotFound {
                url: url.to_owned(),
            });
        }
        Ok(LocalFile {
            url: url.to_owned(),
            path: real,
        })
    }
}

struct LocalFile {
    url: String,
    path: PathBuf,
}

impl LocalFile {
    fn info_of(&self, file: &File) -> Result<SourceInfo, SourceError> {
        let meta = file.metadata().map_err(|e| io_error(&self.url, &e))?;
        Ok(local_info(&meta))
    }

    fn open(&self) -> Result<File, SourceError> {
        File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SourceError::NotFound {
                url: self.url.clone(),
            },
            _ => io_error(&self.url, &e),
        })
    }
}

fn local_info(meta: &std::fs::Metadata) -> SourceInfo {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    SourceInfo {
        len: meta.len(),
        etag: format!("\"{:x}-{mtime:x}\"", meta.len()),
    }
}

impl Source for LocalFile {
    fn info(&self) -> Result<SourceInfo, SourceError> {
        self.info_of(&self.open()?)
    }

    /// The tag is checked on the opened file, so a replacement between the
    /// check and the read cannot slip in.
    fn read_from(
        &self,
        offset: u64,
        _until: u64,
        etag: &str,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let mut file = self.open()?;
        check_etag(etag, &self.info_of(&file)?.etag)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&self.url, &e))?;
        Ok(Box::new(file))
    }
}

/// `http(s)://` URLs under one of `prefixes`.
struct HttpFiles {
    prefixes: Vec<String>,
    /// Made on first use: a blocking client owns a runtime, which must not
    /// be created (or dropped) on an async thread, where sources are built.
    client: OnceLock<Result<Client, String>>,
}

impl SourceKind for HttpFiles {
    fn resolve(&self, url: &str) -> Option<Result<Box<dyn Source>, SourceError>> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return None;
        }
        let not_allowed = || SourceError::NotAllowed {
            url: url.to_owned(),
        };
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Some(Err(not_allowed()));
        };
        let clean = parsed.username().is_empty()
            && parsed.password().is_none()
            && parsed.fragment().is_none();
        if !clean || !self.prefixes.iter().any(|p| covers(p, parsed.as_str())) {
            return Some(Err(not_allowed()));
        }
        let client = self.client.get_or_init(|| {
            Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .timeout(None)
                .build()
                .map_err(|e| e.to_string())
        });
        Some(match client {
            Ok(client) => Ok(Box::new(HttpFile {
                url: url.to_owned(),
                target: parsed,
                client: client.clone(),
            })),
            Err(message) => Err(SourceError::Io {
                url: url.to_owned(),
                message: message.clone(),
            }),
        })
    }
}

/// Whether allow-listed `prefix` covers the normalised `url`.
fn covers(prefix: &str, url: &str) -> bool {
    url.strip_prefix(prefix).is_some_and(|rest| {
        prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?'])
    })
}

struct HttpFile {
    url: String,
    target: reqwest::Url,
    client: Client,
}

impl HttpFile {
    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Response, SourceError> {
        let response = request.send().map_err(|e| SourceError::Io {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(SourceError::NotFound {
                url: self.url.clone(),
            }),
            s if s.is_success() || s == StatusCode::RANGE_NOT_SATISFIABLE => Ok(response),
            s => Err(SourceError::Io {
                url: self.url.clone(),
                message: format!("the server answered {s}"),
            }),
        }
    }

    /// The entity tag a response describes, for content of `len` bytes.
    fn tag(&self, headers: &HeaderMap, len: u64) -> Result<String, SourceError> {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(etag) = text(ETAG) {
            return Ok(etag.to_owned());
        }
        match text(LAST_MODIFIED) {
            Some(modified) => Ok(format!("W/\"{len:x}-{modified}\"")),
            None => Err(SourceError::Io {
                url: self.url.clone(),
                message: "the server gives neither ETag nor Last-Modified, so a change of the input could not be noticed".into(),
            }),
        }
    }

    fn length(&self, headers: &HeaderMap) -> Result<u64, SourceError> {
        headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| SourceError::Io {
                url: self.url.clone(),
                message: "the server gives no Content-Length".into(),
            })
    }
}

impl Source for HttpFile {
    fn info(&self) -> Result<SourceInfo, SourceError> {
        let response = self.send(self.client.head(self.target.clone()))?;
        let len = self.length(response.headers())?;
        Ok(SourceInfo {
            len,
            etag: self.tag(response.headers(), len)?,
        })
    }

    /// One streamed GET to the end: the connection's flow control, not the
    /// range, bounds what is fetched ahead of the reader.
    fn read_from(
        &self,
        offset: u64,
        _until: u64,
        etag: &str,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let request = self
            .client
            .get(self.target.clone())
            .header(RANGE, format!("bytes={offset}-"));
        let response = self.send(request)?;
        let headers = response.headers().clone();
        let (len, skip) = match response.status() {
            // `bytes a-b/len`
            StatusCode::PARTIAL_CONTENT => {
                let total = headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| r.rsplit_once('/'))
                    .and_then(|(_, total)| total.parse().ok());
                match total {
                    Some(total) => (total, 0),
                    None => {
                        return Err(SourceError::Io {
                            url: self.url.clone(),
                            message: "a partial answer without its total length".into(),
                        });
                    }
                }
            }
            // Offset at the end: nothing left to read.
            StatusCode::RANGE_NOT_SATISFIABLE => {
                check_etag(etag, &self.info()?.etag)?;
                return Ok(Box::new(io::empty()));
            }
            _ => (self.length(&headers)?, offset),
        };
        check_etag(etag, &self.tag(&headers, len)?)?;
        let mut body: Box<dyn Read + Send> = Box::new(response);
        if skip > 0 {
            io::copy(&mut (&mut body).take(skip), &mut io::sink())
                .map_err(|e| io_error(&self.url, &e))?;
        }
        Ok(body)
    }
}

fn io_error(url: &str, e: &io::Error) -> SourceError {
    SourceError::Io {
        url: url.to_owned(),
        message: e.to_string(),
    }
}

/// The `file://` URL of a local path.
#[cfg(test)]
pub(crate) fn file_url(path: &std::path::Path) -> SourceUrl {
    SourceUrl(format!("file://{}", path.display()))
}

/// A static file server on 127.0.0.1 for the tests of HTTP inputs, stopped
/// when dropped.
#[cfg(test)]
pub(crate) struct FileServer {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl FileServer {
    /// Serves `dir` under `/files`, with ranges and `Last-Modified`.
    pub fn start(dir: &std::path::Path) -> FileServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = dir.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .nest_service("/files", tower_http::services::ServeDir::new(dir));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FileServer {
            base,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

#[cfg(test)]
impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sources(roots: &[&Path]) -> ImportSources {
        let mut config = ImportConfig::for_data_dir(Path::new("/nowhere"));
        config.sources = roots.iter().map(|r| r.to_path_buf()).collect();
        ImportSources::from_config(&config)
    }

    fn url(s: String) -> SourceUrl {
        SourceUrl(s)
    }

    #[test]
    fn only_files_under_the_roots() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dir = root.path().join("sub dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.ndjson"), "{}\n").unwrap();
        std::fs::write(outside.path().join("b.ndjson"), "{}\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("b.ndjson"), dir.join("link.ndjson"))
            .unwrap();
        let s = sources(&[root.path()]);
        let r = root.path().display();

        let info = s
            .check(&url(format!("file://{r}/sub%20dir/a.ndjson")), None)
            .unwrap();
        assert_eq!(info.len, 3);
        assert!(info.etag.starts_with("\"3-") && info.etag.ends_with('"'));
        assert!(s.check(&file_url(&dir.join("a.ndjson")), None).is_ok());
        assert!(
            s.check(
                &url(format!("file://localhost{r}/sub%20dir/a.ndjson")),
                None
            )
            .is_ok()
        );

        let refused =
            |u: String| matches!(s.check(&url(u), None), Err(SourceError::NotAllowed { .. }));
        assert!(refused(format!(
            "file://{}",
            outside.path().join("b.ndjson").display()
        )));
        assert!(refused(format!("file://{r}/sub%20dir/../../b.ndjson")));
        assert!(refused(format!("file://{r}/sub%20dir/link.ndjson")));
        assert!(refused(format!("file://{r}/x%zz")));
        assert!(refused(format!("file://{r}/a?x=1")));
        assert!(refused("file://other-host/etc/passwd".into()));
        assert!(refused("http://example.com/a.ndjson".into()));
        assert!(refused("relative/a.ndjson".into()));
        // Outside the roots, existence is not even looked at.
        assert!(refused("file:///no/such/file".into()));

        let missing =
            |u: String| matches!(s.check(&url(u), None), Err(SourceError::NotFound { .. }));
        assert!(missing(format!("file://{r}/none.ndjson")));
        assert!(missing(format!("file://{r}/sub%20dir")));
    }

    #[test]
    fn etags_follow_the_content() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a.ndjson");
        std::fs::write(&path, "{}\n").unwrap();
        let s = sources(&[root.path()]);
        let u = file_url(&path);
        let etag = s.check(&u, None).unwrap().etag;
        let bare_tag = etag.trim_matches('"').to_owned();
        assert!(s.check(&u, Some(&etag)).is_ok());
        assert!(s.check(&u, Some(&bare_tag)).is_ok());
        assert!(s.check(&u, Some(&format!("W/{etag}"))).is_ok());
        assert!(matches!(
            s.check(&u, Some("\"other\"")),
            Err(SourceError::EtagMismatch { .. })
        ));

        let source = s.open(&u).unwrap();
        let mut read = String::new();
        source
            .read_from(1, 3, &etag)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "}\n");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        assert!(matches!(
            source.read_from(0, 3, &etag),
            Err(SourceError::EtagMismatch { .. })
        ));
        assert_ne!(source.info().unwrap().etag, etag);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.info(), Err(SourceError::NotFound { .. })));
    }

    #[test]
    fn http_inputs_under_allowed_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ndjson"), "0123456789\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.ndjson"), "{}\n").unwrap();
        let server = FileServer::start(dir.path());
        let base = server.base.clone();
        let mut config = ImportConfig::for_data_dir(Path::new("/nowhere"));
        config.allowed_http = vec![
            format!("{base}/files/sub/"),
            format!("{base}/files/a.ndjson"),
        ];
        let s = ImportSources::from_config(&config);

        let info = s
            .check(&url(format!("{base}/files/a.ndjson")), None)
            .unwrap();
        assert_eq!(info.len, 11);
        // The server's own ETag.
        assert!(!info.etag.is_empty());
        let source = s.open(&url(format!("{base}/files/a.ndjson"))).unwrap();
        let mut read = String::new();
        source
            .read_from(4, 11, &info.etag)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "456789\n");
        read.clear();
        source
            .read_from(11, 11, &info.etag)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "");
        assert!(matches!(
            source.read_from(0, 11, "\"other\""),
            Err(SourceError::EtagMismatch { .. })
        ));
        assert!(
            s.check(&url(format!("{base}/files/sub/b.ndjson")), None)
                .is_ok()
        );

        let refused =
            |u: String| matches!(s.check(&url(u), None), Err(SourceError::NotAllowed { .. }));
        // Normalised before matching: `..` cannot climb out of a prefix.
        assert!(refused(format!("{base}/files/sub/../a.ndjson.bak")));
        assert!(refused(format!("{base}/files/sub/%2e%2e/x")));
        assert!(refused(format!("{base}/files/a.ndjson2")));
        assert!(refused(format!("{base}/files/other.ndjson")));
        let with_user = base.replace("http://", "http://user@");
        assert!(refused(format!("{with_user}/files/sub/b.ndjson")));
        assert!(refused(format!("{base}/files/sub/b.ndjson#x")));
        assert!(refused("http://example.com/files/sub/b.ndjson".into()));
        assert!(matches!(
            s.check(&url(format!("{base}/files/sub/none.ndjson")), None),
            Err(SourceError::NotFound { .. })
        ));
        // Nothing is fetched without a prefix.
        let none = sources(&[]);
        assert!(matches!(
            none.check(&url(format!("{base}/files/a.ndjson")), None),
            Err(SourceError::NotAllowed { .. })
        ));
        assert!(covers("http://h", "http://h/x") && covers("http://h", "http://h?q"));
        assert!(!covers("http://h", "http://h.example/x"));
    }
}
