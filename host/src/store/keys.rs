//! Key encoding for the single sled tree (the layout is documented in
//! [`super::sled`]). Type names, ids and patient ids never contain a 0x00
//! byte, so 0x00 separates them and keeps byte order equal to (name, id)
//! order: `a\0` sorts before `a-\0` just as `a` sorts before `a-`.

use crate::fhir::{Instant, ResourceId, ResourceType};

pub const VERSION: u8 = b'R';
pub const CURRENT: u8 = b'C';
pub const LOG: u8 = b'L';
pub const TYPE_LOG: u8 = b'T';
pub const MEMBER: u8 = b'P';
pub const META: &[u8] = b"M";
pub const IMPORT_PROGRESS: u8 = b'I';
pub const IMPORT_REJECTED: u8 = b'E';

const SEP: u8 = 0x00;

/// Big-endian with the sign bit flipped: byte order equals numeric order.
pub fn ts_bytes(t: Instant) -> [u8; 8] {
    ((t.as_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn ts_from_bytes(b: [u8; 8]) -> Instant {
    Instant::from_millis((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// `tag type \0`: every key of one type under `R` or `T`.
pub fn type_prefix(tag: u8, rtype: ResourceType) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + rtype.as_str().len());
    k.push(tag);
    k.extend_from_slice(rtype.as_str().as_bytes());
    k.push(SEP);
    k
}

/// `R type \0 id \0`: every version of one resource.
pub fn resource_prefix(rtype: ResourceType, id: &ResourceId) -> Vec<u8> {
    let mut k = type_prefix(VERSION, rtype);
    k.extend_from_slice(id.as_str().as_bytes());
    k.push(SEP);
    k
}

/// `R type \0 id \0 version`.
pub fn version_key(rtype: ResourceType, id: &ResourceId, version: u64) -> Vec<u8> {
    let mut k = resource_prefix(rtype, id);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The first key of a type after every version of `id`: `\x01` sorts below
/// any id byte, so `R type \0 id \x01` lies between `id`'s keys and the next id's.
pub fn after_resource(rtype: ResourceType, id: &ResourceId) -> Vec<u8> {
    let mut k = type_prefix(VERSION, rtype);
    k.extend_from_slice(id.as_str().as_bytes());
    k.push(SEP + 1);
    k
}

/// `C type \0 id`.
pub fn current_key(rtype: ResourceType, id: &ResourceId) -> Vec<u8> {
    let mut k = type_prefix(CURRENT, rtype);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// `L ts seq`.
pub fn log_key(ts: Instant, seq: u64) -> Vec<u8> {
    let mut k = vec![LOG];
    push_ts_seq(&mut k, ts, seq);
    k
}

/// `T type \0 ts seq`.
pub fn type_log_key(rtype: ResourceType, ts: Instant, seq: u64) -> Vec<u8> {
    let mut k = type_prefix(TYPE_LOG, rtype);
    push_ts_seq(&mut k, ts, seq);
    k
}

/// A key above every log entry (`prefix ts seq`) at `ts` and below those after
/// it: sequence numbers start at 1 and never reach `u64::MAX`.
pub fn log_bound(prefix: &[u8], ts: Instant) -> Vec<u8> {
    let mut k = prefix.to_vec();
    push_ts_seq(&mut k, ts, u64::MAX);
    k
}

/// Length of the `ts seq` suffix of a log key.
pub const LOG_SUFFIX: usize = 16;

fn push_ts_seq(k: &mut Vec<u8>, ts: Instant, seq: u64) {
    k.extend_from_slice(&ts_bytes(ts));
    k.extend_from_slice(&seq.to_be_bytes());
}

/// `P patient \0`: the compartment of one patient.
pub fn member_prefix(patient: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + patient.len());
    k.push(MEMBER);
    k.extend_from_slice(patient.as_bytes());
    k.push(SEP);
    k
}

/// `P patient \0 type \0 id \0 version`.
pub fn member_key(patient: &str, rtype: ResourceType, id: &ResourceId, version: u64) -> Vec<u8> {
    let mut k = member_prefix(patient);
    k.extend_from_slice(rtype.as_str().as_bytes());
    k.push(SEP);
    k.extend_from_slice(id.as_str().as_bytes());
    k.push(SEP);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// `tag session`: everything one import keeps under `I` or `E`.
pub fn session_prefix(tag: u8, session: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(tag);
    k.extend_from_slice(&session.to_be_bytes());
    k
}

/// `I session part`.
pub fn progress_key(session: u64, part: u32) -> Vec<u8> {
    let mut k = session_prefix(IMPORT_PROGRESS, session);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// `E session input line`: in input, then line order.
pub fn rejected_key(session: u64, input: u32, line: u64) -> Vec<u8> {
    let mut k = session_prefix(IMPORT_REJECTED, session);
    k.extend_from_slice(&input.to_be_bytes());
    k.extend_from_slice(&line.to_be_bytes());
    k
}

/// The `(input, line)` of an `E` key.
pub fn parse_rejected_key(key: &[u8]) -> Option<(u32, u64)> {
    let tail = key.get(9..)?;
    let (input, line) = tail.split_at_checked(4)?;
    Some((
        u32::from_be_bytes(input.try_into().ok()?),
        u64::from_be_bytes(line.try_into().ok()?),
    ))
}

/// The part of an `I` key.
pub fn parse_progress_key(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(9..)?.try_into().ok()?))
}

/// The smallest key above every key starting with `prefix` (whose last byte
/// is never 0xff: prefixes end in a tag letter or a separator).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    if let Some(last) = k.last_mut() {
        *last += 1;
    }
    k
}

/// Splits `... version` into the resource part and the version, for keys
/// that end in a version (`R` and `P` keys).
pub fn split_version(key: &[u8]) -> Option<(&[u8], u64)> {
    let at = key.len().checked_sub(8)?;
    let (head, v) = key.split_at(at);
    Some((head, u64::from_be_bytes(v.try_into().ok()?)))
}

/// Parses `type \0 id \0 version`, the tail of `R` and `P` keys.
pub fn parse_resource_version(tail: &[u8]) -> Option<(ResourceType, ResourceId, u64)> {
    let (head, version) = split_version(tail)?;
    let head = head.strip_suffix(&[SEP])?;
    let at = head.iter().position(|&b| b == SEP)?;
    let rtype = ResourceType::parse(std::str::from_utf8(&head[..at]).ok()?)?;
    let id = ResourceId::parse(std::str::from_utf8(&head[at + 1..]).ok()?)?;
    Some((rtype, id, version))
}

/// Parses a full `R` key.
pub fn parse_version_key(key: &[u8]) -> Option<(ResourceType, ResourceId, u64)> {
    parse_resource_version(key.strip_prefix(&[VERSION])?)
}

/// A key made printable for error messages.
pub fn display(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// History cursors are the hex of the last key returned.
pub fn to_hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn timestamps_sort_like_numbers() {
        let ts =
            [i64::MIN, -1_000, -1, 0, 1, 1_700_000_000_000, i64::MAX].map(Instant::from_millis);
        for pair in ts.windows(2) {
            assert!(ts_bytes(pair[0]) < ts_bytes(pair[1]), "{pair:?}");
        }
        for t in ts {
            assert_eq!(ts_from_bytes(ts_bytes(t)), t);
        }
    }

    #[test]
    fn ids_sort_like_strings_inside_keys() {
        let t = ResourceType::parse("Patient").unwrap();
        let keys: Vec<_> = ["a", "a-", "a.b", "aa", "b"]
            .iter()
            .map(|s| version_key(t, &id(s), 7))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // Every version of "a" lies before the resume point, "a-" after it.
        let resume = after_resource(t, &id("a"));
        assert!(version_key(t, &id("a"), u64::MAX) < resume && resume < keys[1]);
    }

    #[test]
    fn round_trips() {
        let t = ResourceType::parse("Observation").unwrap();
        let k = version_key(t, &id("o-1"), 258);
        assert_eq!(parse_version_key(&k), Some((t, id("o-1"), 258)));
        let m = member_key("p1", t, &id("o-1"), 3);
        assert_eq!(
            parse_resource_version(&m[member_prefix("p1").len()..]),
            Some((t, id("o-1"), 3))
        );
        assert_eq!(parse_version_key(b"Rx"), None);
        assert_eq!(from_hex(&to_hex(&k)), Some(k));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("+1"), None);
    }

    #[test]
    fn log_bounds_enclose_one_instant() {
        let t = Instant::from_millis(5);
        let p = type_prefix(TYPE_LOG, ResourceType::parse("Patient").unwrap());
        let rtype = ResourceType::parse("Patient").unwrap();
        assert!(log_bound(&p, Instant::from_millis(4)) < type_log_key(rtype, t, 1));
        assert!(type_log_key(rtype, t, 99) < log_bound(&p, t));
        assert!(log_bound(&[LOG], t) < log_key(Instant::from_millis(6), 1));
        assert!(prefix_end(&p).starts_with(b"TPatient\x01"));
    }

    #[test]
    fn import_keys() {
        let k = rejected_key(7, 2, 300);
        assert!(k.starts_with(&session_prefix(IMPORT_REJECTED, 7)));
        assert_eq!(parse_rejected_key(&k), Some((2, 300)));
        assert!(rejected_key(7, 1, u64::MAX) < rejected_key(7, 2, 1));
        assert!(rejected_key(7, 2, 9) < rejected_key(7, 2, 10));
        let p = progress_key(7, 3);
        assert!(p.starts_with(&session_prefix(IMPORT_PROGRESS, 7)));
        assert_eq!(parse_progress_key(&p), Some(3));
        assert_eq!(parse_progress_key(b"I1"), None);
    }
}
