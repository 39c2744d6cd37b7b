//! Create, read, update, delete, vread, conditional update, `_history`
//! paging, `/metadata`, `/healthz` and percent-encoded paths.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Sandbox, etag_version, history_key, version_of, without_server_meta};

#[tokio::test]
async fn lifecycle_of_one_resource() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    // Create: 201, Location to version 1, ETag W/"1"; a client id in the body is replaced.
    let created = srv
        .post(
            "/Patient",
            &json!({"resourceType": "Patient", "id": "client-chosen", "name": [{"family": "Doe"}]}),
        )
        .await
        .ok(201);
    assert_eq!(created.header("etag").as_deref(), Some("W/\"1\""));
    let location = created.header("location").expect("Location header");
    let rest = location
        .strip_prefix(&format!("{}/Patient/", srv.base))
        .unwrap_or_else(|| panic!("Location {location} is not under {}/Patient/", srv.base));
    let id = rest
        .strip_suffix("/_history/1")
        .unwrap_or_else(|| panic!("Location {location}"));
    assert_ne!(id, "client-chosen", "POST must assign the id");
    assert!(hearth::fhir::id::is_valid(id), "{id}");
    let path = format!("/Patient/{id}");

    // Read.
    let read = srv.get(&path).await.ok(200);
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
    assert!(
        read.header("content-type")
            .unwrap_or_default()
            .starts_with("application/fhir+json")
    );
    let v1 = read.json();
    assert_eq!(v1["resourceType"], "Patient");
    assert_eq!(v1["id"], id);
    assert_eq!(version_of(&v1), 1);
    assert!(v1["meta"]["lastUpdated"].is_string(), "{v1}");
    assert_eq!(v1["name"][0]["family"], "Doe");

    // Update: 200, version 2.
    let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Roe"}]});
    let updated = srv.put(&path, &body).await.ok(200);
    assert_eq!(updated.header("etag").as_deref(), Some("W/\"2\""));
    let v2 = srv.get(&path).await.ok(200).json();
    assert_eq!(version_of(&v2), 2);
    assert_eq!(without_server_meta(&v2), body);
    assert!(v2["meta"]["lastUpdated"].as_str() > v1["meta"]["lastUpdated"].as_str());

    // vread of both versions.
    let old = srv.get(&format!("{path}/_history/1")).await.ok(200);
    assert_eq!(old.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(old.json(), v1);
    assert_eq!(
        srv.get(&format!("{path}/_history/2")).await.ok(200).json(),
        v2
    );
    srv.get(&format!("{path}/_history/3")).await.outcome(404);

    // Delete: 204; read and vread of the tombstone are 410; old versions stay readable.
    srv.delete(&path).await.ok(204);
    srv.get(&path).await.outcome(410);
    srv.get(&format!("{path}/_history/3")).await.outcome(410);
    assert_eq!(
        srv.get(&format!("{path}/_history/2")).await.ok(200).json(),
        v2
    );
    // Deleting again changes nothing.
    let again = srv.delete(&path).await;
    assert!(
        matches!(again.status, 200 | 204),
        "second delete: {}",
        again.status
    );
    srv.get(&format!("{path}/_history/4")).await.outcome(404);

    // Update after delete recreates it as version 4.
    let body = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Back"}]});
    let recreated = srv.put(&path, &body).await;
    assert!(
        matches!(recreated.status, 200 | 201),
        "update after delete: {}",
        recreated.status
    );
    assert_eq!(recreated.header("etag").as_deref(), Some("W/\"4\""));
    assert_eq!(version_of(&srv.get(&path).await.ok(200).json()), 4);

    // If-Match: the current version succeeds, an old one is 412 and changes nothing.
    let body5 = json!({"resourceType": "Patient", "id": id, "active": true});
    let matched = srv
        .send(Method::PUT, &path, Some(&body5), &[("if-match", "W/\"4\"")])
        .await
        .ok(200);
    assert_eq!(matched.header("etag").as_deref(), Some("W/\"5\""));
    let stale = json!({"resourceType": "Patient", "id": id, "active": false});
    srv.send(Method::PUT, &path, Some(&stale), &[("if-match", "W/\"4\"")])
        .await
        .outcome(412);
    srv.send(Method::PUT, &path, Some(&stale), &[("if-match", "W/\"1\"")])
        .await
        .outcome(412);
    let current = srv.get(&path).await.ok(200).json();
    assert_eq!(version_of(&current), 5);
    assert_eq!(without_server_meta(&current), body5);

    // PUT of a new id creates it: 201, version 1.
    let fresh = json!({"resourceType": "Observation", "id": "obs-1", "status": "final", "code": {"text": "x"}});
    let created = srv.put("/Observation/obs-1", &fresh).await.ok(201);
    assert_eq!(created.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(
        without_server_meta(&srv.get("/Observation/obs-1").await.ok(200).json()),
        fresh
    );
}

/// One write, as the test log records it: `("Type/id", version)`.
type Key = (String, u64);

#[tokio::test]
async fn history_is_newest_first_and_pages_cover_every_version_once() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    // Interleaved writes over three resources of two types, logged in order.
    let mut log: Vec<Key> = Vec::new();
    let patient = |id: &str, n: u64| json!({"resourceType": "Patient", "id": id, "birthDate": format!("19{n:02}-01-01")});
    let obs = |id: &str, n: u64| json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "t"}, "valueInteger": n});
    let steps: &[(&str, &str, bool)] = &[
        ("Patient", "a", false),
        ("Patient", "b", false),
        ("Observation", "o", false),
        ("Patient", "a", false),
        ("Patient", "a", false),
        ("Observation", "o", false),
        ("Patient", "a", true),
        ("Patient", "b", false),
        ("Observation", "o", true),
        ("Patient", "a", false),
        ("Patient", "b", false),
        ("Patient", "a", false),
    ];
    for (i, &(rtype, id, delete)) in steps.iter().enumerate() {
        let path = format!("/{rtype}/{id}");
        let version = log
            .iter()
            .filter(|(k, _)| *k == format!("{rtype}/{id}"))
            .count() as u64
            + 1;
        let resp = if delete {
            srv.delete(&path).await.ok(204)
        } else if rtype == "Patient" {
            srv.put(&path, &patient(id, i as u64)).await
        } else {
            srv.put(&path, &obs(id, i as u64)).await
        };
        assert!(
            matches!(resp.status, 200 | 201 | 204),
            "{path}: {}",
            resp.status
        );
        if !delete {
            assert_eq!(
                etag_version(&resp.header("etag").expect("ETag")),
                version,
                "{path}"
            );
        }
        log.push((format!("{rtype}/{id}"), version));
    }
    let newest_first: Vec<Key> = log.iter().rev().cloned().collect();

    let check = |path: &str, pages: Vec<Vec<Value>>, count: usize, expected: Vec<Key>| {
        assert!(
            pages.len() > 1,
            "{path}: expected several pages, got {}",
            pages.len()
        );
        for (i, page) in pages.iter().enumerate() {
            assert!(
                page.len() <= count,
                "{path}: page {i} has {} entries",
                page.len()
            );
            assert!(
                !page.is_empty() || pages.len() == 1,
                "{path}: page {i} is empty"
            );
        }
        let got: Vec<Key> = pages.iter().flatten().map(history_key).collect();
        assert_eq!(got, expected, "{path}");
    };

    let path = "/Patient/a/_history?_count=2";
    let expected = newest_first
        .iter()
        .filter(|(k, _)| k == "Patient/a")
        .cloned()
        .collect();
    check(path, srv.all_pages(path).await, 2, expected);

    let path = "/Patient/_history?_count=3";
    let expected = newest_first
        .iter()
        .filter(|(k, _)| k.starts_with("Patient/"))
        .cloned()
        .collect();
    check(path, srv.all_pages(path).await, 3, expected);

    let path = "/_history?_count=4";
    check(path, srv.all_pages(path).await, 4, newest_first.clone());

    // Without _count everything fits one default-sized page.
    let all = srv.all_pages("/_history").await;
    assert_eq!(
        all.iter().flatten().map(history_key).collect::<Vec<_>>(),
        newest_first
    );

    // Resource entries carry the version as it was.
    let a_history = srv.get("/Patient/a/_history").await.ok(200).json();
    assert_eq!(a_history["type"], "history");
    for entry in a_history["entry"].as_array().unwrap() {
        if entry["resource"].is_object() {
            let v = version_of(&entry["resource"]);
            let vread = srv
                .get(&format!("/Patient/a/_history/{v}"))
                .await
                .ok(200)
                .json();
            assert_eq!(entry["resource"], vread);
        }
    }
}

