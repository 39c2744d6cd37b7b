//! Decimals compared exactly, with the range a search value's significant
//! figures imply; written for the oracle only.

use std::cmp::Ordering;

/// `units × 10^-scale`.
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    units: i128,
    scale: u32,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let (negative, whole) = match whole.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, whole.strip_prefix('+').unwrap_or(whole)),
        };
        if whole.is_empty() || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut units: i128 = format!("{whole}{fraction}").parse().ok()?;
        if negative {
            units = -units;
        }
        let mut scale = fraction.len() as i32 - exponent;
        while scale < 0 {
            units *= 10;
            scale += 1;
        }
        Some(Decimal {
            units,
            scale: scale as u32,
        })
    }

    pub fn of(value: &serde_json::Value) -> Option<Decimal> {
        value
            .as_number()
            .and_then(|n| Decimal::parse(&n.to_string()))
    }

    fn at_scale(self, scale: u32) -> i128 {
        self.units * 10i128.pow(scale - self.scale)
    }

    /// Half a unit of the last stated digit either side: `100` → [99.5, 100.5).
    pub fn implied_range(self) -> (Decimal, Decimal) {
        let units = self.units * 10;
        let scale = self.scale + 1;
        (
            Decimal {
                units: units - 5,
                scale,
            },
            Decimal {
                units: units + 5,
                scale,
            },
        )
    }

    pub fn percent(self, percent: i128) -> Decimal {
        Decimal {
            units: self.units.abs() * percent,
            scale: self.scale + 2,
        }
    }

    pub fn plus(self, other: Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        Decimal {
            units: self.at_scale(scale) + other.at_scale(scale),
            scale,
        }
    }

    pub fn minus(self, other: Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        Decimal {
            units: self.at_scale(scale) - other.at_scale(scale),
            scale,
        }
    }
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
        let scale = self.scale.max(other.scale);
        self.at_scale(scale).cmp(&other.at_scale(scale))
    }
}

/// `[prefix]number` against a target value. `eq`/`ne` use the range the
/// search value's precision implies; the order prefixes compare with the
/// stated value. R4 leaves open whether `gt100` takes 100.2, so a target
/// between the value and its range bound is a badly chosen case and panics.
pub fn matches(search: &str, target: Decimal) -> bool {
    let (prefix, number) = super::date::split_prefix(search);
    let value = Decimal::parse(number).unwrap_or_else(|| panic!("oracle: bad number {search}"));
    let (lo, hi) = value.implied_range();
    let ambiguous = match prefix {
        "gt" | "le" | "sa" => target > value && target < hi,
        "lt" | "ge" | "eb" => target >= lo && target < value,
        _ => false,
    };
    assert!(
        !ambiguous,
        "oracle: {target:?} is inside the precision of {search}; pick another value"
    );
    match prefix {
        "eq" => lo <= target && target < hi,
        "ne" => !(lo <= target && target < hi),
        "gt" | "sa" => target > value,
        "lt" | "eb" => target < value,
        "ge" => target >= value,
        "le" => target <= value,
        "ap" => {
            let margin = value.percent(10);
            value.minus(margin) <= target && target <= value.plus(margin)
        }
        other => panic!("the oracle has no rule for prefix {other}"),
    }
}

#[test]
fn decimals_compare_exactly() {
    let d = |t: &str| Decimal::parse(t).unwrap();
    assert_eq!(d("100"), d("100.000"));
    assert_eq!(d("1e2"), d("100"));
    assert!(d("99.5") < d("99.50001"));
    assert!(d("-0.5") < d("0"));
    let (lo, hi) = d("100").implied_range();
    assert_eq!((lo, hi), (d("99.5"), d("100.5")));
    assert!(matches("100", d("99.6")) && matches("100", d("100.4")) && !matches("100", d("100.5")));
    assert!(matches("ap100", d("109")) && !matches("ap100", d("111")));
    assert!(matches("lt5.4", d("5.3")) && !matches("ge5.4", d("5.3")));
    assert_eq!(Decimal::parse("1.2.3"), None);
}
