//! `/_admin/plugins`: the loaded set, and reloading it from the
//! configuration file the server was started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::Api;
use crate::config::ConfigSource;
use crate::plugins::{PluginRegistry, Runtime, WIT_VERSION};

/// A component built from source by `host/build.rs`.
fn guest(name: &str) -> PathBuf {
    Path::new(env!("GUEST_COMPONENTS_DIR")).join(format!("{name}.wasm"))
}

/// A server started, like `hearth serve --config FILE`, with the plugins
/// `config` (the text of FILE) names. The compiled-code cache lives in
/// `dir`, so that a reload recompiles only what changed.
fn start(dir: &TempDir, config: &str) -> (Api, PathBuf) {
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, config).unwrap();
    let source = ConfigSource {
        file: Some(file.clone()),
        ..ConfigSource::default()
    };
    let runtime = Runtime::new(Some(dir.path().join("plugin-cache"))).unwrap();
    let plugins = PluginRegistry::load(runtime, &source.load().unwrap().plugins).unwrap();
    (Api::with_plugins(Arc::new(plugins), source), file)
}

fn type_filter(component: &Path) -> String {
    // A TOML literal string: no escapes in the path.
    format!(
        "[plugins.type_filter]\ncomponent = '{}'\n",
        component.display()
    )
}

async fn reload(api: &Api) -> super::Resp {
    api.send(Method::POST, "/_admin/plugins/reload", &[], None)
        .await
}

fn generation(parameters: &Value) -> u64 {
    assert_eq!(parameters["resourceType"], "Parameters", "{parameters}");
    assert_eq!(parameters["parameter"][0]["name"], "generation");
    parameters["parameter"][0]["valueInteger"].as_u64().unwrap()
}

/// The value of part `name` of the `plugin` parameter of role `kind`.
fn part(parameters: &Value, kind: &str, name: &str) -> String {
    let value = |p: &Value, n: &str| {
        let parts = p["part"].as_array().unwrap();
        let part = parts.iter().find(|part| part["name"] == n).unwrap();
        let value = part.get("valueString").or_else(|| part.get("valueCode"));
        value.unwrap().as_str().unwrap().to_owned()
    };
    let plugins = parameters["parameter"].as_array().unwrap();
    let plugin = plugins
        .iter()
        .filter(|p| p["name"] == "plugin")
        .find(|p| value(p, "kind") == kind)
        .unwrap_or_else(|| panic!("no {kind} in {parameters}"));
    value(plugin, name)
}

fn sha256_of(file: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(file).unwrap()))
}

#[tokio::test]
async fn reload_swaps_in_the_configured_type_filter_and_the_listing_shows_it() {
    let dir = TempDir::new().unwrap();
    let (api, file) = start(&dir, "");
    let listed = api.get("/_admin/plugins").await.ok(200).json();
    assert_eq!(generation(&listed), 1);
    for kind in [
        "type_filter",
        "group_resolver",
        "export_sink",
        "import_validator",
    ] {
        assert_eq!(part(&listed, kind, "source"), "embedded");
        assert_eq!(part(&listed, kind, "witVersion"), WIT_VERSION.to_string());
        assert_eq!(part(&listed, kind, "sha256").len(), 64);
    }

    let text_filter = guest("text_filter");
    std::fs::write(&file, type_filter(&text_filter)).unwrap();
    let reloaded = reload(&api).await.ok(200).json();
    assert_eq!(generation(&reloaded), 2);
    assert_eq!(
        part(&reloaded, "type_filter", "source"),
        text_filter.display().to_string()
    );
    assert_eq!(
        part(&reloaded, "type_filter", "sha256"),
        sha256_of(&text_filter)
    );
    assert_eq!(part(&reloaded, "export_sink", "source"), "embedded");
    assert_eq!(
        part(&reloaded, "export_sink", "sha256"),
        part(&listed, "export_sink", "sha256")
    );
    assert_eq!(api.get("/_admin/plugins").await.ok(200).json(), reloaded);
}

#[tokio::test]
async fn a_failed_reload_names_the_cause_and_keeps_the_running_plugins() {
    let dir = TempDir::new().unwrap();
    let text_filter = guest("text_filter");
    let (api, file) = start(&dir, &type_filter(&text_filter));
    let before = api.get("/_admin/plugins").await.ok(200).json();
    assert_eq!(
        part(&before, "type_filter", "source"),
        text_filter.display().to_string()
    );

    let missing = dir.path().join("no-such-plugin.wasm");
    std::fs::write(&file, type_filter(&missing)).unwrap();
    let issue = reload(&api).await.outcome(400);
    assert_eq!(issue["code"], "invalid");
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("type_filter") && diagnostics.contains("no-such-plugin.wasm"),
        "{diagnostics}"
    );

    let wrong_role = format!(
        "[plugins.group_resolver]\ncomponent = '{}'\n",
        text_filter.display()
    );
    std::fs::write(&file, wrong_role).unwrap();
    let issue = reload(&api).await.outcome(400);
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("group_resolver")
            && diagnostics.contains("it is a type_filter plugin"),
        "{diagnostics}"
    );

    std::fs::write(&file, "[plugins.type_filter]\ncomponent = 3\n").unwrap();
    let issue = reload(&api).await.outcome(400);
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("invalid configuration"),
        "{diagnostics}"
    );

    assert_eq!(api.get("/_admin/plugins").await.ok(200).json(), before);
    api.get("/_admin/plugins/reload").await.outcome(405);
}
