//! The default `group-resolver-plugin`.
//!
//! A Group's members are its `member.entity` references, minus entries
//! marked `inactive` and entries whose `period` does not contain the
//! snapshot instant:
//! - `Patient/{id}`: that Patient, if it exists at the snapshot (checked
//!   through `fhir-read`; one that does not is reported, not fatal);
//! - `Group/{id}`: that Group's members, recursively. Each Group is expanded
//!   once (a cycle or a Group listed twice is no error) and at most
//!   [`MAX_DEPTH`] levels down;
//! - anything else is reported and skipped.
//!
//! Criteria Groups (the Bulk Data IG's Bulk Cohort profile) carry one or
//! more `member-filter` modifier extensions, each a FHIR query; all must
//! hold. They narrow the Group's members (and those of the Groups it
//! contains), or, for a `person` Group without members, select among all
//! Patients. Queries are checked when the Group is resolved and evaluated
//! through the host's `fhir-search` on the first page. `Group.characteristic`
//! and unknown modifier extensions cannot be evaluated: such a Group is
//! rejected, never resolved to an empty or wider population.
//!
//! Ids are handed out in member order (criteria results in id order), each
//! once.

wit_bindgen::generate!({ path: "../../wit", world: "group-resolver-plugin" });

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use exports::hearth::plugin::group_resolver::{Guest, GuestMembers, Members};
use hearth::plugin::fhir_search::{self, SearchError};
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};
use hearth::plugin::{export_issues, fhir_read};
use serde_json::Value;

const MEMBER_FILTER: &str = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter";
const FHIR_QUERY: &str = "application/x-fhir-query";

/// Nesting levels followed below the exported Group; deeper Groups are
/// reported and skipped (the loop check already stops cycles: this bounds
/// the work a pathological chain of distinct Groups can cause).
const MAX_DEPTH: usize = 16;

struct Component;

impl Guest for Component {
    type Members = Pending;
}

/// One member that still has to pass its Group's filters and, unless it
/// came from a search, the existence check.
struct Candidate {
    id: String,
    /// Where it was listed, for the issue if it does not exist.
    at: String,
}

/// What one Group contributes.
struct Source {
    /// Its Patient members (`None`: a criteria Group without members, whose
    /// population is every Patient matching `filters`).
    members: Option<VecDeque<Candidate>>,
    /// Its own `member-filter` queries and those of the Groups containing it.
    filters: Vec<String>,
}

/// The source being paged.
struct Paging {
    queue: VecDeque<Candidate>,
    /// A search already vouched that they exist.
    vouched: bool,
    filters: Vec<String>,
}

struct Pending {
    sources: RefCell<VecDeque<Source>>,
    current: RefCell<Option<Paging>>,
    /// Ids handed out or found missing: never handed out (again).
    seen: RefCell<HashSet<String>>,
    /// Evaluated `member-filter` queries: the Patient ids each selects.
    matched: RefCell<HashMap<String, Rc<HashSet<String>>>>,
}

fn issue(severity: Severity, code: &str, diagnostics: String, expression: &str) -> Issue {
    Issue {
        severity,
        code: code.into(),
        diagnostics,
        expression: if expression.is_empty() {
            Vec::new()
        } else {
            vec![expression.to_owned()]
        },
    }
}

fn reject(code: &str, diagnostics: String, expression: &str) -> Vec<Issue> {
    vec![issue(Severity::Error, code, diagnostics, expression)]
}

/// A member the export leaves out, for its error file.
fn warn(code: &str, diagnostics: String, expression: &str) {
    export_issues::report(&issue(Severity::Warning, code, diagnostics, expression));
}

impl GuestMembers for Pending {
    fn resolve(group: Vec<u8>, snapshot: String) -> Result<Members, Vec<Issue>> {
        let Some((at, _)) = parse_date_time(&snapshot) else {
            return Err(reject(
                "invalid",
                format!("snapshot '{snapshot}' is not a FHIR instant"),
                "",
            ));
        };
        let group: Value = serde_json::from_slice(&group)
            .map_err(|e| reject("structure", format!("the Group is not JSON: {e}"), ""))?;
        if group["resourceType"] != "Group" {
            return Err(reject("invalid", "the resource is not a Group".into(), ""));
        }
        let mut walk = Walk {
            at,
            visited: HashSet::new(),
            sources: VecDeque::new(),
        };
        if let Some(id) = group["id"].as_str() {
            walk.visited.insert(id.to_owned());
        }
        walk.group(&group, 0, &[])?;
        Ok(Members::new(Pending {
            sources: RefCell::new(walk.sources),
            current: RefCell::new(None),
            seen: RefCell::new(HashSet::new()),
            matched: RefCell::new(HashMap::new()),
        }))
    }

