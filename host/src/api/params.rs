//! Path segments and query parameters, parsed into typed values once, at the
//! edge. Every rejection is an [`ApiError`] (400), never axum's plain text.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde_json::Value;

use crate::fhir::{Instant, ResourceId, ResourceType};
use crate::store::HistoryCursor;

use super::AppState;
use super::error::ApiError;
use crate::fhir::IssueType;

/// A resource type the API can store. Unknown names are a client error (400)
/// rather than a missing page (404): the path has the right shape.
pub fn parse_type(name: &str) -> Result<ResourceType, ApiError> {
    refuse_operation(name)?;
    let rtype = ResourceType::parse(name)
        .ok_or_else(|| ApiError::invalid(format!("'{name}' is not an R4 resource type")))?;
    if !rtype.is_storable() {
        return Err(ApiError::invalid(format!(
            "{rtype} resources cannot be stored"
        )));
    }
    Ok(rtype)
}

pub fn parse_id(id: &str) -> Result<ResourceId, ApiError> {
    refuse_operation(id)?;
    ResourceId::parse(id).ok_or_else(|| {
        ApiError::invalid(format!(
            "'{id}' is not a valid resource id (1-64 of A-Z a-z 0-9 - .)"
        ))
    })
}

/// A `$name` segment where a type or id belongs is an operation this server
/// does not offer (any it offers has its own route, which wins over these).
fn refuse_operation(segment: &str) -> Result<(), ApiError> {
    match segment.strip_prefix('$') {
        Some(op) => Err(ApiError::NotSupported(format!(
            "the operation ${op} is not supported by this server at this path (see /metadata)"
        ))),
        None => Ok(()),
    }
}

/// A version id: digits only (no sign, no spaces).
pub fn parse_version(vid: &str) -> Result<u64, ApiError> {
    vid.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| vid.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid(format!("'{vid}' is not a version id (a whole number)")))
}

/// The `parameter` entries of an operation's `Parameters` body (none when
/// absent). `operation` names the kick-off in the message, e.g. "a POST
/// kick-off".
pub fn parameters_body(body: &[u8], operation: &str) -> Result<Vec<Value>, ApiError> {
    let mut body: Value = serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
        code: IssueType::Structure,
        message: format!("the body is not valid JSON: {e}"),
        expression: None,
    })?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::Invalid {
            code: IssueType::Invalid,
            message: format!("{operation} takes a Parameters resource as its body"),
            expression: Some("resourceType".into()),
        });
    }
    match body.get_mut("parameter").map(Value::take) {
        None => Ok(Vec::new()),
        Some(Value::Array(parameters)) => Ok(parameters),
        Some(_) => Err(body_error("Parameters.parameter", "must be an array")),
    }
}

/// A 400 naming where in a request body the problem is.
pub fn body_error(at: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::Invalid {
        code: IssueType::Invalid,
        message: format!("{at} {message}"),
        expression: Some(at.to_owned()),
    }
}

/// `/{type}`
pub struct TypePath(pub ResourceType);

/// `/{type}/{id}`
pub struct InstancePath(pub ResourceType, pub ResourceId);

/// `/{type}/{id}/_history/{vid}`
pub struct VersionPath(pub ResourceType, pub ResourceId, pub u64);

pub(super) async fn segments<const N: usize>(parts: &mut Parts) -> Result<[String; N], ApiError> {
    let Path(segments) = Path::<Vec<String>>::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::invalid(format!("bad path: {e}")))?;
    segments
        .try_into()
        .map_err(|_| ApiError::internal("route and extractor disagree"))
}

impl<S: Send + Sync> FromRequestParts<S> for TypePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [rtype] = segments(parts).await?;
        Ok(TypePath(parse_type(&rtype)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [rtype, id] = segments(parts).await?;
        Ok(InstancePath(parse_type(&rtype)?, parse_id(&id)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [rtype, id, vid] = segments(parts).await?;
        Ok(VersionPath(
            parse_type(&rtype)?,
            parse_id(&id)?,
            parse_version(&vid)?,
        ))
    }
}

/// The decoded query string. Form decoding turns an unencoded `+` into a
/// space; callers whose values never contain spaces turn it back.
pub fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))
}

/// The parameters of every `_history` interaction. Others are ignored, as
/// FHIR's default lenient handling says, except `_at`, which would change
/// the answer and is refused rather than silently dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryParams {
    /// Versions with `lastUpdated >= since`.
    pub since: Option<Instant>,
    /// Page size, within `1..=max_page_size`.
    pub count: usize,
    /// Where the previous page ended (`_page_token`).
    pub cursor: Option<HistoryCursor>,
}

pub const PAGE_TOKEN: &str = "_page_token";

impl HistoryParams {
    fn parse(
        pairs: Vec<(String, String)>,
        default_count: usize,
        max_count: usize,
    ) -> Result<Self, ApiError> {
        let mut params = HistoryParams {
            since: None,
            count: default_count.min(max_count),
            cursor: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "_since" => params.since = Some(parse_since(&value)?),
                "_count" => params.count = parse_count(&value)?.min(max_count),
                PAGE_TOKEN => params.cursor = Some(HistoryCursor(value)),
                "_at" => {
                    return Err(ApiError::NotSupported(
                        "_at is not supported; use _since".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_since(value: &str) -> Result<Instant, ApiError> {
    // A time zone offset's unencoded `+` arrives as a space.
    Instant::parse(&value.replace(' ', "+")).map_err(|e| ApiError::invalid(format!("_since: {e}")))
}

fn parse_count(value: &str) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "_count must be a whole number from 1 up, not '{value}'"
        ))),
    }
}

impl FromRequestParts<AppState> for HistoryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let limits = &state.limits;
        HistoryParams::parse(
            query_pairs(&parts.uri)?,
            limits.default_page_size,
            limits.max_page_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(query: &[(&str, &str)]) -> Result<HistoryParams, ApiError> {
        let pairs = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HistoryParams::parse(pairs, 50, 1000)
    }

    #[test]
    fn path_values() {
        assert!(parse_type("Patient").is_ok());
        for bad in ["patient", "Parameters", "OperationOutcome", ""] {
            assert!(
                matches!(parse_type(bad), Err(ApiError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(matches!(parse_id("a b"), Err(ApiError::Invalid { .. })));
        assert_eq!(parse_version("12").unwrap(), 12);
        for bad in ["", "+1", "-1", "x", "1.0", "99999999999999999999999"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_params() {
        let none = history(&[]).unwrap();
        assert_eq!((none.since, none.count, none.cursor), (None, 50, None));
        let all = history(&[
            ("_count", "5000"),
            ("_since", "2024-05-01T14:00:00 02:00"),
            ("_page_token", "ab"),
            ("_elements", "id"),
        ])
        .unwrap();
        assert_eq!(all.count, 1000);
        assert_eq!(
            all.since,
            Some(Instant::parse("2024-05-01T12:00:00Z").unwrap())
        );
        assert_eq!(all.cursor, Some(HistoryCursor("ab".into())));
        for bad in [
            ("_count", "0"),
            ("_count", "-1"),
            ("_count", "x"),
            ("_since", "yesterday"),
        ] {
            assert!(
                matches!(history(&[bad]), Err(ApiError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            history(&[("_at", "2024")]),
            Err(ApiError::NotSupported(_))
        ));
    }
}
