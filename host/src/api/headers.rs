//! The HTTP headers FHIR gives meaning to: `ETag`/`If-Match` (versions),
//! `Prefer` (what a write returns; asynchronous, lenient handling) and
//! `Location`.

use axum::http::HeaderMap;
use axum::http::header::IF_MATCH;

use crate::store::{Precondition, StoredVersion};

use super::error::ApiError;
use super::params::parse_version;

/// `W/"3"`: FHIR versions are weak validators.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Reads a version out of `W/"3"`, or the strong form `"3"` that some
/// clients send.
pub fn parse_etag(value: &str) -> Result<u64, ApiError> {
    let value = value.trim();
    if value == "*" {
        return Err(ApiError::NotSupported(
            "If-Match: * is not supported; name a version".into(),
        ));
    }
    value
        .strip_prefix("W/")
        .unwrap_or(value)
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| ApiError::invalid(format!("'{value}' is not an ETag like W/\"3\"")))
        .and_then(parse_version)
}

/// The `If-Match` precondition of a write, if the request has one.
pub fn if_match(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::invalid("If-Match is not ASCII"))?;
    parse_etag(value).map(Precondition::IfMatch)
}

/// What a successful create or update sends back (`Prefer: return=...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnPref {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl ReturnPref {
    /// Preferences are hints (RFC 7240): unknown or malformed ones are
    /// ignored, and the default is the full resource.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        preferences(headers)
            .filter_map(|pref| pref.strip_prefix("return="))
            .find_map(|value| match value.trim_matches('"') {
                "minimal" => Some(ReturnPref::Minimal),
                "representation" => Some(ReturnPref::Representation),
                "OperationOutcome" => Some(ReturnPref::OperationOutcome),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// What an asynchronous request (`$export` kick-off) asked for in `Prefer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsyncPref {
    /// `respond-async`: the Bulk Data kick-off requires it.
    pub respond_async: bool,
    /// `handling=lenient` (the last `handling` given wins; the default is
    /// strict): unsupported parameters become warnings instead of 400.
    pub lenient: bool,
}

impl AsyncPref {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut pref = AsyncPref::default();
        for token in preferences(headers) {
            if token.eq_ignore_ascii_case("respond-async") {
                pref.respond_async = true;
            } else if let Some(handling) = token.strip_prefix("handling=") {
                pref.lenient = handling.trim_matches('"').eq_ignore_ascii_case("lenient");
            }
        }
        pref
    }
}

/// The trimmed tokens of every `Prefer` header (`respond-async`,
/// `return=minimal`...), split at `,` and `;`.
fn preferences(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(str::trim)
}

/// `{base}/Patient/1/_history/2`: where a written version can be read again.
pub fn location(base: &str, version: &StoredVersion) -> String {
    format!(
        "{base}/{}/{}/_history/{}",
        version.rtype, version.id, version.meta.version
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn etags() {
        assert_eq!(etag(3), "W/\"3\"");
        assert_eq!(parse_etag("W/\"3\"").unwrap(), 3);
        assert_eq!(parse_etag(" \"12\" ").unwrap(), 12);
        for bad in ["3", "W/3", "W/\"\"", "W/\"-1\"", "W/\"+1\"", "\"a\""] {
            assert!(
                matches!(parse_etag(bad), Err(ApiError::Invalid { .. })),
                "{bad}"
            );
        }
        assert!(matches!(parse_etag("*"), Err(ApiError::NotSupported(_))));
    }

    #[test]
    fn prefer() {
        let pref = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("prefer", HeaderValue::from_str(v).unwrap());
            ReturnPref::from_headers(&h)
        };
        assert_eq!(
            ReturnPref::from_headers(&HeaderMap::new()),
            ReturnPref::Representation
        );
        assert_eq!(pref("return=minimal"), ReturnPref::Minimal);
        assert_eq!(
            pref("handling=strict, return=OperationOutcome"),
            ReturnPref::OperationOutcome
        );
        assert_eq!(
            pref("return=\"minimal\"; respond-async"),
            ReturnPref::Minimal
        );
        assert_eq!(pref("return=everything"), ReturnPref::Representation);
    }

    #[test]
    fn async_preferences() {
        let pref = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("prefer", HeaderValue::from_str(v).unwrap());
            }
            AsyncPref::from_headers(&h)
        };
        assert_eq!(pref(&[]), AsyncPref::default());
        assert_eq!(
            pref(&["respond-async"]),
            AsyncPref {
                respond_async: true,
                lenient: false
            }
        );
        assert_eq!(
            pref(&["Respond-Async, handling=lenient"]),
            AsyncPref {
                respond_async: true,
                lenient: true
            }
        );
        assert_eq!(
            pref(&["handling=lenient", "respond-async; handling=strict"]),
            AsyncPref {
                respond_async: true,
                lenient: false
            }
        );
        assert!(!pref(&["respond-async-ish"]).respond_async);
    }
}