    fn next_page(&self, max: u32) -> Result<Vec<String>, PluginError> {
        if max == 0 {
            return Err(PluginError {
                code: ErrorCode::InvalidInput,
                message: "next-page needs max > 0".into(),
            });
        }
        let mut page = Vec::new();
        let mut current = self.current.borrow_mut();
        let mut seen = self.seen.borrow_mut();
        while page.len() < max as usize {
            let Some(Paging {
                queue,
                vouched,
                filters,
            }) = current.as_mut()
            else {
                let Some(source) = self.sources.borrow_mut().pop_front() else {
                    break;
                };
                *current = Some(self.open(source)?);
                continue;
            };
            let Some(candidate) = queue.pop_front() else {
                *current = None;
                continue;
            };
            if seen.contains(&candidate.id) || !self.passes(&candidate.id, filters)? {
                continue;
            }
            if !*vouched && fhir_read::read("Patient", &candidate.id)?.is_none() {
                warn(
                    "not-found",
                    format!(
                        "{}: Patient/{} does not exist at the export's transaction time; it is left out",
                        candidate.at, candidate.id
                    ),
                    "Group.member",
                );
                seen.insert(candidate.id);
                continue;
            }
            seen.insert(candidate.id.clone());
            page.push(candidate.id);
        }
        Ok(page)
    }
}

impl Pending {
    /// Starts paging `source`: a criteria Group without members becomes the
    /// Patients every one of its filters selects.
    fn open(&self, source: Source) -> Result<Paging, PluginError> {
        match source.members {
            Some(queue) => Ok(Paging {
                queue,
                vouched: false,
                filters: source.filters,
            }),
            None => {
                let mut sets = Vec::with_capacity(source.filters.len());
                for query in &source.filters {
                    sets.push(self.matching(query)?);
                }
                sets.sort_by_key(|s| s.len());
                let Some((smallest, others)) = sets.split_first() else {
                    return Ok(Paging {
                        queue: VecDeque::new(),
                        vouched: true,
                        filters: Vec::new(),
                    });
                };
                let mut ids: Vec<&String> = smallest
                    .iter()
                    .filter(|id| others.iter().all(|s| s.contains(*id)))
                    .collect();
                ids.sort_unstable();
                let queue = ids
                    .into_iter()
                    .map(|id| Candidate {
                        id: id.clone(),
                        at: String::new(),
                    })
                    .collect();
                // Already intersected: no filter left to apply.
                Ok(Paging {
                    queue,
                    vouched: true,
                    filters: Vec::new(),
                })
            }
        }
    }

