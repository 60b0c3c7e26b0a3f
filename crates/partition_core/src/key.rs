//! The partition key types version 1 supports, and their values.
//!
//! Every key value is held as one `i64` in the type's natural unit, the same
//! unit and from the epoch PostgreSQL itself uses (2000-01-01): microseconds
//! for timestamps, days for dates, the integer itself otherwise. ±infinity map
//! to `i64::MIN`/`i64::MAX`, so ordering of `KeyValue`s is PostgreSQL's, and
//! the largest timestamp (294276 AD) still fits, which it would not counted
//! from 1970.

use std::fmt;

use crate::calendar;

/// A supported partition key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    TimestampTz,
    Timestamp,
    Date,
    SmallInt,
    Integer,
    BigInt,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition key type {0} is not supported (supported: timestamptz, timestamp, date, smallint, integer, bigint)")]
pub struct UnsupportedKeyType(pub String);

impl KeyType {
    pub const ALL: [KeyType; 6] = [
        KeyType::TimestampTz,
        KeyType::Timestamp,
        KeyType::Date,
        KeyType::SmallInt,
        KeyType::Integer,
        KeyType::BigInt,
    ];

    /// Accepts the names `pg_catalog.format_type` and `regtype` print.
    pub fn from_sql_name(name: &str) -> Result<KeyType, UnsupportedKeyType> {
        match name.trim().to_ascii_lowercase().as_str() {
            "timestamp with time zone" | "timestamptz" => Ok(KeyType::TimestampTz),
            "timestamp without time zone" | "timestamp" => Ok(KeyType::Timestamp),
            "date" => Ok(KeyType::Date),
            "smallint" | "int2" => Ok(KeyType::SmallInt),
            "integer" | "int" | "int4" => Ok(KeyType::Integer),
            "bigint" | "int8" => Ok(KeyType::BigInt),
            _ => Err(UnsupportedKeyType(name.to_string())),
        }
    }

