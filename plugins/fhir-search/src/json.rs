//! A lazy, zero-copy view of JSON: the members of an object and the items of
//! an array as raw byte slices, found by scanning, with everything the
//! caller does not ask for skipped without being built.
//!
//! Skipping checks what it passes over only as far as the structure goes
//! (string quotes, matching brackets, separators between members), nesting
//! at most [`MAX_DEPTH`] deep; scalar values are delimited, not validated.
//! Lines are delimited with `memchr` (16-32 bytes at a time: SSE2/AVX2
//! natively, `simd128` in the wasm build); strings eight bytes at a time
//! with plain `u64` arithmetic, which beats a `memchr2` call on the short
//! strings of FHIR JSON. Few loop iterations matter doubly in the plugin,
//! where each also pays for an epoch-deadline check.

use std::borrow::Cow;

pub(crate) type Scan<T> = Result<T, String>;

/// Deepest nesting of objects and arrays a value may have.
pub(crate) const MAX_DEPTH: u32 = 128;

/// The index of the first `\n` at or after `i`.
pub(crate) fn newline(bytes: &[u8], i: usize) -> Option<usize> {
    memchr::memchr(b'\n', bytes.get(i..)?).map(|n| i + n)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask whose lowest set bit marks the first byte of `chunk` equal to `b`
/// (little-endian byte order; bits above it may be spurious).
#[inline]
fn find_byte(chunk: u64, b: u8) -> u64 {
    let x = chunk ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline]
fn word(json: &[u8], i: usize) -> Option<u64> {
    let bytes: [u8; 8] = json.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Whether the raw string content `raw` holds an escape (a `\\`).
pub(crate) fn has_escape(raw: &[u8]) -> bool {
    let mut words = raw.chunks_exact(8);
    words.by_ref().any(|w| {
        w.try_into()
            .is_ok_and(|w| find_byte(u64::from_le_bytes(w), b'\\') != 0)
    }) || words.remainder().contains(&b'\\')
}

/// Why a scan failed. The scanning loops return this (no allocation, no
/// call) and the message is built outside them: in the plugin, a call in a
/// loop makes Cranelift keep the loop's variables on the stack.
#[derive(Clone, Copy)]
enum Broken {
    String,
    Container,
    TooDeep,
    Unexpected(usize),
}

impl Broken {
    #[cold]
    #[inline(never)]
    fn describe(self, json: &[u8]) -> String {
        match self {
            Broken::String => "unterminated string".into(),
            Broken::Container => "unterminated object or array".into(),
            Broken::TooDeep => format!("JSON nested deeper than {MAX_DEPTH} levels"),
            Broken::Unexpected(i) => unexpected(json, i),
        }
    }
}

/// The index of the quote closing the string whose content starts at `i`.
fn string_end(json: &[u8], mut i: usize) -> Result<usize, Broken> {
    loop {
        while let Some(chunk) = word(json, i) {
            let hits = find_byte(chunk, b'"') | find_byte(chunk, b'\\');
            if hits != 0 {
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match json.get(i) {
            Some(b'"') => return Ok(i),
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
            None => return Err(Broken::String),
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = json.get(i) {
        i += 1;
    }
    i
}

#[cold]
#[inline(never)]
fn unexpected(json: &[u8], i: usize) -> String {
    match json.get(i) {
        Some(b) if b.is_ascii_graphic() => format!("unexpected '{}' at byte {i}", char::from(*b)),
        Some(b) => format!("unexpected byte 0x{b:02x} at byte {i}"),
        None => "unexpected end of JSON".into(),
    }
}

/// The index just past the value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Scan<usize> {
    match json.get(i) {
        Some(b'"') => string_end(json, i + 1)
            .map(|end| end + 1)
            .map_err(|b| b.describe(json)),
        Some(b'{' | b'[') => container_end(json, i).map_err(|b| b.describe(json)),
        Some(b',' | b'}' | b']' | b':') | None => Err(unexpected(json, i)),
        Some(_) => Ok(json[i..]
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(json.len(), |n| i + n)),
    }
}

/// The index just past the object or array opening at `i`. The open
/// brackets are a stack of bits (1 = object), so mismatched brackets and
/// excessive depth are caught without allocating.
fn container_end(json: &[u8], i: usize) -> Result<usize, Broken> {
    let mut open: u128 = 0;
    let mut depth = 0u32;
    let mut j = i;
    while let Some(&b) = json.get(j) {
        match b {
            b'"' => j = string_end(json, j + 1)?,
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return Err(Broken::TooDeep);
                }
                open = (open << 1) | u128::from(b == b'{');
                depth += 1;
            }
            b'}' | b']' => {
                if (b == b'}') != (open & 1 == 1) {
                    return Err(Broken::Unexpected(j));
                }
                open >>= 1;
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(Broken::Container)
}

/// Calls `visit(key, value)` for each member of the object `json`, in order,
/// until it returns `false`. `key` is the raw text between the quotes
/// (escapes not decoded, see [`raw_eq`]); `value` the raw value.
pub(crate) fn members<'a>(
    json: &'a [u8],
    mut visit: impl FnMut(&'a [u8], &'a [u8]) -> Scan<bool>,
) -> Scan<()> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return Err(format!("expected a JSON object, {}", unexpected(json, i)));
    }
    i = skip_ws(json, i + 1);
    if json.get(i) == Some(&b'}') {
        return Ok(());
    }
    loop {
        if json.get(i) != Some(&b'"') {
            return Err(unexpected(json, i));
        }
        let key_end = string_end(json, i + 1).map_err(|b| b.describe(json))?;
        let key = &json[i + 1..key_end];
        i = skip_ws(json, key_end + 1);
        if json.get(i) != Some(&b':') {
            return Err(unexpected(json, i));
        }
        i = skip_ws(json, i + 1);
        let end = value_end(json, i)?;
        if !visit(key, &json[i..end])? {
            return Ok(());
        }
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b'}') => return Ok(()),
            _ => return Err(unexpected(json, i)),
        }
    }
}

/// Calls `visit(item)` for each item of the array `json` until it returns
/// `false`.
pub(crate) fn items<'a>(json: &'a [u8], mut visit: impl FnMut(&'a [u8]) -> Scan<bool>) -> Scan<()> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'[') {
        return Err(format!("expected a JSON array, {}", unexpected(json, i)));
    }
    i = skip_ws(json, i + 1);
    if json.get(i) == Some(&b']') {
        return Ok(());
    }
    loop {
        let end = value_end(json, i)?;
        if !visit(&json[i..end])? {
            return Ok(());
        }
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b']') => return Ok(()),
            _ => return Err(unexpected(json, i)),
        }
    }
}

