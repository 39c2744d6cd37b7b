//! Implements `hearth:plugin/group-resolver@0.1.0`, the contract before the
//! `fhir-search` and `export-issues` imports were added: the Group's
//! `Patient/...` member references that exist at the snapshot, found by a
//! plain text scan (no JSON parser, to keep this guest tiny).

wit_bindgen::generate!({ path: "wit", world: "group-resolver-plugin" });

use std::cell::RefCell;

use exports::hearth::plugin::group_resolver::{Guest, GuestMembers, Members};
use hearth::plugin::fhir_read;
use hearth::plugin::types::{Issue, PluginError};

const MEMBER: &str = "\"reference\":\"Patient/";

struct Component;

impl Guest for Component {
    type Members = Pending;
}

struct Pending(RefCell<Vec<String>>);

impl GuestMembers for Pending {
    fn resolve(group: Vec<u8>, _snapshot: String) -> Result<Members, Vec<Issue>> {
        let text = String::from_utf8_lossy(&group);
        let mut ids: Vec<String> = text
            .match_indices(MEMBER)
            .filter_map(|(at, _)| {
                let rest = &text[at + MEMBER.len()..];
                rest.split('"').next().map(str::to_owned)
            })
            .collect();
        ids.dedup();
        ids.reverse();
        Ok(Members::new(Pending(RefCell::new(ids))))
    }

    fn next_page(&self, max: u32) -> Result<Vec<String>, PluginError> {
        let mut queue = self.0.borrow_mut();
        let mut page = Vec::new();
        while page.len() < max as usize
            && let Some(id) = queue.pop()
        {
            if fhir_read::read("Patient", &id)?.is_some() {
                page.push(id);
            }
        }
        Ok(page)
    }
}

export!(Component);
