//! Partition bounds as `pg_get_expr(relpartbound, oid)` prints them, parsed
//! into key values and rendered back as SQL.

use crate::key::{KeyType, KeyValue};

/// One side of a range bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bound {
    MinValue,
    Value(KeyValue),
    MaxValue,
}

impl Bound {
    /// Position on the key axis, for comparisons: MINVALUE sorts before every
    /// value (even -infinity), MAXVALUE after every value.
    fn rank(self) -> (i8, i64) {
        match self {
            Bound::MinValue => (-1, 0),
            Bound::Value(v) => (0, v.raw),
            Bound::MaxValue => (1, 0),
        }
    }

    /// The bound as it appears inside `FOR VALUES FROM (…) TO (…)`.
    pub fn to_sql(self) -> String {
        match self {
            Bound::MinValue => "MINVALUE".into(),
            Bound::MaxValue => "MAXVALUE".into(),
            Bound::Value(v) => v.to_sql_literal(),
        }
    }

    /// The bound for display: the value's text, or MINVALUE/MAXVALUE.
    pub fn to_text(self) -> String {
        match self {
            Bound::MinValue => "MINVALUE".into(),
            Bound::MaxValue => "MAXVALUE".into(),
            Bound::Value(v) => v.to_text(),
        }
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The bound of one partition of a range-partitioned table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartitionBound {
    Default,
    /// `[from, to)`, as PostgreSQL defines range partitions.
    Range {
        from: Bound,
        to: Bound,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("partition bound {0:?} is not a single-column range bound")]
    NotRange(String),
    #[error("partition bound value {text:?} is not a valid {key_type}")]
    BadValue { key_type: KeyType, text: String },
    #[error("partition bound {0:?} is empty or inverted")]
    Empty(String),
}

impl PartitionBound {
    /// Parses `DEFAULT` or `FOR VALUES FROM (a) TO (b)` where `a` and `b` are
    /// MINVALUE, MAXVALUE, a bare number or a quoted literal, as printed with
    /// `DateStyle = ISO` and `TimeZone = UTC`.
    pub fn parse(text: &str, key_type: KeyType) -> Result<PartitionBound, BoundError> {
        let trimmed = text.trim();
        if trimmed == "DEFAULT" {
            return Ok(PartitionBound::Default);
        }
        let not_range = || BoundError::NotRange(text.to_string());
        let rest = trimmed
            .strip_prefix("FOR VALUES FROM (")
            .ok_or_else(not_range)?;
        let (from_text, rest) = split_datum(rest).ok_or_else(not_range)?;
        let rest = rest.strip_prefix(") TO (").ok_or_else(not_range)?;
        let (to_text, rest) = split_datum(rest).ok_or_else(not_range)?;
        if rest != ")" {
            return Err(not_range());
        }
        let from = parse_datum(&from_text, key_type)?;
        let to = parse_datum(&to_text, key_type)?;
        if from >= to {
            return Err(BoundError::Empty(text.to_string()));
        }
        Ok(PartitionBound::Range { from, to })
    }

    pub fn range(from: Bound, to: Bound) -> PartitionBound {
        PartitionBound::Range { from, to }
    }

    /// `[from, to)` in raw key units (MINVALUE/MAXVALUE as `i64::MIN`/`i64::MAX`);
    /// `None` for DEFAULT.
    pub fn raw_range(self) -> Option<(i64, i64)> {
        let raw = |b: Bound| match b {
            Bound::MinValue => i64::MIN,
            Bound::MaxValue => i64::MAX,
            Bound::Value(v) => v.raw,
        };
        match self {
            PartitionBound::Default => None,
            PartitionBound::Range { from, to } => Some((raw(from), raw(to))),
        }
    }

    /// The clause for `ATTACH PARTITION … FOR VALUES …` / `… DEFAULT`.
    pub fn to_sql(self) -> String {
        match self {
            PartitionBound::Default => "DEFAULT".into(),
            PartitionBound::Range { from, to } => {
                format!("FOR VALUES FROM ({}) TO ({})", from.to_sql(), to.to_sql())
            }
        }
    }

    /// Whether `value` falls in this range (never for DEFAULT: what DEFAULT
    /// holds depends on the other partitions).
    pub fn contains(self, value: KeyValue) -> bool {
        match self {
            PartitionBound::Default => false,
            PartitionBound::Range { from, to } => {
                from <= Bound::Value(value) && Bound::Value(value) < to
            }
        }
    }

    /// Whether two ranges share any key.
    pub fn overlaps(self, other: PartitionBound) -> bool {
        match (self, other) {
            (
                PartitionBound::Range { from: a, to: b },
                PartitionBound::Range { from: c, to: d },
            ) => a < d && c < b,
            _ => false,
        }
    }
}

/// Splits the first datum off `text` (which starts right after an opening
/// parenthesis): a quoted literal with `''` escapes, or a bare word up to `)`.
/// Returns the unquoted datum and the rest starting at the closing `)`.
fn split_datum(text: &str) -> Option<(String, &str)> {
    if let Some(body) = text.strip_prefix('\'') {
        let mut value = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    value.push('\'');
                } else {
                    return Some((value, &body[at + 1..]));
                }
            } else {
                value.push(c);
            }
        }
        None
    } else {
        let end = text.find(')')?;
        let word = &text[..end];
        // A comma means a multi-column bound, which version 1 does not manage.
        (!word.contains(',') && !word.is_empty()).then(|| (word.trim().to_string(), &text[end..]))
    }
}

