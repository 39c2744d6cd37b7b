//! Search over the router: paging, totals, snapshots and refusals. What a
//! filter matches is the type-filter plugin's business, tested with it; here
//! filters stay within what every type filter Hearth ships evaluates.

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::{Value, json};

use super::{Api, BASE, next_link};

/// Twelve Observations `o00`..`o11`; every third one `final`.
async fn seeded() -> Api {
    let api = Api::new();
    for i in 0..12 {
        let status = if i % 3 == 0 { "final" } else { "amended" };
        let observation = json!({
            "resourceType": "Observation",
            "id": format!("o{i:02}"),
            "status": status,
            "code": {"text": "x"},
        });
        api.put(&format!("/Observation/o{i:02}"), &observation)
            .await
            .ok(201);
    }
    api
}

/// Follows `next` from `uri`: the ids of every page, and the first page's
/// Bundle.
async fn listing(api: &Api, uri: &str) -> (Vec<Vec<String>>, Value) {
    let mut pages = Vec::new();
    let mut first = None;
    let mut next = Some(uri.to_owned());
    while let Some(uri) = next.take() {
        let bundle = api.get(&uri).await.ok(200).json();
        assert_eq!(bundle["type"], "searchset");
        let ids = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                assert_eq!(e["search"]["mode"], "match");
                e["resource"]["id"].as_str().unwrap().to_owned()
            })
            .collect();
        pages.push(ids);
        next = next_link(&bundle);
        first.get_or_insert(bundle);
    }
    (pages, first.unwrap())
}

#[tokio::test]
async fn pages_cover_every_match_once_and_the_last_page_has_no_next() {
    let api = seeded().await;
    let (pages, first) = listing(&api, "/Observation?status=final&_count=2&_total=accurate").await;
    assert_eq!(pages, [vec!["o00", "o03"], vec!["o06", "o09"]]);
    assert_eq!(first["total"], 4);

    let (all, first) = listing(&api, "/Observation?_count=5").await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
    assert!(first.get("total").is_none(), "no total unless asked");
    let ids: BTreeSet<_> = all.concat().into_iter().collect();
    assert_eq!(ids.len(), 12);
}

#[tokio::test]
async fn later_pages_see_the_snapshot_of_the_first() {
    let api = seeded().await;
    let first = api
        .get("/Observation?status=final&_count=2")
        .await
        .ok(200)
        .json();
    let next = first["link"][1]["url"]
        .as_str()
        .unwrap()
        .strip_prefix(BASE)
        .unwrap()
        .to_owned();
    // A write after the first page: a new match, and a match that stops
    // matching. Neither changes the rest of this listing.
    let late = json!({"resourceType": "Observation", "id": "o99", "status": "final", "code": {"text": "x"}});
    api.put("/Observation/o99", &late).await.ok(201);
    let amended = json!({"resourceType": "Observation", "id": "o06", "status": "amended", "code": {"text": "x"}});
    api.put("/Observation/o06", &amended).await.ok(200);
    let (rest, _) = listing(&api, &next).await;
    assert_eq!(rest, [vec!["o06", "o09"]]);
    let (now, _) = listing(&api, "/Observation?status=final").await;
    assert_eq!(now, [vec!["o00", "o03", "o09", "o99"]]);
}

#[tokio::test]
async fn deleted_resources_are_not_found() {
    let api = seeded().await;
    api.delete("/Observation/o03").await.ok(204);
    let (pages, _) = listing(&api, "/Observation?status=final").await;
    assert_eq!(pages, [vec!["o00", "o06", "o09"]]);
}

#[tokio::test]
async fn totals_alone_and_subsets() {
    let api = seeded().await;
    for uri in [
        "/Observation?status=amended&_summary=count",
        "/Observation?status=amended&_count=0",
    ] {
        let bundle = api.get(uri).await.ok(200).json();
        assert_eq!(bundle["total"], 8, "{uri}");
        assert!(bundle.get("entry").is_none(), "{uri}");
    }
    let bundle = api
        .get("/Observation?_id=o03&_elements=status")
        .await
        .ok(200)
        .json();
    let resource = &bundle["entry"][0]["resource"];
    assert_eq!(resource["status"], "final");
    // `code` is mandatory in Observation: kept, as in export.
    assert!(resource.get("code").is_some());
    assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
}

#[tokio::test]
async fn post_search_joins_the_form_body_to_the_url() {
    let api = seeded().await;
    let resp = api
        .send(
            Method::POST,
            "/Observation/_search?_count=10",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"status=final&_total=accurate".to_vec()),
        )
        .await
        .ok(200)
        .json();
    assert_eq!(resp["total"], 4);
    assert_eq!(resp["entry"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn refusals_are_operation_outcomes_naming_the_cause() {
    let api = seeded().await;
    for (uri, needle) in [
        ("/Observation?_sort=date", "_sort"),
        ("/Observation?_include=Observation:subject", "_include"),
        ("/Observation?_summary=true", "_summary"),
        ("/Observation?_page_token=nonsense", "_page_token"),
        ("/Observation?no-such-parameter=1", "no-such-parameter"),
        ("/Observation?_count=x", "_count"),
        ("/Observations?status=final", "Observations"),
    ] {
        let resp = api.get(uri).await.ok(400).json();
        assert_eq!(resp["resourceType"], "OperationOutcome", "{uri}");
        assert!(resp.to_string().contains(needle), "{uri}: {resp}");
    }
}
