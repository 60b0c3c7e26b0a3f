//! A throwaway PostgreSQL cluster per test: initdb'd as the `postgres` OS
//! user (initdb refuses root) in a temporary directory, listening only on a
//! Unix socket in that directory, stopped and removed on drop. The server is
//! the one in `PPP_PG_BIN` (set by `scripts/test --pg N`), else Debian's 15.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The directory of the server binaries under test.
pub fn pg_bin() -> String {
    std::env::var("PPP_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string())
}
const PORT: u16 = 5432; // private: the socket lives in the cluster's own directory

pub struct Cluster {
    dir: tempfile::TempDir,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a command as the server's OS user (`postgres`), directly when we
/// are not root.
fn server_user_command(program: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("sudo");
        command.args(["-u", "postgres", program]);
        command
    } else {
        Command::new(program)
    }
}

/// Runs a PostgreSQL server binary as the `postgres` OS user.
fn as_postgres(program: &str, args: &[&str]) -> Output {
    let path = format!("{}/{program}", pg_bin());
    let output = server_user_command(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {path}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A temporary directory the server's OS user owns.
fn owned_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ppp-it-")
        .tempdir()
        .expect("temp dir");
    if running_as_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success(), "chown of the cluster directory failed");
    }
    dir
}

impl Cluster {
    /// A running cluster; `preload` puts the library in shared_preload_libraries.
    pub fn start(preload: bool) -> Cluster {
        Cluster::start_with(preload, &[])
    }

    /// A running cluster with extra `postgresql.conf` lines.
    pub fn start_with(preload: bool, settings: &[&str]) -> Cluster {
        let cluster = Cluster {
            dir: owned_temp_dir(),
        };
        let data = cluster.data_dir();
        as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let mut conf = format!(
            "port = {PORT}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n",
            cluster.socket_dir().display()
        );
        if preload {
            conf.push_str("shared_preload_libraries = 'pg_partition_predict'\n");
        }
        cluster.configure_and_start(conf, settings);
        cluster
    }

    /// A hot standby of `primary`, streaming from it: a base backup
    /// (`pg_basebackup -R`) taken now, started with its own socket and
    /// `settings` appended.
    pub fn standby_of(primary: &Cluster, settings: &[&str]) -> Cluster {
        Cluster::from_base_backup(primary, true, settings)
    }

    /// A server restored from a base backup of `primary` taken now: it
    /// recovers to the end of the backup and runs as a primary of its own.
    pub fn restored_from_backup_of(primary: &Cluster, settings: &[&str]) -> Cluster {
        Cluster::from_base_backup(primary, false, settings)
    }

