//! Where export files go: a [`Destination`] holds job folders of files that
//! become visible only when committed. The local file system is the first
//! implementation ([`local`]), Azure Blob Storage the second ([`azure`]), so
//! nothing here names `std::fs` types.
//!
//! The contract export's exactly-once output stands on: a file is written
//! under a pending name, and [`PendingFile::commit`] makes it durable first
//! and visible under its name second, in one atomic step; a crash at any
//! point leaves either the whole committed file or only pending leftovers,
//! which [`Destination::remove_pending`] clears.

pub mod azure;
pub mod local;

use std::fmt;
use std::path::PathBuf;

pub use azure::{BlobDestination, BlobOptions};
pub use local::LocalDestination;

use crate::fhir::Instant;

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("'{0}' is not an acceptable folder or file name")]
    BadName(String),
    #[error("{operation} {path}: {message}")]
    Io {
        operation: &'static str,
        path: String,
        message: String,
    },
    /// A Blob Storage request failed for good: at once (refused), or after
    /// transient failures for longer than the retry bound.
    #[error("Azure Blob Storage account {account}, container '{container}': {operation}: {cause}")]
    Blob {
        account: String,
        container: String,
        operation: String,
        cause: String,
    },
}

/// What kind of storage a destination is: the kick-off checks `_container`
/// against its naming rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    /// A folder of the local file system, served by this server.
    Local,
    /// Azure Blob Storage: `_container` is a container, clients fetch the
    /// blobs themselves.
    Blob,
}

/// A URL clients fetch a committed file at, outside this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectUrl {
    pub url: String,
    /// When it stops working (a signed URL); `None`: while the file exists.
    pub expires: Option<Instant>,
}

/// A job's folder, relative to the destination's root: one or more plain
/// name segments (`<job-id>` or `<container>/<timestamp>-<job-id>`). Built
/// only through [`Folder::new`], which refuses anything that could leave the
/// root, so implementations can join it to their root as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder(Vec<String>);

impl Folder {
    pub fn new<S: AsRef<str>>(segments: &[S]) -> Result<Folder, DestinationError> {
        if segments.is_empty() {
            return Err(DestinationError::BadName(String::new()));
        }
        let segments: Vec<String> = segments.iter().map(|s| s.as_ref().to_owned()).collect();
        for segment in &segments {
            check_segment(segment)?;
        }
        Ok(Folder(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// One path segment: not empty, not `.` or `..`, no separator of any
/// platform, no control characters. The edge already refuses traversal in
/// `_container`; this is the last line of defence.
fn check_segment(segment: &str) -> Result<(), DestinationError> {
    let bad = segment.is_empty()
        || segment == "."
        || segment == ".."
        || segment.len() > 255
        || segment
            .chars()
            .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control());
    if bad {
        Err(DestinationError::BadName(segment.to_owned()))
    } else {
        Ok(())
    }
}

/// A file name inside a folder: a plain segment that does not end in the
/// suffix pending files use, so a committed name can never be mistaken for
/// a leftover.
pub fn check_file_name(name: &str) -> Result<(), DestinationError> {
    check_segment(name)?;
    if name.ends_with(PENDING_SUFFIX) {
        return Err(DestinationError::BadName(name.to_owned()));
    }
    Ok(())
}

/// The suffix of files that are still being written.
pub const PENDING_SUFFIX: &str = ".part";

/// How a client gets a committed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Download {
    /// A local file the server streams.
    File(PathBuf),
    /// A URL the client fetches itself (e.g. a signed Blob URL).
    Url(String),
}

/// Storage for export output. Implementations must be safe to share
/// between threads; calls block.
pub trait Destination: Send + Sync + 'static {
    fn kind(&self) -> DestinationKind;

    /// Starts file `name` in `folder` (created as needed), invisible under
    /// that name until committed. Several writers may write the same name
    /// at once (a job resumed by another worker): each gets a pending file
    /// of its own.
    fn create(&self, folder: &Folder, name: &str)
    -> Result<Box<dyn PendingFile>, DestinationError>;

    /// The names of the committed files in `folder` (none if it is absent).
    fn list(&self, folder: &Folder) -> Result<Vec<String>, DestinationError>;

    /// Deletes committed file `name` (nothing if absent).
    fn remove(&self, folder: &Folder, name: &str) -> Result<(), DestinationError>;

    /// Deletes every pending file in `folder`: leftovers of an interrupted
    /// attempt.
    fn remove_pending(&self, folder: &Folder) -> Result<(), DestinationError>;

    /// Deletes `folder` with everything in it (nothing if absent).
    fn remove_folder(&self, folder: &Folder) -> Result<(), DestinationError>;

    /// Where a client downloads committed file `name`; `None` if there is
    /// no such committed file.
    fn locate(&self, folder: &Folder, name: &str) -> Result<Option<Download>, DestinationError>;

    /// The URL a manifest lists for committed file `name` when clients
    /// fetch the destination's files themselves; `None` when this server
    /// serves them. No existence check: the manifest lists committed files.
    fn direct_url(
        &self,
        folder: &Folder,
        name: &str,
    ) -> Result<Option<DirectUrl>, DestinationError>;
}

/// A file being written.
pub trait PendingFile: Send {
    fn append(&mut self, bytes: &[u8]) -> Result<(), DestinationError>;

