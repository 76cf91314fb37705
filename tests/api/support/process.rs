//! The `tessera` binary as a child process.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tessera::config::LogFormat;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    task::JoinHandle,
};

/// The `tessera` binary as a child process, with its log lines collected.
pub struct Process {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    pub log: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

impl Process {
    pub async fn spawn(url: &str, clients: &std::path::Path, rust_log: &str) -> Self {
        Self::spawn_with(url, clients, rust_log, &[]).await
    }

    pub async fn spawn_with(
        url: &str,
        clients: &std::path::Path,
        rust_log: &str,
        extra: &[&str],
    ) -> Self {
        Self::start(url, clients, rust_log, extra, LogFormat::Json, None).await
    }

    /// As `spawn_with`, with the open-files limit (soft and hard) at
    /// `open_files`.
    pub async fn spawn_limited(
        url: &str,
        clients: &std::path::Path,
        rust_log: &str,
        extra: &[&str],
        open_files: u64,
    ) -> Self {
        Self::start(
            url,
            clients,
            rust_log,
            extra,
            LogFormat::Json,
            Some(open_files),
        )
        .await
    }

    /// As [`Self::spawn_with`], with `--log-format` `format`.
    pub async fn spawn_logging(
        url: &str,
        clients: &std::path::Path,
        rust_log: &str,
        extra: &[&str],
        format: LogFormat,
    ) -> Self {
        Self::start(url, clients, rust_log, extra, format, None).await
    }

    async fn start(
        url: &str,
        clients: &std::path::Path,
        rust_log: &str,
        extra: &[&str],
        format: LogFormat,
        open_files: Option<u64>,
    ) -> Self {
        let format_flag = match format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        };
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
        if let Some(open_files) = open_files {
            let limit = libc::rlimit {
                rlim_cur: open_files,
                rlim_max: open_files,
            };
            // SAFETY: setrlimit is async-signal-safe, and `limit` is a
            // plain copy; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                format_flag,
            ])
            .args(extra)
            .arg("--database-url")
            .arg(url)
            .arg("--clients")
            .arg(clients)
            .env("RUST_LOG", rust_log)
            // The pool of an in-process test server: the suite stays well
            // within PostgreSQL's connections (a test's own flag wins).
            .env("TESSERA_DB_MAX_CONNECTIONS", super::POOL_SIZE.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tessera binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = tokio::time::timeout(super::PATIENCE, lines.next_line())
                .await
                .expect("the server logs")
                .unwrap()
                .expect("server exited before serving");
            log.lock().unwrap().push(line.clone());
            let addr = match format {
                LogFormat::Json => {
                    let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    (entry["message"] == "serving")
                        .then(|| entry["addr"].as_str().map(str::to_owned))
                }
                // Read loosely: the tests of the text format judge it, not this.
                LogFormat::Text => line.contains(": serving ").then(|| {
                    let (_, rest) = line.split_once(" addr=")?;
                    let addr = rest.trim_start_matches('"');
                    let end = addr.find(['"', ' ']).unwrap_or(addr.len());
                    Some(addr[..end].to_owned())
                }),
            };
            if let Some(addr) = addr {
                break addr
                    .expect("the serving line names its address")
                    .parse()
                    .unwrap();
            }
        };
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            addr,
            child,
            log,
            reader,
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns every log line.
    pub async fn terminate(self) -> Vec<String> {
        self.terminate_within(super::PATIENCE).await.1
    }

    /// Sends SIGTERM; returns how long the process took to exit cleanly,
    /// and every log line.
    pub async fn terminate_within(mut self, limit: Duration) -> (Duration, Vec<String>) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: kill(1) via the shell keeps the test free of libc.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = std::time::Instant::now();
        let exit = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("exits in time after SIGTERM")
            .unwrap();
        let took = start.elapsed();
        assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
        let _ = (&mut self.reader).await;
        (took, self.log.lock().unwrap().clone())
    }
}
