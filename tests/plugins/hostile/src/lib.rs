//! A `type-filter-plugin` whose query picks how it misbehaves:
//! `fault=loop` spins forever in `evaluate`, `fault=bomb` allocates until
//! memory runs out, `fault=trap` panics, `fault=wrong-count` answers one
//! verdict too many, `fault=bad-issue` rejects the query with an issue whose
//! code is not an R4 issue type, and `fault=none` matches everything.

wit_bindgen::generate!({ path: "../../../wit", world: "type-filter-plugin" });

use std::hint::black_box;

use exports::hearth::plugin::type_filter::{Filter, Guest, GuestFilter};
use hearth::plugin::types::{Issue, PluginError, Severity};

struct Component;

impl Guest for Component {
    type Filter = Hostile;
}

struct Hostile {
    fault: String,
}

impl GuestFilter for Hostile {
    fn compile(_resource_type: String, query: String) -> Result<Filter, Vec<Issue>> {
        let fault = query.strip_prefix("fault=").unwrap_or("none").to_owned();
        if fault == "bad-issue" {
            return Err(vec![Issue {
                severity: Severity::Error,
                code: "definitely-not-an-issue-type".into(),
                diagnostics: "malformed on purpose".into(),
                expression: Vec::new(),
            }]);
        }
        Ok(Filter::new(Hostile { fault }))
    }

    fn evaluate(&self, ndjson: Vec<u8>) -> Result<Vec<bool>, PluginError> {
        let lines = ndjson
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        match self.fault.as_str() {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    black_box(&hoard);
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "wrong-count" => Ok(vec![true; lines + 1]),
            _ => Ok(vec![true; lines]),
        }
    }
}

export!(Component);
