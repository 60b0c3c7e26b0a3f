//! The order in which a database's worker visits its tables, so that one
//! role's tables cannot keep every other role's waiting: roles take turns,
//! one table each, and within a role the table served longest ago (or
//! never) comes first, so that tables left over when a role ran out of its
//! share of a cycle are the first served in the next.

use std::collections::BTreeMap;

/// A table to visit: its id, its owner's, and when it was last served (in
/// any monotonic unit; `None`: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub table: u32,
    pub owner: u32,
    pub last_served: Option<u64>,
}

/// `tables` in turns of their owners (in order of owner id), within an
/// owner the least recently served first (never served before any, then
/// by table id).
pub fn interleave(tables: &[Visit]) -> Vec<Visit> {
    let mut by_owner: BTreeMap<u32, Vec<Visit>> = BTreeMap::new();
    for visit in tables {
        by_owner.entry(visit.owner).or_default().push(*visit);
    }
    for queue in by_owner.values_mut() {
        queue.sort_by_key(|v| (v.last_served.is_some(), v.last_served, v.table));
        queue.reverse();
    }
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        for queue in by_owner.values_mut() {
            if let Some(next) = queue.pop() {
                order.push(next);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(table: u32, owner: u32, last_served: Option<u64>) -> Visit {
        Visit {
            table,
            owner,
            last_served,
        }
    }

    #[test]
    fn roles_take_turns_however_many_tables_one_has() {
        let mut tables: Vec<Visit> = (1..=300).map(|t| visit(t, 7, None)).collect();
        tables.push(visit(1000, 3, None));
        tables.push(visit(1001, 3, None));
        let order = interleave(&tables);
        assert_eq!(order.len(), 302);
        let owners: Vec<u32> = order.iter().take(4).map(|v| v.owner).collect();
        assert_eq!(owners, vec![3, 7, 3, 7]);
        assert!(order[4..].iter().all(|v| v.owner == 7));
    }

    #[test]
    fn within_a_role_the_longest_waiting_table_comes_first() {
        let tables = vec![
            visit(1, 5, Some(30)),
            visit(2, 5, Some(10)),
            visit(3, 5, None),
            visit(4, 5, Some(20)),
        ];
        let order: Vec<u32> = interleave(&tables).iter().map(|v| v.table).collect();
        assert_eq!(order, vec![3, 2, 4, 1]);
    }

    #[test]
    fn every_table_is_visited_once() {
        let tables: Vec<Visit> = (0..50)
            .map(|t| visit(t, t % 4, Some(u64::from(t) * 7 % 11)))
            .collect();
        let mut order: Vec<u32> = interleave(&tables).iter().map(|v| v.table).collect();
        order.sort();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }
}
