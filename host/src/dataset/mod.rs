//! Synthetic data sets: reading NDJSON folders (plain or gzipped, one file per
//! resource type as Bulk Data writes them) and [`scale`]-ing a set up by
//! cloning its patients, and [`load`]-ing one into a store. Used by `hearth dataset scale`, the storage benchmark
//! and the end-to-end tests.

mod load;
mod scale;

pub use load::{LoadSummary, load};
pub use scale::{SHARED_TYPES, ScaleSummary, clone_id, is_shared, scale};

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::fhir::ResourceType;
use crate::fhir::resource::ResourceError;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: the file name does not start with an R4 resource type (expected <Type>.ndjson or <Type>.ndjson.gz)"
    )]
    FileName { path: PathBuf },
    #[error("{path} line {line}: {source}")]
    Resource {
        path: PathBuf,
        line: u64,
        source: ResourceError,
    },
    #[error("{path} line {line}: a {found} in a file of {expected} resources")]
    TypeMismatch {
        path: PathBuf,
        line: u64,
        expected: ResourceType,
        found: ResourceType,
    },
    #[error("{path} line {line}: the resource has no id")]
    MissingId { path: PathBuf, line: u64 },
    #[error("the scale factor must be at least 1")]
    Factor,
    #[error("the output folder {0} is the input folder")]
    SameFolder(PathBuf),
    #[error("loading into the store: {0}")]
    Load(String),
}

impl DatasetError {
    fn io(path: &Path, source: io::Error) -> Self {
        DatasetError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One NDJSON file of a data set folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NdjsonFile {
    /// The type named by the file name (`Observation.ndjson.gz`, `Observation.2.ndjson`).
    pub rtype: ResourceType,
    pub path: PathBuf,
    pub gzip: bool,
}

/// The `*.ndjson` and `*.ndjson.gz` files of `dir`, sorted by file name. Other
/// files are ignored; an NDJSON file whose name does not start with a
/// resource type is an error.
pub fn ndjson_files(dir: &Path) -> Result<Vec<NdjsonFile>, DatasetError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let path = entry.map_err(|e| DatasetError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let gzip = name.ends_with(".ndjson.gz");
        if !gzip && !name.ends_with(".ndjson") {
            continue;
        }
        if !path.is_file() {
            continue;
        }
        let prefix = name.split('.').next().unwrap_or_default();
        let rtype = ResourceType::parse(prefix)
            .filter(|t| t.is_storable())
            .ok_or_else(|| DatasetError::FileName { path: path.clone() })?;
        files.push(NdjsonFile { rtype, path, gzip });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The non-blank lines of one NDJSON file (gunzipped when needed), without
/// their line ends, streamed.
pub fn read_lines(file: &NdjsonFile) -> Result<NdjsonLines, DatasetError> {
    let f = File::open(&file.path).map_err(|e| DatasetError::io(&file.path, e))?;
    let reader: Box<dyn Read + Send> = if file.gzip {
        Box::new(MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(NdjsonLines {
        path: file.path.clone(),
        reader: BufReader::with_capacity(256 * 1024, reader),
        line: 0,
    })
}

/// Iterator returned by [`read_lines`]: `(line number, bytes)`.
pub struct NdjsonLines {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    line: u64,
}

impl NdjsonLines {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for NdjsonLines {
    type Item = Result<(u64, Vec<u8>), DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut buf = Vec::new();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(Ok((self.line, buf)));
                }
                Err(e) => return Some(Err(DatasetError::io(&self.path, e))),
            }
        }
    }
}

/// Every resource line of a data set folder, file by file (see
/// [`ndjson_files`]), as `(type named by the file, line bytes)`. The lines are
/// not parsed: callers parse them (the benchmark times that).
pub fn read_dir_resources(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<(ResourceType, Vec<u8>), DatasetError>>, DatasetError> {
    let files = ndjson_files(dir)?;
    Ok(files.into_iter().flat_map(|file| {
        let rtype = file.rtype;
        let (lines, failed) = match read_lines(&file) {
            Ok(lines) => (Some(lines), None),
            Err(e) => (None, Some(Err(e))),
        };
        failed.into_iter().chain(
            lines
                .into_iter()
                .flatten()
                .map(move |r| r.map(|(_, bytes)| (rtype, bytes))),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_plain_and_gzipped_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Patient.ndjson"), "{\"a\":1}\n\n{\"a\":2}").unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            File::create(dir.path().join("Observation.ndjson.gz")).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(b"{\"o\":1}\r\n").unwrap();
        gz.finish().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();

        let got: Vec<(String, String)> = read_dir_resources(dir.path())
            .unwrap()
            .map(|r| {
                let (t, b) = r.unwrap();
                (t.to_string(), String::from_utf8(b).unwrap())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Observation".to_string(), "{\"o\":1}".to_string()),
                ("Patient".into(), "{\"a\":1}".into()),
                ("Patient".into(), "{\"a\":2}".into()),
            ]
        );
    }

    #[test]
    fn rejects_files_not_named_by_type() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("patients.ndjson"), "{}\n").unwrap();
        assert!(matches!(
            ndjson_files(dir.path()),
            Err(DatasetError::FileName { .. })
        ));
    }
}