    fn passes(&self, id: &str, filters: &[String]) -> Result<bool, PluginError> {
        for query in filters {
            if !self.matching(query)?.contains(id) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The Patients `query` selects, evaluated once per resolution.
    fn matching(&self, query: &str) -> Result<Rc<HashSet<String>>, PluginError> {
        if let Some(ids) = self.matched.borrow().get(query) {
            return Ok(ids.clone());
        }
        let ids = match fhir_search::patients_matching(query) {
            Ok(ids) => Rc::new(ids.into_iter().collect::<HashSet<String>>()),
            Err(SearchError::Failed(e)) => return Err(e),
            Err(SearchError::Refused(issues)) => {
                let reasons: Vec<String> = issues.into_iter().map(|i| i.diagnostics).collect();
                return Err(PluginError {
                    code: ErrorCode::Internal,
                    message: format!(
                        "member-filter '{query}' passed the check but its search was refused: {}",
                        reasons.join("; ")
                    ),
                });
            }
        };
        self.matched
            .borrow_mut()
            .insert(query.to_owned(), ids.clone());
        Ok(ids)
    }
}

/// Resolution of a Group and the Groups it contains into sources.
struct Walk {
    at: i64,
    /// Group ids expanded (or being expanded): each is expanded once.
    visited: HashSet<String>,
    sources: VecDeque<Source>,
}

impl Walk {
    /// Adds `group`'s sources; `inherited` are the filters of the Groups
    /// containing it, which apply to its members too.
    fn group(
        &mut self,
        group: &Value,
        depth: usize,
        inherited: &[String],
    ) -> Result<(), Vec<Issue>> {
        let name = format!("Group/{}", group["id"].as_str().unwrap_or("(no id)"));
        let mut filters = inherited.to_vec();
        filters.extend(member_filters(group, &name)?);
        let members = group["member"].as_array().map_or(&[][..], Vec::as_slice);
        if members.is_empty() {
            if filters.len() > inherited.len() {
                let kind = group["type"].as_str().unwrap_or("(none)");
                if kind != "person" {
                    return Err(reject(
                        "not-supported",
                        format!(
                            "{name}: a member-filter Group without members selects among all resources of its type; only type 'person' (Patients) is supported, not '{kind}'"
                        ),
                        "Group.type",
                    ));
                }
                self.sources.push_back(Source {
                    members: None,
                    filters,
                });
            } else if group["actual"] == false {
                return Err(reject(
                    "not-supported",
                    format!(
                        "{name}: definitional Groups (actual = false) without a member-filter define no members the default group resolver can evaluate"
                    ),
                    "Group.actual",
                ));
            }
            return Ok(());
        }
        let mut patients = VecDeque::new();
        for (i, member) in members.iter().enumerate() {
            let at = format!("{name} member[{i}]");
            if member["inactive"] == true || !period_contains(&member["period"], self.at) {
                continue;
            }
            let reference = member["entity"]["reference"].as_str().unwrap_or_default();
            match parse_reference(reference) {
                Some(("Patient", id)) => patients.push_back(Candidate {
                    id: id.to_owned(),
                    at,
                }),
                Some(("Group", id)) => {
                    if !self.visited.insert(id.to_owned()) {
                        continue;
                    }
                    // The members listed so far come before the nested
                    // Group's: member order is kept.
                    if !patients.is_empty() {
                        self.sources.push_back(Source {
                            members: Some(std::mem::take(&mut patients)),
                            filters: filters.clone(),
                        });
                    }
                    if depth + 1 > MAX_DEPTH {
                        warn(
                            "too-costly",
                            format!(
                                "{at}: Group/{id} is nested more than {MAX_DEPTH} levels deep; its members are left out"
                            ),
                            "Group.member",
                        );
                        continue;
                    }
                    let nested = fhir_read::read("Group", id).map_err(|e| {
                        reject(
                            "exception",
                            format!("{at}: reading Group/{id} failed: {}", e.message),
                            "Group.member",
                        )
                    })?;
                    let nested: Option<Value> =
                        nested.and_then(|b| serde_json::from_slice(&b).ok());
                    match nested {
                        Some(nested) => self.group(&nested, depth + 1, &filters)?,
                        None => warn(
                            "not-found",
                            format!(
                                "{at}: Group/{id} does not exist at the export's transaction time; its members are left out"
                            ),
                            "Group.member",
                        ),
                    }
                }
                _ => warn(
                    "not-supported",
                    format!(
                        "{at}: '{reference}' is not a reference to a Patient or a Group of this server; it is left out"
                    ),
                    "Group.member",
                ),
            }
        }
        self.sources.push_back(Source {
            members: Some(patients),
            filters,
        });
        Ok(())
    }
}

/// The queries of `group`'s `member-filter` modifier extensions, each
/// checked with the search engine. Characteristics and modifier extensions
/// this resolver does not understand reject the Group.
fn member_filters(group: &Value, name: &str) -> Result<Vec<String>, Vec<Issue>> {
    let mut issues = Vec::new();
    for (i, c) in group["characteristic"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let code = &c["code"];
        let label = code["text"]
            .as_str()
            .or_else(|| code["coding"][0]["display"].as_str())
            .or_else(|| code["coding"][0]["code"].as_str())
            .unwrap_or("(no code)");
        issues.push(issue(
            Severity::Error,
            "not-supported",
            format!(
                "{name}: Group.characteristic[{i}] ('{label}') cannot be evaluated; express the criterion as a member-filter modifier extension ({MEMBER_FILTER})"
            ),
            &format!("Group.characteristic[{i}]"),
        ));
    }
    for (i, e) in group["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if e["url"] == MEMBER_FILTER {
            issues.push(issue(
                Severity::Error,
                "invalid",
                format!("{name}: member-filter is a modifier extension; it belongs in Group.modifierExtension"),
                &format!("Group.extension[{i}]"),
            ));
        }
    }
    let mut filters = Vec::new();
    for (i, e) in group["modifierExtension"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("Group.modifierExtension[{i}]");
        let url = e["url"].as_str().unwrap_or("(no url)");
        if url != MEMBER_FILTER {
            issues.push(issue(
                Severity::Error,
                "not-supported",
                format!("{name}: the modifier extension {url} is not understood, and a modifier cannot be ignored"),
                &at,
            ));
            continue;
        }
        let expression = &e["valueExpression"];
        let language = expression["language"].as_str().unwrap_or("(none)");
        let Some(query) = expression["expression"].as_str() else {
            issues.push(issue(
                Severity::Error,
                "required",
                format!("{name}: member-filter without valueExpression.expression"),
                &at,
            ));
            continue;
        };
        if language != FHIR_QUERY {
            issues.push(issue(
                Severity::Error,
                "not-supported",
                format!("{name}: member-filter language '{language}' is not supported (only {FHIR_QUERY})"),
                &at,
            ));
            continue;
        }
        match fhir_search::check(query) {
            Ok(()) => filters.push(query.to_owned()),
            Err(SearchError::Refused(refused)) => {
                issues.push(issue(
                    Severity::Error,
                    "not-supported",
                    format!("{name}: member-filter '{query}' cannot be evaluated"),
                    &at,
                ));
                issues.extend(refused);
            }
            Err(SearchError::Failed(e)) => issues.push(issue(
                Severity::Fatal,
                "exception",
                format!(
                    "{name}: checking member-filter '{query}' failed: {}",
                    e.message
                ),
                &at,
            )),
        }
    }
    if issues.is_empty() {
        Ok(filters)
    } else {
        Err(issues)
    }
}

/// `Type/id` (relative, without a version) split in two.
fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let (rtype, id) = reference.split_once('/')?;
    (!id.is_empty() && !id.contains('/')).then_some((rtype, id))
}

