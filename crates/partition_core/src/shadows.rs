//! Cycle step 4: make the waiting shadows match the newest plan. Shadows
//! are cheap to keep and costly to churn (each drop and create is DDL), so
//! a shadow is dropped only when keeping it would be wrong: it can no
//! longer be attached, it is expected to overflow, or the plan now holds
//! it inside a larger range. Planning is passed in, so the decision is
//! tested here with the real planner and none of the catalog.

use crate::planner::PlannedRange;

/// A shadow not attached yet, as the decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitingShadow {
    pub from: i64,
    pub to: i64,
    /// Rows are being moved into it out of DEFAULT: only the migration may
    /// attach or drop it, so it stays whatever the plan says.
    pub migrating: bool,
    /// Its table still exists as a standalone table of this parent. One
    /// dropped or attached by hand cannot be attached by us any more: its
    /// range is planned again.
    pub exists: bool,
}

/// Bounds on the shadows of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowLimits {
    /// Shadows waiting at once, kept ones included: tables created ahead of
    /// the data must not pile up when the forecast reaches far.
    pub per_table: usize,
    /// Shadows created in one cycle, to bound its cost; the next cycle
    /// creates the rest.
    pub per_cycle: usize,
}

/// What to do to the waiting shadows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconciled {
    /// Indexes into `waiting` of the shadows to drop, ascending.
    pub drop: Vec<usize>,
    /// New shadows to create, in the order `plan` gave them: when `limits`
    /// cut the plan short, the nearest ranges are the ones created.
    pub create: Vec<PlannedRange>,
}

fn overlaps((a, b): (i64, i64), (c, d): (i64, i64)) -> bool {
    a < d && c < b
}

fn contains((outer_from, outer_to): (i64, i64), (from, to): (i64, i64)) -> bool {
    outer_from <= from && to <= outer_to
}