    /// Makes the file durable, then visible under its name, atomically
    /// (replacing a committed file of that name).
    fn commit(self: Box<Self>) -> Result<(), DestinationError>;

    /// Discards the file.
    fn abort(self: Box<Self>) -> Result<(), DestinationError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_names_cannot_leave_the_root() {
        assert!(Folder::new(&["job-1"]).is_ok());
        assert_eq!(
            Folder::new(&["c", "20240501T120000Z-x"])
                .unwrap()
                .to_string(),
            "c/20240501T120000Z-x"
        );
        for bad in [
            vec![],
            vec![".."],
            vec!["."],
            vec![""],
            vec!["a/b"],
            vec!["a\\b"],
            vec!["/abs"],
            vec!["c:"],
            vec!["ok", ".."],
            vec!["a\nb"],
        ] {
            assert!(Folder::new(&bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name("Patient-1-1.ndjson").is_ok());
        assert!(check_file_name("Patient-1-1.ndjson.part").is_err());
        assert!(check_file_name("../x").is_err());
    }
}

/// The behaviour every destination owes the export, run by each
/// implementation's tests against a real backend.
#[cfg(test)]
pub(crate) mod contract {
    use super::{Destination, Folder};

    /// Checks `d` on `folder` (absent or empty when called, removed when
    /// done); `read` returns a committed file's bytes.
    pub fn check(d: &dyn Destination, folder: &Folder, read: &dyn Fn(&str) -> Vec<u8>) {
        assert!(d.list(folder).unwrap().is_empty());
        let mut file = d.create(folder, "Patient-1-1.ndjson").unwrap();
        file.append(b"{\"a\":1}\n").unwrap();
        file.append(b"{\"a\":2}\n").unwrap();
        assert!(d.list(folder).unwrap().is_empty());
        assert!(d.locate(folder, "Patient-1-1.ndjson").unwrap().is_none());
        file.commit().unwrap();
        assert_eq!(d.list(folder).unwrap(), ["Patient-1-1.ndjson"]);
        assert_eq!(read("Patient-1-1.ndjson"), b"{\"a\":1}\n{\"a\":2}\n");

        // Two writers of one name: an abort leaves the other's content
        // alone.
        let mut a = d.create(folder, "X-1-1.ndjson").unwrap();
        let mut b = d.create(folder, "X-1-1.ndjson").unwrap();
        a.append(b"a\n").unwrap();
        b.append(b"b\n").unwrap();
        a.abort().unwrap();
        b.commit().unwrap();
        assert_eq!(read("X-1-1.ndjson"), b"b\n");

        // A crashed writer leaves nothing visible, before or after the
        // clean-up.
        let mut left = d.create(folder, "Y-1-1.ndjson").unwrap();
        left.append(b"half").unwrap();
        std::mem::forget(left);
        let listed = |d: &dyn Destination| {
            let mut names = d.list(folder).unwrap();
            names.sort();
            names
        };
        assert_eq!(listed(d), ["Patient-1-1.ndjson", "X-1-1.ndjson"]);
        d.remove_pending(folder).unwrap();
        assert_eq!(listed(d), ["Patient-1-1.ndjson", "X-1-1.ndjson"]);

        // Removals are idempotent.
        d.remove(folder, "X-1-1.ndjson").unwrap();
        d.remove(folder, "X-1-1.ndjson").unwrap();
        assert_eq!(d.list(folder).unwrap(), ["Patient-1-1.ndjson"]);
        d.remove_folder(folder).unwrap();
        d.remove_folder(folder).unwrap();
        assert!(d.list(folder).unwrap().is_empty());
        assert!(d.create(folder, "bad.part").is_err());
        assert!(d.locate(folder, "../x").is_err());
    }
}
