//! Batches: every entry on its own, each write its own commit, so one
//! failing entry leaves the others untouched. Entries run in bundle order.
//! Batch entries may not depend on each other (FHIR), so local `fullUrl`
//! references are not resolved here.

use serde_json::Value;

use crate::store::Store;

use super::entry::{Action, Entry};
use super::{Outcome, respond};
use crate::api::error::ApiError;
use crate::api::headers::ReturnPref;
use crate::api::ops;

pub fn run(
    store: &dyn Store,
    base: &str,
    prefer: ReturnPref,
    entries: Vec<Value>,
) -> Result<Vec<u8>, ApiError> {
    let outcomes: Vec<Outcome> = entries
        .into_iter()
        .map(|entry| run_one(store, base, entry))
        .collect();
    respond("batch-response", base, prefer, &outcomes)
}

fn run_one(store: &dyn Store, base: &str, entry: Value) -> Outcome {
    match Entry::parse(entry, base).map(|entry| entry.action) {
        Ok(Action::Write(op)) => {
            ops::commit_one(store, op).map_or_else(Outcome::Failed, Outcome::Written)
        }
        Ok(Action::Read(read)) => read.run(store),
        Err(e) => Outcome::Failed(e),
    }
}
