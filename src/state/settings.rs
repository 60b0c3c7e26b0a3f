//! Per-table settings: given to `manage`, validated, normalised and stored
//! as text in `partition_predict.config`; read back as numbers for planning.
//!
//! Spans are given as text, as pg_partman's `p_interval` is: an interval
//! ('7 days') for time keys, a whole number of key values ('100000') for
//! integer keys. `lookahead` of an integer key may also be an interval: how
//! much wall-clock time of data to prepare for at the forecast rate.

use partition_core::planner::Lookahead;
use partition_core::{KeyType, Zone};
use pgrx::prelude::*;

use super::{count_read, write, write_returning, Family, StateRow};
use crate::catalog::{objects, PartitionedTable};
use crate::error::{PredictError, Result};

pub const DEFAULT_LOOKAHEAD: &str = "7 days";
/// `manage()`'s default of `target_rows`.
pub const DEFAULT_TARGET_ROWS: i64 = 1_000_000;
pub const DEFAULT_HISTORY_RETENTION: &str = "35 days";
/// The default for `date` keys: their forecasts step by day and use up to
/// three years of them (`forecast::Config::daily`), two for a yearly
/// season; a day is one bucket row.
pub const DEFAULT_HISTORY_RETENTION_DATE: &str = "3 years";
const SECONDS_PER_DAY: f64 = 86_400.0;
/// The longest lookahead: ten years of time, or this many key values. Far
/// past any real plan, short of asking the cycle for partitions forever.
const MAX_LOOKAHEAD_SECONDS: f64 = 3_660.0 * SECONDS_PER_DAY;
const MAX_LOOKAHEAD_KEYS: i64 = 1_000_000_000_000;
/// The longest `keep`: past any real data, short of the timestamp range.
const MAX_KEEP_SECONDS: f64 = 1_000.0 * 365.25 * SECONDS_PER_DAY;

#[derive(Clone, Debug, PartialEq)]
pub struct TableSettings {
    pub target_rows: i64,
    pub lookahead: String,
    pub min_span: Option<String>,
    pub max_span: Option<String>,
    pub history_retention: String,
    pub tablespaces: Option<Vec<String>>,
    pub time_zone: String,
    pub retention: Option<DataRetention>,
}

/// What becomes of a partition whose rows have all expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    Drop,
    /// Detached, and kept where it is as a table of its own.
    Detach,
    /// Detached, then moved to an archive schema and/or tablespace.
    Archive,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Drop => "drop",
            Expired::Detach => "detach",
            Expired::Archive => "archive",
        }
    }

    pub fn parse(text: &str) -> Option<Expired> {
        match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Some(Expired::Drop),
            "detach" => Some(Expired::Detach),
            "archive" => Some(Expired::Archive),
            _ => None,
        }
    }
}

/// Data retention of one table, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DataRetention {
    /// Normalised: an interval, or a number of key values for integer keys.
    pub keep: String,
    pub expired: Expired,
    pub archive_schema: Option<String>,
    pub archive_tablespace: Option<String>,
}

/// What the caller asked of data retention; `keep` `None` turns it off.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetentionArguments<'a> {
    pub keep: Option<&'a str>,
    pub expired: Option<&'a str>,
    pub archive_schema: Option<&'a str>,
    pub archive_tablespace: Option<&'a str>,
}

/// A span, comparable within its kind.
#[derive(Clone, Debug, PartialEq)]
enum Span {
    /// Normalised interval text and its length in seconds (a month counts 30 days).
    Time {
        text: String,
        seconds: f64,
    },
    Keys(i64),
}

impl Span {
    fn text(&self) -> String {
        match self {
            Span::Time { text, .. } => text.clone(),
            Span::Keys(n) => n.to_string(),
        }
    }
}

/// What the caller gave `manage`; `None` means the default.
pub struct Arguments<'a> {
    pub target_rows: i64,
    pub lookahead: Option<&'a str>,
    pub min_span: Option<&'a str>,
    pub max_span: Option<&'a str>,
    pub history_retention: Option<&'a str>,
    pub tablespaces: Option<&'a [String]>,
    /// `None`: the session's `TimeZone` (read before the settings are pinned).
    pub time_zone: Option<&'a str>,
    pub session_time_zone: &'a str,
    pub retention: RetentionArguments<'a>,
}

