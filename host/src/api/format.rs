//! Format negotiation. Hearth speaks JSON only: a request that asks for
//! anything else, through `_format` or `Accept`, gets 406.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::params::query_pairs;

pub async fn negotiate(req: Request, next: Next) -> Response {
    match check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(req: &Request) -> Result<(), ApiError> {
    let pairs = query_pairs(req.uri())?;
    for (_, format) in pairs.iter().filter(|(name, _)| name == "_format") {
        check_format(format)?;
    }
    check_accept(req.headers())
}

/// `_format=json`, or a JSON mime type. Parameters (`;fhirVersion=4.0`) are
/// ignored, and an unencoded `+` (`application/fhir+json`) arrives as a space.
pub fn check_format(value: &str) -> Result<(), ApiError> {
    let essence = media_essence(&value.replace(' ', "+"));
    if essence == "json" || is_json(&essence) {
        return Ok(());
    }
    Err(ApiError::NotAcceptable(if essence.contains("xml") {
        "XML is not supported; this server speaks JSON only (_format=json)".into()
    } else {
        format!("_format '{value}' is not supported; use _format=json")
    }))
}

/// Any one acceptable media range in `Accept` is enough; no header is fine.
fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut ranges = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(media_essence)
        .filter(|range| !range.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return Ok(());
    }
    if ranges.any(|range| matches!(range.as_str(), "*/*" | "application/*") || is_json(&range)) {
        return Ok(());
    }
    Err(ApiError::NotAcceptable(
        "none of the Accept media types is supported; this server answers application/fhir+json"
            .into(),
    ))
}

/// `application/fhir+json` out of `Application/FHIR+json; fhirVersion=4.0`.
pub fn media_essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json+fhir` is the DSTU2 spelling some clients still send.
pub fn is_json(essence: &str) -> bool {
    matches!(
        essence,
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn formats() {
        for ok in [
            "json",
            "application/fhir json",
            "application/fhir+json;fhirVersion=4.0",
            "application/json",
        ] {
            assert!(check_format(ok).is_ok(), "{ok}");
        }
        for bad in ["xml", "application/fhir+xml", "text/xml", "ttl", "html"] {
            assert!(
                matches!(check_format(bad), Err(ApiError::NotAcceptable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn accept() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
            check_accept(&h)
        };
        assert!(check_accept(&HeaderMap::new()).is_ok());
        assert!(accept("application/fhir+json").is_ok());
        assert!(accept("text/html,application/xml;q=0.9,*/*;q=0.8").is_ok());
        assert!(accept("application/fhir+xml").is_err());
        assert!(accept("text/plain").is_err());
    }
}
