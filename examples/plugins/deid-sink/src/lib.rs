//! An example `export-sink-plugin` that de-identifies what an export writes:
//! each NDJSON line is parsed, rewritten by the rules of a JSON rules file
//! (remove, shift dates, hash ids and references, keep) and serialized
//! again. See README.md for the rules and the config.
//!
//! Config (`[plugins.sinks.<name>.config]`):
//! - `secret` (required): keys the hashes and the per-export date shift;
//! - `rules_file` (optional): path of a rules file inside a directory the
//!   deployment grants (`grants.dirs`); absent = `default-rules.json`,
//!   compiled into the component.

pub mod deid;
pub mod rules;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "export-sink-plugin" });

    use exports::hearth::plugin::export_sink::{FileInfo, Finished, Guest, GuestWriter, Writer};
    use hearth::plugin::host;
    use hearth::plugin::types::{ErrorCode, PluginError};

    use crate::deid::Deidentifier;
    use crate::rules::{DEFAULT_RULES, Rules};

    struct Component;

    impl Guest for Component {
        type Writer = DeidWriter;
    }

    struct DeidWriter {
        deid: Deidentifier,
    }

    fn config_error(message: String) -> PluginError {
        PluginError {
            code: ErrorCode::InvalidConfig,
            message,
        }
    }

    impl GuestWriter for DeidWriter {
        fn open(info: FileInfo) -> Result<Writer, PluginError> {
            let secret = host::get_config("secret")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    config_error(
                        "`secret` is required: it keys the hashes and the date shift".into(),
                    )
                })?;
            let rules = match host::get_config("rules_file") {
                Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                    config_error(format!(
                        "reading rules_file {path}: {e} (is its directory in grants.dirs?)"
                    ))
                })?,
                None => DEFAULT_RULES.to_owned(),
            };
            let rules = Rules::parse(&rules).map_err(|e| config_error(e.to_string()))?;
            Ok(Writer::new(DeidWriter {
                deid: Deidentifier::new(rules, secret.as_bytes(), &info.job_id),
            }))
        }

        fn write(&self, batch: Vec<u8>) -> Result<Vec<u8>, PluginError> {
            let mut out = Vec::with_capacity(batch.len());
            self.deid.batch(&batch, &mut out).map_err(|e| PluginError {
                code: ErrorCode::InvalidInput,
                message: e.to_string(),
            })?;
            Ok(out)
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
}