pub fn validate(
    key_type: KeyType,
    owner: pg_sys::Oid,
    arguments: &Arguments,
) -> Result<TableSettings> {
    let Arguments {
        target_rows,
        lookahead,
        min_span,
        max_span,
        history_retention,
        tablespaces,
        time_zone,
        session_time_zone,
        retention,
    } = *arguments;
    if target_rows <= 0 {
        return Err(PredictError::InvalidSetting {
            setting: "target_rows",
            reason: format!("must be positive, got {target_rows}"),
        });
    }
    let lookahead = parse_span(
        "lookahead",
        lookahead.unwrap_or(DEFAULT_LOOKAHEAD),
        key_type,
        true,
    )?;
    let too_far = match &lookahead {
        Span::Time { seconds, .. } => *seconds > MAX_LOOKAHEAD_SECONDS,
        Span::Keys(keys) => *keys > MAX_LOOKAHEAD_KEYS,
    };
    if too_far {
        return Err(PredictError::InvalidSetting {
            setting: "lookahead",
            reason: format!(
                "{} is too far ahead: at most 10 years, or {MAX_LOOKAHEAD_KEYS} key values",
                lookahead.text()
            ),
        });
    }
    let min_span = min_span
        .map(|s| parse_span("min_span", s, key_type, false))
        .transpose()?;
    let max_span = max_span
        .map(|s| parse_span("max_span", s, key_type, false))
        .transpose()?;
    if let (Some(min), Some(max)) = (&min_span, &max_span) {
        let inverted = match (min, max) {
            (Span::Time { seconds: a, .. }, Span::Time { seconds: b, .. }) => a > b,
            (Span::Keys(a), Span::Keys(b)) => a > b,
            _ => false,
        };
        if inverted {
            return Err(PredictError::InvalidSetting {
                setting: "min_span",
                reason: format!(
                    "min_span {} is larger than max_span {}",
                    min.text(),
                    max.text()
                ),
            });
        }
    }
    let history = history_retention.unwrap_or(if key_type == KeyType::Date {
        DEFAULT_HISTORY_RETENTION_DATE
    } else {
        DEFAULT_HISTORY_RETENTION
    });
    let history_retention = match interval_of(history.trim()) {
        // Counted back from now, month part first: '1 mon -29 days' is a day
        // in all but would reach past now on the 1st of March, and a huge
        // part offset by a negative one past what a timestamp holds.
        Some((text, _)) if text.contains('-') => {
            return Err(PredictError::InvalidSetting {
                setting: "history_retention",
                reason: format!("every part of '{text}' must be positive"),
            })
        }
        // Further back than a timestamp reaches would fail every cycle
        // with "timestamp out of range".
        Some((text, seconds)) if seconds > MAX_KEEP_SECONDS => {
            return Err(PredictError::InvalidSetting {
                setting: "history_retention",
                reason: format!("'{text}' is more than 1,000 years"),
            })
        }
        Some((text, seconds)) if seconds >= SECONDS_PER_DAY => text,
        Some((text, _)) => {
            return Err(PredictError::InvalidSetting {
                setting: "history_retention",
                reason: format!("must be at least 1 day, got '{text}'"),
            })
        }
        None => {
            return Err(PredictError::InvalidSetting {
                setting: "history_retention",
                reason: format!("\"{history}\" is not an interval (e.g. '35 days')"),
            })
        }
    };
    let retention = validate_retention(key_type, owner, &retention)?;
    let tablespaces = tablespaces.map(validate_tablespaces).transpose()?;
    let time_zone = match time_zone {
        Some(name) => validate_time_zone(key_type, name)?,
        // Only timestamptz keys have a zone.
        None if key_type != KeyType::TimestampTz => "UTC".to_string(),
        None => Zone::named(session_time_zone)
            .map(|zone| zone.name().to_string())
            .unwrap_or_else(|| {
                pgrx::notice!(
                    "TimeZone \"{session_time_zone}\" is not a name of the IANA time-zone database: partition boundaries of this table follow UTC; partition_predict.set_time_zone() changes that"
                );
                "UTC".to_string()
            }),
    };
    Ok(TableSettings {
        history_retention,
        retention,
        tablespaces,
        time_zone,
        target_rows,
        lookahead: lookahead.text(),
        min_span: min_span.map(|s| s.text()),
        max_span: max_span.map(|s| s.text()),
    })
}