/// The first member of `object` named `key`; `None` when it has none or is
/// not an object.
pub(crate) fn member<'a>(object: &'a [u8], key: &str) -> Scan<Option<&'a [u8]>> {
    if object.first() != Some(&b'{') {
        return Ok(None);
    }
    let mut found = None;
    members(object, |k, v| {
        if raw_eq(k, key) {
            found = Some(v);
        }
        Ok(found.is_none())
    })?;
    Ok(found)
}

/// Whether `test` holds for `value`, or for one of its items when it is an
/// array (FHIR JSON spells repeating elements as arrays), stopping at the
/// first that does.
pub(crate) fn any<'a>(value: &'a [u8], mut test: impl FnMut(&'a [u8]) -> Scan<bool>) -> Scan<bool> {
    if value.first() != Some(&b'[') {
        return test(value);
    }
    let mut found = false;
    items(value, |item| {
        found = test(item)?;
        Ok(!found)
    })?;
    Ok(found)
}

/// The raw content of a string value, `None` for any other value.
pub(crate) fn string_content(value: &[u8]) -> Option<&[u8]> {
    value.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// Whether the raw string content `raw` (as found between quotes) means
/// `expected`, decoding JSON escapes only when there are any. Decoding
/// never lengthens, so a `raw` no longer than `expected` matches only as
/// the same bytes without escapes: most mismatches cost a length check.
pub(crate) fn raw_eq(raw: &[u8], expected: &str) -> bool {
    if raw.len() <= expected.len() {
        raw == expected.as_bytes() && !has_escape(raw)
    } else {
        has_escape(raw) && decode(raw).is_some_and(|s| s == expected)
    }
}

/// The text of raw string content; `None` when it is not valid UTF-8 or
/// has an invalid escape.
pub(crate) fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    if !has_escape(raw) {
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let escaped = match raw.get(i + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(raw.get(i + 2..i + 6)?)?;
                i += 6;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if raw.get(i..i + 2)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(raw.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    i += 6;
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                let c = char::from_u32(code)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(escaped as u8);
        i += 2;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &str) -> Scan<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(json.as_bytes(), |k, v| {
            out.push((
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            ));
            Ok(true)
        })?;
        Ok(out)
    }

    #[test]
    fn walks_members_and_skips_values() {
        let json = r#" { "a" : "x\"y\\" , "b":[1,{"c":"]}"}],"long":"0123456789abcdefghij\"klmnop","n":-1.5e3,"t":true } "#;
        let got = keys(json).unwrap();
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "b", "long", "n", "t"]);
        assert_eq!(got[0].1, r#""x\"y\\""#);
        assert_eq!(got[1].1, r#"[1,{"c":"]}"}]"#);
        assert_eq!(got[2].1, r#""0123456789abcdefghij\"klmnop""#);
        assert_eq!(got[3].1, "-1.5e3");
        assert_eq!(keys("{}").unwrap(), vec![]);
        // Bytes the bracket scan flags but skips (scalars are not validated).
        let odd = keys(r#"{"a":[yY_,{"b":"}]"},12345678901234567890],"c":1}"#).unwrap();
        assert_eq!(odd[0].1, r#"[yY_,{"b":"}]"},12345678901234567890]"#);
        assert_eq!(odd[1].0, "c");
        for bad in [
            "",
            "[]",
            "{\"a\"}",
            "{\"a\":1",
            "{\"a\":\"x}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":[1,2}",
            "{\"a\":[1,2}]}",
            "{\"a\":{\"b\":1]}",
            "{\"a\":}",
            "{\"a\":,}",
        ] {
            assert!(keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caps_nesting_depth() {
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(128), "]".repeat(128));
        assert!(keys(&ok).is_ok());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(129), "]".repeat(129));
        assert!(keys(&deep).unwrap_err().contains("deeper than 128"));
        let unterminated = format!("{{\"a\":{}", "[".repeat(100_000));
        assert!(keys(&unterminated).is_err());
    }

    #[test]
    fn items_members_and_strings() {
        let mut seen = Vec::new();
        items(br#"[ "a", {"b":[]} ,3]"#, |v| {
            seen.push(v.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![b"\"a\"".to_vec(), b"{\"b\":[]}".to_vec(), b"3".to_vec()]
        );
        assert_eq!(
            member(br#"{"a":1,"b":2,"b":3}"#, "b").unwrap(),
            Some(&b"2"[..])
        );
        assert_eq!(member(br#"{"a":1}"#, "b").unwrap(), None);
        assert_eq!(member(b"[1]", "b").unwrap(), None);
        assert!(any(b"[1,2,3]", |v| Ok(v == b"2")).unwrap());
        assert!(!any(b"[]", |_| Ok(true)).unwrap());
        assert!(any(b"7", |v| Ok(v == b"7")).unwrap());
        assert!(raw_eq(b"final", "final"));
        // Same bytes, but the raw text has an escape: it means `a\b`.
        assert!(!raw_eq(br"a\\b", r"a\\b"));
        assert!(raw_eq(br"a\\b", r"a\b"));
        assert!(!raw_eq(b"fina", "final"));
        for len in 0..20 {
            let plain = vec![b'x'; len];
            assert!(!has_escape(&plain), "{len}");
            for at in 0..len {
                let mut escaped = plain.clone();
                escaped[at] = b'\\';
                assert!(has_escape(&escaped), "{len} {at}");
            }
        }
        assert!(raw_eq(br"fin\u0061l", "final"));
        assert!(!raw_eq(b"finals", "final"));
        assert_eq!(
            decode(br#"a\"b\\c\/\n\u00e9\ud83d\ude00"#).as_deref(),
            Some("a\"b\\c/\né😀")
        );
        for bad in [
            &br"\x"[..],
            br"\u12",
            br"\ud83d",
            br"\ud83dx",
            br"\",
            b"\xff",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(string_content(b"\"x\""), Some(&b"x"[..]));
        assert_eq!(string_content(b"3"), None);
        assert_eq!(newline(b"0123456789\nab\n", 0), Some(10));
        assert_eq!(newline(b"0123456789\nab\n", 11), Some(13));
        assert_eq!(newline(b"ab", 0), None);
        assert_eq!(newline(b"ab", 5), None);
    }
}
