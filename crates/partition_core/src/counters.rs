//! Turning PostgreSQL's cumulative activity counters into per-sample deltas.
//!
//! `pg_stat_user_tables` counters only grow, until they are reset: by
//! `pg_stat_reset()`, by `pg_stat_reset_single_table_counters()`, or by crash
//! recovery, which discards all statistics. A naive `current - previous` then
//! gives a negative delta, or, if the reset goes unnoticed for a while, an
//! undercount. Here a reset is recognised two ways: the statistics epoch
//! (postmaster start time plus the database's `stats_reset`) changed, or a
//! counter went down. Either way what the counter holds now is what happened
//! since the reset, which is the honest delta: never negative, never a spike.

/// Cumulative counters of one partition at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub seq_scans: i64,
    pub idx_scans: i64,
}

/// What was last seen of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousSample {
    pub counters: Counters,
    pub epoch: String,
}

/// How to treat a partition with no previous sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstSample {
    /// The table's very first cycle: counters so far are history we did not
    /// watch arrive; the sample is a baseline with zero deltas.
    Baseline,
    /// A partition that appeared after the table was already being watched:
    /// everything it holds arrived since the last cycle.
    NewPartition,
}

/// Deltas since the previous sample; all fields are >= 0.
pub fn delta(previous: Option<&PreviousSample>, current: Counters, epoch: &str, first: FirstSample) -> Counters {
    let base = match previous {
        Some(p) if p.epoch == epoch => p.counters,
        Some(_) => Counters::default(),
        None => match first {
            FirstSample::Baseline => current,
            FirstSample::NewPartition => Counters::default(),
        },
    };
    let one = |now: i64, before: i64| if now >= before { now - before } else { now.max(0) };
    Counters {
        inserted: one(current.inserted, base.inserted),
        updated: one(current.updated, base.updated),
        deleted: one(current.deleted, base.deleted),
        seq_scans: one(current.seq_scans, base.seq_scans),
        idx_scans: one(current.idx_scans, base.idx_scans),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(inserted: i64) -> Counters {
        Counters { inserted, ..Counters::default() }
    }

    fn prev(inserted: i64, epoch: &str) -> PreviousSample {
        PreviousSample { counters: c(inserted), epoch: epoch.into() }
    }

    #[test]
    fn steady_growth() {
        assert_eq!(delta(Some(&prev(100, "e1")), c(150), "e1", FirstSample::Baseline).inserted, 50);
    }

    #[test]
    fn reset_with_unchanged_epoch_is_seen_as_a_drop() {
        // pg_stat_reset_single_table_counters: 100 before, 7 inserted since.
        assert_eq!(delta(Some(&prev(100, "e1")), c(7), "e1", FirstSample::Baseline).inserted, 7);
    }

    #[test]
    fn reset_seen_through_the_epoch_is_not_an_undercount() {
        // Reset, then 300 rows: 300 - 100 would be wrong.
        assert_eq!(delta(Some(&prev(100, "e1")), c(300), "e2", FirstSample::Baseline).inserted, 300);
    }

    #[test]
    fn first_samples() {
        assert_eq!(delta(None, c(1_000_000), "e1", FirstSample::Baseline).inserted, 0);
        assert_eq!(delta(None, c(40), "e1", FirstSample::NewPartition).inserted, 40);
    }

    proptest! {
        #[test]
        fn never_negative_never_more_than_the_counter(before in 0i64..1_000_000, now in 0i64..1_000_000, same_epoch: bool) {
            let d = delta(Some(&prev(before, "a")), c(now), if same_epoch { "a" } else { "b" }, FirstSample::Baseline);
            prop_assert!(d.inserted >= 0);
            prop_assert!(d.inserted <= now);
        }

        /// Summing deltas over a run of samples with resets in between gives
        /// exactly the rows inserted, provided every reset is seen.
        #[test]
        fn deltas_add_up_across_resets(batches in proptest::collection::vec((0i64..1000, any::<bool>()), 1..50)) {
            let mut counter = 0;
            let mut epoch = 0;
            let mut previous = PreviousSample { counters: c(0), epoch: "0".into() };
            let mut total = 0;
            let mut seen = 0;
            for (rows, reset_before) in batches {
                if reset_before {
                    counter = 0;
                    epoch += 1;
                }
                counter += rows;
                total += rows;
                let e = epoch.to_string();
                seen += delta(Some(&previous), c(counter), &e, FirstSample::Baseline).inserted;
                previous = PreviousSample { counters: c(counter), epoch: e };
            }
            prop_assert_eq!(seen, total);
        }
    }
}
