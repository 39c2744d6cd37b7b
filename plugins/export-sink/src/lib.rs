//! The default `export-sink-plugin`: a passthrough. The host stores exactly
//! the bytes the export produced; a de-identifying or compressing sink
//! replaces this one through the config.

wit_bindgen::generate!({ path: "../../wit", world: "export-sink-plugin" });

use exports::hearth::plugin::export_sink::{FileInfo, Finished, Guest, GuestWriter, Writer};
use hearth::plugin::types::PluginError;

struct Component;

impl Guest for Component {
    type Writer = Passthrough;
}

struct Passthrough;

impl GuestWriter for Passthrough {
    fn open(_info: FileInfo) -> Result<Writer, PluginError> {
        Ok(Writer::new(Passthrough))
    }

    fn write(&self, batch: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        Ok(batch)
    }

    fn finish(&self) -> Result<Finished, PluginError> {
        Ok(Finished {
            tail: Vec::new(),
            location: None,
        })
    }

    fn abort(&self) {}
}

export!(Component);
