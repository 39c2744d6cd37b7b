//! FHIR dates as the ranges they imply, written for the oracle only (the
//! engine's own parser is never consulted).

/// `[lo, hi)` in microseconds since 1970-01-01T00:00:00Z; open ends are
/// `i64::MIN` / `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn digits(text: &str, len: usize) -> Option<i64> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    days_from_civil(year + i64::from(month == 12), month % 12 + 1, 1)
        - days_from_civil(year, month, 1)
}

/// The range a FHIR date, dateTime or instant stands for: `2019` is the whole
/// year, `2019-03-05T10:00:00+02:00` one second. Times without an offset are
/// taken as UTC; times may stop at minutes (search values do).
pub fn parse(text: &str) -> Option<Range> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if parts.next().is_some() || month.is_some_and(|m| !(1..=12).contains(&m)) {
        return None;
    }
    let Some(month) = month else {
        let lo = days_from_civil(year, 1, 1) * 86_400 * MICROS_PER_SECOND;
        let hi = days_from_civil(year + 1, 1, 1) * 86_400 * MICROS_PER_SECOND;
        return time.is_none().then_some(Range { lo, hi });
    };
    let Some(day) = day else {
        let lo = days_from_civil(year, month, 1) * 86_400 * MICROS_PER_SECOND;
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let hi = days_from_civil(ny, nm, 1) * 86_400 * MICROS_PER_SECOND;
        return time.is_none().then_some(Range { lo, hi });
    };
    if !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * 86_400 * MICROS_PER_SECOND;
    let Some(time) = time else {
        return Some(Range {
            lo: midnight,
            hi: midnight + 86_400 * MICROS_PER_SECOND,
        });
    };
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(at) => (&time[..at], Some(&time[at..])),
        None => (time, None),
    };
    let offset_seconds = match offset {
        None | Some("Z") => 0,
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':')?;
            let (h, m) = (digits(h, 2)?, digits(m, 2)?);
            if h > 14 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let mut fields = clock.split(':');
    let hour = digits(fields.next()?, 2)?;
    let minute = digits(fields.next()?, 2)?;
    let second = fields.next();
    if fields.next().is_some() || hour > 23 || minute > 59 {
        return None;
    }
    let (seconds, fraction) = match second {
        None => (0, None),
        Some(s) => match s.split_once('.') {
            Some((whole, fraction)) => (digits(whole, 2)?, Some(fraction)),
            None => (digits(s, 2)?, None),
        },
    };
    if seconds > 59 {
        return None;
    }
    let start =
        midnight + ((hour * 60 + minute) * 60 + seconds - offset_seconds) * MICROS_PER_SECOND;
    let (lo, width) = match (second, fraction) {
        (None, _) => (start, 60 * MICROS_PER_SECOND),
        (Some(_), None) => (start, MICROS_PER_SECOND),
        (Some(_), Some(fraction)) => {
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond microseconds the oracle keeps the microsecond the value
            // falls in: no synthea or fixture value is that precise.
            let kept = &fraction[..fraction.len().min(6)];
            let unit = 10i64.pow(6 - kept.len() as u32);
            (start + kept.parse::<i64>().ok()? * unit, unit)
        }
    };
    Some(Range { lo, hi: lo + width })
}

/// A Period: from the start's lower bound to the end's upper bound, either
/// side open when absent.
pub fn period(start: Option<&str>, end: Option<&str>) -> Option<Range> {
    Some(Range {
        lo: match start {
            Some(s) => parse(s)?.lo,
            None => i64::MIN,
        },
        hi: match end {
            Some(e) => parse(e)?.hi,
            None => i64::MAX,
        },
    })
}

/// The R4 prefix rules on ranges (search.html#prefix), `search` against
/// `target`.
pub fn compare(prefix: &str, search: Range, target: Range) -> bool {
    let eq = search.lo <= target.lo && target.hi <= search.hi;
    match prefix {
        "eq" => eq,
        "ne" => !eq,
        "gt" => target.hi > search.hi,
        "lt" => target.lo < search.lo,
        "ge" => target.hi > search.hi || eq,
        "le" => target.lo < search.lo || eq,
        "sa" => target.lo >= search.hi,
        "eb" => target.hi <= search.lo,
        other => panic!("the oracle has no rule for prefix {other}"),
    }
}

/// `value` (`[prefix]date`, prefix defaulting to `eq`) against one target.
pub fn matches(value: &str, target: Range) -> bool {
    let (prefix, date) = split_prefix(value);
    let search = parse(date).unwrap_or_else(|| panic!("oracle: bad search date {value}"));
    compare(prefix, search, target)
}

pub fn split_prefix(value: &str) -> (&str, &str) {
    const PREFIXES: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];
    match PREFIXES.iter().find(|p| value.starts_with(**p)) {
        Some(p) => (p, &value[2..]),
        None => ("eq", value),
    }
}

/// A UTC instant as FHIR writes it, with milliseconds.
pub fn format_instant(micros: i64) -> String {
    let seconds = micros.div_euclid(MICROS_PER_SECOND);
    let millis = micros.rem_euclid(MICROS_PER_SECOND) / 1000;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[test]
fn ranges_follow_the_stated_precision() {
    let day = 86_400 * MICROS_PER_SECOND;
    let y2019 = parse("2019").unwrap();
    assert_eq!(y2019.hi - y2019.lo, 365 * day);
    assert_eq!(format_instant(y2019.lo), "2019-01-01T00:00:00.000Z");
    assert_eq!(parse("2020-02").map(|r| r.hi - r.lo), Some(29 * day));
    assert_eq!(
        parse("2019-12").map(|r| format_instant(r.hi)).as_deref(),
        Some("2020-01-01T00:00:00.000Z")
    );
    let t = parse("2019-03-05T10:00:00+02:00").unwrap();
    assert_eq!(format_instant(t.lo), "2019-03-05T08:00:00.000Z");
    assert_eq!(t.hi - t.lo, MICROS_PER_SECOND);
    assert_eq!(
        parse("2011-02-02T16:30:49.825-05:00")
            .map(|r| format_instant(r.lo))
            .as_deref(),
        Some("2011-02-02T21:30:49.825Z")
    );
    assert_eq!(
        parse("2013-01-14T10:00").map(|r| r.hi - r.lo),
        Some(60 * MICROS_PER_SECOND)
    );
    assert_eq!(
        parse("1969-12-31T23:59:59Z").map(|r| r.lo),
        Some(-MICROS_PER_SECOND)
    );
    for bad in [
        "2019-13",
        "2019-02-30",
        "19",
        "2019-1-01",
        "2019T10:00",
        "2019-01-01T25:00:00Z",
        "2019-01-01T10:00:00+2",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
    assert!(compare("eq", y2019, t));
    assert!(!compare("gt", y2019, t) && !compare("sa", y2019, t) && compare("le", y2019, t));
}
