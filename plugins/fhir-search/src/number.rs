//! Exact decimals for number and quantity search: no floating point, so
//! `100` and `99.5` compare as written.

use std::cmp::Ordering;

use crate::query::Prefix;

/// Significant digits kept; more are truncated (the value then stands for
/// its first 36 digits). Leaves room to compute `(2c ± 1) × 5` and `c × 11`
/// in a u128.
const MAX_DIGITS: u32 = 36;
/// Exponents are clamped here: far beyond any measurement, and safe to add.
const MAX_EXPONENT: i64 = 1_000_000;

/// `±coefficient × 10^exponent`; the coefficient keeps the digits as
/// written, trailing zeros included (they carry the precision).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal {
    negative: bool,
    coefficient: u128,
    exponent: i64,
}

fn digit_count(n: u128) -> i64 {
    i64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

impl Decimal {
    /// Parses JSON number syntax (`-1.50`, `1e2`, `2.5E-3`).
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((w, f)) if !f.is_empty() => (w, f),
            Some(_) => return None,
            None => (mantissa, ""),
        };
        if whole.is_empty()
            || (whole.len() > 1 && whole.starts_with('0'))
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut exponent = match exponent {
            Some(e) => parse_exponent(e)?,
            None => 0,
        } - fraction.len() as i64;
        let mut coefficient: u128 = 0;
        let mut kept = 0;
        for d in whole.bytes().chain(fraction.bytes()) {
            if kept == MAX_DIGITS {
                exponent += 1;
                continue;
            }
            coefficient = coefficient * 10 + u128::from(d - b'0');
            kept += u32::from(coefficient > 0);
        }
        Some(Decimal {
            negative,
            coefficient,
            exponent: exponent.clamp(-MAX_EXPONENT, MAX_EXPONENT),
        })
    }

    fn is_zero(&self) -> bool {
        self.coefficient == 0
    }

    /// The range the value stands for by its significant figures: `100` is
    /// `[99.5, 100.5)`, `1e2` is `[50, 150)`, `100.0` is `[99.95, 100.05)`.
    pub(crate) fn precision_range(&self) -> (Decimal, Decimal) {
        let half_unit = Decimal {
            negative: false,
            coefficient: 5,
            exponent: self.exponent - 1,
        };
        if self.is_zero() {
            return (half_unit.negated(), half_unit);
        }
        let scaled = |c: u128| Decimal {
            negative: false,
            coefficient: c * 5,
            exponent: self.exponent - 1,
        };
        let below = scaled(2 * self.coefficient - 1);
        let above = scaled(2 * self.coefficient + 1);
        if self.negative {
            (above.negated(), below.negated())
        } else {
            (below, above)
        }
    }

    /// `self × factor / 10`.
    fn tenths(&self, factor: u128) -> Decimal {
        Decimal {
            negative: self.negative,
            coefficient: self.coefficient * factor,
            exponent: self.exponent - 1,
        }
    }

    /// The values within 10% of `self`: `[0.9 × s, 1.1 × s]` (ordered).
    pub(crate) fn approx_range(&self) -> (Decimal, Decimal) {
        let (a, b) = (self.tenths(9), self.tenths(11));
        if self.negative { (b, a) } else { (a, b) }
    }

    fn negated(self) -> Decimal {
        Decimal {
            negative: !self.negative,
            ..self
        }
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        let order = |d: &Decimal| digit_count(d.coefficient) + d.exponent;
        order(self).cmp(&order(other)).then_with(|| {
            // Same order of magnitude: the exponents differ by less than
            // MAX_DIGITS, so aligning them cannot overflow.
            let (a, b) = (self, other);
            if a.exponent >= b.exponent {
                let shift = (a.exponent - b.exponent) as u32;
                (a.coefficient * 10u128.pow(shift)).cmp(&b.coefficient)
            } else {
                let shift = (b.exponent - a.exponent) as u32;
                a.coefficient.cmp(&(b.coefficient * 10u128.pow(shift)))
            }
        })
    }
}

fn parse_exponent(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0i64, |acc, d| {
        (acc * 10 + i64::from(d - b'0')).min(MAX_EXPONENT * 10)
    });
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let negative = |d: &Decimal| d.negative && !d.is_zero();
        match (negative(self), negative(other)) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

/// A number from a query: the value as written and its ranges.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Search {
    pub prefix: Prefix,
    value: Decimal,
    /// By significant figures, `[lo, hi)`: what `eq` and `ne` use.
    precision: (Decimal, Decimal),
    /// Within 10%, closed: what `ap` uses.
    approx: (Decimal, Decimal),
}

