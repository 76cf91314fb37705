//! A real Tessera for each test: the workspace's `tessera` binary, serving
//! SQLite in a temporary directory on an ephemeral loopback port.
//!
//! Finding the binary: `env!("CARGO_BIN_EXE_tessera")` exists only in the
//! `tessera` package's own tests, so this looks for it next to this test
//! executable (`<target>/<profile>/tessera`, which `cargo test --workspace`
//! builds for the server's tests) and uses it if it is newer than every
//! source it is built from; otherwise it runs `cargo build -p tessera --bin
//! tessera` once (into the same target directory) and uses that.
//! `TESSERA_BIN` overrides the search.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, SystemTime},
};

use tessera_client::Client;

pub struct Server {
    /// `http://127.0.0.1:PORT`: the address and Tessera's default issuer.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Dev mode: no clients file, every caller is `dev` with every role.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// With the clients file `clients` (its entries as `tessera client-key`
    /// prints them), if any, and extra flags.
    pub fn start_with(clients: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut command = Command::new(tessera_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--database-url", &db])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(entries) = clients {
            let path = dir.path().join("clients.toml");
            std::fs::write(&path, entries).unwrap();
            command.arg("--clients").arg(path);
        }
        let mut child = command.spawn().expect("the tessera binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the log until the "serving" line, then drains it so the
        // server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if entry["message"] == "serving"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(entry["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("tessera serves within 60 s");
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        Self {
            url: format!("{scheme}://{addr}"),
            child,
            dir,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.url.clone()).await.unwrap()
    }

    /// A key and its clients-file entry, from `tessera client-key`.
    #[allow(dead_code)] // examples/mcp-rust includes this file too
    pub fn client_key(id: &str, roles: &[&str]) -> (String, String) {
        let out = Command::new(tessera_bin())
            .arg("client-key")
            .arg(id)
            .args(roles)
            .output()
            .unwrap();
        assert!(out.status.success());
        let key = String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .find(|line| line.starts_with("tsk_"))
            .expect("client-key prints the key")
            .to_owned();
        (key, String::from_utf8(out.stdout).unwrap())
    }

    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tessera_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("TESSERA_BIN") {
            return path.into();
        }
        // <target>/<profile>/deps/api-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let bin = profile.join(format!("tessera{}", std::env::consts::EXE_SUFFIX));
        // The workspace root: the first directory up with the server's
        // protos and migrations (this file also serves examples/mcp-rust).
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|dir| dir.join("migrations").is_dir() && dir.join("proto").is_dir())
            .expect("inside the tessera workspace");
        if !fresh(&bin, workspace) {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .current_dir(workspace)
                .args(["build", "-p", "tessera", "--bin", "tessera"])
                .env("CARGO_TARGET_DIR", profile.parent().unwrap());
            if profile.file_name().is_some_and(|name| name == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "cargo build -p tessera failed");
        }
        bin
    })
    .clone()
}

/// Whether `bin` exists and is newer than every file it is built from.
fn fresh(bin: &Path, workspace: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let sources = [
        "src",
        "migrations",
        "proto",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ];
    sources
        .iter()
        .all(|source| newest(&workspace.join(source)) <= built)
}

fn newest(path: &Path) -> SystemTime {
    let Ok(meta) = std::fs::metadata(path) else {
        return SystemTime::UNIX_EPOCH;
    };
    let own = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if !meta.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| newest(&entry.path()))
        .fold(own, SystemTime::max)
}