    fn from_base_backup(primary: &Cluster, standby: bool, settings: &[&str]) -> Cluster {
        let cluster = Cluster {
            dir: owned_temp_dir(),
        };
        let data = cluster.data_dir();
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
            "-h",
            primary.socket_dir().to_str().unwrap(),
            "-p",
        ];
        let port = PORT.to_string();
        args.extend([port.as_str(), "-U", "postgres"]);
        if standby {
            args.push("-R");
        }
        as_postgres("pg_basebackup", &args);
        let mut conf = format!(
            "unix_socket_directories = '{}'\n",
            cluster.socket_dir().display()
        );
        if standby {
            // The connection string pg_basebackup writes may name options
            // the server's libpq predates: a plain one instead.
            conf.push_str(&format!(
                "hot_standby = on\nprimary_conninfo = 'host={} port={PORT} user=postgres'\n",
                primary.socket_dir().display()
            ));
        }
        cluster.configure_and_start(conf, settings);
        cluster
    }

    /// Appends `conf` and then `settings` (a line each) to the
    /// configuration, and starts the server.
    fn configure_and_start(&self, mut conf: String, settings: &[&str]) {
        for line in settings {
            conf.push_str(line);
            conf.push('\n');
        }
        self.append_conf(&conf);
        self.start_again();
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) {
        as_postgres(
            "pg_ctl",
            &["-D", self.data_dir().to_str().unwrap(), "-w", "promote"],
        );
    }

    fn append_conf(&self, conf: &str) {
        let conf_path = self.data_dir().join("postgresql.auto.conf");
        // The data directory belongs to postgres; append through a shell run as postgres.
        let script = format!("cat >> '{}' <<'CONF'\n{conf}CONF\n", conf_path.display());
        let status = server_user_command("sh")
            .args(["-c", &script])
            .status()
            .expect("write postgresql.auto.conf");
        assert!(status.success());
    }

    /// Starts the (stopped) server again.
    pub fn start_again(&self) {
        let log = self.socket_dir().join("server.log");
        let data = self.data_dir();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: every process quits at once, as in a
    /// power failure; the next start runs crash recovery.
    pub fn stop_immediate(&self) {
        let data = self.data_dir();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self, database: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(PORT)
            .user("postgres")
            .dbname(database);
        config
    }

    pub fn connect(&self, database: &str) -> postgres::Client {
        self.config(database)
            .connect(postgres::NoTls)
            .expect("connect")
    }

    /// A connection as `role` (the cluster trusts local connections).
    pub fn connect_as(&self, database: &str, role: &str) -> postgres::Client {
        let mut config = self.config(database);
        config.user(role);
        config.connect(postgres::NoTls).expect("connect")
    }

    /// A file of the data directory, as text ('' if it does not exist).
    pub fn data_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir().join(name)).unwrap_or_default()
    }

    /// A connection, or `None` while the server does not accept one (crash recovery).
    pub fn try_connect(&self, database: &str) -> Option<postgres::Client> {
        self.config(database).connect(postgres::NoTls).ok()
    }

    /// A connection that records every NOTICE/WARNING it receives.
    pub fn connect_recording_notices(
        &self,
        database: &str,
    ) -> (postgres::Client, Arc<Mutex<Vec<String>>>) {
        self.connect_as_recording_notices(database, "postgres")
    }

    /// As `connect_recording_notices`, as `role`.
    pub fn connect_as_recording_notices(
        &self,
        database: &str,
        role: &str,
    ) -> (postgres::Client, Arc<Mutex<Vec<String>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&notices);
        let client = self
            .config(database)
            .user(role)
            .notice_callback(move |notice| {
                sink.lock()
                    .unwrap()
                    .push(format!("{}: {}", notice.severity(), notice.message()))
            })
            .connect(postgres::NoTls)
            .expect("connect");
        (client, notices)
    }

    /// Runs a client program (pg_dump, pg_restore, psql) against this cluster.
    pub fn client_program(&self, program: &str, args: &[&str]) -> Output {
        let output = Command::new(format!("{}/{program}", pg_bin()))
            .args([
                "-h",
                self.socket_dir().to_str().unwrap(),
                "-p",
                &PORT.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Cluster {
    /// `pg_ctl stop -m fast`; returns how long it took.
    pub fn stop_fast(&self) -> std::time::Duration {
        let started = std::time::Instant::now();
        let data = self.data_dir();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "fast",
                "-t",
                "60",
                "-w",
                "stop",
            ],
        );
        started.elapsed()
    }

    /// A directory inside the cluster's, owned by the server's OS user (for a tablespace).
    pub fn server_owned_dir(&self, name: &str) -> PathBuf {
        let path = self.socket_dir().join(name);
        let path_text = path.to_str().unwrap().to_string();
        let status = server_user_command("mkdir")
            .args(["-p", &path_text])
            .status()
            .expect("mkdir");
        assert!(status.success());
        path
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.socket_dir().join("server.log")).unwrap_or_default()
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = server_user_command(&format!("{}/pg_ctl", pg_bin()))
            .args([
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

/// The single bigint a query returns.
pub fn scalar_i64(client: &mut postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Makes this session's pending statistics visible to other sessions
/// (PostgreSQL 15 flushes them at most once a second otherwise).
pub fn flush_stats(client: &mut postgres::Client) {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    client.batch_execute("SELECT 1").unwrap();
}

/// What `run_cycle(table)` says becomes of the rows it found in DEFAULT.
pub fn default_rows_next(client: &mut postgres::Client, table: &str) -> String {
    client
        .query_one(
            &format!("SELECT default_rows_next FROM partition_predict.run_cycle('{table}')"),
            &[],
        )
        .unwrap()
        .get(0)
}

/// The names of `table`'s partitions (DEFAULT included), sorted.
pub fn partition_names(client: &mut postgres::Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The SQLSTATE an attempt ended with, or "ok".
pub fn sqlstate<T>(result: Result<T, postgres::Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}
