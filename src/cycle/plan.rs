//! Cycle steps 3 and 4: plan future partitions from the newest forecast
//! and make the prepared shadows match the plan. Active partitions are
//! never touched.

use partition_core::planner::{self, Demand, ForecastExtent, PlanInput};
use partition_core::shadows::{reconcile, ShadowLimits, WaitingShadow};

use crate::act::{activate, create};
use crate::catalog::PartitionedTable;
use crate::error::Result;
use crate::gucs;
use crate::state::history::History;
use crate::state::shadows::{self, Origin, Shadow};

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
/// match the plan, from `known`, what the cycle read of the table's
/// history. Active partitions are never touched. Returns, with what was
/// done, the shadows waiting now, in key order, for activation to use
/// without reading them again.
pub fn prepare(table: &PartitionedTable, known: &History) -> Result<(ShadowSummary, Vec<Shadow>)> {
    let mut summary = ShadowSummary::default();
    let (demand, upper_over_point) = (known.demand.clone(), known.upper_over_point);
    let Some(frontier_key) = known.frontier() else {
        return Ok((summary, shadows::waiting(table.oid)?));
    };
    let settings = &known.settings;
    let rows_per_key = if table.key_type.is_temporal() {
        None
    } else {
        Some(known.rows_per_key)
    };
    if demand.is_empty() && table.key_type.is_temporal() {
        // Nothing to size partitions by yet: the first forecast comes after two days of history.
        return Ok((summary, shadows::waiting(table.oid)?));
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
    if let Some(density) = known.recent_density {
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
    let reach = known.arrivals.reach().max(known.reach_keys() / 2);
    let horizon_end = planner::horizon_end(
        table.key_type,
        Some(settings.lookahead),
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
    // Which waiting shadows stay, which go, and what is made new: the
    // rules are `partition_core::shadows::reconcile`'s.
    let decision = reconcile(
        &active,
        &waiting
            .iter()
            .map(|s| WaitingShadow {
                from: s.from,
                to: s.to,
                migrating: s.migrating,
                exists: s.current_name.is_some(),
            })
            .collect::<Vec<_>>(),
        ShadowLimits {
            per_table: gucs::max_shadows_per_table(),
            per_cycle: MAX_CREATED_PER_CYCLE,
        },
        overflowing,
        plan_around,
    );
    for &i in &decision.drop {
        create::drop_shadow(table, &waiting[i])?;
        summary.dropped += 1;
    }
    let mut now_waiting: Vec<Shadow> = waiting
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !decision.drop.contains(i))
        .map(|(_, shadow)| shadow)
        .collect();
    for range in &decision.create {
        let made = create::shadow(table, settings, range, Origin::Forecast)?;
        summary.created += 1;
        let name = made.name.quoted();
        now_waiting.push(Shadow {
            current_name: Some(name.clone()),
            name,
            oid: made.oid,
            from: range.from,
            to: range.to,
            migrating: false,
            owner: table.owner_oid,
        });
    }
    now_waiting.sort_by_key(|s| s.from);
    Ok((summary, now_waiting))
}
