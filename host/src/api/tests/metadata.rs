use serde_json::Value;

use super::{Api, BASE};

#[tokio::test]
async fn capability_statement_says_what_is_implemented() {
    let api = Api::new();
    let cs = api.get("/metadata").await.ok(200).json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["status"], "active");
    assert_eq!(cs["kind"], "instance");
    assert!(cs["date"].is_string());
    assert_eq!(cs["software"]["name"], "Hearth");
    assert_eq!(cs["software"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(cs["implementation"]["url"], BASE);
    assert!(cs["format"].as_array().unwrap().contains(&"json".into()));

    let rest = &cs["rest"][0];
    assert_eq!(rest["mode"], "server");
    let codes = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        codes(&rest["interaction"]),
        ["transaction", "batch", "history-system"]
    );
    let resources = rest["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 144);
    assert!(types.contains(&"Patient") && types.contains(&"Bundle"));
    assert!(!types.contains(&"Parameters") && !types.contains(&"OperationOutcome"));
    assert_eq!(
        codes(&resources[0]["interaction"]),
        [
            "read",
            "vread",
            "update",
            "delete",
            "create",
            "history-instance",
            "history-type",
            "search-type"
        ]
    );
}

#[tokio::test]
async fn healthz_is_plain_json() {
    let api = Api::new();
    let resp = api.get("/healthz").await;
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.json(), serde_json::json!({"status": "ok"}));
}