/// Whether `period` (absent = always) contains `at`. Bounds are taken at
/// their stated precision: an end of `2024-05-01` includes that whole day.
fn period_contains(period: &Value, at: i64) -> bool {
    let bound = |key: &str| period[key].as_str().map(parse_date_time);
    let after_start = match bound("start") {
        None => true,
        Some(Some((start, _))) => start <= at,
        Some(None) => false,
    };
    let before_end = match bound("end") {
        None => true,
        Some(Some((_, end))) => at < end,
        Some(None) => false,
    };
    after_start && before_end
}

/// A FHIR dateTime or instant as the milliseconds range it covers
/// `[start, end)`: `2024` covers the year, `2024-05-01T10:00:00Z` one second,
/// `2024-05-01T10:00:00.250Z` one millisecond.
fn parse_date_time(s: &str) -> Option<(i64, i64)> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let year = num(0..4)?;
    let sep = |i: usize, c: u8| s.as_bytes().get(i) == Some(&c);
    const DAY: i64 = 86_400_000;
    match s.len() {
        4 => Some((
            days_from_civil(year, 1, 1) * DAY,
            days_from_civil(year + 1, 1, 1) * DAY,
        )),
        7 if sep(4, b'-') => {
            let month = num(5..7).filter(|m| (1..=12).contains(m))?;
            let (ny, nm) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            Some((
                days_from_civil(year, month, 1) * DAY,
                days_from_civil(ny, nm, 1) * DAY,
            ))
        }
        10 if sep(4, b'-') && sep(7, b'-') => {
            let start = days_from_civil(year, num(5..7)?, num(8..10)?) * DAY;
            Some((start, start + DAY))
        }
        _ if s.len() >= 20 && sep(10, b'T') && sep(13, b':') && sep(16, b':') => {
            let date = days_from_civil(year, num(5..7)?, num(8..10)?) * DAY;
            let secs = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
            let rest = &s[19..];
            let (millis, precision, zone) = match rest.strip_prefix('.') {
                Some(frac) => {
                    let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                    let ms = format!("{:0<3}", &frac[..digits.min(3)])
                        .parse::<i64>()
                        .ok()?;
                    (ms, 1, &frac[digits..])
                }
                None => (0, 1000, rest),
            };
            let offset = match zone.as_bytes() {
                [b'Z'] => 0,
                [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                    let digit = |b: &u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
                    let minutes =
                        (digit(h1)? * 10 + digit(h2)?) * 60 + digit(m1)? * 10 + digit(m2)?;
                    if *sign == b'+' { minutes } else { -minutes }
                }
                _ => return None,
            };
            let start = date + secs * 1000 + millis - offset * 60_000;
            Some((start, start + precision))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

export!(Component);
