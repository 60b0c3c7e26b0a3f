//! Names for the relations the extension creates.
//!
//! PostgreSQL silently truncates identifiers to 63 bytes, so two long table
//! names that differ only at the end would give colliding partition names.
//! A derived name that does not fit keeps a readable prefix and adds a hash
//! of the full name instead.

use crate::KeyType;

/// PostgreSQL's NAMEDATALEN - 1.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// `{base}_{suffix}`, or `{truncated base}_{hash}_{suffix}` when that would
/// exceed 63 bytes. Never cuts a multi-byte character in half.
pub fn derived_name(base: &str, suffix: &str) -> String {
    let plain = format!("{base}_{suffix}");
    if plain.len() <= MAX_IDENTIFIER_BYTES {
        return plain;
    }
    let hash = format!("{:08x}", fnv1a(base.as_bytes()) as u32);
    let tail = format!("_{hash}_{suffix}");
    let room = MAX_IDENTIFIER_BYTES.saturating_sub(tail.len());
    let mut cut = room.min(base.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = format!("{}{tail}", &base[..cut]);
    // A pathologically long suffix: fall back to hash and as much suffix as fits.
    while name.len() > MAX_IDENTIFIER_BYTES {
        name.pop();
    }
    name
}

/// The suffix of a shadow's name: its first key, readable
/// (`2024-03-04 06:00:00+00` gives `p20240304_06`, the hour kept only when
/// not midnight; `-5` gives `pm5`).
pub fn shadow_suffix(key_type: KeyType, from: i64) -> String {
    let text = key_type.value(from).to_text();
    if key_type.is_temporal() {
        let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
        let (day, hour) = (
            digits.get(..8).unwrap_or(&digits),
            digits.get(8..10).unwrap_or("00"),
        );
        if hour == "00" || key_type == KeyType::Date {
            format!("p{day}")
        } else {
            format!("p{day}_{hour}")
        }
    } else {
        format!("p{}", text.replace('-', "m"))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_stay_readable() {
        assert_eq!(derived_name("events", "default"), "events_default");
        assert_eq!(
            derived_name("Ev\"ents 2024", "default"),
            "Ev\"ents 2024_default"
        );
    }

    #[test]
    fn long_names_that_differ_at_the_end_do_not_collide() {
        let a = format!("{}_a", "x".repeat(70));
        let b = format!("{}_b", "x".repeat(70));
        let (na, nb) = (derived_name(&a, "default"), derived_name(&b, "default"));
        assert_ne!(na, nb);
        assert!(na.len() <= MAX_IDENTIFIER_BYTES && na.ends_with("_default"));
    }

    #[test]
    fn shadow_suffixes_read_as_their_first_key() {
        let hour = crate::calendar::parse_iso_timestamp("2024-03-04 06:00:00+00", true).unwrap();
        assert_eq!(shadow_suffix(KeyType::TimestampTz, hour), "p20240304_06");
        let midnight = crate::calendar::parse_iso_timestamp("2024-03-04 00:00:00", false).unwrap();
        assert_eq!(shadow_suffix(KeyType::Timestamp, midnight), "p20240304");
        let day = crate::calendar::parse_iso_date("2024-03-04").unwrap();
        assert_eq!(shadow_suffix(KeyType::Date, day), "p20240304");
        assert_eq!(shadow_suffix(KeyType::BigInt, -5), "pm5");
        assert_eq!(shadow_suffix(KeyType::Integer, 100000), "p100000");
    }

    proptest! {
        #[test]
        fn always_fits_and_is_valid_utf8(base in "\\PC{0,80}", suffix in "[a-z0-9_]{1,20}") {
            let name = derived_name(&base, &suffix);
            prop_assert!(name.len() <= MAX_IDENTIFIER_BYTES);
            prop_assert!(!name.is_empty());
        }

        #[test]
        fn deterministic(base in "\\PC{0,80}") {
            prop_assert_eq!(derived_name(&base, "default"), derived_name(&base, "default"));
        }
    }
}
