//! The default `group-resolver-plugin`: the members of an actual Group are
//! its `member.entity` references to Patients, minus members marked
//! `inactive` and members whose `period` does not contain the snapshot
//! instant, minus Patients that did not exist at the snapshot (checked
//! through the host's `fhir-read`). Ids are handed out in member order,
//! each once.

wit_bindgen::generate!({ path: "../../wit", world: "group-resolver-plugin" });

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use exports::hearth::plugin::group_resolver::{Guest, GuestMembers, Members};
use hearth::plugin::fhir_read;
use hearth::plugin::host::{self, LogLevel};
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};
use serde_json::Value;

struct Component;

impl Guest for Component {
    type Members = Pending;
}

struct Pending {
    /// Candidate Patient ids not yet checked against the store.
    queue: RefCell<VecDeque<String>>,
}

impl GuestMembers for Pending {
    fn resolve(group: Vec<u8>, snapshot: String) -> Result<Members, Vec<Issue>> {
        let reject = |code: &str, diagnostics: String| {
            vec![Issue {
                severity: Severity::Error,
                code: code.into(),
                diagnostics,
                expression: Vec::new(),
            }]
        };
        let at = match parse_date_time(&snapshot) {
            Some((start, _)) => start,
            None => {
                return Err(reject(
                    "invalid",
                    format!("snapshot '{snapshot}' is not a FHIR instant"),
                ));
            }
        };
        let group: Value = serde_json::from_slice(&group)
            .map_err(|e| reject("structure", format!("the Group is not JSON: {e}")))?;
        if group["resourceType"] != "Group" {
            return Err(reject("invalid", "the resource is not a Group".into()));
        }
        if group["actual"] == false {
            return Err(reject(
                "not-supported",
                "definitional Groups (actual = false) are not supported by the default group resolver".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut queue = VecDeque::new();
        for (i, member) in group["member"].as_array().into_iter().flatten().enumerate() {
            if member["inactive"] == true || !period_contains(&member["period"], at) {
                continue;
            }
            let reference = member["entity"]["reference"].as_str().unwrap_or_default();
            match reference.strip_prefix("Patient/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    if seen.insert(id.to_owned()) {
                        queue.push_back(id.to_owned());
                    }
                }
                _ => host::log(
                    LogLevel::Debug,
                    "skipping a Group member that is not a Patient reference",
                    &[
                        ("member".into(), format!("Group.member[{i}]")),
                        ("reference".into(), reference.into()),
                    ],
                ),
            }
        }
        Ok(Members::new(Pending {
            queue: RefCell::new(queue),
        }))
    }

    fn next_page(&self, max: u32) -> Result<Vec<String>, PluginError> {
        if max == 0 {
            return Err(PluginError {
                code: ErrorCode::InvalidInput,
                message: "next-page needs max > 0".into(),
            });
        }
        let mut queue = self.queue.borrow_mut();
        let mut page = Vec::new();
        while page.len() < max as usize
            && let Some(id) = queue.pop_front()
        {
            if fhir_read::read("Patient", &id)?.is_some() {
                page.push(id);
            }
        }
        Ok(page)
    }
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