    /// The canonical SQL name, usable in casts.
    pub fn sql_name(self) -> &'static str {
        match self {
            KeyType::TimestampTz => "timestamp with time zone",
            KeyType::Timestamp => "timestamp without time zone",
            KeyType::Date => "date",
            KeyType::SmallInt => "smallint",
            KeyType::Integer => "integer",
            KeyType::BigInt => "bigint",
        }
    }

    /// Time-like keys are forecast by key time; integer keys by wall-clock speed.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            KeyType::TimestampTz | KeyType::Timestamp | KeyType::Date
        )
    }

    /// Smallest and largest finite value a column of this type can hold.
    pub fn finite_range(self) -> (i64, i64) {
        match self {
            KeyType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
            KeyType::Integer => (i32::MIN as i64, i32::MAX as i64),
            KeyType::BigInt => (i64::MIN, i64::MAX),
            KeyType::Timestamp | KeyType::TimestampTz => (
                calendar::MIN_TIMESTAMP_MICROS,
                calendar::MAX_TIMESTAMP_MICROS,
            ),
            KeyType::Date => (calendar::MIN_DATE_DAYS, calendar::MAX_DATE_DAYS),
        }
    }

    /// Whether `raw` is a value this type can represent (±infinity included
    /// for time types).
    pub fn accepts(self, raw: i64) -> bool {
        let (lo, hi) = self.finite_range();
        (lo..=hi).contains(&raw) || (self.is_temporal() && (raw == i64::MIN || raw == i64::MAX))
    }

    /// Parses a value as PostgreSQL prints it with `DateStyle = ISO` and
    /// `TimeZone = UTC` (quotes already removed).
    pub fn parse_value(self, text: &str) -> Result<KeyValue, crate::BoundError> {
        let text = text.trim();
        let bad = || crate::BoundError::BadValue {
            key_type: self,
            text: text.to_string(),
        };
        let raw = match self {
            KeyType::SmallInt | KeyType::Integer | KeyType::BigInt => {
                text.parse::<i64>().map_err(|_| bad())?
            }
            KeyType::Date => match text {
                "infinity" => i64::MAX,
                "-infinity" => i64::MIN,
                _ => calendar::parse_iso_date(text).ok_or_else(bad)?,
            },
            KeyType::Timestamp | KeyType::TimestampTz => match text {
                "infinity" => i64::MAX,
                "-infinity" => i64::MIN,
                _ => calendar::parse_iso_timestamp(text, self == KeyType::TimestampTz)
                    .ok_or_else(bad)?,
            },
        };
        if !self.accepts(raw) {
            return Err(bad());
        }
        Ok(KeyValue {
            key_type: self,
            raw,
        })
    }

    /// Raw key units per second of wall-clock time (microseconds for
    /// timestamps, days for dates); 1 for integer keys, whose spans are
    /// counts of keys.
    pub fn units_per_second(self) -> f64 {
        match self {
            KeyType::Date => 1.0 / 86_400.0,
            KeyType::Timestamp | KeyType::TimestampTz => 1e6,
            _ => 1.0,
        }
    }

    pub fn value(self, raw: i64) -> KeyValue {
        KeyValue {
            key_type: self,
            raw,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// One value of a partition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key_type: KeyType,
    /// Microseconds (timestamps), days (dates) or the integer itself.
    pub raw: i64,
}

impl KeyValue {
    /// The value as PostgreSQL's ISO output would print it, unquoted.
    pub fn to_text(self) -> String {
        match self.key_type {
            KeyType::SmallInt | KeyType::Integer | KeyType::BigInt => self.raw.to_string(),
            KeyType::Date => match self.raw {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                days => calendar::format_iso_date(days),
            },
            KeyType::Timestamp | KeyType::TimestampTz => match self.raw {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                micros => {
                    calendar::format_iso_timestamp(micros, self.key_type == KeyType::TimestampTz)
                }
            },
        }
    }

    /// A SQL literal of the key's type, safe to splice into DDL: integers
    /// bare, everything else quoted and cast.
    pub fn to_sql_literal(self) -> String {
        match self.key_type {
            KeyType::SmallInt | KeyType::Integer | KeyType::BigInt => self.raw.to_string(),
            t => format!("'{}'::{}", self.to_text(), t.sql_name()),
        }
    }
}

impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.key_type == other.key_type).then(|| self.raw.cmp(&other.raw))
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_from_format_type() {
        assert_eq!(
            KeyType::from_sql_name("timestamp with time zone"),
            Ok(KeyType::TimestampTz)
        );
        assert_eq!(KeyType::from_sql_name("integer"), Ok(KeyType::Integer));
        assert_eq!(KeyType::from_sql_name("bigint"), Ok(KeyType::BigInt));
        assert!(KeyType::from_sql_name("numeric").is_err());
        assert!(KeyType::from_sql_name("text").is_err());
        for t in KeyType::ALL {
            assert_eq!(KeyType::from_sql_name(t.sql_name()), Ok(t));
        }
    }

    #[test]
    fn integer_values_respect_their_width() {
        assert!(KeyType::SmallInt.parse_value("32767").is_ok());
        assert!(KeyType::SmallInt.parse_value("32768").is_err());
        assert!(KeyType::Integer.parse_value("-2147483648").is_ok());
        assert!(KeyType::Integer.parse_value("2147483648").is_err());
        assert!(KeyType::BigInt.parse_value("9223372036854775807").is_ok());
        assert!(KeyType::BigInt.parse_value("12abc").is_err());
    }

    #[test]
    fn literals_are_typed_and_quoted() {
        let t = KeyType::TimestampTz
            .parse_value("2024-03-01 12:00:00+00")
            .unwrap();
        assert_eq!(
            t.to_sql_literal(),
            "'2024-03-01 12:00:00+00'::timestamp with time zone"
        );
        assert_eq!(KeyType::BigInt.value(-5).to_sql_literal(), "-5");
        assert_eq!(
            KeyType::Date.value(i64::MAX).to_sql_literal(),
            "'infinity'::date"
        );
    }
}
