//! Every error a user can provoke, each with its SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub type Result<T, E = PredictError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("{0} is not a partitioned table")]
    NotPartitioned(String),
    #[error("{table} is partitioned by {strategy}; only RANGE partitioning is supported")]
    NotRangePartitioned {
        table: String,
        strategy: &'static str,
    },
    #[error("{0} is partitioned by more than one column; only a single-column key is supported")]
    MultiColumnKey(String),
    #[error("{0} is partitioned by an expression; only a plain column key is supported")]
    ExpressionKey(String),
    #[error("partition key {column} of {table} has type {type_name}; supported key types are timestamptz, timestamp, date, smallint, integer and bigint")]
    UnsupportedKeyType {
        table: String,
        column: String,
        type_name: String,
    },
    #[error("{0} is a temporary table; only permanent and unlogged tables can be managed")]
    TemporaryTable(String),
    #[error("partition {partition} of {table} is itself partitioned; sub-partitioned tables are not supported")]
    SubPartitioned { table: String, partition: String },
    #[error("partition {partition} of {table} has a bound that cannot be read: {reason}")]
    UnreadableBound {
        table: String,
        partition: String,
        reason: String,
    },
    #[error("{count} partition(s) of {table} belong to another role than its owner {owner}, {example} among them")]
    PartitionsOfAnotherOwner {
        table: String,
        owner: String,
        count: usize,
        example: String,
    },
    #[error("no free name for {name} in schema {schema}: other relations take every name tried")]
    NoFreeName { name: String, schema: String },
    #[error("cannot drop schema {0} with CASCADE: extension pg_partition_predict, and the state of every managed table, depend on it")]
    ExtensionSchemaDrop(String),
    #[error("{shadow} kept rows from moving: {reason}; nothing was moved")]
    ShadowTurnsRowsAway { shadow: String, reason: String },
    #[error("must be owner of table {0}")]
    NotOwner(String),
    #[error("{0} is already managed by pg_partition_predict")]
    AlreadyManaged(String),
    #[error("{0} is not managed by pg_partition_predict")]
    NotManaged(String),
    #[error("{0} must not be NULL")]
    NullArgument(&'static str),
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: String,
    },
    #[error("could not lock {relation} for {action}: {attempts} attempts with lock_timeout {timeout_ms} ms each timed out")]
    LockUnavailable {
        relation: String,
        action: &'static str,
        attempts: u32,
        timeout_ms: i32,
    },
    #[error("could not lock {relation} for {action}: a transaction open for {seconds} s or more holds a lock on it ({holder})")]
    LockHeldByLongTransaction {
        relation: String,
        action: &'static str,
        seconds: i32,
        holder: String,
    },
    #[error("relation with OID {0} does not exist")]
    UndefinedTable(u32),
    #[error("pg_partition_predict changes nothing on a standby")]
    OnStandby,
    #[error("cannot {0}: pg_partition_predict is not in shared_preload_libraries")]
    NotPreloaded(&'static str),
    #[error("cannot move rows out of DEFAULT of {0}: pg_partition_predict.routing is off")]
    RoutingOff(String),
    #[error("cannot route more than {0} migrations at once (pg_partition_predict.max_migrations_per_database, 64 in the cluster)")]
    TooManyOverrides(usize),
    #[error("cannot route more than {0} migrations of one role's tables at once (pg_partition_predict.max_migrations_per_role)")]
    TooManyOverridesOfRole(usize),
    #[error("rows of {0} are being moved out of its DEFAULT partition")]
    MigrationInProgress(String),
    #[error("could not write {0} while rows are being moved out of its DEFAULT partition")]
    WriteDuringMigration(String),
    #[error("could not serialize access to {0}: rows moved out of its DEFAULT partition after this transaction's snapshot was taken")]
    SnapshotOlderThanMove(String),
    #[error("shadow {0} is not empty; rows of DEFAULT cannot be moved into it")]
    ShadowNotEmpty(String),
    #[error("moving rows of {table} would fire its {what}: only a superuser (or the background worker) can move them with those suppressed")]
    SideEffects { table: String, what: &'static str },
    #[error("rows cannot move out of DEFAULT: a publication replicates the deletes of {default}, which has no replica identity")]
    NoReplicaIdentity { default: String },
    #[error("rows cannot move out of DEFAULT of {table}: publication {publication} would give its subscribers the moved rows twice or lose them (it replicates deletes but not inserts, or inserts but not deletes beside a publication of both, or covers a whole schema or database with inserts only)")]
    PublishedHalfway { table: String, publication: String },
    #[error("rows of a published table move through a temporary table, which its owner {0} may not create")]
    NoTemporaryTables(String),
    #[error("could not write {file}: {reason}")]
    StateFile { file: &'static str, reason: String },
    #[error("{0} must commit on its own and cannot run inside a transaction block (or a query string of several statements)")]
    InTransactionBlock(&'static str),
    #[error("{0} cannot run in a REPEATABLE READ or SERIALIZABLE transaction: it must see what other sessions committed while it runs")]
    SnapshotIsolation(&'static str),
    #[error("cannot drop extension pg_partition_predict: {0}")]
    ExtensionInUse(String),
    #[error("the pg_partition_predict library loaded is version {library}, but the extension's SQL objects in this database are version {sql}")]
    SqlVersionMismatch { library: &'static str, sql: String },
    #[error("{table} is a partition of {parent}; only a top-level table can be managed")]
    IsPartition { table: String, parent: String },
    #[error("{0} is maintained by pg_partman")]
    MaintainedByPartman(String),
    #[error("pg_partman does not manage {0}")]
    NotPartmanManaged(String),
    #[error("cannot take {table} over from pg_partman: {reason}")]
    PartmanUnsupported { table: String, reason: String },
    #[error("permission denied to switch pg_partman's maintenance of {0} off")]
    PartmanNotWritable(String),
    #[error("column {column} of partition_predict.{table} is NULL in a row the extension reads, but the column is NOT NULL: the extension's state is damaged")]
    CorruptState {
        table: &'static str,
        column: &'static str,
    },
    #[error("refusing to act on state that pg_partition_predict did not write: {0}")]
    UntrustedState(String),
    #[error(
        "{0}, which holds rows being moved out of DEFAULT, no longer has the owner and columns of its table"
    )]
    ShadowChanged(String),

    // `ingest`'s checks of its source (the batch).
    #[error("source {0} is not a table, view or materialized view")]
    SourceNotTable(String),
    #[error("source {batch} is {table} or one of its partitions")]
    SourceIsTarget { batch: String, table: String },
    #[error("permission denied to read source {0}: ingest reads it with the rights of the table's owner")]
    SourceUnreadable(String),
    #[error("column \"{column}\" of source {batch} does not exist in {table}")]
    SourceColumnUnknown {
        column: String,
        batch: String,
        table: String,
    },
    #[error("column \"{column}\" of {table} is generated; leave it out of source {batch}")]
    SourceColumnGenerated {
        column: String,
        batch: String,
        table: String,
    },
    #[error("column \"{column}\" of source {batch} has type {batch_type}, but it is the partition key of {table}, of type {key_type}")]
    SourceKeyType {
        column: String,
        batch: String,
        batch_type: String,
        table: String,
        key_type: String,
    },
    #[error("source {batch} has no column \"{column}\", the partition key of {table}")]
    SourceWithoutKey {
        column: String,
        batch: String,
        table: String,
    },
    /// A plan of the load failed: PostgreSQL's own error, with its SQLSTATE.
    #[error("source {batch} does not fit {table}: {message}")]
    SourceDoesNotFit {
        batch: String,
        table: String,
        sqlstate: PgSqlErrorCode,
        message: String,
    },
    #[error("{rows} row(s) of source {batch} have a NULL \"{column}\"; the partition key of {table} cannot be NULL (such rows would land in DEFAULT)")]
    SourceNullKeys {
        rows: i64,
        batch: String,
        column: String,
        table: String,
    },
    #[error("{rows} row(s) of {batch} fall outside every partition of {table} (rows with new keys or NULL {column} were added to the source while ingest ran); nothing was loaded")]
    RowsOutsidePartitions {
        rows: i64,
        batch: String,
        table: String,
        column: String,
    },

    /// An error PostgreSQL raised and the extension caught, passed on as it was.
    #[error("{message}")]
    Postgres {
        sqlstate: PgSqlErrorCode,
        message: String,
    },
    #[error("permission denied to report on {0}: a report shows what the table's rows add up to")]
    ReportNotReadable(String),
    #[error("invalid report period: {0}")]
    InvalidPeriod(String),
    #[error("unexpected catalog state: {0}")]
    Internal(String),
    #[error("SPI error: {0}")]
    Spi(#[from] pgrx::spi::Error),
}

impl PredictError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            PredictError::NotPartitioned(_) => ERRCODE_WRONG_OBJECT_TYPE,
            PredictError::NotRangePartitioned { .. }
            | PredictError::MultiColumnKey(_)
            | PredictError::ExpressionKey(_)
            | PredictError::UnsupportedKeyType { .. }
            | PredictError::TemporaryTable(_)
            | PredictError::SubPartitioned { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
            PredictError::UnreadableBound { .. } => ERRCODE_INVALID_OBJECT_DEFINITION,
            PredictError::NotOwner(_) | PredictError::PartitionsOfAnotherOwner { .. } => {
                ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            PredictError::AlreadyManaged(_) => ERRCODE_DUPLICATE_OBJECT,
            PredictError::ShadowTurnsRowsAway { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            PredictError::NoFreeName { .. } => ERRCODE_DUPLICATE_TABLE,
            PredictError::NotManaged(_) | PredictError::NotPartmanManaged(_) => {
                ERRCODE_UNDEFINED_OBJECT
            }
            PredictError::MaintainedByPartman(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            PredictError::PartmanUnsupported { .. } | PredictError::IsPartition { .. } => {
                ERRCODE_FEATURE_NOT_SUPPORTED
            }
            PredictError::PartmanNotWritable(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            PredictError::InvalidSetting { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            PredictError::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            PredictError::LockUnavailable { .. }
            | PredictError::LockHeldByLongTransaction { .. } => ERRCODE_LOCK_NOT_AVAILABLE,
            PredictError::UndefinedTable(_) => ERRCODE_UNDEFINED_TABLE,
            PredictError::NoTemporaryTables(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            PredictError::NoReplicaIdentity { .. } | PredictError::PublishedHalfway { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            PredictError::OnStandby => ERRCODE_READ_ONLY_SQL_TRANSACTION,
            PredictError::NotPreloaded(_)
            | PredictError::RoutingOff(_)
            | PredictError::SqlVersionMismatch { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            PredictError::TooManyOverrides(_) | PredictError::TooManyOverridesOfRole(_) => {
                ERRCODE_CONFIGURATION_LIMIT_EXCEEDED
            }
            PredictError::MigrationInProgress(_) => ERRCODE_OBJECT_IN_USE,
            PredictError::WriteDuringMigration(_) | PredictError::SnapshotOlderThanMove(_) => {
                ERRCODE_T_R_SERIALIZATION_FAILURE
            }
            PredictError::ShadowNotEmpty(_) | PredictError::RowsOutsidePartitions { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            PredictError::SideEffects { .. } | PredictError::SourceUnreadable(_) => {
                ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            PredictError::StateFile { .. } => ERRCODE_IO_ERROR,
            PredictError::InTransactionBlock(_) => ERRCODE_ACTIVE_SQL_TRANSACTION,
            PredictError::SnapshotIsolation(_) => ERRCODE_INVALID_TRANSACTION_STATE,
            PredictError::ExtensionInUse(_) | PredictError::ExtensionSchemaDrop(_) => {
                ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST
            }
            PredictError::CorruptState { .. } => ERRCODE_DATA_CORRUPTED,
            PredictError::UntrustedState(_) | PredictError::ShadowChanged(_) => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            PredictError::SourceNotTable(_) => ERRCODE_WRONG_OBJECT_TYPE,
            PredictError::SourceIsTarget { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            PredictError::SourceColumnUnknown { .. } | PredictError::SourceWithoutKey { .. } => {
                ERRCODE_UNDEFINED_COLUMN
            }
            PredictError::SourceColumnGenerated { .. } => ERRCODE_GENERATED_ALWAYS,
            PredictError::SourceKeyType { .. } => ERRCODE_DATATYPE_MISMATCH,
            PredictError::SourceNullKeys { .. } => ERRCODE_NOT_NULL_VIOLATION,
            PredictError::SourceDoesNotFit { sqlstate, .. } => *sqlstate,
            PredictError::Postgres { sqlstate, .. } => *sqlstate,
            PredictError::ReportNotReadable(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            PredictError::InvalidPeriod(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            PredictError::Internal(_) | PredictError::Spi(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            PredictError::NotRangePartitioned { .. } => {
                Some("Recreate the table with PARTITION BY RANGE (column).")
            }
            PredictError::LockUnavailable { .. } => Some(
                "A long-running transaction holds a conflicting lock; retry later or raise pg_partition_predict.lock_timeout / lock_retries.",
            ),
            PredictError::LockHeldByLongTransaction { .. } => Some(
                "Writers of the table wait while rows move: the move does not wait for a long transaction. It is tried again later; pg_stat_activity shows the transaction.",
            ),
            PredictError::NoReplicaIdentity { .. } => Some(
                "Nothing has moved. Rows leave DEFAULT by DELETE, which the table's publications replicate: give the table a primary key, or set REPLICA IDENTITY FULL on the table and on its DEFAULT partition (ALTER TABLE … REPLICA IDENTITY FULL; partitions the extension creates take it from the table); the next step moves them.",
            ),
            PredictError::NoTemporaryTables(_) => Some(
                "Nothing has moved. GRANT TEMPORARY ON DATABASE <this database> TO <the owner>; the next step moves the rows.",
            ),
            PredictError::PublishedHalfway { .. } => Some(
                "Nothing has moved. Publish inserts and deletes alike (ALTER PUBLICATION … SET (publish = 'insert, update, delete')), or name the table in a publication of inserts only instead; the next step moves the rows. Rows found in DEFAULT stay there meanwhile.",
            ),
            PredictError::OnStandby => Some(
                "Run it on the primary: what it changes there reaches this standby through the WAL. The views and reports read here.",
            ),
            PredictError::NotPreloaded(_) => Some(
                "Add pg_partition_predict to shared_preload_libraries and restart the server.",
            ),
            PredictError::RoutingOff(_) => Some(
                "While rows move, the planner hook makes queries on the table read them where they are; set pg_partition_predict.routing = on (postgresql.conf) and reload.",
            ),
            PredictError::MigrationInProgress(_) => {
                Some("Wait for the migration to finish (see partition_predict.routing_overrides).")
            }
            PredictError::NotOwner(_) => {
                Some("Call this function as the table's owner, a member of the owning role, or a superuser.")
            }
            PredictError::PartitionsOfAnotherOwner { .. } => Some(
                "The worker acts as the table's owner, who must own every partition: a superuser runs ALTER TABLE <partition> OWNER TO <owner> for each (or calls adopt_partman(), which does), then retry.",
            ),
            PredictError::NoFreeName { .. } => Some(
                "Drop or rename the relations named like it, or keep the table in a schema where no other role may create relations.",
            ),
            PredictError::ExtensionSchemaDrop(_) => Some(
                "Only the extension's owner or a superuser may: DROP EXTENSION pg_partition_predict first, as its owner.",
            ),
            PredictError::ShadowTurnsRowsAway { .. } => Some(
                "Drop the rules, the triggers that return NULL and the row-level security policies that hide rows from the table's owner on the tables the rows move between; the rows stay in DEFAULT meanwhile, and queries see them.",
            ),
            PredictError::WriteDuringMigration(_) | PredictError::SnapshotOlderThanMove(_) => {
                Some("Retry the transaction.")
            }
            PredictError::ReportNotReadable(_) => Some(
                "It needs SELECT on the table, without row-level security limiting the role to some rows.",
            ),
            PredictError::ShadowNotEmpty(_) => Some(
                "Rows were written into the shadow table directly; once they are moved out of it, retry.",
            ),
            PredictError::InTransactionBlock(_) => Some("CALL it on its own, outside BEGIN … COMMIT."),
            PredictError::SnapshotIsolation(_) => Some("Call it in a READ COMMITTED transaction."),
            PredictError::ExtensionInUse(_) => Some(
                "Let the migration finish (CALL partition_predict.migrate_default(table)), or call partition_predict.unmanage(table), then drop the extension again.",
            ),
            PredictError::RowsOutsidePartitions { .. } => {
                Some("Do not change the source while ingest runs; call ingest again.")
            }
            PredictError::MaintainedByPartman(_) => Some(
                "Take it over with SELECT partition_predict.adopt_partman(table): it keeps every partition and switches pg_partman's maintenance of the table off.",
            ),
            PredictError::PartmanNotWritable(_) => Some(
                "adopt_partman() sets automatic_maintenance = 'off' in pg_partman's part_config with the caller's rights: run it as a role that may update part_config.",
            ),
            PredictError::CorruptState { .. } => Some(
                "Only the extension writes its tables; restore them from a backup, or call partition_predict.unmanage(table) and manage(table) again.",
            ),
            PredictError::SqlVersionMismatch { .. } => Some(
                "Run ALTER EXTENSION pg_partition_predict UPDATE in this database (the background worker waits for it).",
            ),
            _ => None,
        }
    }

    fn detail(&self) -> Option<&'static str> {
        match self {
            PredictError::WriteDuringMigration(_) => Some(
                "This transaction read or wrote the table earlier, before or during the move; waiting here could hold the move up forever.",
            ),
            PredictError::SnapshotOlderThanMove(_) => Some(
                "Reads of the table still see every row under this snapshot; writes, row locks and reads of system columns or with TABLESAMPLE cannot.",
            ),
            _ => None,
        }
    }

    /// Raises the error in PostgreSQL (as ERROR, aborting the statement).
    pub fn report(self) -> ! {
        let mut report =
            ErrorReport::new(self.sqlstate(), self.to_string(), "pg_partition_predict");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR-level reports do not return")
    }
}

/// Runs a fallible SQL-facing function body, turning its error into an ERROR.
pub fn or_report<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| e.report())
}
