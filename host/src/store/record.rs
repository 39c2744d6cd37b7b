//! Value encoding for the single sled tree (the layout is documented in
//! [`super::sled`]). Every value starts with a format byte so the layout can
//! change later without guessing; decoders return `None` on anything
//! unexpected and callers report it as corrupt.

use super::keys::{ts_bytes, ts_from_bytes};
use super::{LineRef, VersionMeta};
use crate::fhir::Instant;

const FORMAT: u8 = 1;
/// An `R` value written by an import: the header carries its [`Origin`].
const FORMAT_IMPORTED: u8 = 2;
const DELETED: u8 = 1;

/// Bytes before the body in a version record: format, lastUpdated, flags.
pub const VERSION_HEADER: usize = 10;

/// The fixed part of an imported version's origin: session, precedence
/// (2 words), input, line, offset, seq, length of the patient list.
const ORIGIN_FIXED: usize = 8 + 16 + 4 + 8 + 8 + 8 + 4;

/// An `R` value: the header then the stored JSON (empty for a tombstone).
pub fn encode_version(last_updated: Instant, deleted: bool, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(VERSION_HEADER + body.len());
    v.push(FORMAT);
    v.extend_from_slice(&ts_bytes(last_updated));
    v.push(flags(deleted));
    v.extend_from_slice(body);
    v
}

/// Which import wrote a version, from which line, and what undoing it
/// needs: when a winning duplicate of the same import replaces it, its log
/// entries (`seq`) and compartment entries (`patients`, which a tombstone's
/// empty body cannot give) are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub session: u64,
    pub precedence: (u64, Instant),
    pub line: LineRef,
    pub seq: u64,
    pub patients: Vec<String>,
}

/// An imported `R` value: the header, the origin, then the body.
pub fn encode_imported(
    last_updated: Instant,
    deleted: bool,
    origin: &Origin,
    body: &[u8],
) -> Vec<u8> {
    let patients = origin.patients.join("\0");
    let mut v = Vec::with_capacity(VERSION_HEADER + ORIGIN_FIXED + patients.len() + body.len());
    v.push(FORMAT_IMPORTED);
    v.extend_from_slice(&ts_bytes(last_updated));
    v.push(flags(deleted));
    v.extend_from_slice(&origin.session.to_be_bytes());
    v.extend_from_slice(&origin.precedence.0.to_be_bytes());
    v.extend_from_slice(&ts_bytes(origin.precedence.1));
    v.extend_from_slice(&origin.line.input.to_be_bytes());
    v.extend_from_slice(&origin.line.line.to_be_bytes());
    v.extend_from_slice(&origin.line.offset.to_be_bytes());
    v.extend_from_slice(&origin.seq.to_be_bytes());
    // Patient lists are the ids of one resource's references: far below 4 GiB.
    v.extend_from_slice(&(patients.len() as u32).to_be_bytes());
    v.extend_from_slice(patients.as_bytes());
    v.extend_from_slice(body);
    v
}

/// A `P` value that says the resource left the patient's compartment at
/// this version (format byte, then its `lastUpdated`).
const FORMAT_LEFT: u8 = 3;

/// What a `P` value says about one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// The version is in the compartment; the value is its `R` record in
    /// format 1 (`lastUpdated`, deleted flag, body offset).
    In(Instant, bool, usize),
    /// The version is not, while the one before it was.
    Left(Instant),
}

/// The `P` value of a version that left a compartment.
pub fn encode_left(last_updated: Instant) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(FORMAT_LEFT);
    v.extend_from_slice(&ts_bytes(last_updated));
    v
}

pub fn decode_member(v: &[u8]) -> Option<Member> {
    match *v.first()? {
        FORMAT_LEFT => Some(Member::Left(ts_from_bytes(v.get(1..9)?.try_into().ok()?))),
        FORMAT => {
            let (ts, deleted, body_at) = decode_version_header(v)?;
            Some(Member::In(ts, deleted, body_at))
        }
        _ => None,
    }
}

/// The `lastUpdated`, deleted flag and body offset of an `R` value.
pub fn decode_version_header(v: &[u8]) -> Option<(Instant, bool, usize)> {
    let header = v.get(..VERSION_HEADER)?;
    let ts = ts_from_bytes(header[1..9].try_into().ok()?);
    let deleted = deleted(header[9])?;
    match header[0] {
        FORMAT => Some((ts, deleted, VERSION_HEADER)),
        FORMAT_IMPORTED => {
            let at = VERSION_HEADER + ORIGIN_FIXED;
            let len = u32::from_be_bytes(v.get(at - 4..at)?.try_into().ok()?);
            let body_at = at.checked_add(usize::try_from(len).ok()?)?;
            (body_at <= v.len()).then_some((ts, deleted, body_at))
        }
        _ => None,
    }
}

