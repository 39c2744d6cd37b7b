//! Transactions: every entry or none. All writes go to the store in ONE
//! all-or-nothing commit, in FHIR's order (DELETE, POST, PUT); reads (GET)
//! run after it and see its result.
//!
//! Any entry that fails before or during the commit fails the whole
//! transaction with that entry's status and an OperationOutcome naming it;
//! nothing is written. Two entries writing the same resource are a 409
//! (FHIR: overlapping identities fail the transaction). A read that finds
//! nothing is reported in its own entry: by then the writes are committed
//! and a read cannot undo them.

use std::collections::HashMap;

use serde_json::Value;

use crate::store::{Store, WriteOp};

use super::entry::{Action, Entry};
use super::{Outcome, refs, respond};
use crate::api::error::ApiError;
use crate::api::headers::ReturnPref;
use crate::api::ops;

pub fn run(
    store: &dyn Store,
    base: &str,
    prefer: ReturnPref,
    entries: Vec<Value>,
) -> Result<Vec<u8>, ApiError> {
    let mut entries = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| Entry::parse(entry, base).map_err(|e| e.in_entry(index)))
        .collect::<Result<Vec<_>, _>>()?;
    refs::resolve(&mut entries)?;
    check_distinct_targets(&entries)?;

    let mut outcomes: Vec<Option<Outcome>> = entries.iter().map(|_| None).collect();
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        match entry.action {
            Action::Write(op) => writes.push((index, op)),
            Action::Read(read) => reads.push((index, read)),
        }
    }
    writes.sort_by_key(|(_, op)| processing_rank(op));
    let (order, ops): (Vec<usize>, Vec<WriteOp>) = writes.into_iter().unzip();
    if !ops.is_empty() {
        let results = ops::commit(store, ops).map_err(|e| to_entry_index(e, &order))?;
        for (index, result) in order.into_iter().zip(results) {
            outcomes[index] = Some(Outcome::Written(result));
        }
    }
    for (index, read) in reads {
        outcomes[index] = Some(read.run(store));
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    respond("transaction-response", base, prefer, &outcomes)
}

fn processing_rank(op: &WriteOp) -> u8 {
    match op {
        WriteOp::Delete { .. } => 0,
        WriteOp::Create { .. } => 1,
        WriteOp::Update { .. } => 2,
    }
}

fn check_distinct_targets(entries: &[Entry]) -> Result<(), ApiError> {
    let mut first_writer = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Action::Write(op) = &entry.action else {
            continue;
        };
        let (rtype, id) = op.target();
        if let Some(first) = first_writer.insert((rtype, id), index) {
            return Err(ApiError::Conflict(format!(
                "{rtype}/{id} is also written by Bundle.entry[{first}]; a transaction writes each resource once"
            ))
            .in_entry(index));
        }
    }
    Ok(())
}

/// The store numbers ops in commit order; the client knows entry order.
fn to_entry_index(error: ApiError, order: &[usize]) -> ApiError {
    match error {
        ApiError::InEntry { index, source } => match order.get(index) {
            Some(entry) => ApiError::InEntry {
                index: *entry,
                source,
            },
            None => ApiError::internal(format!("the store rejected op {index} of {}", order.len())),
        },
        other => other,
    }
}
