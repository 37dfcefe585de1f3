//! A throw-away PostgreSQL cluster of a test's own, for tests that may crash a server (or must
//! run it with a particular environment): a crash there cannot take the shared project cluster
//! down with every other test's sessions.
//!
//! The cluster runs as the `postgres` OS user (PostgreSQL refuses root) in a fresh directory
//! under /var/tmp, on the given port, and is stopped and removed when the value is dropped. The
//! extension must be installed in the system PostgreSQL (`make install`).

use std::path::PathBuf;
use std::process::Command;

use postgres::{Client, NoTls};

use crate::pg_bin;

pub struct ThrowawayCluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

/// Runs a command as the postgres OS user when we are root, else as ourselves.
fn as_postgres(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let root = is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "env"]);
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    cmd.output().expect("run a command as postgres")
}

/// Whether this process runs as root (then PostgreSQL tools run as the `postgres` OS user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl ThrowawayCluster {
    /// initdb + start on `port` with `env` in the server's environment (e.g. RUST_BACKTRACE).
    /// Ports below Linux's ephemeral range (32768-60999): a port in it can be taken at that moment
    /// by the local end of one of the many client connections the other tests open.
    pub fn start(name: &str, port: u16, env: &[(&str, &str)]) -> ThrowawayCluster {
        let dir = PathBuf::from(format!("/var/tmp/embedstack-throwaway-{name}-{port}"));
        let bin = pg_bin();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let st =
                Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
            assert!(st.success(), "chown {dir:?}");
        }
        let data = dir.join("data");
        let initdb = bin.join("initdb");
        let out = as_postgres(
            &[
                initdb.to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            &[],
        );
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nshared_buffers = 64MB\n\
             restart_after_crash = on\n",
            dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .unwrap();
        let c = ThrowawayCluster { dir, port, bin };
        let log = c.dir.join("server.log");
        let pg_ctl = c.bin.join("pg_ctl");
        let out = as_postgres(
            &[
                pg_ctl.to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
            env,
        );
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        c
    }

    pub fn connect(&self, db: &str, user: &str) -> Client {
        Client::connect(&format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} as {user} on port {}: {e}", self.port))
    }

    /// The server log so far (to look for crashes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let _ = as_postgres(
            &[pg_ctl.to_str().unwrap(), "-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            &[],
        );
        if std::env::var("ES_KEEP_THROWAWAY").is_err() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
