//! Rows per key-time bucket of a stretch of heap pages, estimated from a
//! few pages read out of it.
//!
//! Rows are appended to a heap in roughly the order they arrive, and in a
//! time-series table they arrive in roughly key order: so the pages between
//! two sampled pages hold keys between theirs. The estimate fills each gap
//! between two sampled pages with its share of rows spread evenly over the
//! keys between the two pages' medians (the rows that follow the trend), and
//! gives the rest (rows far from the trend: late rows, or a heap in no
//! order) the buckets the sampled pages found for them. The result is scaled
//! to the number of rows known to be there (from the insert counter).

use std::collections::BTreeMap;

/// The keys found in one sampled heap page.
#[derive(Clone, Debug, PartialEq)]
pub struct PageSample {
    pub page: i64,
    /// Raw key values (microseconds, or days for `date`).
    pub keys: Vec<i64>,
}

/// A gap whose keys span more buckets than this is taken as out of order
/// (spreading rows over years of empty buckets would invent them).
const MAX_SPREAD_BUCKETS: i64 = 10_000;

fn bucket_of(key: i64, width: i64) -> i64 {
    key.div_euclid(width) * width
}

fn median(sorted: &[i64]) -> i64 {
    sorted[sorted.len() / 2]
}

/// Interquartile range of sorted keys.
fn spread(sorted: &[i64]) -> i64 {
    sorted[sorted.len() * 3 / 4] - sorted[sorted.len() / 4]
}

/// Estimated rows per bucket (bucket start, rows) for pages `first_page` up
/// to the last sampled page, from `samples` (each sampled page's keys), with
/// buckets `width` wide, scaled so the rows add up to `total_rows`.
pub fn estimate_buckets(samples: &[PageSample], width: i64, total_rows: i64) -> Vec<(i64, i64)> {
    let mut pages: Vec<(i64, Vec<i64>)> = samples
        .iter()
        .filter(|s| !s.keys.is_empty())
        .map(|s| {
            let mut keys = s.keys.clone();
            keys.sort_unstable();
            (s.page, keys)
        })
        .collect();
    pages.sort_by_key(|(page, _)| *page);
    if pages.is_empty() || width <= 0 {
        return Vec::new();
    }
    // Rows a full page holds: from the pages read whole (the first may be
    // read from a tuple on, the last to the end of the heap).
    let mut full: Vec<usize> = if pages.len() > 2 {
        pages[1..pages.len() - 1]
            .iter()
            .map(|(_, k)| k.len())
            .collect()
    } else {
        vec![pages.iter().map(|(_, k)| k.len()).max().unwrap_or(0)]
    };
    full.sort_unstable();
    let per_page = full[full.len() / 2] as f64;
    let mut rows: BTreeMap<i64, f64> = BTreeMap::new();
    let mut add = |bucket: i64, n: f64| *rows.entry(bucket).or_insert(0.0) += n;
    for (_, keys) in &pages {
        for key in keys {
            add(bucket_of(*key, width), 1.0);
        }
    }
    for pair in pages.windows(2) {
        let (page_a, keys_a) = &pair[0];
        let (page_b, keys_b) = &pair[1];
        let gap_pages = (page_b - page_a - 1) as f64;
        if gap_pages <= 0.0 {
            continue;
        }
        let sampled = (keys_a.len() + keys_b.len()) as f64;
        let gap_rows = gap_pages * per_page;
        let (low, high) = (median(keys_a), median(keys_b));
        // In key order when each page's own keys are close together compared
        // with the distance between the two pages' keys.
        let ordered = high > low
            && spread(keys_a) + spread(keys_b) <= high - low
            && (high - low) / width <= MAX_SPREAD_BUCKETS;
        let near = |k: &i64| ordered && *k >= low - width && *k < high + width;
        // Rows far from the trend: where the sampled pages put theirs.
        for key in keys_a.iter().chain(keys_b.iter()).filter(|k| !near(k)) {
            add(bucket_of(*key, width), gap_rows / sampled);
        }
        let near_count = keys_a
            .iter()
            .chain(keys_b.iter())
            .filter(|k| near(k))
            .count();
        if near_count == 0 {
            continue;
        }
        // The rest fill the keys between the last of page a and the first
        // of page b (the sampled pages' own keys are counted already).
        let from = keys_a.iter().copied().filter(near).max().unwrap_or(low);
        let to = keys_b.iter().copied().filter(near).min().unwrap_or(high);
        let (from, to) = if to > from { (from, to) } else { (low, high) };
        let rows_between = gap_rows * near_count as f64 / sampled;
        let span = (to - from) as f64;
        let mut bucket = bucket_of(from, width);
        while bucket < to {
            let overlap = (bucket + width).min(to) - bucket.max(from);
            add(bucket, rows_between * overlap as f64 / span);
            bucket += width;
        }
    }
    scale_to(rows, total_rows)
}

/// Whole rows per bucket adding up to exactly `total` (largest remainders
/// get the rounding), keeping the proportions of `rows`.
fn scale_to(rows: BTreeMap<i64, f64>, total: i64) -> Vec<(i64, i64)> {
    let sum: f64 = rows.values().sum();
    if sum <= 0.0 || total <= 0 {
        return Vec::new();
    }
    let factor = total as f64 / sum;
    let mut scaled: Vec<(i64, i64, f64)> = rows
        .into_iter()
        .map(|(bucket, n)| {
            let exact = n * factor;
            (bucket, exact.floor() as i64, exact - exact.floor())
        })
        .collect();
    let assigned: i64 = scaled.iter().map(|(_, n, _)| n).sum();
    let mut by_remainder: Vec<usize> = (0..scaled.len()).collect();
    by_remainder.sort_by(|a, b| scaled[*b].2.total_cmp(&scaled[*a].2));
    for &i in by_remainder.iter().take((total - assigned).max(0) as usize) {
        scaled[i].1 += 1;
    }
    scaled
        .into_iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(bucket, n, _)| (bucket, n))
        .collect()
}