/// Which waiting shadows to drop and which ranges to create, given the
/// attached partitions ahead (`active`, never touched here).
///
/// A shadow is kept unless the newest forecast expects it to overflow
/// (`overflowing`: more than [`crate::planner::OVERFLOW`] times the target
/// where a smaller span is possible), or the plan now holds it in a larger
/// range, or it overlaps an attached partition, or its table is gone.
/// A shadow expected to be small is otherwise kept: replanning it would
/// often give the same range back (a 6-hour range starting at 18:00 cannot
/// grow into a day), and dropping and recreating it every cycle would be
/// DDL for nothing. A migrating shadow is always kept.
///
/// `plan` lays out ranges around the partitions it is given and must never
/// overlap them. It is called twice: around the attached partitions and
/// the migrating shadows (what the plan would be with no other shadow
/// waiting), to find the larger ranges that merge small shadows; then
/// around the attached partitions and the kept shadows, for the ranges to
/// create. At most `limits.per_cycle` are created, and no more than leave
/// `limits.per_table` shadows waiting counting the kept ones.
pub fn reconcile(
    active: &[(i64, i64)],
    waiting: &[WaitingShadow],
    limits: ShadowLimits,
    overflowing: impl Fn(i64, i64) -> bool,
    plan: impl Fn(&[(i64, i64)]) -> Vec<PlannedRange>,
) -> Reconciled {
    let range_of = |s: &WaitingShadow| (s.from, s.to);
    let fixed: Vec<(i64, i64)> = active
        .iter()
        .copied()
        .chain(waiting.iter().filter(|s| s.migrating).map(range_of))
        .collect();
    let fresh = plan(&fixed);
    // A fresh range merges shadows only if every waiting shadow it overlaps
    // lies inside it: otherwise the plan could not lay it out, would give
    // the small ranges back, and the next cycle would drop them again.
    let mergeable = |r: &PlannedRange| {
        waiting
            .iter()
            .filter(|s| overlaps(range_of(s), (r.from, r.to)))
            .all(|s| !s.migrating && contains((r.from, r.to), range_of(s)))
    };
    let merging: Vec<&PlannedRange> = fresh.iter().filter(|r| mergeable(r)).collect();
    let mut kept: Vec<(i64, i64)> = Vec::new();
    let mut drop = Vec::new();
    for (index, shadow) in waiting.iter().enumerate() {
        let merged = merging.iter().any(|r| {
            contains((r.from, r.to), range_of(shadow))
                && r.to.saturating_sub(r.from) > shadow.to.saturating_sub(shadow.from)
        });
        let overlaps_active = active.iter().any(|a| overlaps(range_of(shadow), *a));
        let sized_ok = !overflowing(shadow.from, shadow.to) && !merged;
        if shadow.migrating || (!overlaps_active && sized_ok && shadow.exists) {
            kept.push(range_of(shadow));
        } else {
            drop.push(index);
        }
    }
    let room = limits
        .per_cycle
        .min(limits.per_table.saturating_sub(kept.len()));
    let taken: Vec<(i64, i64)> = active.iter().chain(kept.iter()).copied().collect();
    let create = plan(&taken).into_iter().take(room).collect();
    Reconciled { drop, create }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::MICROS_PER_HOUR;
    use crate::planner::{self, Demand, ForecastExtent, PlanInput, OVERFLOW};
    use crate::{KeyType, Zone};
    use proptest::prelude::*;

    static UTC: Zone = Zone::utc();

    const NO_LIMIT: ShadowLimits = ShadowLimits {
        per_table: usize::MAX,
        per_cycle: usize::MAX,
    };

    fn never_overflowing(_: i64, _: i64) -> bool {
        false
    }

    fn shadow(from: i64, to: i64) -> WaitingShadow {
        WaitingShadow {
            from,
            to,
            migrating: false,
            exists: true,
        }
    }

    fn migrating(from: i64, to: i64) -> WaitingShadow {
        WaitingShadow {
            migrating: true,
            ..shadow(from, to)
        }
    }

    /// A planner as the real one behaves where it matters here: from key
    /// 0 to `horizon`, ranges end at multiples of `step` or where a taken
    /// range starts, and skip past taken ranges.
    fn grid(step: i64, horizon: i64) -> impl Fn(&[(i64, i64)]) -> Vec<PlannedRange> {
        move |taken| {
            let mut ranges = Vec::new();
            let mut start = 0;
            while start < horizon {
                if let Some((_, end)) = taken.iter().find(|(a, b)| *a <= start && start < *b) {
                    start = *end;
                    continue;
                }
                let cap = taken
                    .iter()
                    .map(|(a, _)| *a)
                    .filter(|a| *a > start)
                    .min()
                    .unwrap_or(i64::MAX);
                let end = ((start / step + 1) * step).min(cap);
                ranges.push(PlannedRange {
                    from: start,
                    to: end,
                    expected_rows: 0.0,
                });
                start = end;
            }
            ranges
        }
    }

    fn bounds(ranges: &[PlannedRange]) -> Vec<(i64, i64)> {
        ranges.iter().map(|r| (r.from, r.to)).collect()
    }

    #[test]
    fn a_migrating_shadow_is_kept_however_it_is_sized_placed_or_gone() {
        let active = [(0, 10)];
        let gone_overlapping = WaitingShadow {
            exists: false,
            ..migrating(5, 15)
        };
        let r = reconcile(
            &active,
            &[gone_overlapping],
            NO_LIMIT,
            |_, _| true,
            grid(10, 40),
        );
        assert_eq!(r.drop, Vec::<usize>::new());
        // Still waiting, so new ranges are planned around it.
        assert_eq!(bounds(&r.create), [(15, 20), (20, 30), (30, 40)]);
        let not_migrating = WaitingShadow {
            migrating: false,
            ..gone_overlapping
        };
        let r = reconcile(
            &active,
            &[not_migrating],
            NO_LIMIT,
            |_, _| true,
            grid(10, 40),
        );
        assert_eq!(r.drop, [0]);
        assert_eq!(bounds(&r.create), [(10, 20), (20, 30), (30, 40)]);
    }

    #[test]
    fn a_shadow_overlapping_an_attached_partition_is_dropped_and_one_touching_it_kept() {
        let r = reconcile(
            &[(0, 10)],
            &[shadow(5, 15), shadow(10, 20)],
            NO_LIMIT,
            never_overflowing,
            grid(10, 30),
        );
        assert_eq!(r.drop, [0]);
        assert_eq!(bounds(&r.create), [(20, 30)]);
    }

    #[test]
    fn a_shadow_whose_table_is_gone_is_dropped_and_its_range_planned_again() {
        let gone = WaitingShadow {
            exists: false,
            ..shadow(10, 20)
        };
        let r = reconcile(
            &[(0, 10)],
            &[gone, shadow(20, 30)],
            NO_LIMIT,
            never_overflowing,
            grid(10, 40),
        );
        assert_eq!(r.drop, [0]);
        assert_eq!(bounds(&r.create), [(10, 20), (30, 40)]);
    }

    #[test]
    fn an_overflowing_shadow_is_dropped_and_planned_again() {
        let waiting = [shadow(10, 30), shadow(30, 40)];
        let r = reconcile(
            &[(0, 10)],
            &waiting,
            NO_LIMIT,
            |from, to| (from, to) == (10, 30),
            grid(10, 50),
        );
        assert_eq!(r.drop, [0]);
        assert_eq!(bounds(&r.create), [(10, 20), (20, 30), (40, 50)]);
        // Expected to fit, the same long shadow stays: it is no reason to redo it.
        let r = reconcile(
            &[(0, 10)],
            &waiting,
            NO_LIMIT,
            never_overflowing,
            grid(10, 50),
        );
        assert_eq!(r.drop, Vec::<usize>::new());
        assert_eq!(bounds(&r.create), [(40, 50)]);
    }

    #[test]
    fn small_shadows_inside_a_strictly_longer_fresh_range_are_merged() {
        // The plan now has [10, 20) where [10, 15) and [15, 20) wait; [20, 30)
        // is the plan's own range, not a longer one.
        let r = reconcile(
            &[(0, 10)],
            &[shadow(10, 15), shadow(15, 20), shadow(20, 30)],
            NO_LIMIT,
            never_overflowing,
            grid(10, 40),
        );
        assert_eq!(r.drop, [0, 1]);
        assert_eq!(bounds(&r.create), [(10, 20), (30, 40)]);
    }

    #[test]
    fn a_fresh_range_that_only_partly_covers_a_shadow_merges_nothing() {
        // [10, 20) holds [10, 15) but only half of [15, 25).
        let r = reconcile(
            &[(0, 10)],
            &[shadow(10, 15), shadow(15, 25)],
            NO_LIMIT,
            never_overflowing,
            grid(10, 40),
        );
        assert_eq!(r.drop, Vec::<usize>::new());
        assert_eq!(bounds(&r.create), [(25, 30), (30, 40)]);
    }

    #[test]
    fn migrating_shadows_are_planned_around_and_never_merged() {
        // The plan around the migrating [15, 20) has [10, 15): it merges
        // the two small shadows there. Planned as if [15, 20) were not
        // waiting, [10, 20) would overlap it and merge nothing.
        let r = reconcile(
            &[(0, 10)],
            &[shadow(10, 12), shadow(12, 15), migrating(15, 20)],
            NO_LIMIT,
            never_overflowing,
            grid(10, 30),
        );
        assert_eq!(r.drop, [0, 1]);
        assert_eq!(bounds(&r.create), [(10, 15), (20, 30)]);
        // A planner that did lay a range over a migrating shadow still
        // merges nothing with it; were the shadow not migrating, both go.
        let over_everything = |_: &[(i64, i64)]| {
            vec![PlannedRange {
                from: 10,
                to: 30,
                expected_rows: 0.0,
            }]
        };
        let r = reconcile(
            &[],
            &[shadow(10, 20), migrating(20, 30)],
            NO_LIMIT,
            never_overflowing,
            over_everything,
        );
        assert_eq!(r.drop, Vec::<usize>::new());
        let r = reconcile(
            &[],
            &[shadow(10, 20), shadow(20, 30)],
            NO_LIMIT,
            never_overflowing,
            over_everything,
        );
        assert_eq!(r.drop, [0, 1]);
    }

    #[test]
    fn creation_is_bounded_per_cycle_and_by_the_shadows_kept() {
        // Ten ranges to plan, [10, 20) to [100, 110); a kept shadow far ahead.
        let active = [(0, 10)];
        let far = [shadow(500, 510)];
        let created = |waiting: &[WaitingShadow], per_table, per_cycle| {
            let limits = ShadowLimits {
                per_table,
                per_cycle,
            };
            let r = reconcile(&active, waiting, limits, never_overflowing, grid(10, 110));
            assert_eq!(r.drop, Vec::<usize>::new());
            bounds(&r.create)
        };
        assert_eq!(created(&[], 48, 48).len(), 10);
        assert_eq!(
            created(&[], 4, 48),
            [(10, 20), (20, 30), (30, 40), (40, 50)]
        );
        assert_eq!(created(&far, 4, 48), [(10, 20), (20, 30), (30, 40)]);
        assert_eq!(created(&far, 48, 2), [(10, 20), (20, 30)]);
        assert_eq!(created(&[shadow(500, 510), shadow(600, 610)], 1, 48), []);
    }

    const H: i64 = MICROS_PER_HOUR;

    fn any_key_type() -> impl Strategy<Value = KeyType> {
        proptest::sample::select(vec![KeyType::TimestampTz, KeyType::Date, KeyType::BigInt])
    }

    /// A table ahead of its frontier, as `prepare` sees it, in key units.
    #[derive(Clone, Debug)]
    struct Table {
        key_type: KeyType,
        unit: i64,
        origin: i64,
        active: Vec<(i64, i64)>,
        waiting: Vec<WaitingShadow>,
        demand: Vec<Demand>,
        target_rows: f64,
        min_span: Option<i64>,
        limits: ShadowLimits,
    }

    const PLANNED_UNITS: i64 = 96;

    prop_compose! {
        fn any_table()(
            key_type in any_key_type(),
            // Rows per unit, repeating: bursts and lulls.
            rates in proptest::collection::vec(0.0f64..2_000.0, 1..6),
            target_rows in 100.0f64..30_000.0,
            // (gap before, length) in units.
            active_ahead in proptest::collection::vec((0i64..40, 1i64..20), 0..3),
            // (gap before, length, 0: migrating, 1: gone, else plain).
            shadows in proptest::collection::vec((0i64..8, 1i64..30, 0u8..8), 0..10),
            min_units in proptest::option::of(1i64..4),
            per_table in 0usize..30,
            per_cycle in 1usize..48,
        ) -> Table {
            let unit = match key_type { KeyType::Date => 1, k if k.is_temporal() => H, _ => 1_000 };
            let origin = match key_type { KeyType::Date => 8_800, k if k.is_temporal() => 800_000_000 * 1_000_000 / H * H, _ => 5_000_000 };
            // One partition holds the frontier; others are attached ahead.
            let mut active = vec![(origin - 24 * unit, origin)];
            let mut at = origin;
            for (gap, len) in active_ahead {
                at += gap * unit;
                active.push((at, at + len * unit));
                at += len * unit;
            }
            // Shadows one after the other, some over attached partitions.
            let mut waiting = Vec::new();
            let mut at = origin;
            for (gap, len, kind) in shadows {
                at += gap * unit;
                waiting.push(WaitingShadow { from: at, to: at + len * unit, migrating: kind == 0, exists: kind != 1 });
                at += len * unit;
            }
            let demand = (0..PLANNED_UNITS + 40)
                .map(|i| Demand { start: origin + i * unit, end: origin + (i + 1) * unit, rows: rates[i as usize % rates.len()] })
                .collect();
            Table {
                key_type, unit, origin, active, waiting, demand, target_rows,
                min_span: min_units.map(|m| m * unit),
                limits: ShadowLimits { per_table, per_cycle },
            }
        }
    }

    impl Table {
        /// `prepare`'s overflow test.
        fn overflowing(&self) -> impl Fn(i64, i64) -> bool + '_ {
            let smallest = planner::smallest_span(self.key_type, self.min_span);
            move |from, to| {
                planner::rows_within(&self.demand, from, to) > self.target_rows * OVERFLOW
                    && to - from > smallest
            }
        }

        fn plan(&self) -> impl Fn(&[(i64, i64)]) -> Vec<PlannedRange> + '_ {
            move |taken| {
                planner::plan(&PlanInput {
                    key_type: self.key_type,
                    taken,
                    frontier: Some(self.origin - 1),
                    demand: &self.demand,
                    target_rows: self.target_rows,
                    min_span: self.min_span,
                    max_span: None,
                    horizon_end: self.origin + PLANNED_UNITS * self.unit,
                    zone: &UTC,
                    forecast: Some(ForecastExtent {
                        end: self.origin + (PLANNED_UNITS + 40) * self.unit,
                        upper_over_point: 1.0,
                    }),
                })
            }
        }

        fn reconcile(&self, waiting: &[WaitingShadow]) -> Reconciled {
            reconcile(
                &self.active,
                waiting,
                self.limits,
                self.overflowing(),
                self.plan(),
            )
        }
    }

    fn kept(waiting: &[WaitingShadow], r: &Reconciled) -> Vec<WaitingShadow> {
        waiting
            .iter()
            .enumerate()
            .filter(|(i, _)| !r.drop.contains(i))
            .map(|(_, s)| *s)
            .collect()
    }

    proptest! {
        // Each case plans up to four times: a few dozen keep the run short.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// New shadows never overlap each other, an attached partition or
        /// a shadow left waiting; a migrating shadow is never dropped; a
        /// shadow kept while not migrating overlaps no attached partition;
        /// no more are created than the limits allow.
        #[test]
        fn created_ranges_fit_around_what_is_kept(table in any_table()) {
            let r = table.reconcile(&table.waiting);
            let kept = kept(&table.waiting, &r);
            for (i, s) in table.waiting.iter().enumerate() {
                prop_assert!(!s.migrating || !r.drop.contains(&i), "migrating {s:?} dropped");
            }
            for s in kept.iter().filter(|s| !s.migrating) {
                prop_assert!(!table.active.iter().any(|a| overlaps((s.from, s.to), *a)), "{s:?} kept over an attached partition");
            }
            for (i, c) in r.create.iter().enumerate() {
                prop_assert!(c.from < c.to);
                let c = (c.from, c.to);
                prop_assert!(!table.active.iter().any(|a| overlaps(c, *a)), "{c:?} overlaps an attached partition");
                prop_assert!(!kept.iter().any(|s| overlaps(c, (s.from, s.to))), "{c:?} overlaps a kept shadow");
                prop_assert!(!r.create[i + 1..].iter().any(|o| overlaps(c, (o.from, o.to))), "{c:?} overlaps a created range");
            }
            prop_assert!(r.create.len() <= table.limits.per_cycle);
            prop_assert!(kept.len() + r.create.len() <= table.limits.per_table.max(kept.len()));
        }

        /// A cycle that drops nothing is followed, nothing having changed
        /// (the same partitions, forecast and migrations), by one that
        /// drops nothing either: none of the shadows it created. Outside
        /// these conditions shadows can churn today: a shadow dropped this
        /// cycle can stop a fresh range from merging (it overlaps it only
        /// partly), so ranges created beside it are merged next cycle; with
        /// a `min_span` the planner can lay out a range the overflow test
        /// drops (it takes a span of exactly `min_span` as possible, the
        /// planner uses natural spans and is capped by partitions ahead);
        /// and a migration that ends unattached changes the plan its shadow
        /// was kept around.
        #[test]
        fn a_cycle_that_drops_nothing_is_followed_by_one_that_drops_nothing(table in any_table()) {
            let table = Table {
                min_span: None,
                // Shadows bound to be dropped are skipped rather than rejected: most tables have one.
                waiting: table.waiting.iter().copied()
                    .filter(|s| s.exists && !table.active.iter().any(|a| overlaps((s.from, s.to), *a)))
                    .collect(),
                ..table
            };
            let r = table.reconcile(&table.waiting);
            prop_assume!(r.drop.is_empty());
            let mut next = table.waiting.clone();
            next.extend(r.create.iter().map(|c| shadow(c.from, c.to)));
            let again = table.reconcile(&next);
            let dropped: Vec<&WaitingShadow> = again.drop.iter().map(|i| &next[*i]).collect();
            prop_assert!(dropped.is_empty(), "created {:?}, then dropped {dropped:?}", bounds(&r.create));
        }
    }
}
