//! The schema's `pattern`s for the R4 primitives, as hand-written checkers
//! (build.rs pins the exact patterns they implement). No regex engine: each
//! pattern is a few byte comparisons, these run on every primitive of every
//! imported resource, and the component stays free of a regex crate.
//!
//! Beyond the patterns, two rules of the R4 spec the patterns leave out:
//! dates must exist in the calendar ("Dates SHALL be valid dates", as the
//! schema's own descriptions say), and the 32-bit bounds of integer,
//! positiveInt and unsignedInt. Empty strings are refused for every type:
//! R4 JSON never has empty values, even where a pattern would allow one.

use crate::schema::Primitive;

/// Why a string is not a valid value of its primitive type (for the
/// diagnostics).
pub(crate) fn string_rule(p: Primitive) -> &'static str {
    match p {
        Primitive::Base64Binary => "groups of four base64 characters",
        Primitive::Canonical | Primitive::Uri | Primitive::Url => {
            "no whitespace, at least one character"
        }
        Primitive::Code => "no leading, trailing or repeated whitespace, at least one character",
        Primitive::Date => "YYYY, YYYY-MM or YYYY-MM-DD, an existing date",
        Primitive::DateTime => {
            "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm), an existing date"
        }
        Primitive::Id => "[A-Za-z0-9-.]{1,64}",
        Primitive::Instant => {
            "YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm), an existing date"
        }
        Primitive::Markdown | Primitive::String => {
            "at least one character, no whitespace other than space, tab, CR and LF"
        }
        Primitive::Xhtml => "at least one character",
        Primitive::Oid => "urn:oid:<digits and dots>",
        Primitive::Time => "hh:mm:ss[.fff]",
        Primitive::Uuid => "urn:uuid:<lowercase 8-4-4-4-12 hex digits>",
        Primitive::Boolean
        | Primitive::Decimal
        | Primitive::Integer
        | Primitive::PositiveInt
        | Primitive::UnsignedInt => "a JSON number or boolean, not a string",
    }
}

/// Whether `s` is a valid value of the string-valued primitive `p`.
pub(crate) fn check_string(p: Primitive, s: &str) -> bool {
    let b = s.as_bytes();
    match p {
        Primitive::Base64Binary => base64(b),
        Primitive::Canonical | Primitive::Uri | Primitive::Url => {
            !s.is_empty() && !has_space(s, false)
        }
        Primitive::Code => code(s),
        Primitive::Date => date(b).is_some_and(|rest| rest.is_empty()),
        Primitive::DateTime => date_time(b),
        Primitive::Id => id(s),
        Primitive::Instant => instant(b),
        Primitive::Markdown | Primitive::String => !s.is_empty() && !has_space(s, true),
        // Narrative.div: its XHTML is the narrative's business; the schema
        // only says it is a string.
        Primitive::Xhtml => !s.is_empty(),
        Primitive::Oid => oid(b),
        Primitive::Time => time(b).is_some_and(|rest| rest.is_empty()),
        Primitive::Uuid => uuid(b),
        Primitive::Boolean
        | Primitive::Decimal
        | Primitive::Integer
        | Primitive::PositiveInt
        | Primitive::UnsignedInt => false,
    }
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub(crate) fn id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The range of an integer-valued primitive (R4 integers are 32-bit).
pub(crate) fn integer_range(p: Primitive) -> (i64, i64) {
    let max = i64::from(i32::MAX);
    match p {
        Primitive::PositiveInt => (1, max),
        Primitive::UnsignedInt => (0, max),
        _ => (i64::from(i32::MIN), max),
    }
}

/// JavaScript's `\s`, which the schema's patterns are written in.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// Whether `s` has whitespace (`\s`), other than space, tab, CR and LF when
/// `layout` allows them. ASCII strings (nearly all) are checked without
/// decoding and without an early exit, which lets the loop vectorise.
fn has_space(s: &str, layout: bool) -> bool {
    let is_layout = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    if s.is_ascii() {
        s.bytes().fold(false, |found, b| {
            found | matches!(b, 0x0B | 0x0C) | (!layout & is_layout(char::from(b)))
        })
    } else {
        s.chars().any(|c| is_space(c) && !(layout && is_layout(c)))
    }
}

/// `[^\s]+(\s[^\s]+)*`: tokens separated by single whitespace characters.
fn code(s: &str) -> bool {
    if s.is_ascii() {
        let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        let b = s.as_bytes();
        return b.first().is_some_and(|c| !space(c))
            && b.last().is_some_and(|c| !space(c))
            && !b.windows(2).any(|w| space(&w[0]) && space(&w[1]));
    }
    let mut previous_space = true;
    for c in s.chars() {
        let space = is_space(c);
        if space && previous_space {
            return false;
        }
        previous_space = space;
    }
    !previous_space
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: whitespace only between groups of four.
fn base64(b: &[u8]) -> bool {
    let mut run = 0usize;
    let mut groups = 0usize;
    for &c in b {
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
            run += 1;
        } else if c.is_ascii() && is_space(char::from(c)) {
            if !run.is_multiple_of(4) {
                return false;
            }
            groups += run / 4;
            run = 0;
        } else {
            return false;
        }
    }
    run.is_multiple_of(4) && groups + run / 4 > 0
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn oid(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"urn:oid:") else {
        return false;
    };
    let Some((first, mut rest)) = rest.split_first() else {
        return false;
    };
    if !(b'0'..=b'2').contains(first) || rest.is_empty() {
        return false;
    }
    while let Some(after_dot) = rest.strip_prefix(b".") {
        let digits = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && after_dot[0] == b'0') {
            return false;
        }
        rest = &after_dot[digits..];
    }
    rest.is_empty()
}

