//! A throwaway PostgreSQL cluster for tests and benchmarks: finds (or, as root, installs) the
//! server binaries, `initdb`s a temp dir as an unprivileged user, starts `postgres` on 127.0.0.1
//! on a free port as a child process, and stops it by pid when dropped (also on panic).
//! Streaming replicas can be added with `pg_basebackup -R`. Nothing here is used by `PgStore`.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the cluster could not be set up. The message names the step and carries the tool's output.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL test cluster: {step} failed: {detail}")]
pub struct ClusterError {
    /// What was being done.
    pub step: &'static str,
    /// Why it failed.
    pub detail: String,
}

fn fail(step: &'static str, detail: impl Into<String>) -> ClusterError {
    ClusterError { step, detail: detail.into() }
}

/// Server settings of a test cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterOptions {
    /// `fsync` and `synchronous_commit` on (durable, slow on virtual disks) or off.
    pub durable: bool,
}

/// One running `postgres` process, stopped by pid on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A running primary (and any replicas), all inside one temp dir that is removed on drop.
pub struct TempCluster {
    // Drop order matters: replicas, then the primary, then the directory.
    replicas: Vec<Server>,
    primary: Server,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    options: ClusterOptions,
    dir: tempfile::TempDir,
}

impl TempCluster {
    /// Starts a primary with default options.
    pub fn start() -> Result<TempCluster, ClusterError> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a primary.
    pub fn start_with(options: ClusterOptions) -> Result<TempCluster, ClusterError> {
        reap_stale();
        let bin = find_or_install_binaries()?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("evfold-pg-")
            .tempdir()
            .map_err(|e| fail("creating the temp dir", e.to_string()))?;
        std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
            .map_err(|e| fail("writing owner.pid", e.to_string()))?;
        give_to(dir.path(), user)?;
        let data = dir.path().join("primary");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run_as(&mut initdb, user, "initdb")?;
        let primary = spawn_server(&bin, &data, dir.path(), user, options, &[])?;
        Ok(TempCluster { replicas: Vec::new(), primary, bin, user, options, dir })
    }

    /// libpq connection string of the primary's `postgres` database.
    pub fn conninfo(&self) -> String {
        conninfo(self.primary.port, "postgres")
    }

    /// The primary's port.
    pub fn port(&self) -> u16 {
        self.primary.port
    }

    /// The primary's process id.
    pub fn pid(&self) -> u32 {
        self.primary.child.id()
    }

    /// The primary's server log.
    pub fn log_path(&self) -> &Path {
        &self.primary.log
    }

    /// Creates database `name` on the primary and returns its connection string.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .arg("-p")
            .arg(self.primary.port.to_string())
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{name}\""));
        run(&mut psql, "CREATE DATABASE")?;
        Ok(conninfo(self.primary.port, name))
    }

    /// Starts a hot-standby streaming replica of the primary (`pg_basebackup -R`); returns the
    /// connection string of its `dbname` database. It is stopped when the cluster is dropped.
    pub fn start_replica(&mut self, dbname: &str) -> Result<String, ClusterError> {
        let data = self.dir.path().join(format!("replica-{}", self.replicas.len() + 1));
        let mut backup = Command::new(self.bin.join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(&data)
            .args([
                "-R",
                "-c",
                "fast",
                "-X",
                "stream",
                "--no-sync",
                "--no-manifest",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.primary.port.to_string());
        run_as(&mut backup, self.user, "pg_basebackup")?;
        let server = spawn_server(&self.bin, &data, self.dir.path(), self.user, self.options, &["hot_standby=on"])?;
        let info = conninfo(server.port, dbname);
        self.replicas.push(server);
        Ok(info)
    }
}

fn conninfo(port: u16, dbname: &str) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname={dbname}")
}

/// The directory holding `postgres`, `initdb`, …: `$EVFOLD_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else installs Debian's `postgresql` package when running as root.
fn find_or_install_binaries() -> Result<PathBuf, ClusterError> {
    if let Some(bin) = find_binaries() {
        return Ok(bin);
    }
    if !is_root() {
        return Err(fail(
            "finding PostgreSQL",
            "no server binaries (set EVFOLD_PG_BIN or install the `postgresql` package; not root, so not installing)",
        ));
    }
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-q", "postgresql"]).env("DEBIAN_FRONTEND", "noninteractive");
    if run(&mut install, "apt-get install postgresql").is_err() {
        run(Command::new("apt-get").args(["update", "-q"]), "apt-get update")?;
        run(&mut install, "apt-get install postgresql")?;
    }
    find_binaries().ok_or_else(|| fail("finding PostgreSQL", "installed `postgresql` but found no server binaries"))
}