#[tokio::test]
async fn metadata_healthz_and_encoded_paths() {
    let mut sandbox = Sandbox::new();
    let srv = sandbox.start(&[]).await;

    let cs = srv.get("/metadata").await.ok(200).json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");

    let health = srv.get("/healthz").await;
    assert_eq!(health.status, 200);

    // `%2D` is `-` and `%2E` is `.` (unreserved characters): same resource.
    let body = json!({"resourceType": "Patient", "id": "p-1.x", "active": true});
    srv.put("/Patient/p-1.x", &body).await.ok(201);
    let read = srv.get("/Patient/p%2D1%2Ex").await.ok(200).json();
    assert_eq!(without_server_meta(&read), body);

    // `%24` routes like `$`: `/Patient/%24export` names the operation, never
    // a Patient with the id `$export` or `%24export` (here a 400 for the
    // missing async headers), the same answer as for the `$` spelling.
    for (encoded, plain) in [
        ("/Patient/%24export", "/Patient/$export"),
        ("/Patient/p-1.x/%24everything", "/Patient/p-1.x/$everything"),
    ] {
        let (a, b) = (srv.get(encoded).await, srv.get(plain).await);
        assert!(matches!(a.status, 400 | 404), "{encoded}: {}", a.status);
        assert_eq!(
            a.outcome(a.status),
            b.outcome(b.status),
            "{encoded} vs {plain}"
        );
    }
    // Operations the server does not offer get a 400 that names them.
    for path in ["/%24everything", "/Patient/%24everything"] {
        let oo = srv.get(path).await.outcome(400);
        assert_eq!(oo["issue"][0]["code"], "not-supported", "{path}: {oo}");
        assert!(oo.to_string().contains("$everything"), "{path}: {oo}");
    }
    // A PUT to such a path writes nothing either: the operation takes GET/POST.
    let export = json!({"resourceType": "Patient", "id": "$export"});
    srv.put("/Patient/%24export", &export).await.outcome(405);
    // And the store holds nothing under such ids.
    let all = srv.all_pages("/_history").await;
    assert_eq!(
        all.iter().flatten().map(history_key).collect::<Vec<_>>(),
        [("Patient/p-1.x".to_string(), 1)]
    );
}