/// `count` pages spread evenly over `[first, last]`, both ends included.
pub fn pages_to_sample(first: i64, last: i64, count: i64) -> Vec<i64> {
    if last <= first || count <= 1 {
        return vec![first.max(0)];
    }
    let span = last - first;
    let mut pages: Vec<i64> = (0..count).map(|i| first + span * i / (count - 1)).collect();
    pages.dedup();
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    /// A heap of `rows` rows, `per_page` to a page, keys from `key_of(row)`.
    fn heap(rows: i64, per_page: i64, key_of: impl Fn(i64) -> i64) -> Vec<Vec<i64>> {
        (0..(rows + per_page - 1) / per_page)
            .map(|p| {
                (p * per_page..((p + 1) * per_page).min(rows))
                    .map(&key_of)
                    .collect()
            })
            .collect()
    }

    fn sample(heap: &[Vec<i64>], count: i64) -> Vec<PageSample> {
        pages_to_sample(0, heap.len() as i64 - 1, count)
            .into_iter()
            .map(|page| PageSample {
                page,
                keys: heap[page as usize].clone(),
            })
            .collect()
    }

    fn truth(heap: &[Vec<i64>]) -> BTreeMap<i64, i64> {
        let mut counts = BTreeMap::new();
        for key in heap.iter().flatten() {
            *counts.entry(bucket_of(*key, HOUR)).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn rows_in_key_order_fill_every_hour_between_the_sampled_pages() {
        // 300,000 rows, one every 10 s (833 hours), 170 to a page; 32 pages read.
        let pages = heap(300_000, 170, |r| r * 10_000_000);
        let estimate = estimate_buckets(&sample(&pages, 32), HOUR, 300_000);
        let truth = truth(&pages);
        assert_eq!(estimate.iter().map(|(_, n)| n).sum::<i64>(), 300_000);
        assert_eq!(
            estimate.len(),
            truth.len(),
            "every hour gets rows, no other"
        );
        for (bucket, n) in &estimate {
            let expected = truth[bucket];
            // The first and last hours are partial; the rest within 5%.
            if *bucket != *truth.keys().next().unwrap() && *bucket != *truth.keys().last().unwrap()
            {
                assert!(
                    (n - expected).abs() * 20 <= expected,
                    "hour {bucket}: {n} estimated, {expected} present"
                );
            }
        }
    }

    #[test]
    fn late_rows_go_to_the_hour_they_belong_to() {
        // Every 20th row two days late.
        let late = 48 * HOUR;
        let pages = heap(300_000, 170, |r| {
            r * 10_000_000 - if r % 20 == 0 { late } else { 0 }
        });
        let estimate: BTreeMap<i64, i64> = estimate_buckets(&sample(&pages, 32), HOUR, 300_000)
            .into_iter()
            .collect();
        let truth = truth(&pages);
        let before_start: i64 = estimate.range(..0).map(|(_, n)| n).sum();
        let truly_before: i64 = truth.range(..0).map(|(_, n)| n).sum();
        // 5% of the rows land two days back; the estimate puts them there.
        assert!(truly_before > 0);
        assert!(
            (before_start - truly_before).abs() * 3 <= truly_before,
            "{before_start} estimated before the batch, {truly_before} present"
        );
    }

    #[test]
    fn a_heap_in_no_order_keeps_the_sampled_proportions() {
        // Keys cycle through 10 hours regardless of position.
        let pages = heap(100_000, 170, |r| (r * 7919 % 10) * HOUR + r % 1000);
        let estimate = estimate_buckets(&sample(&pages, 32), HOUR, 100_000);
        assert_eq!(estimate.len(), 10);
        for (_, n) in estimate {
            assert!((n - 10_000).abs() <= 1_000, "{n}");
        }
    }

    #[test]
    fn a_far_outlier_is_not_spread_over_empty_years() {
        let mut pages = heap(10_000, 100, |r| r * 10_000_000);
        pages[50] = vec![10_000 * 8_760 * HOUR; 100]; // a page of keys 10,000 years ahead
        let estimate = estimate_buckets(&sample(&pages, 101), HOUR, 10_000);
        assert!(estimate.len() < 100, "{} buckets", estimate.len());
        assert_eq!(estimate.iter().map(|(_, n)| n).sum::<i64>(), 10_000);
    }

    #[test]
    fn scaled_counts_add_up_exactly() {
        let rows: BTreeMap<i64, f64> = [(0, 1.0), (1, 1.0), (2, 1.0)].into_iter().collect();
        assert_eq!(scale_to(rows, 10), vec![(0, 4), (1, 3), (2, 3)]);
        assert!(estimate_buckets(&[], HOUR, 10).is_empty());
    }

    #[test]
    fn sampled_pages_cover_both_ends() {
        assert_eq!(pages_to_sample(10, 20, 3), vec![10, 15, 20]);
        assert_eq!(pages_to_sample(5, 5, 32), vec![5]);
        assert_eq!(pages_to_sample(0, 3, 32), vec![0, 1, 2, 3]);
    }
}