fn find_binaries() -> Option<PathBuf> {
    let ok = |p: &Path| p.join("postgres").is_file() && p.join("initdb").is_file();
    if let Some(bin) = std::env::var_os("EVFOLD_PG_BIN").map(PathBuf::from) {
        return ok(&bin).then_some(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| ok(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// `initdb` and `postgres` refuse to run as root: as root, run them as user `postgres`
/// (created if missing); otherwise as ourselves (`None`).
fn server_user() -> Result<Option<(u32, u32)>, ClusterError> {
    if !is_root() {
        return Ok(None);
    }
    if lookup_user("postgres").is_none() {
        run(Command::new("useradd").args(["--system", "--no-create-home", "postgres"]), "useradd postgres")?;
    }
    lookup_user("postgres").map(Some).ok_or_else(|| fail("looking up user postgres", "not in /etc/passwd"))
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    })
}

fn give_to(path: &Path, user: Option<(u32, u32)>) -> Result<(), ClusterError> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| fail("chown of the temp dir", e.to_string()))?;
    }
    Ok(())
}

fn run_as(command: &mut Command, user: Option<(u32, u32)>, step: &'static str) -> Result<(), ClusterError> {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    run(command, step)
}

fn run(command: &mut Command, step: &'static str) -> Result<(), ClusterError> {
    let out = command.stdin(Stdio::null()).output().map_err(|e| fail(step, format!("cannot run: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let tail = |b: &[u8]| String::from_utf8_lossy(&b[b.len().saturating_sub(2000)..]).into_owned();
    Err(fail(step, format!("{}\nstdout: {}\nstderr: {}", out.status, tail(&out.stdout), tail(&out.stderr))))
}

/// Starts `postgres` on a free loopback port and waits until it accepts connections.
fn spawn_server(
    bin: &Path,
    data: &Path,
    socket_dir: &Path,
    user: Option<(u32, u32)>,
    options: ClusterOptions,
    extra: &[&str],
) -> Result<Server, ClusterError> {
    let port = free_port()?;
    let log = data.with_extension("log");
    let log_file = File::create(&log).map_err(|e| fail("creating the server log", e.to_string()))?;
    give_to(&log, user)?;
    let durable = if options.durable { "on" } else { "off" };
    let mut command = Command::new(bin.join("postgres"));
    command.arg("-D").arg(data).arg("-p").arg(port.to_string()).arg("-k").arg(socket_dir);
    let settings = [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("fsync={durable}"),
        format!("synchronous_commit={durable}"),
        format!("full_page_writes={durable}"),
        "max_connections=200".to_owned(),
        "shared_buffers=128MB".to_owned(),
    ];
    for setting in settings.iter().map(String::as_str).chain(extra.iter().copied()) {
        command.arg("-c").arg(setting);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    let child = command.spawn().map_err(|e| fail("starting postgres", e.to_string()))?;
    let mut server = Server { child, port, log };
    wait_ready(bin, &mut server)?;
    Ok(server)
}

fn wait_ready(bin: &Path, server: &mut Server) -> Result<(), ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            return Err(fail("starting postgres", format!("exited with {status}; log:\n{log}")));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p"])
            .arg(server.port.to_string())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    Err(fail("starting postgres", format!("not ready after 60 s; log:\n{log}")))
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| fail("finding a free port", e.to_string()))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| fail("finding a free port", e.to_string()))
}

/// Fast shutdown by pid (SIGINT), then SIGKILL if it has not exited after 10 s.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops servers left behind by test processes that died without unwinding (SIGKILL), and
/// removes their directories: `evfold-pg-*` dirs whose `owner.pid` is no longer running.
fn reap_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let is_ours = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("evfold-pg-"));
        let Some(owner) = std::fs::read_to_string(dir.join("owner.pid")).ok().filter(|_| is_ours) else { continue };
        if Path::new("/proc").join(owner.trim()).exists() {
            continue;
        }
        for data in std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()) {
            let pid = std::fs::read_to_string(data.join("postmaster.pid")).ok();
            if let Some(pid) = pid.as_deref().and_then(|p| p.lines().next()) {
                let _ = Command::new("kill").arg("-QUIT").arg(pid.trim()).status();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