/// `urn:uuid:` and lowercase 8-4-4-4-12 hex digits.
fn uuid(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// `n` ASCII digits at the start of `b`, as a number.
fn digits(b: &[u8], n: usize) -> Option<u32> {
    let d = b.get(..n)?;
    d.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY(-MM(-DD)?)?` with an existing date; returns what follows it and
/// whether the day was given.
fn partial_date(b: &[u8]) -> Option<(&[u8], bool)> {
    let year = digits(b, 4)?;
    if year == 0 {
        return None;
    }
    let Some(rest) = b[4..].strip_prefix(b"-") else {
        return Some((&b[4..], false));
    };
    let month = digits(rest, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(rest) = rest[2..].strip_prefix(b"-") else {
        return Some((&rest[2..], false));
    };
    let day = digits(rest, 2)?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((&rest[2..], true))
}

/// A date (no time) followed by whatever remains.
fn date(b: &[u8]) -> Option<&[u8]> {
    partial_date(b).map(|(rest, _)| rest)
}

/// `hh:mm:ss(.f+)?`, returning what follows.
fn time(b: &[u8]) -> Option<&[u8]> {
    let hour = digits(b, 2)?;
    let minute = digits(b.get(3..)?, 2)?;
    let second = digits(b.get(6..)?, 2)?;
    if b[2] != b':' || b[5] != b':' || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let rest = &b[8..];
    match rest.strip_prefix(b".") {
        Some(fraction) => {
            let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            (n > 0).then(|| &fraction[n..])
        }
        None => Some(rest),
    }
}

/// `Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)`, the whole remainder.
fn zone(b: &[u8]) -> bool {
    match b {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let (Some(hour), Some(minute)) = (digits(&[*h1, *h2], 2), digits(&[*m1, *m2], 2))
            else {
                return false;
            };
            (hour <= 13 && minute <= 59) || (hour == 14 && minute == 0)
        }
        _ => false,
    }
}

fn date_time(b: &[u8]) -> bool {
    match partial_date(b) {
        Some(([], _)) => true,
        Some((rest, true)) => rest.strip_prefix(b"T").and_then(time).is_some_and(zone),
        _ => false,
    }
}

fn instant(b: &[u8]) -> bool {
    matches!(partial_date(b), Some((rest, true)) if rest
        .strip_prefix(b"T")
        .and_then(time)
        .is_some_and(zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in ["2024", "2024-02", "2024-02-29", "2000-02-29", "0001-01-01"] {
            assert!(check_string(Primitive::Date, ok), "{ok}");
        }
        for bad in [
            "",
            "0000",
            "24",
            "2024-2",
            "2024-13",
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-01-01T00:00:00Z",
            "2024-01-1",
            "2024-01-01 ",
            "２０２４",
        ] {
            assert!(!check_string(Primitive::Date, bad), "{bad}");
        }
    }

    #[test]
    fn date_times_and_instants() {
        for ok in [
            "2024",
            "2024-05",
            "2024-05-01",
            "2024-05-01T12:30:00Z",
            "2024-05-01T23:59:60.123456+14:00",
            "2024-05-01T00:00:00-13:59",
        ] {
            assert!(check_string(Primitive::DateTime, ok), "{ok}");
        }
        for bad in [
            "2024-05-01T12:30Z",
            "2024-05-01T12:30:00",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:30:00+14:30",
            "2024-05-01T12:30:00.Z",
            "2024-05T12:30:00Z",
            "2024-05-01T12:30:00+0100",
            "2024-05-01T12:30:00z",
        ] {
            assert!(!check_string(Primitive::DateTime, bad), "{bad}");
        }
        assert!(check_string(
            Primitive::Instant,
            "2024-05-01T12:30:00.5+01:00"
        ));
        for bad in [
            "2024-05-01",
            "2024",
            "2024-05-01T12:30:00",
            "2024-02-30T00:00:00Z",
        ] {
            assert!(!check_string(Primitive::Instant, bad), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert!(check_string(Primitive::Time, "00:00:00"));
        assert!(check_string(Primitive::Time, "23:59:60.25"));
        for bad in [
            "24:00:00",
            "12:60:00",
            "12:00",
            "12:00:00Z",
            "12:00:00.",
            "1:00:00",
        ] {
            assert!(!check_string(Primitive::Time, bad), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(id("a-B.9"));
        assert!(id(&"x".repeat(64)));
        for bad in ["", "a b", "a_b", "é", &"x".repeat(65)] {
            assert!(!id(bad), "{bad}");
        }
        assert!(check_string(Primitive::Oid, "urn:oid:2.16.840.1.113883"));
        for bad in [
            "urn:oid:3.1",
            "urn:oid:1",
            "urn:oid:1.02",
            "urn:oid:1.",
            "oid:1.2",
        ] {
            assert!(!check_string(Primitive::Oid, bad), "{bad}");
        }
        assert!(check_string(
            Primitive::Uuid,
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"
        ));
        for bad in [
            "c757873d-ec9a-4326-a141-556f43239520",
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
            "urn:uuid:c757873d-ec9a-4326-a141-556f4323952",
            "urn:uuid:c757873dxec9a-4326-a141-556f43239520",
        ] {
            assert!(!check_string(Primitive::Uuid, bad), "{bad}");
        }
    }

    #[test]
    fn codes_uris_strings() {
        for ok in ["final", "a b c", "8302-2"] {
            assert!(check_string(Primitive::Code, ok), "{ok}");
        }
        for bad in ["", " a", "a ", "a  b", "a\u{A0}\u{A0}b"] {
            assert!(!check_string(Primitive::Code, bad), "{bad}");
        }
        assert!(check_string(Primitive::Uri, "http://loinc.org"));
        for bad in ["", "http://x y", "a\tb", "a\u{3000}b"] {
            assert!(!check_string(Primitive::Uri, bad), "{bad}");
        }
        assert!(check_string(Primitive::String, " line one\r\n\tline two "));
        for bad in ["", "form\u{0C}feed", "no\u{A0}break"] {
            assert!(!check_string(Primitive::String, bad), "{bad}");
        }
    }

    #[test]
    fn base64_groups() {
        for ok in ["AAAA", "QUJD RA==", " AAAA\nBBBB ", "YQ=="] {
            assert!(check_string(Primitive::Base64Binary, ok), "{ok}");
        }
        for bad in ["", "   ", "AAA", "AA AA", "AAAA*AAA", "AAAAé"] {
            assert!(!check_string(Primitive::Base64Binary, bad), "{bad}");
        }
    }
}
