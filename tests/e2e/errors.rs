//! Every error status comes with an OperationOutcome body in
//! `application/fhir+json` (checked by `Resp::outcome`).

use reqwest::Method;
use serde_json::json;

use crate::support::{FHIR_JSON, Sandbox};

#[tokio::test]
async fn each_error_is_an_operation_outcome() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&["--max-body-bytes", "1024"]).await;
    let raw =
        |method: Method, path: &'static str, body: &'static [u8], ct: Option<&'static str>| {
            srv.send_raw(method, path, Some(body.to_vec()), ct, &[])
        };

    // 400: malformed JSON, not an object, no resourceType.
    raw(
        Method::POST,
        "/Patient",
        b"{\"resourceType\": \"Patient\",",
        Some(FHIR_JSON),
    )
    .await
    .outcome(400);
    raw(Method::POST, "/Patient", b"[1, 2]", Some(FHIR_JSON))
        .await
        .outcome(400);
    raw(
        Method::PUT,
        "/Patient/p1",
        b"{\"id\": \"p1\"}",
        Some(FHIR_JSON),
    )
    .await
    .outcome(400);

    // 400: resourceType does not match the URL.
    srv.post("/Patient", &json!({"resourceType": "Observation"}))
        .await
        .outcome(400);
    srv.put(
        "/Patient/p1",
        &json!({"resourceType": "Observation", "id": "p1"}),
    )
    .await
    .outcome(400);
    // 400: PUT body id differs from the URL id.
    srv.put(
        "/Patient/p1",
        &json!({"resourceType": "Patient", "id": "p2"}),
    )
    .await
    .outcome(400);

    // 400: unknown type, in the URL and in the body.
    srv.get("/Pateint/p1").await.outcome(400);
    srv.post("/Pateint", &json!({"resourceType": "Pateint"}))
        .await
        .outcome(400);
    srv.post("/Patient", &json!({"resourceType": "Pateint"}))
        .await
        .outcome(400);

    // 400: ids that are not FHIR ids (underscore; 65 characters), in the URL and in the body.
    srv.get("/Patient/a_b").await.outcome(400);
    let long = "x".repeat(65);
    srv.get(&format!("/Patient/{long}")).await.outcome(400);
    srv.put(
        "/Patient/a_b",
        &json!({"resourceType": "Patient", "id": "a_b"}),
    )
    .await
    .outcome(400);
    srv.post(
        "/Patient",
        &json!({"resourceType": "Patient", "id": "bad id"}),
    )
    .await
    .outcome(400);
    srv.get("/Patient/p1/_history/one").await.outcome(400);

    // 404: never written; unknown version; unknown route.
    srv.get("/Patient/nobody").await.outcome(404);
    srv.get("/Patient/nobody/_history/1").await.outcome(404);
    srv.get("/Patient/p1/nothing/here").await.outcome(404);
    srv.get("/a/b/c/d/e").await.outcome(404);

    // 410: deleted, read and vread of the tombstone.
    let patient = json!({"resourceType": "Patient", "id": "p1"});
    srv.put("/Patient/p1", &patient).await.ok(201);
    srv.delete("/Patient/p1").await.ok(204);
    srv.get("/Patient/p1").await.outcome(410);
    srv.get("/Patient/p1/_history/2").await.outcome(410);

    // 415: not JSON.
    raw(
        Method::POST,
        "/Patient",
        b"{\"resourceType\": \"Patient\"}",
        Some("text/plain"),
    )
    .await
    .outcome(415);
    raw(
        Method::PUT,
        "/Patient/p1",
        b"<Patient xmlns=\"http://hl7.org/fhir\"/>",
        Some("application/fhir+xml"),
    )
    .await
    .outcome(415);

    // 406: asking for XML.
    srv.send(
        Method::GET,
        "/metadata",
        None,
        &[("accept", "application/fhir+xml")],
    )
    .await
    .outcome(406);
    srv.get("/Patient/p1?_format=xml").await.outcome(406);

    // 412: If-Match on an old version.
    srv.put(
        "/Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2"}),
    )
    .await
    .ok(201);
    srv.put(
        "/Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2", "active": true}),
    )
    .await
    .ok(200);
    let body = json!({"resourceType": "Patient", "id": "p2", "active": false});
    srv.send(
        Method::PUT,
        "/Patient/p2",
        Some(&body),
        &[("if-match", "W/\"1\"")],
    )
    .await
    .outcome(412);

    // 413: a body over --max-body-bytes 1024 (and one under it passes).
    let big = json!({"resourceType": "Patient", "id": "big", "text": {"status": "generated", "div": "x".repeat(2000)}});
    srv.put("/Patient/big", &big).await.outcome(413);
    srv.get("/Patient/big").await.outcome(404);
    let small = json!({"resourceType": "Patient", "id": "big", "text": {"status": "generated", "div": "x".repeat(500)}});
    srv.put("/Patient/big", &small).await.ok(201);
    let big_bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": big, "request": {"method": "PUT", "url": "Patient/big"}}]});
    srv.post("/", &big_bundle).await.outcome(413);

    // 405: a known path with an unsupported method.
    srv.send(Method::PATCH, "/Patient/p2", Some(&body), &[])
        .await
        .outcome(405);

    // The server survived all of that.
    srv.get("/Patient/p2").await.ok(200);
}
