//! A search request split once into what the host answers itself (paging,
//! totals, `_elements`) and the filter the type-filter plugin compiles.

use crate::fhir::{Instant, ResourceId};

use super::super::error::ApiError;

pub const PAGE_TOKEN: &str = "_page_token";

/// `_total`: whether the Bundle says how many resources match in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    None,
    /// `estimate` and `accurate` both get the exact count: the scan that
    /// finds the first page can count the rest at the same cost as an
    /// estimate would need.
    Accurate,
}

/// Where the previous page stopped. The snapshot pins every page of one
/// search to the same store state, so paging is stable under writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub snapshot: Instant,
    /// The last id of the previous page (scans go in id order).
    pub after: ResourceId,
    /// The total counted on the first page, when `_total` asked for it.
    pub total: Option<u64>,
}

impl Cursor {
    /// `<snapshot ms>-<total or x>-<id>`: ids may contain `-`, so they go
    /// last; every character is URL-safe.
    pub fn encode(&self) -> String {
        let total = self.total.map_or_else(|| "x".to_owned(), |t| t.to_string());
        format!("{}-{total}-{}", self.snapshot.as_millis(), self.after)
    }

    fn decode(token: &str) -> Option<Cursor> {
        let mut parts = token.splitn(3, '-');
        let snapshot = Instant::from_millis(parts.next()?.parse().ok()?);
        let total = match parts.next()? {
            "x" => None,
            n => Some(n.parse().ok()?),
        };
        let after = ResourceId::parse(parts.next()?)?;
        Some(Cursor {
            snapshot,
            after,
            total,
        })
    }
}

/// A parsed search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// The filter parameters as the client encoded them, `&`-joined in
    /// their original order: exactly what the plugin compiles. Empty =
    /// every resource of the type matches.
    pub filter: String,
    pub count: usize,
    pub total: Total,
    /// `_summary=count`: only the total, no entries.
    pub summary_count: bool,
    /// `_elements`: the top-level elements to keep (empty = all).
    pub elements: Vec<String>,
    pub cursor: Option<Cursor>,
}

/// Result parameters the host would have to implement itself and does not
/// (yet): refused by name rather than ignored, since ignoring them would
/// change the answer a client expects.
const REFUSED: [&str; 6] = [
    "_sort",
    "_include",
    "_revinclude",
    "_contained",
    "_containedType",
    "_score",
];

impl SearchParams {
    /// `raw`: the query string(s), still percent-encoded (the URL's and,
    /// for `POST _search`, the form body's, `&`-joined).
    pub fn parse(raw: &str, default_count: usize, max_count: usize) -> Result<Self, ApiError> {
        let mut params = SearchParams {
            filter: String::new(),
            count: default_count.min(max_count),
            total: Total::None,
            summary_count: false,
            elements: Vec::new(),
            cursor: None,
        };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .unwrap_or_default();
            match name.as_str() {
                "_count" => params.count = parse_count(&value)?.min(max_count),
                "_total" => params.total = parse_total(&value)?,
                "_summary" => params.summary_count = parse_summary(&value)?,
                "_elements" => params.elements.extend(parse_elements(&value)?),
                PAGE_TOKEN => {
                    params.cursor = Some(Cursor::decode(&value).ok_or_else(|| {
                        ApiError::invalid(format!("the {PAGE_TOKEN} is not one this server issued"))
                    })?)
                }
                // Content negotiation is the format layer's.
                "_format" | "_pretty" => {}
                refused if REFUSED.contains(&refused) => {
                    return Err(ApiError::NotSupported(format!(
                        "the search result parameter {refused} is not supported"
                    )));
                }
                _ => {
                    if !params.filter.is_empty() {
                        params.filter.push('&');
                    }
                    params.filter.push_str(pair);
                }
            }
        }
        Ok(params)
    }
}

fn parse_count(value: &str) -> Result<usize, ApiError> {
    // `_count=0` is how FHIR asks for the total alone.
    value.parse::<usize>().map_err(|_| {
        ApiError::invalid(format!(
            "_count must be a whole number from 0 up, not '{value}'"
        ))
    })
}

fn parse_total(value: &str) -> Result<Total, ApiError> {
    match value {
        "none" => Ok(Total::None),
        "estimate" | "accurate" => Ok(Total::Accurate),
        other => Err(ApiError::invalid(format!(
            "_total must be none, estimate or accurate, not '{other}'"
        ))),
    }
}

fn parse_summary(value: &str) -> Result<bool, ApiError> {
    match value {
        "count" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::NotSupported(format!(
            "_summary={other} is not supported; _summary=count and _elements are"
        ))),
    }
}

fn parse_elements(value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(|name| {
            let name = name.trim();
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && name.as_bytes()[0].is_ascii_lowercase();
            if valid {
                Ok(name.to_owned())
            } else {
                Err(ApiError::invalid(format!(
                    "_elements: '{name}' is not a top-level element name"
                )))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<SearchParams, ApiError> {
        SearchParams::parse(raw, 50, 1000)
    }

    #[test]
    fn filters_keep_their_encoding_and_order_result_parameters_do_not_reach_them() {
        let p =
            parse("code=http%3A%2F%2Floinc.org%7C8867-4&_count=10&status=final&_total=accurate")
                .unwrap();
        assert_eq!(
            p.filter,
            "code=http%3A%2F%2Floinc.org%7C8867-4&status=final"
        );
        assert_eq!(p.count, 10);
        assert_eq!(p.total, Total::Accurate);
        assert!(parse("").unwrap().filter.is_empty());
    }

    #[test]
    fn counts_are_capped_and_checked() {
        assert_eq!(parse("_count=5000").unwrap().count, 1000);
        assert_eq!(parse("_count=0").unwrap().count, 0);
        assert!(parse("_count=-1").is_err());
        assert!(parse("_count=ten").is_err());
    }

    #[test]
    fn unimplemented_result_parameters_are_refused_not_ignored() {
        for q in [
            "_sort=date",
            "_include=Observation:subject",
            "_revinclude=x",
            "_summary=true",
        ] {
            assert!(matches!(parse(q), Err(ApiError::NotSupported(_))), "{q}");
        }
        assert!(parse("_total=maybe").is_err());
        assert!(parse("_elements=status,Code").is_err());
        assert_eq!(
            parse("_elements=status,%20code").unwrap().elements,
            ["status", "code"]
        );
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let cursor = Cursor {
            snapshot: Instant::from_millis(1_700_000_000_123),
            after: ResourceId::parse("a-b.c").unwrap(),
            total: Some(42),
        };
        let token = cursor.encode();
        assert_eq!(
            parse(&format!("_page_token={token}")).unwrap().cursor,
            Some(cursor)
        );
        let untotalled = Cursor {
            total: None,
            ..parse(&format!("_page_token={token}"))
                .unwrap()
                .cursor
                .unwrap()
        };
        assert_eq!(Cursor::decode(&untotalled.encode()), Some(untotalled));
        for bad in ["", "12", "x-x-a", "12-x-", "12-y-a", "12-x-a b"] {
            assert!(parse(&format!("_page_token={bad}")).is_err(), "{bad}");
        }
    }
}
