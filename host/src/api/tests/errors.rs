use axum::http::Method;
use serde_json::json;

use super::{Api, FHIR_JSON};
use crate::api::ApiLimits;

#[tokio::test]
async fn bad_resources_are_400_with_a_precise_outcome() {
    let api = Api::new();
    let raw = |uri: &'static str, body: &'static str| {
        api.send(
            if uri == "/Patient" {
                Method::POST
            } else {
                Method::PUT
            },
            uri,
            &[("content-type", FHIR_JSON)],
            Some(body.into()),
        )
    };
    let cases = [
        (
            "/Patient",
            r#"{"resourceType": "Patient","#,
            "structure",
            "not valid JSON",
        ),
        ("/Patient", "[1]", "structure", "not a JSON object"),
        ("/Patient", "{}", "required", "no resourceType"),
        (
            "/Patient",
            r#"{"resourceType": "Pateint"}"#,
            "value",
            "'Pateint'",
        ),
        (
            "/Patient",
            r#"{"resourceType": "Observation"}"#,
            "invalid",
            "is a Observation",
        ),
        (
            "/Patient",
            r#"{"resourceType": "Patient", "id": "a b"}"#,
            "value",
            "'a b'",
        ),
        (
            "/Patient/p1",
            r#"{"resourceType": "Patient"}"#,
            "invalid",
            "has no id",
        ),
        (
            "/Patient/p1",
            r#"{"resourceType": "Patient", "id": "p2"}"#,
            "invalid",
            "differs",
        ),
    ];
    for (uri, body, code, text) in cases {
        let issue = raw(uri, body).await.outcome(400);
        assert_eq!(issue["code"], code, "{body}: {issue}");
        assert!(
            issue["diagnostics"].as_str().unwrap().contains(text),
            "{body}: {issue}"
        );
    }
    assert_eq!(api.stats().versions, 0);
}

#[tokio::test]
async fn bad_urls_are_400_and_unknown_paths_404() {
    let api = Api::new();
    for uri in [
        "/Pateint/p1",
        "/Patient/a_b",
        "/Patient/p1/_history/one",
        "/Parameters/p1",
        "/OperationOutcome/_history",
    ] {
        api.get(uri).await.outcome(400);
    }
    api.post("/Pateint", &json!({"resourceType": "Pateint"}))
        .await
        .outcome(400);
    api.post("/Parameters", &json!({"resourceType": "Parameters"}))
        .await
        .outcome(400);
    for uri in ["/Patient/p1/nothing/here", "/a/b/c/d/e", "/Patient/"] {
        assert_eq!(
            api.get(uri).await.outcome(404)["code"],
            "not-found",
            "{uri}"
        );
    }
    api.get("/Patient/nobody").await.outcome(404);
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let api = Api::new();
    let resp = api.send(Method::PATCH, "/Patient/p1", &[], None).await;
    resp.outcome(405);
    let allow = resp.header("allow").unwrap();
    assert!(
        allow.contains("GET") && allow.contains("PUT") && allow.contains("DELETE"),
        "{allow}"
    );
    api.send(Method::POST, "/metadata", &[], None)
        .await
        .outcome(405);
    api.send(Method::GET, "/", &[], None).await.outcome(405);
}

#[tokio::test]
async fn only_json_is_spoken() {
    let api = Api::new();
    let patient = br#"{"resourceType": "Patient"}"#.to_vec();
    let post = |headers: &'static [(&'static str, &'static str)]| {
        api.send(Method::POST, "/Patient", headers, Some(patient.clone()))
    };
    post(&[("content-type", "text/plain")]).await.outcome(415);
    post(&[("content-type", "application/fhir+xml")])
        .await
        .outcome(415);
    post(&[]).await.outcome(415);
    post(&[("content-type", "application/json; charset=utf-8")])
        .await
        .ok(201);
    post(&[("content-type", "application/fhir+json;fhirVersion=4.0")])
        .await
        .ok(201);
    api.send(
        Method::POST,
        "/Patient",
        &[("content-type", FHIR_JSON)],
        None,
    )
    .await
    .outcome(400);

    for format in ["xml", "application/fhir%2Bxml", "text/xml"] {
        api.get(&format!("/metadata?_format={format}"))
            .await
            .outcome(406);
    }
    api.send(
        Method::GET,
        "/metadata",
        &[("accept", "application/fhir+xml")],
        None,
    )
    .await
    .outcome(406);
    for format in [
        "json",
        "application/fhir+json",
        "application/fhir%2Bjson",
        "application/json",
    ] {
        api.get(&format!("/metadata?_format={format}"))
            .await
            .ok(200);
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let api = Api::with_limits(ApiLimits {
        max_body_bytes: 100,
        ..ApiLimits::default()
    });
    // No Content-Length here: the limit holds while the body streams in.
    let big = json!({"resourceType": "Patient", "id": "big", "text": {"div": "x".repeat(200)}});
    api.put("/Patient/big", &big).await.outcome(413);
    // A declared length over the limit is refused before reading.
    let small = br#"{"resourceType": "Patient", "id": "big"}"#.to_vec();
    let headers = [("content-type", FHIR_JSON), ("content-length", "1000000")];
    assert_eq!(
        api.send(Method::PUT, "/Patient/big", &headers, Some(small))
            .await
            .outcome(413)["code"],
        "too-long"
    );
    api.post(
        "/",
        &json!({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": big}]}),
    )
    .await
    .outcome(413);
    assert_eq!(api.stats().versions, 0);

    api.create_patient("small").await;
}
