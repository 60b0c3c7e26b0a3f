//! Cycle steps 3 and 4: plan future partitions from the newest forecast
//! and make the prepared shadows match the plan. Active partitions are
//! never touched.

use partition_core::planner::{self, Demand, ForecastExtent, PlanInput};

use crate::act::activate;
use crate::catalog::shadows::{self, Origin};
use crate::catalog::{create, history, settings, PartitionedTable};
use crate::error::Result;
use crate::gucs;

/// The share of the recent rate assumed beyond the forecast's horizon.
const RECENT_RATE_FLOOR: f64 = 0.5;

/// At most this many shadows are created in one cycle, to bound its cost.
const MAX_CREATED_PER_CYCLE: usize = 48;

#[derive(Clone, Debug, Default)]
pub struct ShadowSummary {
    pub created: i64,
    pub dropped: i64,
    pub activated: i64,
}

/// Steps 3 and 4 for one table: plan future ranges and make the shadows
/// match the plan. Active partitions are never touched.
pub fn prepare(table: &PartitionedTable) -> Result<ShadowSummary> {
    let mut summary = ShadowSummary::default();
    let (demand, upper_over_point) = history::demand(table)?;
    let frontier = history::frontier(table)?;
    let Some(frontier_key) = frontier else {
        return Ok(summary);
    };
    let settings = settings::load(table)?;
    let rows_per_key = if table.key_type.is_temporal() {
        None
    } else {
        Some(history::rows_per_key(table.oid)?)
    };
    if demand.is_empty() && table.key_type.is_temporal() {
        // Nothing to size partitions by yet: the first forecast comes after two days of history.
        return Ok(summary);
    }
    let forecast = demand
        .iter()
        .map(|d| d.end)
        .max()
        .map(|end| ForecastExtent {
            end,
            upper_over_point,
        });
    let mut demand = demand;
    // Past the forecast's horizon the plan assumes at least half the recent
    // rate: a forecast that ends in a quiet stretch (a holiday, a weekend)
    // must not make the next range a year long.
    if let Some(density) = history::recent_density(table)? {
        let end = forecast.map_or(frontier_key, |f| f.end);
        let year = (366.0 * 86_400.0 * table.key_type.units_per_second()) as i64;
        let tail_end = end.saturating_add(year);
        demand.push(Demand {
            start: end,
            end: tail_end,
            rows: RECENT_RATE_FLOOR * density * (tail_end - end) as f64,
        });
    }
    if let (Some(density), true) = (rows_per_key, demand.is_empty()) {
        // Integer keys before the first forecast: the observed rows per key.
        demand.push(Demand {
            start: frontier_key,
            end: frontier_key.saturating_add(1),
            rows: density,
        });
    }
    // Far enough for the next arrivals too: a table fed weekly needs next
    // week's partitions ready, whatever the lookahead says.
    let reach = history::arrivals(table)?
        .reach()
        .max(history::reach_keys(table)? / 2);
    let horizon_end = planner::horizon_end(
        table.key_type,
        settings.lookahead,
        settings.target_rows,
        frontier_key,
        &demand,
        upper_over_point,
    )
    .max(frontier_key.saturating_add(reach.saturating_mul(2)));

    let smallest_span = planner::smallest_span(table.key_type, settings.min_span);
    let overflowing = |from: i64, to: i64| {
        planner::rows_within(&demand, from, to) > settings.target_rows * planner::OVERFLOW
            && to - from > smallest_span
    };
    let reshaped = activate::reshape_attached_ahead(table, frontier_key, overflowing)?;
    summary.dropped += reshaped.len() as i64;
    let active: Vec<(i64, i64)> = table
        .attached_ranges()
        .into_iter()
        .filter(|r| !reshaped.contains(r))
        .collect();
    let waiting = shadows::waiting(table.oid)?;
    // The plan as it would be with no shadow waiting (those being migrated
    // into aside): where it has one larger range in place of several small
    // shadows, they are merged.
    let fixed: Vec<(i64, i64)> = active
        .iter()
        .copied()
        .chain(
            waiting
                .iter()
                .filter(|s| s.migrating)
                .map(|s| (s.from, s.to)),
        )
        .collect();
    let plan_around = |taken: &[(i64, i64)]| {
        planner::plan(&PlanInput {
            key_type: table.key_type,
            taken,
            frontier: Some(frontier_key),
            demand: &demand,
            target_rows: settings.target_rows,
            min_span: settings.min_span,
            max_span: settings.max_span,
            horizon_end,
            zone: &settings.zone,
            forecast,
        })
    };
    let fresh = plan_around(&fixed);
    // Keep shadows unless the newest forecast expects one to overflow (more
    // than 1.5x the target) and a smaller span is possible, or the plan now
    // holds it in a larger range: then it is dropped and planned again. A
    // shadow expected to be small is otherwise kept: replanning it would
    // often give the same range back (a 6-hour range starting at 18:00
    // cannot grow into a day), and dropping and recreating every cycle
    // would be DDL for nothing.
    let mut kept: Vec<(i64, i64)> = Vec::new();
    // A fresh range merges shadows only if every waiting shadow it overlaps
    // lies inside it: otherwise the plan could not lay it out, would give
    // the small ranges back, and the next cycle would drop them again.
    let mergeable = |r: &planner::PlannedRange| {
        waiting
            .iter()
            .filter(|s| s.from < r.to && r.from < s.to)
            .all(|s| !s.migrating && r.from <= s.from && s.to <= r.to)
    };
    let merging: Vec<&planner::PlannedRange> = fresh.iter().filter(|r| mergeable(r)).collect();
    for shadow in &waiting {
        let merged = merging.iter().any(|r| {
            r.from <= shadow.from
                && shadow.to <= r.to
                && r.to.saturating_sub(r.from) > shadow.to.saturating_sub(shadow.from)
        });
        let overlaps_active = active
            .iter()
            .any(|(a, b)| shadow.from < *b && *a < shadow.to);
        let sized_ok = !overflowing(shadow.from, shadow.to) && !merged;
        if shadow.migrating || (!overlaps_active && sized_ok && shadow.current_name.is_some()) {
            kept.push((shadow.from, shadow.to));
        } else {
            create::drop_shadow(table, shadow)?;
            summary.dropped += 1;
        }
    }
    let taken: Vec<(i64, i64)> = active.iter().chain(kept.iter()).copied().collect();
    let plan = plan_around(&taken);
    let room = gucs::max_shadows_per_table().saturating_sub(kept.len());
    for range in plan.into_iter().take(MAX_CREATED_PER_CYCLE.min(room)) {
        create::shadow(table, &range, Origin::Forecast)?;
        summary.created += 1;
    }
    Ok(summary)
}
