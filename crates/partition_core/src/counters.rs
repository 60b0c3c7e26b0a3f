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
    /// Scans the collector itself made that may not have reached the shared
    /// statistics yet (they are flushed asynchronously): `(seq, idx)`.
    pub own_scans: (i64, i64),
}

/// Deltas of one sample, and the collector's own scans still to discount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled {
    pub delta: Counters,
    pub own_scans_left: (i64, i64),
}

/// Like [`delta`], but the collector's own earlier scans are taken out of
/// the scan deltas as they show up, never more than has shown up: traffic
/// reports what the table's users did, and a late statistics flush can
/// neither hide real scans for long nor produce a negative count.
pub fn sample(
    previous: Option<&PreviousSample>,
    current: Counters,
    epoch: &str,
    first: FirstSample,
) -> Sampled {
    let mut d = delta(previous, current, epoch, first);
    let pending = match previous {
        Some(p) if p.epoch == epoch => p.own_scans,
        _ => (0, 0),
    };
    let seq = d.seq_scans.min(pending.0);
    let idx = d.idx_scans.min(pending.1);
    d.seq_scans -= seq;
    d.idx_scans -= idx;
    Sampled {
        delta: d,
        own_scans_left: (pending.0 - seq, pending.1 - idx),
    }
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
pub fn delta(
    previous: Option<&PreviousSample>,
    current: Counters,
    epoch: &str,
    first: FirstSample,
) -> Counters {
    let base = match previous {
        Some(p) if p.epoch == epoch => p.counters,
        Some(_) => Counters::default(),
        None => match first {
            FirstSample::Baseline => current,
            FirstSample::NewPartition => Counters::default(),
        },
    };
    let one = |now: i64, before: i64| {
        if now >= before {
            now - before
        } else {
            now.max(0)
        }
    };
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
        Counters {
            inserted,
            ..Counters::default()
        }
    }

    fn prev(inserted: i64, epoch: &str) -> PreviousSample {
        PreviousSample {
            counters: c(inserted),
            epoch: epoch.into(),
            own_scans: (0, 0),
        }
    }

    #[test]
    fn own_scans_are_discounted_when_they_show_up() {
        let scans = |seq| Counters {
            seq_scans: seq,
            ..Counters::default()
        };
        let before = PreviousSample {
            counters: scans(10),
            epoch: "e".into(),
            own_scans: (1, 0),
        };
        // Not flushed yet: nothing to report, the discount waits.
        let s = sample(Some(&before), scans(10), "e", FirstSample::Baseline);
        assert_eq!((s.delta.seq_scans, s.own_scans_left), (0, (1, 0)));
        // Flushed along with 3 real scans: only those are reported.
        let s = sample(Some(&before), scans(14), "e", FirstSample::Baseline);
        assert_eq!((s.delta.seq_scans, s.own_scans_left), (3, (0, 0)));
    }

    #[test]
    fn steady_growth() {
        assert_eq!(
            delta(Some(&prev(100, "e1")), c(150), "e1", FirstSample::Baseline).inserted,
            50
        );
    }

    #[test]
    fn reset_with_unchanged_epoch_is_seen_as_a_drop() {
        // pg_stat_reset_single_table_counters: 100 before, 7 inserted since.
        assert_eq!(
            delta(Some(&prev(100, "e1")), c(7), "e1", FirstSample::Baseline).inserted,
            7
        );
    }

    #[test]
    fn reset_seen_through_the_epoch_is_not_an_undercount() {
        // Reset, then 300 rows: 300 - 100 would be wrong.
        assert_eq!(
            delta(Some(&prev(100, "e1")), c(300), "e2", FirstSample::Baseline).inserted,
            300
        );
    }

    #[test]
    fn first_samples() {
        assert_eq!(
            delta(None, c(1_000_000), "e1", FirstSample::Baseline).inserted,
            0
        );
        assert_eq!(
            delta(None, c(40), "e1", FirstSample::NewPartition).inserted,
            40
        );
    }

    proptest! {
        /// Real scans plus the collector's, flushed at any later sample:
        /// over the run, exactly the real scans are reported.
        #[test]
        fn own_scans_never_count_as_traffic(steps in proptest::collection::vec((0i64..5, 0i64..3, any::<bool>()), 1..40)) {
            let mut shared = 0; // what pg_stat shows
            let mut unflushed = 0; // our scans not yet visible
            let mut real = 0;
            let mut reported = 0;
            let mut previous = PreviousSample { counters: Counters::default(), epoch: "e".into(), own_scans: (0, 0) };
            for (user_scans, own, flush) in steps {
                shared += user_scans;
                real += user_scans;
                if flush {
                    shared += unflushed;
                    unflushed = 0;
                }
                let current = Counters { seq_scans: shared, ..Counters::default() };
                let s = sample(Some(&previous), current, "e", FirstSample::Baseline);
                prop_assert!(s.delta.seq_scans >= 0);
                reported += s.delta.seq_scans;
                unflushed += own;
                previous = PreviousSample { counters: current, epoch: "e".into(), own_scans: (s.own_scans_left.0 + own, 0) };
            }
            // Flush whatever is left and take a last sample.
            shared += unflushed;
            let s = sample(Some(&previous), Counters { seq_scans: shared, ..Counters::default() }, "e", FirstSample::Baseline);
            reported += s.delta.seq_scans;
            prop_assert_eq!(reported, real);
        }

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
            let mut previous = PreviousSample { counters: c(0), epoch: "0".into(), own_scans: (0, 0) };
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
                previous = PreviousSample { counters: c(counter), epoch: e, own_scans: (0, 0) };
            }
            prop_assert_eq!(seen, total);
        }
    }
}
