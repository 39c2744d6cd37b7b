//! A [`Destination`] on the local file system, rooted at one directory
//! (`export.output_dir`, by default `<data_dir>/exports`).
//!
//! A file is written as `<name>.<random>.part` and committed by `fsync`,
//! `rename` to `<name>` and `fsync` of the folder: after a crash the name
//! either holds the whole file or does not exist. The random part keeps two
//! writers of one name (a job resumed elsewhere while the old worker still
//! runs) from writing into, or deleting, each other's file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{
    Destination, DestinationError, DestinationKind, DirectUrl, Download, Folder, PENDING_SUFFIX,
    PendingFile, check_file_name,
};

/// Output buffered before each `write` system call.
const BUFFER_BYTES: usize = 256 * 1024;

pub struct LocalDestination {
    root: PathBuf,
}

impl LocalDestination {
    /// The root is created on first use.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDestination { root: root.into() }
    }

    fn dir(&self, folder: &Folder) -> PathBuf {
        folder
            .segments()
            .iter()
            .fold(self.root.clone(), |path, segment| path.join(segment))
    }

    /// The folder's files, `Ok(empty)` when the folder does not exist.
    fn entries(&self, folder: &Folder) -> Result<Vec<(String, PathBuf)>, DestinationError> {
        let dir = self.dir(folder);
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| io_error("listing", &dir, e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| io_error("listing", &entry.path(), e))?
                .is_file();
            // Names that are not UTF-8 were not written by Hearth.
            if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
                out.push((name, entry.path()));
            }
        }
        Ok(out)
    }
}

impl Destination for LocalDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Local
    }

    fn create(
        &self,
        folder: &Folder,
        name: &str,
    ) -> Result<Box<dyn PendingFile>, DestinationError> {
        check_file_name(name)?;
        let dir = self.dir(folder);
        create_dirs(&dir)?;
        let pending = dir.join(format!(
            "{name}.{}{PENDING_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&pending)
            .map_err(|e| io_error("creating", &pending, e))?;
        Ok(Box::new(LocalFile {
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            target: dir.join(name),
            pending,
            dir,
        }))
    }

    fn list(&self, folder: &Folder) -> Result<Vec<String>, DestinationError> {
        Ok(self
            .entries(folder)?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !name.ends_with(PENDING_SUFFIX))
            .collect())
    }

    fn remove(&self, folder: &Folder, name: &str) -> Result<(), DestinationError> {
        check_file_name(name)?;
        remove_file(&self.dir(folder).join(name))
    }

    fn remove_pending(&self, folder: &Folder) -> Result<(), DestinationError> {
        for (name, path) in self.entries(folder)? {
            if name.ends_with(PENDING_SUFFIX) {
                remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn remove_folder(&self, folder: &Folder) -> Result<(), DestinationError> {
        let dir = self.dir(folder);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &dir, e)),
        }
    }

    fn locate(&self, folder: &Folder, name: &str) -> Result<Option<Download>, DestinationError> {
        check_file_name(name)?;
        let path = self.dir(folder).join(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(Download::File(path))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    /// This server serves local files itself.
    fn direct_url(&self, _: &Folder, name: &str) -> Result<Option<DirectUrl>, DestinationError> {
        check_file_name(name).map(|()| None)
    }
}

struct LocalFile {
    out: BufWriter<File>,
    pending: PathBuf,
    target: PathBuf,
    dir: PathBuf,
}

impl PendingFile for LocalFile {
    fn append(&mut self, bytes: &[u8]) -> Result<(), DestinationError> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error("writing", &self.pending, e))
    }

    fn commit(self: Box<Self>) -> Result<(), DestinationError> {
        let LocalFile {
            out,
            pending,
            target,
            dir,
        } = *self;
        let file = out
            .into_inner()
            .map_err(|e| io_error("writing", &pending, e.into_error()))?;
        // Durable before visible: a crash after the rename must never show
        // a name whose bytes are still only in the page cache.
        file.sync_all()
            .map_err(|e| io_error("syncing", &pending, e))?;
        drop(file);
        fs::rename(&pending, &target).map_err(|e| io_error("committing", &target, e))?;
        sync_dir(&dir)
    }

    fn abort(self: Box<Self>) -> Result<(), DestinationError> {
        drop(self.out);
        remove_file(&self.pending)
    }
}

/// Creates `dir` and its missing parents, syncing each parent whose entries
/// changed so that the folder itself survives a power loss.
fn create_dirs(dir: &Path) -> Result<(), DestinationError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer created it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_error("creating", dir, e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), DestinationError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing", dir, e))
}

fn remove_file(path: &Path) -> Result<(), DestinationError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path, e)),
    }
}

fn io_error(operation: &'static str, path: &Path, e: io::Error) -> DestinationError {
    DestinationError::Io {
        operation,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: &LocalDestination, folder: &Folder, name: &str) -> String {
        match d.locate(folder, name).unwrap() {
            Some(Download::File(path)) => fs::read_to_string(path).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_the_destination_contract() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDestination::new(dir.path().join("exports"));
        let folder = Folder::new(&["c", "t-job"]).unwrap();
        super::super::contract::check(&d, &folder, &|name| read(&d, &folder, name).into_bytes());
        assert!(!dir.path().join("exports/c/t-job").exists());

        // The clean-up after a crash deletes the pending file itself.
        let mut left = d.create(&folder, "Y-1-1.ndjson").unwrap();
        left.append(b"half").unwrap();
        std::mem::forget(left);
        assert_eq!(d.entries(&folder).unwrap().len(), 1);
        d.remove_pending(&folder).unwrap();
        assert!(d.entries(&folder).unwrap().is_empty());
    }
}
