//! `_typeFilter` through the type-filter plugin: each query compiled once
//! per job into its own plugin session, evaluated on batches of lines;
//! several queries for one type are OR-ed, a type without a query is not
//! filtered.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::fhir::outcome::{Issue, IssueSeverity};
use crate::fhir::{IssueType, OperationOutcome, ResourceType};
use crate::plugins::{LoadedPlugin, TypeFilter as Compiled};

use super::error::ExportError;
use super::request::TypeFilter;

#[derive(Default)]
pub struct Filters {
    /// A session serves one call at a time; units of one type share it
    /// (at Patient/Group level every unit writes every type).
    by_type: HashMap<ResourceType, Vec<Mutex<Compiled>>>,
}

impl Filters {
    /// Compiles the filters of the exported `types`. A query the plugin
    /// refuses fails the export, or under lenient handling is dropped with a
    /// warning for the error file (returned): the edge already refused it
    /// at kick-off unless lenient, so this only happens when the plugin
    /// changed since. Dropping one of a type's OR-ed queries must not
    /// narrow the output (the dropped query could have matched anything),
    /// so that type is exported unfiltered.
    pub fn compile(
        plugin: &Arc<LoadedPlugin>,
        requested: &[TypeFilter],
        types: &BTreeSet<ResourceType>,
        lenient: bool,
    ) -> Result<(Filters, Vec<OperationOutcome>), ExportError> {
        let mut filters = Filters::default();
        let mut warnings = Vec::new();
        let mut unfiltered = BTreeSet::new();
        for f in requested.iter().filter(|f| types.contains(&f.rtype)) {
            match Compiled::compile(plugin, f.rtype.as_str(), &f.query)? {
                Ok(compiled) => filters
                    .by_type
                    .entry(f.rtype)
                    .or_default()
                    .push(Mutex::new(compiled)),
                Err(issues) if lenient => {
                    warnings.push(dropped(f, issues));
                    unfiltered.insert(f.rtype);
                }
                Err(issues) => {
                    return Err(ExportError::FilterRefused {
                        filter: format!("{}?{}", f.rtype, f.query),
                        issues,
                    });
                }
            }
        }
        filters
            .by_type
            .retain(|rtype, _| !unfiltered.contains(rtype));
        Ok((filters, warnings))
    }

    pub fn applies(&self, rtype: ResourceType) -> bool {
        self.by_type.contains_key(&rtype)
    }

    /// One verdict per line of `ndjson` (`\n`-ended lines): whether one of
    /// the type's filters matches; all `true` when the type has none.
    pub fn evaluate(&self, rtype: ResourceType, ndjson: &[u8]) -> Result<Vec<bool>, ExportError> {
        let lines: Vec<&[u8]> = ndjson.split_inclusive(|b| *b == b'\n').collect();
        let Some(filters) = self.by_type.get(&rtype) else {
            return Ok(vec![true; lines.len()]);
        };
        let mut verdicts = vec![false; lines.len()];
        // Each further query sees only the lines no earlier one matched.
        let mut undecided: Vec<usize> = (0..lines.len()).collect();
        let mut batch = Vec::with_capacity(ndjson.len());
        for filter in filters {
            if undecided.is_empty() {
                break;
            }
            batch.clear();
            for &i in &undecided {
                batch.extend_from_slice(lines[i]);
            }
            let matched = filter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .evaluate(&batch)?;
            let mut still = Vec::new();
            for (i, hit) in undecided.into_iter().zip(matched) {
                if hit {
                    verdicts[i] = true;
                } else {
                    still.push(i);
                }
            }
            undecided = still;
        }
        Ok(verdicts)
    }
}

/// The error-file entry for a filter dropped under lenient handling: what
/// was ignored, then the plugin's reasons, as warnings.
fn dropped(filter: &TypeFilter, issues: Vec<Issue>) -> OperationOutcome {
    let mut outcome = OperationOutcome::single(
        IssueSeverity::Warning,
        IssueType::NotSupported,
        format!(
            "_typeFilter '{}?{}' was ignored (handling=lenient): {} resources are exported without _typeFilter",
            filter.rtype, filter.query, filter.rtype
        ),
    );
    outcome.issue.extend(issues.into_iter().map(|issue| Issue {
        severity: IssueSeverity::Warning,
        ..issue
    }));
    outcome
}
