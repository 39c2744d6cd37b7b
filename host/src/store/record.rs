//! Value encoding for the single sled tree (the layout is documented in
//! [`super::sled`]). Every value starts with a format byte so the layout can
//! change later without guessing; decoders return `None` on anything
//! unexpected and callers report it as corrupt.

use super::VersionMeta;
use super::keys::{ts_bytes, ts_from_bytes};
use crate::fhir::Instant;

const FORMAT: u8 = 1;
const DELETED: u8 = 1;

/// Bytes before the body in a version record: format, lastUpdated, flags.
pub const VERSION_HEADER: usize = 10;

/// An `R` value: the header then the stored JSON (empty for a tombstone).
pub fn encode_version(last_updated: Instant, deleted: bool, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(VERSION_HEADER + body.len());
    v.push(FORMAT);
    v.extend_from_slice(&ts_bytes(last_updated));
    v.push(flags(deleted));
    v.extend_from_slice(body);
    v
}

/// The `lastUpdated` and deleted flag of an `R` value; the body follows at
/// [`VERSION_HEADER`].
pub fn decode_version_header(v: &[u8]) -> Option<(Instant, bool)> {
    let header = v.get(..VERSION_HEADER)?;
    if header[0] != FORMAT {
        return None;
    }
    Some((
        ts_from_bytes(header[1..9].try_into().ok()?),
        deleted(header[9])?,
    ))
}

const CURRENT_HEADER: usize = 18;

/// A `C` value: the latest version of a resource and the patients whose
/// compartments it is in, so that a delete can index its tombstone under
/// them without parsing the deleted body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub meta: VersionMeta,
    pub patients: Vec<String>,
}

impl Current {
    /// format, version, lastUpdated, flags, then patient ids separated by 0x00.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(
            CURRENT_HEADER + self.patients.iter().map(|p| p.len() + 1).sum::<usize>(),
        );
        v.push(FORMAT);
        v.extend_from_slice(&self.meta.version.to_be_bytes());
        v.extend_from_slice(&ts_bytes(self.meta.last_updated));
        v.push(flags(self.meta.deleted));
        v.extend_from_slice(self.patients.join("\0").as_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        let (header, patients) = v.split_at_checked(CURRENT_HEADER)?;
        if header[0] != FORMAT {
            return None;
        }
        let meta = VersionMeta {
            version: u64::from_be_bytes(header[1..9].try_into().ok()?),
            last_updated: ts_from_bytes(header[9..17].try_into().ok()?),
            deleted: deleted(header[17])?,
        };
        let patients = match patients {
            [] => Vec::new(),
            list => std::str::from_utf8(list)
                .ok()?
                .split('\0')
                .map(str::to_owned)
                .collect(),
        };
        Some(Current { meta, patients })
    }
}

const META_LEN: usize = 25;

/// The `M` value: the store clock and the counters behind `stats()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// `lastUpdated` of the latest commit.
    pub last_ts: Instant,
    /// Sequence number of the latest version written (1, 2, 3... across the
    /// store), which is also the number of versions.
    pub last_seq: u64,
    /// Resources whose latest version is not a tombstone.
    pub live: u64,
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(META_LEN);
        v.push(FORMAT);
        v.extend_from_slice(&ts_bytes(self.last_ts));
        v.extend_from_slice(&self.last_seq.to_be_bytes());
        v.extend_from_slice(&self.live.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != META_LEN || v[0] != FORMAT {
            return None;
        }
        let word = |i: usize| v[i..i + 8].try_into().ok();
        Some(Meta {
            last_ts: ts_from_bytes(word(1)?),
            last_seq: u64::from_be_bytes(word(9)?),
            live: u64::from_be_bytes(word(17)?),
        })
    }
}

fn flags(deleted: bool) -> u8 {
    if deleted { DELETED } else { 0 }
}

fn deleted(flags: u8) -> Option<bool> {
    match flags {
        0 => Some(false),
        DELETED => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Instant::from_millis(1_700_000_000_123);
        let v = encode_version(t, false, b"{}");
        assert_eq!(decode_version_header(&v), Some((t, false)));
        assert_eq!(&v[VERSION_HEADER..], b"{}");
        assert_eq!(
            decode_version_header(&encode_version(t, true, b"")),
            Some((t, true))
        );
        assert_eq!(decode_version_header(b"\x01short"), None);

        for patients in [
            vec![],
            vec!["a".to_owned()],
            vec!["a".to_owned(), "b-2".to_owned()],
        ] {
            let c = Current {
                meta: VersionMeta {
                    version: 3,
                    last_updated: t,
                    deleted: true,
                },
                patients,
            };
            assert_eq!(Current::decode(&c.encode()), Some(c));
        }
        let m = Meta {
            last_ts: t,
            last_seq: 9,
            live: 4,
        };
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        assert_eq!(Meta::decode(&m.encode()[1..]), None);
    }
}
