//! The syntax of a search query: `name=value` pairs, percent-encoding,
//! parameter names with modifiers and chains, FHIR's `\` escapes and the
//! comparison prefixes.

use crate::{Rejection, invalid};

/// Parameters that shape a search's result rather than select resources.
pub(crate) const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_total",
    "_sort",
    "_include",
    "_revinclude",
    "_elements",
    "_summary",
    "_contained",
    "_containedType",
    "_format",
];

/// One `name=value` of a query, both percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub name: String,
    pub value: String,
}

/// The pairs of a query (`a=b&c=d`); empty segments (`a=b&&c=d`) are
/// skipped. `+` is a plus sign, not a space: this is a URL query, not a
/// form body, and `+` is how a date's time zone reads (`+01:00`).
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = Result<Pair, Rejection>> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("'{pair}' is not of the form name=value")))?;
        Ok(Pair {
            name: percent_decode(name)?,
            value: percent_decode(value)?,
        })
    })
}

pub(crate) fn percent_decode(s: &str) -> Result<String, Rejection> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("'{s}' has an invalid percent-encoding")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("'{s}' is not UTF-8 once percent-decoded")))
}

/// A parameter name: `code[:modifier][.chained]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Name<'a> {
    pub code: &'a str,
    pub modifier: Option<&'a str>,
    /// What follows the first `.`: the parameter of the referenced resource.
    pub chain: Option<&'a str>,
}

pub(crate) fn name(text: &str) -> Name<'_> {
    let (head, chain) = match text.split_once('.') {
        Some((head, chain)) => (head, Some(chain)),
        None => (text, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (head, None),
    };
    Name {
        code,
        modifier,
        chain,
    }
}

/// Splits on `sep` where it is not escaped with `\`; the parts keep their
/// escapes (see [`unescape`]).
pub(crate) fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Removes the escapes of `\,`, `\|`, `\$` and `\\`; any other `\` is
/// literal.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next @ (',' | '|' | '$' | '\\')) = chars.peek()
        {
            out.push(next);
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

/// The comparison prefixes of date, number and quantity values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// The prefix of `value` (`eq` when it has none) and the rest.
pub(crate) fn prefix(value: &str) -> (Prefix, &str) {
    let found = match value.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, value),
    };
    (found, &value[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_percent_decoding() {
        let got: Vec<_> =
            pairs("code=http%3A%2F%2Floinc.org%7C8867-4&&date=ge2019-01-01T00:00:00+01:00&x=")
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(
            got,
            [
                Pair {
                    name: "code".into(),
                    value: "http://loinc.org|8867-4".into()
                },
                Pair {
                    name: "date".into(),
                    value: "ge2019-01-01T00:00:00+01:00".into()
                },
                Pair {
                    name: "x".into(),
                    value: "".into()
                },
            ]
        );
        assert_eq!(percent_decode("%C3%A9a%2c").unwrap(), "éa,");
        for bad in ["%", "%4", "%zz", "%+1", "%FF"] {
            assert_eq!(percent_decode(bad).unwrap_err().code, "invalid", "{bad}");
        }
        assert!(pairs("code").next().unwrap().is_err());
        assert_eq!(pairs("").count(), 0);
    }

    #[test]
    fn names() {
        assert_eq!(
            name("code"),
            Name {
                code: "code",
                modifier: None,
                chain: None
            }
        );
        assert_eq!(
            name("code:text"),
            Name {
                code: "code",
                modifier: Some("text"),
                chain: None
            }
        );
        assert_eq!(
            name("subject:Patient.name:exact"),
            Name {
                code: "subject",
                modifier: Some("Patient"),
                chain: Some("name:exact")
            }
        );
        assert_eq!(
            name("subject.gender"),
            Name {
                code: "subject",
                modifier: None,
                chain: Some("gender")
            }
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(split_unescaped(r"a,b\,c,,d", ','), ["a", r"b\,c", "", "d"]);
        assert_eq!(split_unescaped(r"a\\,b", ','), [r"a\\", "b"]);
        assert_eq!(split_unescaped("", ','), [""]);
        assert_eq!(split_unescaped(r"s\|x|c", '|'), [r"s\|x", "c"]);
        assert_eq!(unescape(r"b\,c\|d\$e\\f\g\"), r"b,c|d$e\f\g\");
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("ge2019"), (Prefix::Ge, "2019"));
        assert_eq!(prefix("2019"), (Prefix::Eq, "2019"));
        assert_eq!(prefix("ap-5"), (Prefix::Ap, "-5"));
        assert_eq!(prefix("x"), (Prefix::Eq, "x"));
        assert_eq!(prefix("é1"), (Prefix::Eq, "é1"));
        for (text, p) in [
            ("eq", Prefix::Eq),
            ("ne", Prefix::Ne),
            ("gt", Prefix::Gt),
            ("lt", Prefix::Lt),
            ("ge", Prefix::Ge),
            ("le", Prefix::Le),
            ("sa", Prefix::Sa),
            ("eb", Prefix::Eb),
            ("ap", Prefix::Ap),
        ] {
            assert_eq!(prefix(&format!("{text}1")), (p, "1"));
        }
    }
}