/// The origin of an imported `R` value; `Ok(None)` for any other version,
/// `Err(())` when the record is malformed.
pub fn decode_origin(v: &[u8]) -> Result<Option<Origin>, ()> {
    match v.first() {
        Some(&FORMAT) => return Ok(None),
        Some(&FORMAT_IMPORTED) => {}
        _ => return Err(()),
    }
    let (_, _, body_at) = decode_version_header(v).ok_or(())?;
    let o = v.get(VERSION_HEADER..body_at).ok_or(())?;
    let word = |i: usize| -> Result<[u8; 8], ()> {
        o.get(i..i + 8).and_then(|w| w.try_into().ok()).ok_or(())
    };
    let input = o.get(24..28).and_then(|w| w.try_into().ok()).ok_or(())?;
    let patients = match o.get(ORIGIN_FIXED..).ok_or(())? {
        [] => Vec::new(),
        list => std::str::from_utf8(list)
            .map_err(|_| ())?
            .split('\0')
            .map(str::to_owned)
            .collect(),
    };
    Ok(Some(Origin {
        session: u64::from_be_bytes(word(0)?),
        precedence: (u64::from_be_bytes(word(8)?), ts_from_bytes(word(16)?)),
        line: LineRef {
            input: u32::from_be_bytes(input),
            line: u64::from_be_bytes(word(28)?),
            offset: u64::from_be_bytes(word(36)?),
        },
        seq: u64::from_be_bytes(word(44)?),
        patients,
    }))
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

const META_LEN: usize = 33;

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
    /// Versions an import removed again (a line displaced by a later line
    /// of the same import): `last_seq - removed` versions exist.
    pub removed: u64,
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(META_LEN);
        v.push(FORMAT);
        v.extend_from_slice(&ts_bytes(self.last_ts));
        v.extend_from_slice(&self.last_seq.to_be_bytes());
        v.extend_from_slice(&self.live.to_be_bytes());
        v.extend_from_slice(&self.removed.to_be_bytes());
        v
    }

    /// Also reads the shorter record of stores written before `removed`.
    pub fn decode(v: &[u8]) -> Option<Self> {
        if !(v.len() == META_LEN || v.len() == META_LEN - 8) || v[0] != FORMAT {
            return None;
        }
        let word = |i: usize| v[i..i + 8].try_into().ok();
        Some(Meta {
            last_ts: ts_from_bytes(word(1)?),
            last_seq: u64::from_be_bytes(word(9)?),
            live: u64::from_be_bytes(word(17)?),
            removed: if v.len() == META_LEN {
                u64::from_be_bytes(word(25)?)
            } else {
                0
            },
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
        assert_eq!(decode_version_header(&v), Some((t, false, VERSION_HEADER)));
        assert_eq!(&v[VERSION_HEADER..], b"{}");
        assert_eq!(decode_origin(&v), Ok(None));
        assert_eq!(
            decode_version_header(&encode_version(t, true, b"")),
            Some((t, true, VERSION_HEADER))
        );
        assert_eq!(decode_version_header(b"\x01short"), None);

        for patients in [vec![], vec!["p1".to_owned(), "p-2".to_owned()]] {
            let origin = Origin {
                session: 42,
                precedence: (3, Instant::from_millis(-5)),
                line: LineRef {
                    input: 1,
                    line: 77,
                    offset: 1234,
                },
                seq: 9,
                patients,
            };
            let v = encode_imported(t, true, &origin, b"{\"a\":1}");
            let (ts, deleted, at) = decode_version_header(&v).unwrap();
            assert_eq!((ts, deleted, &v[at..]), (t, true, &b"{\"a\":1}"[..]));
            assert_eq!(decode_origin(&v), Ok(Some(origin)));
            // A truncated origin is corrupt, not a shorter body.
            assert_eq!(decode_version_header(&v[..VERSION_HEADER + 20]), None);
        }
        assert_eq!(decode_origin(b"\x09"), Err(()));

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
            removed: 2,
        };
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        assert_eq!(Meta::decode(&m.encode()[1..]), None);
        let earlier = Meta::decode(&m.encode()[..META_LEN - 8]).unwrap();
        assert_eq!((earlier.last_seq, earlier.removed), (9, 0));

        assert_eq!(decode_member(&encode_left(t)), Some(Member::Left(t)));
        assert_eq!(
            decode_member(&encode_version(t, true, b"")),
            Some(Member::In(t, true, VERSION_HEADER))
        );
        assert_eq!(decode_member(&[FORMAT_LEFT, 0]), None);
        assert_eq!(decode_member(&[FORMAT_IMPORTED]), None);
    }
}