fn parse_span(
    setting: &'static str,
    text: &str,
    key_type: KeyType,
    interval_allowed: bool,
) -> Result<Span> {
    let invalid = |reason: String| PredictError::InvalidSetting { setting, reason };
    let trimmed = text.trim();
    if !key_type.is_temporal() {
        if let Ok(keys) = trimmed.parse::<i64>() {
            return if keys > 0 {
                Ok(Span::Keys(keys))
            } else {
                Err(invalid(format!("must be positive, got {keys}")))
            };
        }
        if !interval_allowed {
            return Err(invalid(format!(
                "\"{text}\" is not a whole number of key values (keys of type {key_type} take e.g. '100000')"
            )));
        }
    }
    let (normalised, seconds) = interval_of(trimmed).ok_or_else(|| {
        invalid(if key_type.is_temporal() {
            format!("\"{text}\" is not an interval (keys of type {key_type} take e.g. '1 day')")
        } else {
            format!("\"{text}\" is neither a whole number of key values ('100000') nor an interval of wall-clock time ('7 days')")
        })
    })?;
    if seconds <= 0.0 {
        return Err(invalid(format!(
            "must be a positive interval, got '{normalised}'"
        )));
    }
    if key_type == KeyType::Date && setting != "lookahead" && seconds % SECONDS_PER_DAY != 0.0 {
        return Err(invalid(format!(
            "a date key needs whole days, got '{normalised}'"
        )));
    }
    Ok(Span::Time {
        text: normalised,
        seconds,
    })
}

/// PostgreSQL's own interval parser: every form it accepts is accepted.
fn interval_of(text: &str) -> Option<(String, f64)> {
    objects::interval(text)
}

/// A time zone for boundaries: a name the IANA database knows, for a
/// `timestamptz` key (`date` and `timestamp` keys have none); returned as
/// the database spells it.
pub fn validate_time_zone(key_type: KeyType, name: &str) -> Result<String> {
    if key_type != KeyType::TimestampTz {
        return Err(PredictError::InvalidSetting {
            setting: "time_zone",
            reason:
                "only a timestamptz key has a time zone; date, timestamp and integer keys have none"
                    .into(),
        });
    }
    Zone::named(name)
        .map(|zone| zone.name().to_string())
        .ok_or_else(|| PredictError::InvalidSetting {
            setting: "time_zone",
            reason: format!("\"{name}\" is not a time zone of the IANA database (such as 'Europe/Berlin' or 'UTC')"),
        })
}

/// Tablespaces shadows may be placed in: each must exist and allow the
/// caller to create tables in it.
fn validate_tablespaces(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Err(PredictError::InvalidSetting {
            setting: "tablespaces",
            reason: "the list is empty".into(),
        });
    }
    let mut valid = Vec::new();
    for name in names {
        let (exists, may_create) = objects::tablespace_access(name, None)?;
        if !exists {
            return Err(PredictError::InvalidSetting {
                setting: "tablespaces",
                reason: format!("tablespace \"{name}\" does not exist"),
            });
        }
        if !may_create {
            return Err(PredictError::InvalidSetting {
                setting: "tablespaces",
                reason: format!("permission denied to create tables in tablespace \"{name}\""),
            });
        }
        if !valid.contains(name) {
            valid.push(name.clone());
        }
    }
    Ok(valid)
}

/// Stores a table's validated settings: its row of `partition_predict.config`,
/// returned as that row.
pub fn store(
    parent: pg_sys::Oid,
    settings: &TableSettings,
) -> Result<PgHeapTuple<'static, AllocatedByRust>> {
    write_returning::<PgHeapTuple<'static, AllocatedByRust>>(
        "INSERT INTO partition_predict.config AS c
                (parent, target_rows, lookahead, min_span, max_span, history_retention, tablespaces, time_zone,
                 keep, expired, archive_schema, archive_tablespace)
         VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6::pg_catalog.interval, $7::pg_catalog.name[], $8,
                 $9, COALESCE($10, 'detach'), $11::pg_catalog.name, $12::pg_catalog.name)
         RETURNING c",
        &[
            parent.into(),
            settings.target_rows.into(),
            settings.lookahead.clone().into(),
            settings.min_span.clone().into(),
            settings.max_span.clone().into(),
            settings.history_retention.clone().into(),
            settings.tablespaces.clone().into(),
            settings.time_zone.clone().into(),
            settings.retention.as_ref().map(|r| r.keep.clone()).into(),
            settings.retention.as_ref().map(|r| r.expired.as_str()).into(),
            settings.retention.as_ref().and_then(|r| r.archive_schema.clone()).into(),
            settings.retention.as_ref().and_then(|r| r.archive_tablespace.clone()).into(),
        ],
    )
}

