//! `/_admin/plugins`: which plugins new work starts with, and reloading them
//! from the configuration file without a restart. Operator endpoints, not
//! FHIR interactions (absent from the CapabilityStatement), but answered in
//! FHIR terms: a `Parameters` resource, or an OperationOutcome.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::plugins::{LoadedPlugin, PluginKind, PluginSet};

use super::AppState;
use super::blocking;
use super::error::ApiError;
use super::response;

/// `GET /_admin/plugins`
pub async fn list(State(state): State<AppState>) -> Response {
    response::resource(&parameters(&state.plugins.current()))
}

/// `POST /_admin/plugins/reload`: reads the configuration again, with the
/// file and flags the server started with, and swaps in its plugins if every
/// one loads (jobs already running keep theirs). Otherwise the running set
/// stays, and the OperationOutcome names the plugin and the cause.
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (plugins, source) = (state.plugins.clone(), state.config_source.clone());
    let set = blocking::run(move || Ok(plugins.reload_from(&source)?)).await?;
    tracing::info!(
        generation = set.generation,
        "plugins reloaded through the admin endpoint"
    );
    Ok(response::resource(&parameters(&set)))
}

/// The set as `Parameters`: its generation (1 at start, +1 per reload), then
/// one `plugin` per role with its kind, where it came from (a file, or
/// `embedded`), the `hearth:plugin` version it implements and its sha256;
/// then one per named export sink, with its `sink` name and file extension.
fn parameters(set: &PluginSet) -> Value {
    let mut parameter = vec![json!({"name": "generation", "valueInteger": set.generation})];
    parameter.extend(PluginKind::ALL.map(|kind| plugin(kind, set.get(kind), Vec::new())));
    parameter.extend(set.sinks.iter().map(|(name, sink)| {
        let named = vec![
            json!({"name": "sink", "valueString": name}),
            json!({"name": "extension", "valueString": sink.file_extension()}),
        ];
        plugin(PluginKind::ExportSink, sink, named)
    }));
    json!({"resourceType": "Parameters", "parameter": parameter})
}

fn plugin(kind: PluginKind, plugin: &LoadedPlugin, extra: Vec<Value>) -> Value {
    let source = plugin
        .component()
        .map_or_else(|| "embedded".into(), |path| path.display().to_string());
    let mut part = vec![
        json!({"name": "kind", "valueCode": kind.config_name()}),
        json!({"name": "source", "valueString": source}),
        json!({"name": "witVersion", "valueString": plugin.wit_version().to_string()}),
        json!({"name": "sha256", "valueString": plugin.sha256()}),
    ];
    part.extend(extra);
    json!({"name": "plugin", "part": part})
}
