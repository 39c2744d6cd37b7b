use serde_json::{Value, json};

use super::{Api, BASE, next_link};

/// `Type/id` and version of a history entry (tombstones by their request URL and ETag).
fn key(entry: &Value) -> (String, String) {
    let etag = entry["response"]["etag"].as_str().unwrap();
    let version = etag
        .trim_start_matches("W/\"")
        .trim_end_matches('"')
        .to_owned();
    let url = entry["fullUrl"]
        .as_str()
        .unwrap()
        .strip_prefix(&format!("{BASE}/"))
        .unwrap()
        .to_owned();
    (url, version)
}

/// Follows `next` links from `uri`; every page's entries.
async fn pages(api: &Api, uri: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = Some(uri.to_owned());
    while let Some(uri) = next.take() {
        let bundle = api.get(&uri).await.ok(200).json();
        assert_eq!(
            (bundle["resourceType"].as_str(), bundle["type"].as_str()),
            (Some("Bundle"), Some("history"))
        );
        assert!(bundle.get("total").is_none());
        assert_eq!(bundle["link"][0]["relation"], "self");
        next = next_link(&bundle);
        pages.push(bundle["entry"].as_array().cloned().unwrap_or_default());
        assert!(pages.len() < 100);
    }
    pages
}

async fn write_some(api: &Api) {
    api.create_patient("a").await;
    api.put(
        "/Observation/o",
        &json!({"resourceType": "Observation", "id": "o", "status": "final"}),
    )
    .await
    .ok(201);
    api.put(
        "/Patient/a",
        &json!({"resourceType": "Patient", "id": "a", "active": true}),
    )
    .await
    .ok(200);
    api.delete("/Patient/a").await.ok(204);
    api.post("/Patient", &json!({"resourceType": "Patient"}))
        .await
        .ok(201);
}

#[tokio::test]
async fn pages_cover_every_version_once_newest_first() {
    let api = Api::new();
    write_some(&api).await;
    let pages = pages(&api, "/_history?_count=2").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let keys: Vec<_> = pages.iter().flatten().map(key).collect();
    let expected = [
        ("Patient/a", "3"),
        ("Patient/a", "2"),
        ("Observation/o", "1"),
        ("Patient/a", "1"),
    ];
    assert_eq!(
        &keys[1..],
        expected.map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert!(keys[0].0.starts_with("Patient/"));

    let patient_a: Vec<_> = pages_flat(&api, "/Patient/a/_history?_count=1")
        .await
        .iter()
        .map(key)
        .collect();
    assert_eq!(
        patient_a
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>(),
        ["3", "2", "1"]
    );
    assert_eq!(pages_flat(&api, "/Patient/_history").await.len(), 4);
    assert_eq!(pages_flat(&api, "/Observation/_history").await.len(), 1);
}

async fn pages_flat(api: &Api, uri: &str) -> Vec<Value> {
    pages(api, uri).await.into_iter().flatten().collect()
}

#[tokio::test]
async fn entries_say_how_each_version_came_to_be() {
    let api = Api::new();
    write_some(&api).await;
    let entries = pages_flat(&api, "/Patient/a/_history").await;
    let methods: Vec<_> = entries
        .iter()
        .map(|e| (e["request"]["method"].clone(), e["request"]["url"].clone()))
        .collect();
    assert_eq!(
        methods,
        [
            json!(["DELETE", "Patient/a"]),
            json!(["PUT", "Patient/a"]),
            json!(["POST", "Patient"])
        ]
        .map(|m| (m[0].clone(), m[1].clone()))
    );
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[0]["response"]["status"], "204 No Content");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    for entry in &entries[1..] {
        let version = entry["resource"]["meta"]["versionId"].as_str().unwrap();
        let vread = api
            .get(&format!("/Patient/a/_history/{version}"))
            .await
            .ok(200)
            .json();
        assert_eq!(entry["resource"], vread);
        assert_eq!(
            entry["response"]["lastModified"],
            vread["meta"]["lastUpdated"]
        );
        assert_eq!(entry["fullUrl"], format!("{BASE}/Patient/a"));
    }
}

#[tokio::test]
async fn since_is_inclusive_and_links_keep_the_listing() {
    let api = Api::new();
    write_some(&api).await;
    let all = pages_flat(&api, "/_history").await;
    // The third newest version's instant: it and the two newer ones.
    let since = all[2]["response"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/_history?_since={since}&_count=1");
    assert_eq!(pages_flat(&api, &uri).await.len(), 3);

    let first = api.get(&uri).await.ok(200).json();
    let next = first["link"][1]["url"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{BASE}/_history?_count=1&_since=")),
        "{next}"
    );
    assert!(next.contains("&_page_token="), "{next}");

    assert!(
        pages_flat(&api, "/_history?_since=2999-01-01")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn bad_history_requests() {
    let api = Api::new();
    write_some(&api).await;
    for query in [
        "_count=0",
        "_count=-1",
        "_count=x",
        "_since=yesterday",
        "_page_token=zz",
        "_page_token=00",
    ] {
        api.get(&format!("/_history?{query}")).await.outcome(400);
    }
    api.get("/Patient/nobody/_history").await.outcome(404);
    // A deleted resource still has its history.
    assert_eq!(pages_flat(&api, "/Patient/a/_history").await.len(), 3);
}

#[tokio::test]
async fn count_is_capped_by_the_limit() {
    let api = Api::with_limits(crate::api::ApiLimits {
        max_page_size: 2,
        default_page_size: 10,
        ..Default::default()
    });
    write_some(&api).await;
    let bundle = api.get("/_history?_count=500").await.ok(200).json();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.get("/_history").await.ok(200).json()["entry"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