/// Checks data retention settings; `Ok(None)` when `keep` is not given
/// (nothing expires), in which case the other settings must not be either.
pub fn validate_retention(
    key_type: KeyType,
    owner: pg_sys::Oid,
    arguments: &RetentionArguments,
) -> Result<Option<DataRetention>> {
    let invalid =
        |setting: &'static str, reason: String| PredictError::InvalidSetting { setting, reason };
    let Some(keep) = arguments.keep else {
        if arguments.expired.is_some()
            || arguments.archive_schema.is_some()
            || arguments.archive_tablespace.is_some()
        {
            return Err(invalid(
                "keep",
                "expired, archive_schema and archive_tablespace need keep (how much data to keep)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let keep = match parse_span("keep", keep, key_type, false)? {
        // '1 mon -29 days' is positive, yet counted back from the 1st of
        // March it ends after where it started.
        Span::Time { text, .. } if text.contains('-') => {
            return Err(invalid(
                "keep",
                format!("every part of '{text}' must be positive"),
            ))
        }
        Span::Time { text, seconds } if seconds > MAX_KEEP_SECONDS => {
            return Err(invalid(
                "keep",
                format!("'{text}' is more than 1,000 years"),
            ))
        }
        span => span.text(),
    };
    let expired = match arguments.expired {
        None => Expired::Detach,
        Some(text) => Expired::parse(text).ok_or_else(|| {
            invalid(
                "expired",
                format!("\"{text}\" is not one of drop, detach, archive"),
            )
        })?,
    };
    let archive_schema = arguments
        .archive_schema
        .map(|s| validate_archive_schema(owner, s))
        .transpose()?;
    let archive_tablespace = arguments
        .archive_tablespace
        .map(|t| validate_archive_tablespace(owner, t))
        .transpose()?;
    match expired {
        Expired::Archive if archive_schema.is_none() && archive_tablespace.is_none() => {
            return Err(invalid(
                "expired",
                "archive needs archive_schema or archive_tablespace (where expired partitions go)".into(),
            ))
        }
        Expired::Drop | Expired::Detach if archive_schema.is_some() || archive_tablespace.is_some() => {
            return Err(invalid(
                "expired",
                format!(
                    "archive_schema and archive_tablespace apply only to expired => 'archive', not '{}'",
                    expired.as_str()
                ),
            ))
        }
        _ => {}
    }
    Ok(Some(DataRetention {
        keep,
        expired,
        archive_schema,
        archive_tablespace,
    }))
}

/// A schema the table's owner (the worker acts with its rights) may create
/// tables in, and not one of PostgreSQL's or the extension's own.
fn validate_archive_schema(owner: pg_sys::Oid, name: &str) -> Result<String> {
    let invalid = |reason: String| PredictError::InvalidSetting {
        setting: "archive_schema",
        reason,
    };
    let (exists, may_create) = objects::schema_access(name, owner)?;
    if !exists {
        return Err(invalid(format!("schema \"{name}\" does not exist")));
    }
    if name == "partition_predict" || name == "information_schema" || name.starts_with("pg_") {
        return Err(invalid(format!(
            "\"{name}\" is a system schema or the extension's own"
        )));
    }
    if !may_create {
        return Err(invalid(format!(
            "the table's owner may not use and create tables in schema \"{name}\""
        )));
    }
    Ok(name.to_string())
}

fn validate_archive_tablespace(owner: pg_sys::Oid, name: &str) -> Result<String> {
    let invalid = |reason: String| PredictError::InvalidSetting {
        setting: "archive_tablespace",
        reason,
    };
    if name == "pg_global" {
        return Err(invalid("pg_global holds only shared catalogs".into()));
    }
    let (exists, may_create) = objects::tablespace_access(name, Some(owner))?;
    if !exists {
        return Err(invalid(format!("tablespace \"{name}\" does not exist")));
    }
    if !may_create && name != "pg_default" {
        return Err(invalid(format!(
            "the table's owner may not create tables in tablespace \"{name}\""
        )));
    }
    Ok(name.to_string())
}

/// Replaces a table's data retention settings (`None`: nothing expires).
pub fn store_retention(parent: pg_sys::Oid, retention: Option<&DataRetention>) -> Result<()> {
    write(
        "UPDATE partition_predict.config
            SET keep = $2, expired = COALESCE($3, 'detach'),
                archive_schema = $4::pg_catalog.name, archive_tablespace = $5::pg_catalog.name
          WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[
            parent.into(),
            retention.map(|r| r.keep.clone()).into(),
            retention.map(|r| r.expired.as_str()).into(),
            retention.and_then(|r| r.archive_schema.clone()).into(),
            retention.and_then(|r| r.archive_tablespace.clone()).into(),
        ],
    )?;
    Ok(())
}

/// A table's data retention as stored, `None` when nothing expires.
pub fn load_retention(parent: pg_sys::Oid) -> Result<Option<DataRetention>> {
    count_read(Family::Settings);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT keep, expired, archive_schema::text, archive_tablespace::text
               FROM partition_predict.config
              WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass AND keep IS NOT NULL",
            Some(1),
            &[parent.into()],
        )?;
        let row = rows.first();
        if row.is_empty() {
            return Ok(None);
        }
        let r = StateRow::of("config", &row);
        // `keep IS NOT NULL` was asked for.
        let keep: String = r.required(1, "keep")?;
        let expired: String = r.required(2, "expired")?;
        let expired = Expired::parse(&expired)
            .ok_or_else(|| PredictError::UntrustedState(format!("expired action \"{expired}\"")))?;
        Ok(Some(DataRetention {
            keep,
            expired,
            archive_schema: r.optional(3)?,
            archive_tablespace: r.optional(4)?,
        }))
    })
}

