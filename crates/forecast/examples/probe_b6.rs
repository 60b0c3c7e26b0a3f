use forecast::engine::{choose, predict};
use forecast::{Config, Learned};
use std::time::Instant;
fn main() {
    let text = std::fs::read_to_string("/tmp/series.txt").unwrap();
    let rows: Vec<(i64, f64)> = text
        .lines()
        .map(|l| {
            let mut p = l.split('|');
            (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let config = Config::default();
    // end at batch 4: frontier bucket 231580 -> end = 231580, history up to 231579
    for end in [231560i64, 231567, 231574, 231580] {
        let first = end - 721;
        let values: Vec<f64> = (first..end)
            .map(|i| rows.iter().find(|r| r.0 == i).map(|r| r.1).unwrap_or(0.0))
            .collect();
        let mut l = Learned::default();
        let t = Instant::now();
        choose(&values, end, &mut l, &config, None);
        let c = t.elapsed().as_secs_f64() * 1e3;
        let recent = &values[values.len() - 672..];
        let t = Instant::now();
        let p = predict(recent, 24, &config, &l).unwrap();
        let pr = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "end {end}: choose {c:.1} ms model {:?}, predict {pr:.1} ms ({:?}, shift {})",
            l.model, p.model, p.level_shift
        );
    }
}
