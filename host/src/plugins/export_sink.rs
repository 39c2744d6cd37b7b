//! Export output files through an `export-sink-plugin`.

use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::bindings::export_sink::ExportSinkPlugin;
use super::bindings::export_sink::exports::hearth::plugin::export_sink as wit;
use super::error::{PluginError, reported};
use super::runtime::{Instance, LoadedPlugin, WorldPre};

const OPEN: &str = "export-sink open";
const WRITE: &str = "export-sink write";
const FINISH: &str = "export-sink finish";
const ABORT: &str = "export-sink abort";

/// Which output file a writer is for.
#[derive(Clone, Debug)]
pub struct FileInfo {
    pub job_id: String,
    pub resource_type: String,
    /// 1-based part number of this type's output.
    pub part: u32,
}

/// What a finished file ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Bytes to append after the last batch's output.
    pub tail: Vec<u8>,
    /// Where the plugin stored the file itself, if it did.
    pub location: Option<String>,
}

/// One output file being written through the plugin.
pub struct SinkWriter {
    instance: Instance<ExportSinkPlugin>,
    writer: ResourceAny,
}

impl SinkWriter {
    pub fn open(plugin: &Arc<LoadedPlugin>, info: &FileInfo) -> Result<SinkWriter, PluginError> {
        let mut instance = Instance::new(plugin, None, |pre, store| match pre {
            WorldPre::ExportSink(pre) => Some(pre.instantiate(store)),
            _ => None,
        })?;
        let info = wit::FileInfo {
            job_id: info.job_id.clone(),
            resource_type: info.resource_type.clone(),
            part: info.part,
        };
        let writer = instance
            .call(OPEN, |world, store| {
                world
                    .hearth_plugin_export_sink()
                    .writer()
                    .call_open(store, &info)
            })?
            .map_err(|e| reported(plugin.name(), OPEN, e))?;
        Ok(SinkWriter { instance, writer })
    }

    /// Hands one batch of NDJSON lines to the plugin; returns the bytes the
    /// host appends to the file (possibly none).
    pub fn write(&mut self, batch: &[u8]) -> Result<Vec<u8>, PluginError> {
        let writer = self.writer;
        self.instance
            .call(WRITE, |world, store| {
                world
                    .hearth_plugin_export_sink()
                    .writer()
                    .call_write(store, writer, batch)
            })?
            .map_err(|e| reported(self.instance.plugin().name(), WRITE, e))
    }

    pub fn finish(mut self) -> Result<Finished, PluginError> {
        let writer = self.writer;
        let finished = self
            .instance
            .call(FINISH, |world, store| {
                world
                    .hearth_plugin_export_sink()
                    .writer()
                    .call_finish(store, writer)
            })?
            .map_err(|e| reported(self.instance.plugin().name(), FINISH, e))?;
        Ok(Finished {
            tail: finished.tail,
            location: finished.location,
        })
    }

    /// Tells the plugin to discard the file (the export failed or was
    /// cancelled).
    pub fn abort(mut self) -> Result<(), PluginError> {
        let writer = self.writer;
        self.instance.call(ABORT, |world, store| {
            world
                .hearth_plugin_export_sink()
                .writer()
                .call_abort(store, writer)
        })
    }
}