impl Search {
    pub(crate) fn new(prefix: Prefix, value: Decimal) -> Search {
        Search {
            prefix,
            value,
            precision: value.precision_range(),
            approx: value.approx_range(),
        }
    }

    /// Whether a resource's value, the closed interval `[low, high]`
    /// (`None` = unbounded; `low == high` for a plain number), satisfies the
    /// search. `eq` asks the interval to lie within the value's precision
    /// range; `gt`, `ge`, `lt`, `le` compare exactly, as do `sa` (= `gt`)
    /// and `eb` (= `lt`); `ap` asks for an overlap with ±10%.
    pub(crate) fn matches(&self, low: Option<Decimal>, high: Option<Decimal>) -> bool {
        let s = self.value;
        let (lo, hi) = self.precision;
        let contained = low.is_some_and(|l| l >= lo) && high.is_some_and(|h| h < hi);
        match self.prefix {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt | Prefix::Sa => high.is_none_or(|h| h > s),
            Prefix::Ge => high.is_none_or(|h| h >= s),
            Prefix::Lt | Prefix::Eb => low.is_none_or(|l| l < s),
            Prefix::Le => low.is_none_or(|l| l <= s),
            Prefix::Ap => {
                let (a, b) = self.approx;
                low.is_none_or(|l| l <= b) && high.is_none_or(|h| h >= a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn parses_and_orders_exactly() {
        assert_eq!(d("100"), d("1e2"));
        assert_eq!(d("100"), d("100.000"));
        assert_eq!(d("0"), d("-0.0"));
        assert!(d("99.5") < d("100"));
        assert!(d("-1") < d("0"));
        assert!(d("-2") < d("-1.5"));
        assert!(d("0.1") > d("0.09999999999999999999999999"));
        assert!(d("1e300") > d("9.99e299"));
        assert!(d("1e-300") < d("1e-299"));
        assert!(d("12345678901234567890123456789012345678901234567890") > d("1.2e49"));
        assert!(d("1e999999999999999999999") > d("1e999999"));
        assert_eq!(d("2.5E-3"), d("0.0025"));
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1x", "١", "0x10", "1.5.2", "--1",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn precision_and_approx_ranges() {
        let range = |t: &str| {
            let (lo, hi) = d(t).precision_range();
            (lo, hi)
        };
        assert_eq!(range("100"), (d("99.5"), d("100.5")));
        assert_eq!(range("1e2"), (d("50"), d("150")));
        assert_eq!(range("100.00"), (d("99.995"), d("100.005")));
        assert_eq!(range("-100"), (d("-100.5"), d("-99.5")));
        assert_eq!(range("0"), (d("-0.5"), d("0.5")));
        assert_eq!(d("100").approx_range(), (d("90"), d("110")));
        assert_eq!(d("-100").approx_range(), (d("-110"), d("-90")));
    }

    #[test]
    fn prefixes() {
        let point = |prefix, search: &str, value: &str| {
            let v = d(value);
            Search::new(prefix, d(search)).matches(Some(v), Some(v))
        };
        use Prefix::*;
        assert!(point(Eq, "100", "99.5"));
        assert!(point(Eq, "100", "100.4999"));
        assert!(!point(Eq, "100", "100.5"));
        assert!(!point(Eq, "100", "99.49"));
        assert!(point(Eq, "1e2", "140"));
        assert!(point(Ne, "100", "101"));
        assert!(!point(Ne, "100", "100.2"));
        assert!(point(Gt, "100", "100.01"));
        assert!(!point(Gt, "100", "100"));
        assert!(point(Ge, "100", "100"));
        assert!(!point(Ge, "100", "99.99"));
        assert!(point(Lt, "100", "99.99"));
        assert!(!point(Lt, "100", "100"));
        assert!(point(Le, "100", "100"));
        assert!(point(Sa, "100", "101") && !point(Sa, "100", "100"));
        assert!(point(Eb, "100", "99") && !point(Eb, "100", "100"));
        assert!(point(Ap, "100", "110") && point(Ap, "100", "90"));
        assert!(!point(Ap, "100", "110.01") && !point(Ap, "100", "89.9"));
        let range = |prefix, search: &str, low: Option<&str>, high: Option<&str>| {
            Search::new(prefix, d(search)).matches(low.map(d), high.map(d))
        };
        assert!(range(Eq, "100", Some("99.6"), Some("100.4")));
        assert!(!range(Eq, "100", Some("99.6"), None));
        assert!(range(Gt, "100", Some("1"), None));
        assert!(range(Lt, "100", None, Some("1000")));
        assert!(!range(Gt, "100", Some("1"), Some("50")));
        assert!(range(Ap, "100", Some("105"), Some("200")));
        assert!(!range(Ap, "100", Some("111"), Some("200")));
    }
}