/// Changes the time zone of a managed table's boundaries; partitions that
/// exist keep theirs.
pub fn store_time_zone(parent: pg_sys::Oid, time_zone: &str) -> Result<()> {
    write(
        "UPDATE partition_predict.config SET time_zone = $2 WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
        &[parent.into(), time_zone.into()],
    )?;
    Ok(())
}

/// A table's settings as planning uses them, spans in raw key units.
#[derive(Clone, Debug)]
pub struct PlanningSettings {
    pub target_rows: f64,
    pub lookahead: Lookahead,
    pub min_span: Option<i64>,
    pub max_span: Option<i64>,
    /// How long the extension keeps the table's history, in seconds.
    pub history_retention_seconds: f64,
    /// Where shadows may go, in the order given (`None`: the parent's
    /// tablespace).
    pub tablespaces: Option<Vec<String>>,
    /// Where natural boundaries of `timestamptz` keys fall.
    pub zone: Zone,
}

impl PlanningSettings {
    /// The lookahead as key time, in seconds, where it is an interval.
    pub fn lookahead_seconds(&self) -> Option<f64> {
        match self.lookahead {
            Lookahead::Seconds(seconds) => Some(seconds),
            Lookahead::Keys(_) => None,
        }
    }
}

/// The one place the stored settings are turned into numbers: `lookahead`
/// is a whole number of key values or an interval (`validate` stored one
/// of the two), spans likewise.
pub fn load(table: &PartitionedTable) -> Result<PlanningSettings> {
    count_read(Family::Settings);
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT target_rows,
                    CASE WHEN lookahead ~ '^[0-9]+$' THEN NULL
                         ELSE pg_catalog.date_part('epoch', lookahead::pg_catalog.interval) END,
                    CASE WHEN lookahead ~ '^[0-9]+$' THEN lookahead::bigint END,
                    CASE WHEN min_span ~ '^[0-9]+$' THEN min_span::float8
                         ELSE pg_catalog.date_part('epoch', min_span::pg_catalog.interval) END,
                    CASE WHEN max_span ~ '^[0-9]+$' THEN max_span::float8
                         ELSE pg_catalog.date_part('epoch', max_span::pg_catalog.interval) END,
                    time_zone,
                    pg_catalog.date_part('epoch', history_retention),
                    tablespaces::text[]
               FROM partition_predict.config WHERE parent = $1::pg_catalog.oid::pg_catalog.regclass",
            None,
            &[table.oid.into()],
        )?;
        let row = rows.first();
        if row.is_empty() {
            return Err(PredictError::NotManaged(table.name.to_string()));
        }
        let r = StateRow::of("config", &row);
        // Spans of time keys are intervals in seconds; of integer keys, key counts.
        let span = |v: Option<f64>| {
            v.map(|v| {
                if table.key_type.is_temporal() {
                    (v * table.key_type.units_per_second()) as i64
                } else {
                    v as i64
                }
            })
        };
        let lookahead = match (r.optional::<f64>(2)?, r.optional::<i64>(3)?) {
            (Some(seconds), _) => Lookahead::Seconds(seconds),
            (None, Some(keys)) => Lookahead::Keys(keys),
            // `lookahead` is NOT NULL: one of the two is always there.
            (None, None) => {
                return Err(PredictError::CorruptState {
                    table: "config",
                    column: "lookahead",
                })
            }
        };
        let time_zone: String = r.required(6, "time_zone")?;
        Ok(PlanningSettings {
            target_rows: r.required::<i64>(1, "target_rows")? as f64,
            lookahead,
            min_span: span(r.optional(4)?),
            max_span: span(r.optional(5)?),
            history_retention_seconds: r.required(7, "history_retention")?,
            tablespaces: r.optional(8)?,
            // Stored names were validated; one the bundled database dropped
            // since falls back to UTC rather than stopping the cycle.
            zone: Zone::named(&time_zone).unwrap_or_default(),
        })
    })
}