fn parse_datum(text: &str, key_type: KeyType) -> Result<Bound, BoundError> {
    match text {
        "MINVALUE" => Ok(Bound::MinValue),
        "MAXVALUE" => Ok(Bound::MaxValue),
        value => key_type.parse_value(value).map(Bound::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(text: &str, key_type: KeyType) -> (Bound, Bound) {
        match PartitionBound::parse(text, key_type).unwrap() {
            PartitionBound::Range { from, to } => (from, to),
            PartitionBound::Default => panic!("not a range"),
        }
    }

    #[test]
    fn catalog_forms() {
        assert_eq!(
            PartitionBound::parse("DEFAULT", KeyType::Date),
            Ok(PartitionBound::Default)
        );
        let (from, to) = range("FOR VALUES FROM (0) TO (100)", KeyType::Integer);
        assert_eq!(
            (from, to),
            (
                Bound::Value(KeyType::Integer.value(0)),
                Bound::Value(KeyType::Integer.value(100))
            )
        );
        // Negative integers come quoted.
        let (from, _) = range("FOR VALUES FROM ('-100') TO (0)", KeyType::BigInt);
        assert_eq!(from, Bound::Value(KeyType::BigInt.value(-100)));
        let (from, to) = range(
            "FOR VALUES FROM (MINVALUE) TO ('2024-01-01')",
            KeyType::Date,
        );
        assert_eq!(from, Bound::MinValue);
        assert_eq!(to.to_text(), "2024-01-01");
        let (from, to) = range(
            "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-01-01 01:00:00+00')",
            KeyType::TimestampTz,
        );
        assert_eq!(
            to,
            Bound::Value(KeyType::TimestampTz.value(from_raw(from) + 3_600_000_000))
        );
        let (_, to) = range(
            "FOR VALUES FROM ('2024-01-01 00:00:00') TO (MAXVALUE)",
            KeyType::Timestamp,
        );
        assert_eq!(to, Bound::MaxValue);
    }

    fn from_raw(b: Bound) -> i64 {
        match b {
            Bound::Value(v) => v.raw,
            _ => panic!("not a value"),
        }
    }

    #[test]
    fn refuses_what_is_not_a_single_column_range() {
        for bad in [
            "FOR VALUES IN (1, 2)",
            "FOR VALUES WITH (modulus 4, remainder 0)",
            "FOR VALUES FROM (1, 2) TO (3, 4)",
            "FOR VALUES FROM ('a') TO ('b'",
        ] {
            assert!(
                matches!(
                    PartitionBound::parse(bad, KeyType::Integer),
                    Err(BoundError::NotRange(_)) | Err(BoundError::BadValue { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            PartitionBound::parse("FOR VALUES FROM (10) TO (5)", KeyType::Integer),
            Err(BoundError::Empty(_))
        ));
        assert!(matches!(
            PartitionBound::parse("FOR VALUES FROM ('x') TO ('2024-01-01')", KeyType::Date),
            Err(BoundError::BadValue { .. })
        ));
    }

    #[test]
    fn sql_rendering() {
        let b = PartitionBound::parse(
            "FOR VALUES FROM ('2024-01-01') TO (MAXVALUE)",
            KeyType::Date,
        )
        .unwrap();
        assert_eq!(
            b.to_sql(),
            "FOR VALUES FROM ('2024-01-01'::date) TO (MAXVALUE)"
        );
        assert_eq!(PartitionBound::Default.to_sql(), "DEFAULT");
    }

    fn any_key_value() -> impl Strategy<Value = KeyValue> {
        proptest::sample::select(KeyType::ALL.to_vec()).prop_flat_map(|t| {
            let (lo, hi) = t.finite_range();
            prop_oneof![
                8 => (lo..=hi).prop_map(move |raw| t.value(raw)),
                1 => Just(t.value(lo)),
                1 => Just(t.value(hi)),
            ]
        })
    }

    proptest! {
        /// What we render is what PostgreSQL prints, so parse(print) is the identity.
        #[test]
        fn value_text_round_trip(v in any_key_value()) {
            prop_assert_eq!(v.key_type.parse_value(&v.to_text()), Ok(v));
        }

        #[test]
        fn bound_text_round_trip(a in any_key_value(), delta in 1i64..1_000_000) {
            let t = a.key_type;
            let (_, hi) = t.finite_range();
            prop_assume!(a.raw < hi);
            let b = t.value(a.raw.saturating_add(delta).min(hi));
            // Catalog text quotes every non-integer literal; imitate it.
            let quote = |v: KeyValue| if t.is_temporal() || v.raw < 0 { format!("'{}'", v.to_text()) } else { v.to_text() };
            let text = format!("FOR VALUES FROM ({}) TO ({})", quote(a), quote(b));
            let parsed = PartitionBound::parse(&text, t).unwrap();
            prop_assert_eq!(parsed, PartitionBound::range(Bound::Value(a), Bound::Value(b)));
            prop_assert!(parsed.contains(a));
            prop_assert!(!parsed.contains(b));
        }

        #[test]
        fn overlap_is_symmetric_and_matches_containment(x in -1000i64..1000, y in -1000i64..1000, p in -1000i64..1000, q in -1000i64..1000) {
            let t = KeyType::BigInt;
            prop_assume!(x < y && p < q);
            let r1 = PartitionBound::range(Bound::Value(t.value(x)), Bound::Value(t.value(y)));
            let r2 = PartitionBound::range(Bound::Value(t.value(p)), Bound::Value(t.value(q)));
            let shared = (x.max(p)..y.min(q)).next().is_some();
            prop_assert_eq!(r1.overlaps(r2), shared);
            prop_assert_eq!(r2.overlaps(r1), shared);
        }

        #[test]
        fn minvalue_and_maxvalue_enclose_every_value(v in any_key_value()) {
            prop_assert!(Bound::MinValue < Bound::Value(v));
            prop_assert!(Bound::Value(v) < Bound::MaxValue);
        }
    }
}
