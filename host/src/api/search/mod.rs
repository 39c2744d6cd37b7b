//! Search: `GET /{type}?...` and `POST /{type}/_search`. The filter is
//! compiled and evaluated by the configured type-filter plugin, the same
//! engine `_typeFilter` uses, over a snapshot scan of the type; the host owns
//! paging, totals and `_elements`. No index: every page scans the type from
//! where the previous one stopped, which suits a bulk-data server whose
//! searches are occasional and whose scans run at hundreds of MB/s.

mod params;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use crate::export::elements::Elements;
use crate::fhir::ResourceType;
use crate::plugins::{LoadedPlugin, PluginKind, TypeFilter};
use crate::store::{Store, StoredVersion};

use super::AppState;
use super::blocking::with_store;
use super::bundle::wire;
use super::error::ApiError;
use super::params::TypePath;
use super::response::fhir_json;
use params::{Cursor, PAGE_TOKEN, SearchParams, Total};

/// Lines handed to the plugin per call: large enough to amortise the call,
/// small enough that a page of a selective filter does not over-read much.
const BATCH_LINES: usize = 256;

/// `GET /{type}`
pub async fn get(
    State(state): State<AppState>,
    TypePath(rtype): TypePath,
    uri: Uri,
) -> Result<Response, ApiError> {
    search(state, rtype, uri.query().unwrap_or_default().to_owned()).await
}

