use axum::http::Method;
use serde_json::{Value, json};

use super::{Api, BASE, Resp, without_meta};

#[tokio::test]
async fn create_assigns_an_id_and_answers_201() {
    let api = Api::new();
    let resp = api
        .post(
            "/Patient",
            &json!({"resourceType": "Patient", "id": "mine", "active": true}),
        )
        .await
        .ok(201);
    let body = resp.json();
    let id = body["id"].as_str().unwrap();
    assert_ne!(id, "mine");
    assert_eq!(
        resp.header("location"),
        Some(format!("{BASE}/Patient/{id}/_history/1").as_str())
    );
    assert_eq!(resp.header("etag"), Some("W/\"1\""));
    assert!(resp.header("last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(body["active"], true);

    let read = api.get(&format!("/Patient/{id}")).await.ok(200);
    assert_eq!(read.body, resp.body, "the read answers the stored bytes");
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert_eq!(read.header("last-modified"), resp.header("last-modified"));
}

/// A create of `body` with `Prefer: return=<prefer>`.
async fn post_preferring(api: &Api, prefer: &str, body: &Value) -> Resp {
    let prefer = format!("return={prefer}");
    api.send_json(Method::POST, "/Patient", &[("prefer", &prefer)], body)
        .await
}

#[tokio::test]
async fn prefer_chooses_the_body_of_a_write() {
    let api = Api::new();
    let patient = json!({"resourceType": "Patient"});
    let minimal = post_preferring(&api, "minimal", &patient).await.ok(201);
    assert!(minimal.body.is_empty());
    assert!(minimal.header("location").is_some() && minimal.header("etag").is_some());

    let outcome = post_preferring(&api, "OperationOutcome", &patient).await;
    let outcome = outcome.ok(201).json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");

    let full = post_preferring(&api, "representation", &patient).await;
    assert_eq!(full.ok(201).json()["resourceType"], "Patient");
}

#[tokio::test]
async fn update_creates_then_versions() {
    let api = Api::new();
    let v1 = json!({"resourceType": "Patient", "id": "p1", "active": true});
    let created = api.put("/Patient/p1", &v1).await.ok(201);
    assert_eq!(
        created.header("location"),
        Some(format!("{BASE}/Patient/p1/_history/1").as_str())
    );
    let v2 = json!({"resourceType": "Patient", "id": "p1", "active": false});
    let updated = api.put("/Patient/p1", &v2).await.ok(200);
    assert_eq!(updated.header("etag"), Some("W/\"2\""));
    assert_eq!(updated.header("location"), None);
    assert_eq!(
        without_meta(&api.get("/Patient/p1").await.ok(200).json()),
        v2
    );
    assert_eq!(
        without_meta(&api.get("/Patient/p1/_history/1").await.ok(200).json()),
        v1
    );
    api.get("/Patient/p1/_history/3").await.outcome(404);
}

/// An update of `uri` to `body` with `If-Match: etag`.
async fn put_if(api: &Api, uri: &str, etag: &str, body: &Value) -> Resp {
    api.send_json(Method::PUT, uri, &[("if-match", etag)], body)
        .await
}

/// A delete of `uri` with `If-Match: etag`.
async fn delete_if(api: &Api, uri: &str, etag: &str) -> Resp {
    api.send(Method::DELETE, uri, &[("if-match", etag)], None)
        .await
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    let api = Api::new();
    let body = json!({"resourceType": "Patient", "id": "p1"});
    api.put("/Patient/p1", &body).await.ok(201);
    for etag in ["W/\"1\"", "\"2\""] {
        put_if(&api, "/Patient/p1", etag, &body).await.ok(200);
    }
    let stale = put_if(&api, "/Patient/p1", "W/\"1\"", &body).await;
    assert_eq!(stale.outcome(412)["code"], "conflict");
    delete_if(&api, "/Patient/p1", "W/\"2\"").await.outcome(412);
    delete_if(&api, "/Patient/p1", "W/\"3\"").await.ok(204);

    // Deleted, or never written: nothing to match.
    put_if(&api, "/Patient/p1", "W/\"4\"", &body)
        .await
        .outcome(409);
    delete_if(&api, "/Patient/p1", "W/\"4\"").await.outcome(409);
    let new = json!({"resourceType": "Patient", "id": "new"});
    put_if(&api, "/Patient/new", "W/\"1\"", &new)
        .await
        .outcome(409);
    api.get("/Patient/new").await.outcome(404);

    put_if(&api, "/Patient/p1", "one", &body).await.outcome(400);
}

#[tokio::test]
async fn delete_is_idempotent_and_leaves_a_tombstone() {
    let api = Api::new();
    let body = json!({"resourceType": "Patient", "id": "p1"});
    api.put("/Patient/p1", &body).await.ok(201);
    let deleted = api.delete("/Patient/p1").await.ok(204);
    assert!(deleted.body.is_empty());
    let gone = api.get("/Patient/p1").await.outcome(410);
    assert_eq!(gone["code"], "deleted");
    api.get("/Patient/p1/_history/2").await.outcome(410);
    api.get("/Patient/p1/_history/1").await.ok(200);

    let versions = api.stats().versions;
    api.delete("/Patient/p1").await.ok(204);
    api.delete("/Patient/never").await.ok(204);
    assert_eq!(
        api.stats().versions,
        versions,
        "no new version for deleting nothing"
    );

    // Update after delete brings it back.
    let back = api.put("/Patient/p1", &body).await.ok(201);
    assert_eq!(back.header("etag"), Some("W/\"3\""));
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let api = Api::new();
    let body = json!({"resourceType": "Patient", "id": "p1"});
    api.put("/Patient/p1", &body).await.ok(201);
    let head = api.send(Method::HEAD, "/Patient/p1", &[], None).await;
    assert_eq!(head.status.as_u16(), 200);
    assert_eq!(head.header("etag"), Some("W/\"1\""));
    assert!(head.body.is_empty());
}
