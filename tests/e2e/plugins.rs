//! Plugins seen from outside, over HTTP: a deployment swaps the type filter by
//! configuration alone and export results change; a faulty plugin fails only
//! the job using it, with an OperationOutcome naming the plugin and the
//! cause, while the server and other jobs keep working.

use serde_json::{Value, json};

use crate::support::{Sandbox, Server, count_by_type, enc};

/// A component built from source by host/build.rs (examples/ and tests/).
pub fn component(name: &str) -> String {
    format!("{}/{name}.wasm", env!("GUEST_COMPONENTS_DIR"))
}

fn observation(id: &str, code: &str, display: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display}
    })
}

async fn observations_exported(server: &Server, filter: &str) -> u64 {
    let path = format!("/$export?_type=Observation&_typeFilter={}", enc(filter));
    let (_, manifest) = server.export(&path).await;
    let files = server.files(&manifest, "output").await;
    count_by_type(&files)
        .get("Observation")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn swapping_the_type_filter_by_configuration_changes_export_results() {
    let mut sandbox = Sandbox::new();
    let server = sandbox.start(&[]).await;
    for (id, code, display) in [
        ("g1", "2339-0", "Glucose"),
        ("g2", "2345-7", "Glucose [Mass/volume] in Serum"),
        ("h1", "8867-4", "Heart rate"),
    ] {
        server
            .put(
                &format!("/Observation/{id}"),
                &observation(id, code, display),
            )
            .await
            .ok(201);
    }
    // The default filter matches codes exactly: no code is "glucose".
    assert_eq!(
        observations_exported(&server, "Observation?code=glucose").await,
        0
    );
    assert_eq!(
        observations_exported(&server, "Observation?code=http://loinc.org|8867-4").await,
        1
    );
    server.terminate().await;

    // Same binary, same data; only the configuration names another component.
    let text_filter = component("text_filter");
    let server = sandbox
        .start_env(
            &[],
            &[("HEARTH_PLUGINS__TYPE_FILTER__COMPONENT", &text_filter)],
        )
        .await;
    let listed = server.get("/_admin/plugins").await.ok(200).json();
    assert!(listed.to_string().contains("text_filter.wasm"), "{listed}");
    // The example matches words in code.text / display.
    assert_eq!(
        observations_exported(&server, "Observation?code=glucose").await,
        2
    );
}

#[tokio::test]
async fn a_faulty_plugin_fails_only_the_job_using_it() {
    let mut sandbox = Sandbox::new();
    let hostile = component("hostile");
    let server = sandbox
        .start_env(
            &[],
            &[
                ("HEARTH_PLUGINS__TYPE_FILTER__COMPONENT", &hostile),
                ("HEARTH_PLUGINS__TYPE_FILTER__LIMITS__DEADLINE_MS", "300"),
                ("HEARTH_PLUGINS__TYPE_FILTER__LIMITS__MEMORY_MIB", "32"),
            ],
        )
        .await;
    server
        .put(
            "/Observation/o1",
            &observation("o1", "8867-4", "Heart rate"),
        )
        .await
        .ok(201);

    for (fault, cause) in [
        ("loop", "deadline"),
        ("bomb", "memory cap"),
        ("trap", "trapped"),
        ("wrong-count", "contract"),
    ] {
        let path = format!(
            "/$export?_type=Observation&_typeFilter={}",
            enc(&format!("Observation?fault={fault}"))
        );
        let status = server.start_export(&path).await;
        let failed = server.poll_export(&status).await.outcome(500);
        let text = failed.to_string();
        assert!(
            text.contains("hostile.wasm"),
            "{fault}: the outcome names the plugin: {text}"
        );
        assert!(
            text.contains(cause),
            "{fault}: the outcome names the cause ({cause}): {text}"
        );

        // The server and other jobs go on: a read, and an export through a
        // fresh instance of the same plugin.
        server.get("/Observation/o1").await.ok(200);
        let ok = format!(
            "/$export?_type=Observation&_typeFilter={}",
            enc("Observation?fault=none")
        );
        let (_, manifest) = server.export(&ok).await;
        let files = server.files(&manifest, "output").await;
        assert_eq!(
            count_by_type(&files).get("Observation"),
            Some(&1),
            "{fault}"
        );
    }
}