/// `POST /{type}/_search`: the form body's parameters join the URL's.
pub async fn post(
    State(state): State<AppState>,
    TypePath(rtype): TypePath,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the _search form body is not UTF-8"))?;
    let query = [uri.query().unwrap_or_default(), body.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    search(state, rtype, query).await
}

async fn search(state: AppState, rtype: ResourceType, query: String) -> Result<Response, ApiError> {
    let limits = &state.limits;
    let params = SearchParams::parse(&query, limits.default_page_size, limits.max_page_size)?;
    let plugin = state.plugins.current().get(PluginKind::TypeFilter).clone();
    let page = {
        let params = params.clone();
        with_store(&state, move |store| find(store, &plugin, rtype, &params)).await?
    };
    let body = bundle(&state.base_url, rtype, &params, &page)?;
    Ok(fhir_json(StatusCode::OK, body))
}

/// One page of matches, and where the next one starts.
struct Page {
    matches: Vec<StoredVersion>,
    total: Option<u64>,
    next: Option<Cursor>,
}

fn find(
    store: &dyn Store,
    plugin: &Arc<LoadedPlugin>,
    rtype: ResourceType,
    params: &SearchParams,
) -> Result<Page, ApiError> {
    let mut filter = if params.filter.is_empty() {
        None
    } else {
        match TypeFilter::compile(plugin, rtype.as_str(), &params.filter)? {
            Ok(filter) => Some(filter),
            Err(issues) => {
                return Err(ApiError::Refused {
                    parameter: format!("{rtype}?{}", params.filter),
                    message: format!(
                        "the search {rtype}?{} cannot be evaluated exactly",
                        params.filter
                    ),
                    issues,
                });
            }
        }
    };
    let snapshot = match &params.cursor {
        Some(cursor) => cursor.snapshot,
        None => store.now()?,
    };
    // The total is counted on the first page only and carried in the
    // cursor; later pages need not scan past their own end.
    let wanted = if params.summary_count {
        0
    } else {
        params.count
    };
    // `_count=0` and `_summary=count` ask for the total alone.
    let count_all = wanted == 0 || params.total == Total::Accurate && params.cursor.is_none();
    let mut scan = store.scan_type(rtype, snapshot, params.cursor.as_ref().map(|c| &c.after))?;
    let mut page = Page {
        matches: Vec::new(),
        total: params.cursor.as_ref().and_then(|c| c.total),
        next: None,
    };
    let mut counted = 0u64;
    let mut more = false;
    let mut batch: Vec<StoredVersion> = Vec::with_capacity(BATCH_LINES);
    let mut lines = Vec::new();
    loop {
        batch.clear();
        // The scan yields tombstones too (exports of deletions need them).
        for version in scan.by_ref() {
            let version = version?;
            if !version.meta.deleted {
                batch.push(version);
                if batch.len() == BATCH_LINES {
                    break;
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        let verdicts = match filter.as_mut() {
            None => vec![true; batch.len()],
            Some(filter) => {
                lines.clear();
                for version in &batch {
                    lines.extend_from_slice(&version.body);
                    lines.push(b'\n');
                }
                filter.evaluate(&lines)?
            }
        };
        for (version, matched) in batch.drain(..).zip(verdicts) {
            if !matched {
                continue;
            }
            counted += 1;
            if page.matches.len() < wanted {
                page.matches.push(version);
            } else {
                more = true;
            }
        }
        if more && !count_all {
            break;
        }
    }
    if count_all {
        page.total = Some(counted);
    }
    if more && let Some(last) = page.matches.last() {
        page.next = Some(Cursor {
            snapshot,
            after: last.id.clone(),
            total: page.total,
        });
    }
    if !params.elements.is_empty() {
        subset(rtype, &params.elements, &mut page.matches)?;
    }
    Ok(page)
}

/// `_elements`, applied to the page only, with export's rules (mandatory
/// elements kept, `SUBSETTED` tag).
fn subset(
    rtype: ResourceType,
    names: &[String],
    matches: &mut [StoredVersion],
) -> Result<(), ApiError> {
    let requested: Vec<_> = names.iter().map(|n| (None, n.clone())).collect();
    let elements = Elements::new(&requested, [rtype]);
    let Some(keep) = elements.for_type(rtype) else {
        return Ok(());
    };
    for version in matches {
        let mut resource: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&version.body).map_err(|e| {
                ApiError::internal(format!("stored {rtype}/{} is not JSON: {e}", version.id))
            })?;
        crate::export::elements::subset(&mut resource, keep);
        version.body = serde_json::to_vec(&resource)
            .map_err(|e| ApiError::internal(format!("writing a subset: {e}")))?
            .into();
    }
    Ok(())
}

fn bundle(
    base: &str,
    rtype: ResourceType,
    params: &SearchParams,
    page: &Page,
) -> Result<Vec<u8>, ApiError> {
    let mut link = vec![wire::Link {
        relation: "self",
        url: page_url(base, rtype, params, params.cursor.as_ref()),
    }];
    if let Some(next) = &page.next {
        link.push(wire::Link {
            relation: "next",
            url: page_url(base, rtype, params, Some(next)),
        });
    }
    let entries = page
        .matches
        .iter()
        .map(|version| {
            Ok(wire::Entry {
                full_url: Some(wire::full_url(base, version)),
                resource: Some(wire::raw(version)?),
                search: Some(wire::Search { mode: "match" }),
                ..wire::Entry::default()
            })
        })
        .collect::<Result<_, ApiError>>()?;
    wire::Bundle::new("searchset", link, entries)
        .with_total(page.total)
        .to_vec()
}

/// A page's absolute URL: the filter as the client encoded it, then the
/// result parameters that shape the listing, so `next` continues it.
fn page_url(
    base: &str,
    rtype: ResourceType,
    params: &SearchParams,
    cursor: Option<&Cursor>,
) -> String {
    let mut query = vec![];
    if !params.filter.is_empty() {
        query.push(params.filter.clone());
    }
    query.push(format!("_count={}", params.count));
    if params.total == Total::Accurate {
        query.push("_total=accurate".to_owned());
    }
    if params.summary_count {
        query.push("_summary=count".to_owned());
    }
    if !params.elements.is_empty() {
        query.push(format!("_elements={}", params.elements.join(",")));
    }
    if let Some(cursor) = cursor {
        query.push(format!("{PAGE_TOKEN}={}", cursor.encode()));
    }
    format!("{base}/{rtype}?{}", query.join("&"))
}
