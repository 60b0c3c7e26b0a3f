//! Data retention: which partitions hold only rows older than what a table
//! keeps. A partition expires when its whole range lies before the
//! retention boundary; one that reaches across it still holds rows the
//! table keeps, however little of it does.

/// What retention makes of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Every key it can hold is before the boundary.
    Expired,
    /// Part of its range is before the boundary and part is not: it stays
    /// until the boundary passes its upper bound.
    Straddles,
    /// Entirely at or after the boundary.
    Kept,
}

/// The fate of the partition `[from, to)` (raw key units) when keys before
/// `boundary` have expired.
pub fn fate((from, to): (i64, i64), boundary: i64) -> Fate {
    if to <= boundary {
        Fate::Expired
    } else if from < boundary {
        Fate::Straddles
    } else {
        Fate::Kept
    }
}

/// The boundary of an integer key that keeps the keys within `keep` of the
/// frontier (from `frontier - keep` on), as pg_partman's id retention does:
/// a partition expires when its upper bound is at most `frontier - keep`.
pub fn integer_boundary(frontier: i64, keep: i64) -> i64 {
    frontier.saturating_sub(keep.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_partition_ending_at_the_boundary_expires_and_one_past_it_stays() {
        assert_eq!(fate((0, 100), 100), Fate::Expired);
        assert_eq!(fate((0, 101), 100), Fate::Straddles);
        assert_eq!(fate((100, 200), 100), Fate::Kept);
        assert_eq!(fate((i64::MIN, 50), 100), Fate::Expired);
        assert_eq!(fate((50, i64::MAX), 100), Fate::Straddles);
    }

    #[test]
    fn integer_retention_keeps_the_keys_within_keep_of_the_frontier() {
        // pg_partman drops [0, 11) only once 11 <= max - retention.
        assert_eq!(fate((0, 11), integer_boundary(100, 90)), Fate::Straddles);
        assert_eq!(fate((0, 10), integer_boundary(100, 90)), Fate::Expired);
        assert_eq!(integer_boundary(1_000, 100), 900);
        assert_eq!(integer_boundary(i64::MIN + 5, 100), i64::MIN);
    }

    proptest! {
        /// An expired partition cannot hold a kept key, and a partition that
        /// can is never expired.
        #[test]
        fn expired_partitions_hold_no_kept_key(from in -1_000i64..1_000, len in 1i64..500,
                                                boundary in -1_500i64..1_500, key in -1_500i64..1_500) {
            let to = from + len;
            let holds = key >= from && key < to;
            if holds && key >= boundary {
                prop_assert_ne!(fate((from, to), boundary), Fate::Expired);
            }
            if fate((from, to), boundary) == Fate::Kept && holds {
                prop_assert!(key >= boundary);
            }
        }
    }
}
