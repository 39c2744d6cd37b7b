//! Just enough JSON to evaluate a filter: walks the members of an object and
//! the items of an array as raw byte slices, skipping everything else
//! without building it, and stops as soon as the caller has what it needs.
//! It checks the structure it walks (quotes, brackets, separators), not the
//! values it skips: lines come from the server's own store.
//!
//! Strings are skipped eight bytes at a time with explicit `u64` arithmetic
//! (no SIMD, no pointer-width dependence), so the code does the same work
//! natively and as wasm32.

pub(crate) type Scan<T> = Result<T, String>;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask whose lowest set bit marks the first byte of `chunk` equal to `b`
/// (little-endian byte order; bits above it may be spurious).
#[inline]
fn find_byte(chunk: u64, b: u8) -> u64 {
    let x = chunk ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Loads eight bytes at `i` as a little-endian word, if there are eight.
#[inline]
fn word(json: &[u8], i: usize) -> Option<u64> {
    let bytes = json.get(i..i + 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    Some(u64::from_le_bytes(word))
}

/// The index of the first `\n` at or after `i`.
pub(crate) fn newline(bytes: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = word(bytes, i) {
        let hits = find_byte(chunk, b'\n');
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|b| *b == b'\n')
        .map(|n| i + n)
}

/// The index of the quote closing the string whose content starts at `i`.
fn string_end(json: &[u8], mut i: usize) -> Scan<usize> {
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
            None => return Err("unterminated string".into()),
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = json.get(i) {
        i += 1;
    }
    i
}

fn unexpected(json: &[u8], i: usize) -> String {
    match json.get(i) {
        Some(b) => format!("unexpected '{}' at byte {i}", char::from(*b)),
        None => "unexpected end of JSON".into(),
    }
}

/// The index just past the value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Scan<usize> {
    match json.get(i) {
        Some(b'"') => Ok(string_end(json, i + 1)? + 1),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(b) = json.get(j) {
                match b {
                    b'"' => j = string_end(json, j + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("unterminated object or array".into())
        }
        Some(_) => {
            let end = json[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(json.len(), |n| i + n);
            if end == i {
                Err(unexpected(json, i))
            } else {
                Ok(end)
            }
        }
        None => Err(unexpected(json, i)),
    }
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
        let key_end = string_end(json, i + 1)?;
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

/// The raw content of a string value, `None` for any other value.
pub(crate) fn string_content(value: &[u8]) -> Option<&[u8]> {
    value.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// Whether the raw string content `raw` (as found between quotes) means
/// `expected`, decoding JSON escapes when there are any.
pub(crate) fn raw_eq(raw: &[u8], expected: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == expected.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|s| s == expected)
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
        for bad in [
            "",
            "[]",
            "{\"a\"}",
            "{\"a\":1",
            "{\"a\":\"x}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":[1,2}",
        ] {
            assert!(keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn items_and_strings() {
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
        assert!(raw_eq(b"final", "final"));
        assert!(raw_eq(br"fin\u0061l", "final"));
        assert!(!raw_eq(b"finals", "final"));
        assert_eq!(string_content(b"\"x\""), Some(&b"x"[..]));
        assert_eq!(string_content(b"3"), None);
        assert_eq!(newline(b"0123456789\nab\n", 0), Some(10));
        assert_eq!(newline(b"0123456789\nab\n", 11), Some(13));
        assert_eq!(newline(b"ab\n", 0), Some(2));
        assert_eq!(newline(b"ab", 0), None);
        assert_eq!(newline(b"ab", 5), None);
    }
}
