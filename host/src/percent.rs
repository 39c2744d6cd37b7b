//! Percent-encoding of URL paths (file and blob URLs). Strict on purpose:
//! what is decoded becomes a file path or a blob name, so a malformed
//! escape is refused rather than passed through.

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not
/// UTF-8 or holds a NUL.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('\0'))
}

/// Everything but RFC 3986 unreserved characters escaped: a query value.
pub fn encode_component(value: &str) -> String {
    encode_except(value, b"")
}

/// Everything but unreserved characters and `/` (which separates path
/// segments, or a blob's virtual folders) escaped.
pub fn encode_path(path: &str) -> String {
    encode_except(path, b"/")
}

fn encode_except(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_escapes() {
        let name = "a b/ü%?#.ndjson";
        assert_eq!(encode_path(name), "a%20b/%C3%BC%25%3F%23.ndjson");
        assert_eq!(decode(&encode_path(name)).as_deref(), Some(name));
        assert_eq!(encode_component("a/b c"), "a%2Fb%20c");
        for bad in ["%", "%4", "%zz", "%00", "%C3"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
