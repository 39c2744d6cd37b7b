//! `_history` at system, type and instance level: a `history` Bundle, newest
//! first, paged by an opaque store cursor carried in `_page_token`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::fhir::Instant;
use crate::store::{
    HistoryCursor, HistoryPage, HistoryQuery, HistoryScope, Store, StoreError, StoredVersion,
};

use super::AppState;
use super::blocking::with_store;
use super::bundle::wire;
use super::error::ApiError;
use super::params::{HistoryParams, InstancePath, PAGE_TOKEN, TypePath};
use super::response::fhir_json;

/// `GET /_history`
pub async fn system(
    State(state): State<AppState>,
    params: HistoryParams,
) -> Result<Response, ApiError> {
    history(state, HistoryScope::System, params).await
}

/// `GET /{type}/_history`
pub async fn of_type(
    State(state): State<AppState>,
    TypePath(rtype): TypePath,
    params: HistoryParams,
) -> Result<Response, ApiError> {
    history(state, HistoryScope::Type(rtype), params).await
}

/// `GET /{type}/{id}/_history`. A resource that was never written has no
/// history: 404, as for a read.
pub async fn of_instance(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
    params: HistoryParams,
) -> Result<Response, ApiError> {
    history(state, HistoryScope::Instance(rtype, id), params).await
}

async fn history(
    state: AppState,
    scope: HistoryScope,
    params: HistoryParams,
) -> Result<Response, ApiError> {
    let query = HistoryQuery {
        // FHIR's `_since` includes the instant itself; the store's bound is
        // exclusive, and instants are whole milliseconds.
        since: params
            .since
            .map(|s| Instant::from_millis(s.as_millis().saturating_sub(1))),
        until: None,
        cursor: params.cursor.clone(),
        count: params.count,
    };
    let page = {
        let scope = scope.clone();
        with_store(&state, move |store| read_page(store, &scope, &query)).await?
    };
    let body = bundle(&state.base_url, &scope, &params, &page)?;
    Ok(fhir_json(StatusCode::OK, body))
}

fn read_page(
    store: &dyn Store,
    scope: &HistoryScope,
    query: &HistoryQuery,
) -> Result<HistoryPage, ApiError> {
    let page = store.history(scope, query).map_err(|e| match e {
        // The store calls a cursor it cannot decode corrupt; from a client,
        // that is a bad `_page_token`.
        StoreError::Corrupt(_) if query.cursor.is_some() => {
            ApiError::invalid(format!("the {PAGE_TOKEN} is not one this server issued"))
        }
        other => other.into(),
    })?;
    // An empty first page of an instance may mean it was never written.
    if let HistoryScope::Instance(rtype, id) = scope
        && page.entries.is_empty()
        && query.cursor.is_none()
        && store.read(*rtype, id)?.is_none()
    {
        return Err(ApiError::NotFound(format!("{rtype}/{id} is not known")));
    }
    Ok(page)
}

fn bundle(
    base: &str,
    scope: &HistoryScope,
    params: &HistoryParams,
    page: &HistoryPage,
) -> Result<Vec<u8>, ApiError> {
    let mut link = vec![wire::Link {
        relation: "self",
        url: page_url(base, scope, params, params.cursor.as_ref()),
    }];
    if let Some(next) = &page.next {
        link.push(wire::Link {
            relation: "next",
            url: page_url(base, scope, params, Some(next)),
        });
    }
    let entries = page
        .entries
        .iter()
        .map(|v| entry(base, v))
        .collect::<Result<_, _>>()?;
    wire::Bundle::new("history", link, entries).to_vec()
}

/// A history entry says how the version came to be: version 1 by POST,
/// later live versions by PUT, tombstones by DELETE. (A version 1 written by
/// create-on-update is reported as POST: the store does not keep the verb.)
fn entry<'a>(base: &str, version: &'a StoredVersion) -> Result<wire::Entry<'a>, ApiError> {
    let instance = format!("{}/{}", version.rtype, version.id);
    let (method, url, status, resource) = if version.meta.deleted {
        ("DELETE", instance, StatusCode::NO_CONTENT, None)
    } else if version.meta.version == 1 {
        (
            "POST",
            version.rtype.to_string(),
            StatusCode::CREATED,
            Some(wire::raw(version)?),
        )
    } else {
        ("PUT", instance, StatusCode::OK, Some(wire::raw(version)?))
    };
    Ok(wire::Entry {
        full_url: Some(wire::full_url(base, version)),
        resource,
        request: Some(wire::Request { method, url }),
        response: Some(wire::Response::of_version(status, version)),
        ..wire::Entry::default()
    })
}

/// The absolute URL of one page: every parameter that shapes the listing is
/// repeated, so following `next` continues the same listing.
fn page_url(
    base: &str,
    scope: &HistoryScope,
    params: &HistoryParams,
    cursor: Option<&HistoryCursor>,
) -> String {
    let path = match scope {
        HistoryScope::System => "_history".to_owned(),
        HistoryScope::Type(rtype) => format!("{rtype}/_history"),
        HistoryScope::Instance(rtype, id) => format!("{rtype}/{id}/_history"),
    };
    let mut url = format!("{base}/{path}?_count={}", params.count);
    if let Some(since) = params.since {
        url.push_str(&format!(
            "&_since={}",
            crate::percent::encode_component(&since.to_fhir())
        ));
    }
    if let Some(cursor) = cursor {
        url.push_str(&format!(
            "&{PAGE_TOKEN}={}",
            crate::percent::encode_component(&cursor.0)
        ));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::ResourceType;

    #[test]
    fn page_urls_repeat_the_listing() {
        let params = HistoryParams {
            since: Some(Instant::parse("2024-05-01T12:00:00Z").unwrap()),
            count: 10,
            cursor: None,
        };
        let scope = HistoryScope::Type(ResourceType::parse("Patient").unwrap());
        assert_eq!(
            page_url(
                "http://h",
                &scope,
                &params,
                Some(&HistoryCursor("a b+/".into()))
            ),
            "http://h/Patient/_history?_count=10&_since=2024-05-01T12%3A00%3A00.000Z&_page_token=a%20b%2B%2F"
        );
    }
}
