//! The smallest useful `export-sink-plugin`: every export output file is
//! gzipped. Each batch goes through one streaming gzip encoder per file;
//! `write` hands back what the encoder has produced so far, `finish` the
//! rest and the gzip trailer.
//!
//! Config (`[plugins.sinks.<name>.config]`): `level`, 0-9 (default 6).
//! The host names the files: set `extension = "ndjson.gz"` on the sink.

wit_bindgen::generate!({ path: "../../../wit", world: "export-sink-plugin" });

use std::cell::RefCell;
use std::io::Write;

use exports::hearth::plugin::export_sink::{FileInfo, Finished, Guest, GuestWriter, Writer};
use flate2::Compression;
use flate2::write::GzEncoder;
use hearth::plugin::host;
use hearth::plugin::types::{ErrorCode, PluginError};

struct Component;

impl Guest for Component {
    type Writer = GzipWriter;
}

struct GzipWriter {
    /// `None` once finished.
    encoder: RefCell<Option<GzEncoder<Vec<u8>>>>,
}

fn internal(what: &str, e: std::io::Error) -> PluginError {
    PluginError {
        code: ErrorCode::Internal,
        message: format!("{what}: {e}"),
    }
}

fn finished() -> PluginError {
    PluginError {
        code: ErrorCode::InvalidInput,
        message: "the file is already finished".into(),
    }
}

impl GuestWriter for GzipWriter {
    fn open(_info: FileInfo) -> Result<Writer, PluginError> {
        let level = match host::get_config("level") {
            None => Compression::default(),
            Some(level) => match level.parse::<u32>() {
                Ok(n) if n <= 9 => Compression::new(n),
                _ => {
                    return Err(PluginError {
                        code: ErrorCode::InvalidConfig,
                        message: format!("level must be 0-9, not {level:?}"),
                    });
                }
            },
        };
        Ok(Writer::new(GzipWriter {
            encoder: RefCell::new(Some(GzEncoder::new(Vec::new(), level))),
        }))
    }

    fn write(&self, batch: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        let mut encoder = self.encoder.borrow_mut();
        let encoder = encoder.as_mut().ok_or_else(finished)?;
        encoder
            .write_all(&batch)
            .map_err(|e| internal("compressing", e))?;
        Ok(std::mem::take(encoder.get_mut()))
    }

    fn finish(&self) -> Result<Finished, PluginError> {
        let encoder = self.encoder.borrow_mut().take().ok_or_else(finished)?;
        let tail = encoder.finish().map_err(|e| internal("finishing", e))?;
        Ok(Finished {
            tail,
            location: None,
        })
    }

    fn abort(&self) {
        self.encoder.borrow_mut().take();
    }
}

export!(Component);
