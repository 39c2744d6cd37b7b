//! Points in time at millisecond precision, the resolution of `meta.lastUpdated`.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Instant(i64);

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a FHIR instant or dateTime (e.g. 2024-05-01T12:00:00Z, 2024-05-01, 2024)")]
pub struct InstantParseError(pub String);

impl Instant {
    pub const MIN: Instant = Instant(i64::MIN);
    pub const MAX: Instant = Instant(i64::MAX);

    pub fn from_millis(ms: i64) -> Self {
        Instant(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Instant((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Parses a FHIR `instant` or a (possibly partial) `dateTime`. A partial
    /// value (`2024`, `2024-05`, `2024-05-01`) means the start of that period
    /// in UTC; sub-millisecond digits are dropped.
    pub fn parse(s: &str) -> Result<Self, InstantParseError> {
        let err = || InstantParseError(s.to_owned());
        let s = s.trim();
        if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(Instant((dt.unix_timestamp_nanos() / 1_000_000) as i64));
        }
        let date = match s.len() {
            4 => format!("{s}-01-01"),
            7 => format!("{s}-01"),
            10 => s.to_owned(),
            _ => return Err(err()),
        };
        let date =
            Date::parse(&date, format_description!("[year]-[month]-[day]")).map_err(|_| err())?;
        let dt = date.midnight().assume_offset(UtcOffset::UTC);
        Ok(Instant((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// The FHIR instant form, always UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
    pub fn to_fhir(self) -> String {
        let Ok(dt) = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000) else {
            return String::from("0001-01-01T00:00:00.000Z");
        };
        dt.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
    }

    /// RFC 7231 HTTP-date, for `Last-Modified` and `Expires`.
    pub fn to_http_date(self) -> String {
        let Ok(dt) = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000) else {
            return String::new();
        };
        dt.format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
    }
}

/// As a FHIR instant string, so persisted records stay readable.
impl serde::Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_fhir())
    }
}

impl<'de> serde::Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Instant::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fhir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_partials() {
        let i = Instant::parse("2024-05-01T12:00:00.123Z").unwrap();
        assert_eq!(i.to_fhir(), "2024-05-01T12:00:00.123Z");
        assert_eq!(
            Instant::parse("2024-05-01T14:00:00.123456+02:00").unwrap(),
            i
        );
        assert_eq!(
            Instant::parse("2024-05-01").unwrap().to_fhir(),
            "2024-05-01T00:00:00.000Z"
        );
        assert_eq!(
            Instant::parse("2024-05").unwrap().to_fhir(),
            "2024-05-01T00:00:00.000Z"
        );
        assert_eq!(
            Instant::parse("2024").unwrap().to_fhir(),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(i.to_http_date(), "Wed, 01 May 2024 12:00:00 GMT");
        let json = serde_json::to_string(&i).unwrap();
        assert_eq!(json, "\"2024-05-01T12:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Instant>(&json).unwrap(), i);
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-05-01T12:00",
            "20240501",
        ] {
            assert!(Instant::parse(bad).is_err(), "{bad}");
        }
    }
}
