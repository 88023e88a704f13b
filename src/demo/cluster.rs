//! A throwaway PostgreSQL cluster in a temporary directory: initdb, start on a free port, stop
//! and remove. As root, the server runs as the `postgres` user (PostgreSQL refuses root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL is not installed: no initdb on PATH nor under /usr/lib/postgresql/*/bin \
         (Debian/Ubuntu: apt-get install postgresql; or set PG_BIN to its bin directory)"
    )]
    NotInstalled,
    #[error(
        "PG_BIN={} has no initdb{}",
        .dir.display(),
        match .found {
            Some(found) => format!("; PostgreSQL is installed in {}: unset PG_BIN or set it to that", found.display()),
            None => " and no PostgreSQL was found elsewhere (Debian/Ubuntu: apt-get install postgresql)".to_owned(),
        }
    )]
    BadPgBin {
        dir: PathBuf,
        found: Option<PathBuf>,
    },
    #[error(
        "the postgres user cannot enter {} (the server runs as postgres when paytool runs as root): \
         set TMPDIR to a directory it can reach, e.g. TMPDIR=/tmp",
        .0.display()
    )]
    Unreachable(PathBuf),
    #[error("cannot prepare the cluster directory: {0}")]
    Directory(#[from] std::io::Error),
    #[error("{program} failed: {output}")]
    Failed {
        program: &'static str,
        output: String,
    },
}

impl ClusterError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClusterError::NotInstalled
            | ClusterError::BadPgBin { .. }
            | ClusterError::Unreachable(_) => crate::exit::USAGE,
            ClusterError::Directory(_) | ClusterError::Failed { .. } => {
                crate::exit::RUNTIME_FAILURE
            }
        }
    }
}

/// A running cluster. Dropping it stops the server and removes the directory, unless
/// [`TempCluster::keep`] was called.
pub struct TempCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    keep: bool,
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// PG_BIN, else `initdb` on PATH, else the newest /usr/lib/postgresql/*/bin.
pub fn postgres_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(ClusterError::BadPgBin {
                dir,
                found: installed_bin_dir().ok(),
            })
        };
    }
    installed_bin_dir()
}

/// `initdb` on PATH, else the newest /usr/lib/postgresql/*/bin.
fn installed_bin_dir() -> Result<PathBuf, ClusterError> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file());
    if let Some(dir) = on_path {
        // A symlinked initdb (/usr/local/bin/initdb → /usr/lib/postgresql/15/bin/initdb) stands
        // for its installation, whose other programs (pg_basebackup) are there, not on PATH.
        return Ok(std::fs::canonicalize(dir.join("initdb"))
            .ok()
            .and_then(|real| real.parent().map(PathBuf::from))
            .unwrap_or(dir));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| ClusterError::NotInstalled)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(ClusterError::NotInstalled)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

impl TempCluster {
    /// initdb in a new temporary directory named `{prefix}XXXXXX`, then start the server.
    /// The superuser `postgres` connects without password; other roles need theirs.
    pub fn start(prefix: &str, settings: &[&str]) -> Result<TempCluster, ClusterError> {
        TempCluster::start_with(postgres_bin_dir()?, prefix, settings)
    }

    /// [`TempCluster::start`] with the server programs of `bin` (another major, say).
    pub fn start_with(
        bin: PathBuf,
        prefix: &str,
        settings: &[&str],
    ) -> Result<TempCluster, ClusterError> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?.keep();
        let cluster = TempCluster {
            bin,
            dir,
            port: free_port(),
            keep: false,
        };
        if is_root() {
            cluster.run(
                "chown",
                Command::new("chown").arg("postgres:").arg(&cluster.dir),
            )?;
            cluster.check_reachable_by_postgres()?;
        }
        cluster.initdb()?;
        cluster.start_server(settings)?;
        Ok(cluster)
    }

    /// A streaming hot standby of this cluster (`pg_basebackup -R`), in its own temporary
    /// directory, on its own port. Dropping it stops it and removes its directory.
    pub fn standby(&self, prefix: &str) -> Result<TempCluster, ClusterError> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?.keep();
        let standby = TempCluster {
            bin: self.bin.clone(),
            dir,
            port: free_port(),
            keep: false,
        };
        if is_root() {
            standby.run(
                "chown",
                Command::new("chown").arg("postgres:").arg(&standby.dir),
            )?;
        }
        let mut cmd = self.pg("pg_basebackup");
        cmd.arg("-D")
            .arg(standby.data_dir())
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
                // A spread checkpoint would make it wait for minutes on a quiet server.
                "--checkpoint=fast",
            ]);
        standby.run("pg_basebackup", &mut cmd)?;
        standby.start_server(&[])?;
        Ok(standby)
    }

    /// A TMPDIR under a directory only root may enter (e.g. /root/tmp) would make initdb fail
    /// with a bare "Permission denied": say what to do instead.
    fn check_reachable_by_postgres(&self) -> Result<(), ClusterError> {
        let reachable = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if reachable {
            Ok(())
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
            Err(ClusterError::Unreachable(self.dir.clone()))
        }
    }

    /// Runs a PostgreSQL program, as `postgres` when we are root.
    fn pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &'static str, cmd: &mut Command) -> Result<(), ClusterError> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Ok(log) = std::fs::read_to_string(self.dir.join("log")) {
            output.push('\n');
            output.push_str(&log);
        }
        Err(ClusterError::Failed { program, output })
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut cmd = self.pg("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        self.run("initdb", &mut cmd)?;
        // Replication over the local socket only: for a streaming standby of this cluster.
        let hba = "local all all trust\nlocal replication all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(self.data_dir().join("pg_hba.conf"), hba)?;
        Ok(())
    }

    fn start_server(&self, settings: &[&str]) -> Result<(), ClusterError> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let mut cmd = self.pg("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null());
        self.run("pg_ctl start", &mut cmd)
    }

    /// Stops the server (`-m fast`: every session is cut), leaves it down for `down_for`, and
    /// starts it again on the same port (without the settings given to `start`); returns once it
    /// accepts connections.
    pub fn restart_after(&self, down_for: std::time::Duration) -> Result<(), ClusterError> {
        let mut stop = self.pg("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null());
        self.run("pg_ctl stop", &mut stop)?;
        std::thread::sleep(down_for);
        self.start_server(&[])
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `user` (no password: only `postgres` may connect so) to `database`.
    pub fn url(&self, user: &str, password: Option<&str>, database: &str) -> String {
        match password {
            Some(pw) => format!("postgres://{user}:{pw}@127.0.0.1:{}/{database}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{database}", self.port),
        }
    }

    /// The command that stops this cluster, for people.
    pub fn stop_command(&self) -> String {
        let prefix = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} stop && rm -rf {}",
            self.bin.join("pg_ctl").display(),
            self.data_dir().display(),
            self.dir.display()
        )
    }

    /// Leave the server running and the directory in place when dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Stops the server (immediately: it is throwaway) and removes the directory.
    pub fn stop(&mut self) {
        let mut cmd = self.pg("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.keep = true;
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}
