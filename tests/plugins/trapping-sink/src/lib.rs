//! An export-sink that traps (`unreachable`, through a panic under
//! `panic = "abort"`) in `write` for the files of one resource type (config
//! `trap_type`; absent = every file), and passes other files through, so a
//! test can see an export fail after some of its files were committed.

wit_bindgen::generate!({ path: "../../../wit", world: "export-sink-plugin" });

use exports::hearth::plugin::export_sink::{FileInfo, Finished, Guest, GuestWriter, Writer};
use hearth::plugin::host;
use hearth::plugin::types::PluginError;

struct Component;

impl Guest for Component {
    type Writer = Trapping;
}

struct Trapping {
    traps: bool,
}

impl GuestWriter for Trapping {
    fn open(info: FileInfo) -> Result<Writer, PluginError> {
        let traps = host::get_config("trap_type").is_none_or(|t| t == info.resource_type);
        Ok(Writer::new(Trapping { traps }))
    }

    fn write(&self, batch: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        if self.traps {
            panic!("trapping-sink: trap on purpose");
        }
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
