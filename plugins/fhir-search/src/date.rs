//! Dates as ranges: every date, dateTime or instant, in a resource or in a
//! query, stands for the interval its precision covers (`2019` is all of
//! 2019, `2019-03-05T10:00:00Z` one second). Intervals are half-open, in
//! microseconds since 1970-01-01T00:00:00Z; values without a time zone are
//! taken as UTC.

use crate::query::Prefix;

/// `[lo, hi)` in microseconds; `i64::MIN`/`i64::MAX` for an open end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub lo: i64,
    pub hi: i64,
}

impl Span {
    pub(crate) const ALL: Span = Span {
        lo: i64::MIN,
        hi: i64::MAX,
    };

    /// The smallest span covering both.
    pub(crate) fn hull(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// The precision a value was given at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Year,
    Month,
    /// A fixed length in microseconds: a day, hour, minute, second or
    /// fraction of a second.
    Fixed(i64),
}

/// A parsed date with its span and the span one unit of its precision wider
/// on each side (the `ap` neighbourhood).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Date {
    pub span: Span,
    pub around: Span,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first microsecond of month `month` of `year`, where the month may be
/// 0 or 13 (the neighbours of January and December).
fn month_start(year: i64, month: i64) -> i64 {
    let index = year * 12 + (month - 1);
    days_from_civil(index.div_euclid(12), index.rem_euclid(12) + 1, 1) * MICROS_PER_DAY
}

fn days_in_month(year: i64, month: i64) -> i64 {
    (month_start(year, month + 1) - month_start(year, month)) / MICROS_PER_DAY
}

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and `YYYY-MM-DDThh`, `...Thh:mm`,
/// `...Thh:mm:ss`, `...Thh:mm:ss.fff` with an optional `Z` or `±hh:mm`.
pub(crate) fn parse(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let part = b.get(at..at + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let year = digits(0, 4)?;
    if b.len() == 4 {
        let start = month_start(year, 1);
        return Some(with_unit(
            Span {
                lo: start,
                hi: month_start(year + 1, 1),
            },
            Unit::Year,
            year,
            1,
        ));
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let month = digits(5, 2).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        let span = Span {
            lo: month_start(year, month),
            hi: month_start(year, month + 1),
        };
        return Some(with_unit(span, Unit::Month, year, month));
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let day = digits(8, 2).filter(|d| (1..=days_in_month(year, month)).contains(d))?;
    let midnight = days_from_civil(year, month, day) * MICROS_PER_DAY;
    if b.len() == 10 {
        let span = Span {
            lo: midnight,
            hi: midnight + MICROS_PER_DAY,
        };
        return Some(with_unit(span, Unit::Fixed(MICROS_PER_DAY), year, month));
    }
    if b.get(10) != Some(&b'T') {
        return None;
    }
    let hour = digits(11, 2).filter(|h| *h < 24)?;
    let mut at = 13;
    let mut micros = hour * 3600 * MICROS_PER_SECOND;
    let mut width = 3600 * MICROS_PER_SECOND;
    if b.get(at) == Some(&b':') {
        micros += digits(at + 1, 2).filter(|m| *m < 60)? * 60 * MICROS_PER_SECOND;
        width = 60 * MICROS_PER_SECOND;
        at += 3;
        if b.get(at) == Some(&b':') {
            // 60 is a leap second.
            micros += digits(at + 1, 2).filter(|s| *s <= 60)? * MICROS_PER_SECOND;
            width = MICROS_PER_SECOND;
            at += 3;
            if b.get(at) == Some(&b'.') {
                let count = b[at + 1..]
                    .iter()
                    .take_while(|d| d.is_ascii_digit())
                    .count();
                if count == 0 {
                    return None;
                }
                // Digits past microseconds are dropped: the span is then
                // the microsecond they fall in.
                let kept = count.min(6);
                let fraction = digits(at + 1, kept)?;
                let scale = 10i64.pow(6 - kept as u32);
                micros += fraction * scale;
                width = scale;
                at += 1 + count;
            }
        }
    }
    let offset = match b.get(at..) {
        Some([]) => 0,
        Some([b'Z']) => 0,
        Some([sign @ (b'+' | b'-'), rest @ ..]) if rest.len() == 5 && rest[2] == b':' => {
            let hours = digits(at + 1, 2).filter(|h| *h <= 14)?;
            let minutes = digits(at + 4, 2).filter(|m| *m < 60)?;
            let offset = (hours * 60 + minutes) * 60 * MICROS_PER_SECOND;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let lo = midnight + micros - offset;
    Some(with_unit(
        Span { lo, hi: lo + width },
        Unit::Fixed(width),
        year,
        month,
    ))
}

fn with_unit(span: Span, unit: Unit, year: i64, month: i64) -> Date {
    let around = match unit {
        Unit::Year => Span {
            lo: month_start(year - 1, 1),
            hi: month_start(year + 2, 1),
        },
        Unit::Month => Span {
            lo: month_start(year, month - 1),
            hi: month_start(year, month + 2),
        },
        Unit::Fixed(width) => Span {
            lo: span.lo - width,
            hi: span.hi + width,
        },
    };
    Date { span, around }
}

/// Whether a resource's date range `target` satisfies `prefix` with the
/// query's `search` date, following the R4 rules for ranges.
pub(crate) fn matches(prefix: Prefix, search: &Date, target: Span) -> bool {
    let s = search.span;
    let contains = s.lo <= target.lo && target.hi <= s.hi;
    match prefix {
        Prefix::Eq => contains,
        Prefix::Ne => !contains,
        Prefix::Gt => target.hi > s.hi,
        Prefix::Lt => target.lo < s.lo,
        Prefix::Ge => target.hi > s.hi || contains,
        Prefix::Le => target.lo < s.lo || contains,
        Prefix::Sa => target.lo >= s.hi,
        Prefix::Eb => target.hi <= s.lo,
        Prefix::Ap => target.lo < search.around.hi && target.hi > search.around.lo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        parse(text).unwrap().span.lo
    }

    #[test]
    fn parses_precisions_as_ranges() {
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("1970-01-02"), MICROS_PER_DAY);
        assert_eq!(at("1969-12-31T23:59:59Z"), -MICROS_PER_SECOND);
        assert_eq!(
            at("2000-03-01") - at("2000-02-28"),
            2 * MICROS_PER_DAY,
            "2000 is a leap year"
        );
        assert_eq!(
            at("1900-03-01") - at("1900-02-28"),
            MICROS_PER_DAY,
            "1900 is not"
        );
        let year = parse("2019").unwrap().span;
        assert_eq!((year.lo, year.hi), (at("2019-01-01"), at("2020-01-01")));
        let month = parse("2019-12").unwrap().span;
        assert_eq!((month.lo, month.hi), (at("2019-12-01"), at("2020-01-01")));
        let minute = parse("2019-03-05T10:00").unwrap().span;
        assert_eq!(minute.hi - minute.lo, 60 * MICROS_PER_SECOND);
        let offset = parse("2011-02-02T16:30:49-05:00").unwrap().span;
        assert_eq!(offset.lo, at("2011-02-02T21:30:49Z"));
        assert_eq!(offset.hi - offset.lo, MICROS_PER_SECOND);
        let millis = parse("2011-02-02T16:30:49.825-05:00").unwrap().span;
        assert_eq!(
            (millis.lo - offset.lo, millis.hi - millis.lo),
            (825_000, 1_000)
        );
        let nanos = parse("2011-02-02T16:30:49.123456789Z").unwrap().span;
        assert_eq!(nanos.hi - nanos.lo, 1);
        assert_eq!(
            at("2019-03-05T10:00:00"),
            at("2019-03-05T10:00:00Z"),
            "no zone = UTC"
        );
        assert_eq!(at("2016-12-31T23:59:60Z"), at("2017-01-01T00:00:00Z"));
        assert_eq!(at("0001-01-01"), days_from_civil(1, 1, 1) * MICROS_PER_DAY);
        for bad in [
            "",
            "19",
            "2019-",
            "2019-13",
            "2019-00",
            "2019-02-29",
            "2019-04-31",
            "2019-1-01",
            "2019-01-01T",
            "2019-01-01T24:00",
            "2019-01-01T10:60",
            "2019-01-01T10:00:00.",
            "2019-01-01T10:00:00+1",
            "2019-01-01T10:00:00+15:00",
            "2019-01-01X",
            "２０19",
            "2019-01-01T10:00:00Zjunk",
            "-2019",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ap_widens_by_one_unit_of_precision() {
        let year = parse("2019").unwrap().around;
        assert_eq!((year.lo, year.hi), (at("2018-01-01"), at("2021-01-01")));
        let january = parse("2019-01").unwrap().around;
        assert_eq!(
            (january.lo, january.hi),
            (at("2018-12-01"), at("2019-03-01"))
        );
        let day = parse("2019-03-05").unwrap().around;
        assert_eq!((day.lo, day.hi), (at("2019-03-04"), at("2019-03-07")));
    }

    #[test]
    fn prefixes_follow_the_r4_range_rules() {
        let search = parse("2019-03").unwrap();
        let span = |a: &str, b: &str| Span {
            lo: parse(a).unwrap().span.lo,
            hi: parse(b).unwrap().span.hi,
        };
        let inside = parse("2019-03-05").unwrap().span;
        let before = parse("2019-02-27").unwrap().span;
        let after = parse("2019-04-01").unwrap().span;
        let straddle = span("2019-02-20", "2019-03-10");
        let open_end = Span {
            lo: inside.lo,
            hi: i64::MAX,
        };
        use Prefix::*;
        let cases: [(Prefix, Span, bool); 28] = [
            (Eq, inside, true),
            (Eq, straddle, false),
            (Eq, before, false),
            (Ne, inside, false),
            (Ne, straddle, true),
            (Gt, after, true),
            (Gt, inside, false),
            (Gt, open_end, true),
            (Lt, before, true),
            (Lt, straddle, true),
            (Lt, inside, false),
            (Ge, inside, true),
            (Ge, after, true),
            (Ge, before, false),
            (Ge, straddle, false),
            (Le, inside, true),
            (Le, before, true),
            (Le, after, false),
            (Sa, after, true),
            (Sa, inside, false),
            (Sa, open_end, false),
            (Eb, before, true),
            (Eb, straddle, false),
            (Ap, before, true),
            (Ap, after, true),
            (Ap, parse("2019-05-01").unwrap().span, false),
            (Ap, parse("2019-01-31").unwrap().span, false),
            (Eq, Span::ALL, false),
        ];
        for (prefix, target, want) in cases {
            assert_eq!(
                matches(prefix, &search, target),
                want,
                "{prefix:?} {target:?}"
            );
        }
    }
}
