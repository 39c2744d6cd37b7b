//! What an import records, and where a resumed attempt starts from.
//!
//! The job checkpoint holds the plan, fixed by the first attempt so that a
//! resumed one (perhaps configured differently) cuts the inputs the same
//! way: each input's length and entity tag, its byte ranges and the
//! newlines before each; then, once the error files are written, the
//! result. It also carries the progress shown as `X-Progress`.
//!
//! The authoritative progress of each range ("part") is not there but in
//! the store, in the same atomic batch as the versions and rejected lines
//! it accounts for ([`PartState`], see [`crate::store::Store::import`]). A
//! resumed part starts exactly after the last batch the store applied: no
//! line is written twice or skipped, without any checkpoint ordering to get
//! right. A batch applied again would be harmless anyway: the store
//! recognises a line it already wrote for this session.

use serde::{Deserialize, Serialize};

use super::ranges::ByteRange;
use super::result::ImportResult;
use crate::fhir::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The store's "now" when the first attempt started.
    pub transaction_time: Instant,
    pub inputs: Vec<PlannedInput>,
    /// Set once the error files are written: a later attempt only returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ImportResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInput {
    pub len: u64,
    /// The entity tag the input had when planned: every read checks it.
    pub etag: String,
    pub ranges: Vec<PlannedRange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRange {
    #[serde(flatten)]
    pub range: ByteRange,
    /// `\n` bytes before `range.start`: the line numbering of the range.
    pub newlines_before: u64,
}

impl Checkpoint {
    /// Bytes of input in all.
    pub fn total_bytes(&self) -> u64 {
        self.inputs.iter().map(|i| i.len).sum()
    }

    /// Every range with its input and its part number (its index in input,
    /// then range order).
    pub fn parts(&self) -> impl Iterator<Item = (u32, usize, PlannedRange)> + '_ {
        self.inputs
            .iter()
            .enumerate()
            .flat_map(|(input, planned)| planned.ranges.iter().map(move |r| (input, *r)))
            .enumerate()
            .map(|(part, (input, range))| (part as u32, input, range))
    }
}

/// One part's progress, saved with each of its store batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartState {
    /// Where the next line starts...
    pub offset: u64,
    /// ...and its number.
    pub line: u64,
    /// Non-blank lines handled so far (imported or rejected).
    pub lines: u64,
    pub done: bool,
}

impl PartState {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<PartState> {
        serde_json::from_slice(bytes).ok()
    }

    /// Bytes of `range` behind this state.
    pub fn consumed(&self, range: ByteRange) -> u64 {
        if self.done {
            range.end - range.start
        } else {
            self.offset.clamp(range.start, range.end) - range.start
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_across_inputs() {
        let input = |ranges: &[(u64, u64)]| PlannedInput {
            len: ranges.last().map_or(0, |r| r.1),
            etag: "\"e\"".into(),
            ranges: ranges
                .iter()
                .map(|&(start, end)| PlannedRange {
                    range: ByteRange { start, end },
                    newlines_before: start / 2,
                })
                .collect(),
        };
        let cp = Checkpoint {
            transaction_time: Instant::from_millis(0),
            inputs: vec![input(&[(0, 10), (10, 15)]), input(&[(0, 0)])],
            result: None,
        };
        let parts: Vec<(u32, usize, u64)> =
            cp.parts().map(|(p, i, r)| (p, i, r.range.start)).collect();
        assert_eq!(parts, [(0, 0, 0), (1, 0, 10), (2, 1, 0)]);
        assert_eq!(cp.total_bytes(), 15);
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(
            json["inputs"][0]["ranges"][1],
            serde_json::json!({"start": 10, "end": 15, "newlines_before": 5})
        );
        assert_eq!(serde_json::from_value::<Checkpoint>(json).unwrap(), cp);

        let state = PartState {
            offset: 12,
            line: 4,
            lines: 3,
            done: false,
        };
        assert_eq!(PartState::decode(&state.encode()), Some(state));
        let range = ByteRange { start: 10, end: 15 };
        assert_eq!(state.consumed(range), 2);
        assert_eq!(
            PartState {
                offset: 40,
                ..state
            }
            .consumed(range),
            5
        );
        assert_eq!(
            PartState {
                done: true,
                offset: 0,
                ..state
            }
            .consumed(range),
            5
        );
    }
}
