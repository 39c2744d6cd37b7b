//! Where a finished import's error files are written: the local error
//! folder `<error_dir>/<job id>/`, or a blob container (see
//! [`super::blob`]). Either way a file appears whole or not at all (a
//! temporary file renamed into place; blocks committed in one list), and
//! writing them again after a crash replaces them with the same content.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::blob::{ErrorBlob, ErrorContainer};
use super::error::ImportError;
use super::request::ImportRequest;
use super::source::{ImportSources, SourceError};
use crate::jobs::JobId;

/// The error files of one job.
pub enum ErrorFiles {
    Local(PathBuf),
    Blob {
        container: ErrorContainer,
        job: String,
        /// Whether the container is known to exist.
        ready: Cell<bool>,
    },
}

/// One error file being written.
pub enum ErrorFile {
    Local {
        folder: PathBuf,
        name: String,
        file: BufWriter<File>,
    },
    Blob(ErrorBlob),
}

impl ErrorFiles {
    /// Where the error files of `job` (of `request`) go.
    pub fn of(
        sources: &ImportSources,
        error_dir: &Path,
        job: &JobId,
        request: &ImportRequest,
    ) -> Result<ErrorFiles, ImportError> {
        let target = sources.error_target(request).map_err(|e| ImportError::Io {
            what: "choosing the error container".into(),
            source: std::io::Error::other(e),
        })?;
        Ok(match target {
            Some(container) => ErrorFiles::Blob {
                container,
                job: job.as_str().to_owned(),
                ready: Cell::new(false),
            },
            None => ErrorFiles::Local(error_dir.join(job.as_str())),
        })
    }

    /// Removes whatever files of the job exist.
    pub fn clear(&self) -> Result<(), ImportError> {
        match self {
            ErrorFiles::Local(folder) => remove_dir(folder),
            ErrorFiles::Blob { container, job, .. } => container.remove(job).map_err(blob_error),
        }
    }

    /// Starts file `name`.
    pub fn create(&self, name: &str) -> Result<ErrorFile, ImportError> {
        match self {
            ErrorFiles::Local(folder) => {
                fs::create_dir_all(folder).map_err(|e| io(folder, e))?;
                let path = folder.join(format!(".{name}.tmp"));
                let file = File::create(&path).map_err(|e| io(&path, e))?;
                Ok(ErrorFile::Local {
                    folder: folder.clone(),
                    name: name.to_owned(),
                    file: BufWriter::new(file),
                })
            }
            ErrorFiles::Blob {
                container,
                job,
                ready,
            } => {
                if !ready.get() {
                    container.ensure().map_err(blob_error)?;
                    ready.set(true);
                }
                Ok(ErrorFile::Blob(
                    container.create(job, name).map_err(blob_error)?,
                ))
            }
        }
    }
}

impl ErrorFile {
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), ImportError> {
        match self {
            ErrorFile::Local { folder, file, .. } => file
                .write_all(line)
                .and_then(|()| file.write_all(b"\n"))
                .map_err(|e| io(folder, e)),
            ErrorFile::Blob(blob) => blob.write_line(line).map_err(blob_error),
        }
    }

    /// Puts the file in place; its URL when it is a blob.
    pub fn commit(self) -> Result<Option<String>, ImportError> {
        match self {
            ErrorFile::Local { folder, name, file } => {
                let tmp = folder.join(format!(".{name}.tmp"));
                let file = file.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
                file.sync_all().map_err(|e| io(&tmp, e))?;
                fs::rename(&tmp, folder.join(&name)).map_err(|e| io(&tmp, e))?;
                File::open(&folder)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| io(&folder, e))?;
                Ok(None)
            }
            ErrorFile::Blob(blob) => blob.commit().map(Some).map_err(blob_error),
        }
    }
}

fn remove_dir(folder: &Path) -> Result<(), ImportError> {
    match fs::remove_dir_all(folder) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(folder, e)),
        _ => Ok(()),
    }
}

fn io(path: &Path, source: std::io::Error) -> ImportError {
    ImportError::Io {
        what: format!("writing {}", path.display()),
        source,
    }
}

fn blob_error(e: SourceError) -> ImportError {
    // A source error's text speaks of reading; these calls write.
    let cause = match e {
        SourceError::Io { url, message } => format!("{url}: {message}"),
        other => other.to_string(),
    };
    ImportError::Io {
        what: "writing the error files".into(),
        source: std::io::Error::other(cause),
    }
}
