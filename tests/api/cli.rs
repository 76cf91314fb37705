//! The operator's CLI end to end, against the real binary: the admin
//! commands on a running server, the clients file edits, and the errors
//! that name their cause (database, connection, TLS) as one line.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{
    Process,
    tls::{Ca, write},
};

/// `tessera ARGS` with the environment the test gives (and none of the
/// variables that would change what the command reads).
fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command.args(args);
    for var in [
        "DATABASE_URL",
        "TESSERA_DATABASE_URL",
        "TESSERA_KEY",
        "TESSERA_KEY_FILE",
        "TESSERA_URL",
        "TESSERA_CA",
        "TESSERA_CLIENTS",
        "TESSERA_LISTEN",
    ] {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("tessera runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_manage_grants_and_clients_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients.toml");
    let file = file.to_str().unwrap();
    let add = |id: &str, roles: &[&str]| {
        let mut args = vec!["clients", "add", id];
        args.extend(roles);
        args.extend(["--file", file]);
        ok(&tessera(&args, &[])).trim().to_owned()
    };
    let admin = add("ops", &["mint", "revoke", "admin"]);
    let reader = add("reader", &["validate"]);
    assert!(admin.starts_with("tsk_") && reader.starts_with("tsk_"));
    let text = std::fs::read_to_string(file).unwrap();
    assert!(!text.contains(&admin[4..]), "the file never holds a key");
    let again = tessera(&["clients", "add", "ops", "mint", "--file", file], &[]);
    assert!(failed(&again).contains("listed already"));
    // A resource server is added with its resource URI, canonical; a bad
    // URI is refused naming the flag, and the file keeps its bytes.
    let before = std::fs::read_to_string(file).unwrap();
    let bad = tessera(
        &[
            "clients",
            "add",
            "mcp",
            "validate",
            "--resource",
            "ftp://x/",
            "--file",
            file,
        ],
        &[],
    );
    assert!(failed(&bad).contains("--resource"));
    assert_eq!(std::fs::read_to_string(file).unwrap(), before);
    let mcp = ["clients", "add", "mcp", "validate", "claim", "--resource"];
    ok(&tessera(
        &[&mcp[..], &["HTTPS://MCP.Example:443/mcp", "--file", file]].concat(),
        &[],
    ));
    let listed = json(&ok(&tessera(
        &["clients", "list", "--json", "--file", file],
        &[],
    )));
    assert_eq!(listed["clients"][2]["resource"], "https://mcp.example/mcp");
    assert_eq!(listed["clients"][0]["resource"], Value::Null);
    ok(&tessera(&["clients", "remove", "mcp", "--file", file], &[]));

    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let server = Process::spawn(&db, file.as_ref(), "info").await;
    let url = format!("http://{}", server.addr);
    let key_file = write(&dir, "ops.key", &admin);
    let remote = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &url]);
        tessera(&all, &[("TESSERA_KEY_FILE", key_file.to_str().unwrap())])
    };

    let minted = json(&ok(&remote(&[
        "grants",
        "mint",
        "--subject",
        "user-42",
        "--scope",
        "tool:search",
        "--run",
        "run-7",
        "--label",
        "project=p-1",
        "--max-uses",
        "1",
        "--ttl",
        "10m",
        "--json",
    ])));
    let token = minted["token"].as_str().unwrap().to_owned();
    let grant = minted["grant"]["grant_id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tsr_") && grant.starts_with("grt_"));

    let got = json(&ok(&remote(&["grants", "get", &grant, "--json"])));
    assert_eq!(got["subject"], "user-42");
    assert_eq!(got["state"], "live");
    assert_eq!(got["labels"]["project"], "p-1");
    let table = ok(&remote(&["grants", "list", "--run", "run-7"]));
    assert!(table.starts_with("GRANT"), "{table}");
    assert!(table.contains(&grant) && table.contains("live"), "{table}");
    assert!(!table.contains(&token), "a listing never shows a token");

    // Rotate by token, read from stdin: a new token, the old grant rotated.
    let mut rotate = Command::new(env!("CARGO_BIN_EXE_tessera"));
    rotate
        .args([
            "grants", "rotate", "--token", "-", "--json", "--server", &url,
        ])
        .env("TESSERA_KEY_FILE", &key_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = rotate.spawn().unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let rotated = json(&ok(&child.wait_with_output().unwrap()));
    assert_ne!(rotated["token"], token.as_str());
    assert_eq!(rotated["grant"]["rotated_from"], grant.as_str());

    let revoked = json(&ok(&remote(&[
        "grants", "revoke", "--run", "run-7", "--json",
    ])));
    assert_eq!(
        revoked["revoked"], 1,
        "the successor was the one live grant"
    );
    let all = json(&ok(&remote(&[
        "grants", "list", "--run", "run-7", "--all", "--json",
    ])));
    let states: Vec<&str> = all["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["revoked (ROTATED)", "revoked (MANUAL)"]);
    assert_eq!(all["active_count"], 0);

    // Without a key, or with the reader's (no role): the refusal says so.
    let anonymous = tessera(&["grants", "list", "--server", &url], &[]);
    assert!(failed(&anonymous).contains("no client key was sent"));
    let reader_key = write(&dir, "reader.key", &reader);
    let denied = tessera(
        &["grants", "mint", "--subject", "u", "--server", &url],
        &[("TESSERA_KEY_FILE", reader_key.to_str().unwrap())],
    );
    assert!(failed(&denied).contains("PERMISSION_DENIED"));

    // The clients file: rotate a key, remove a client, list.
    let fresh = ok(&tessera(
        &["clients", "rotate-key", "reader", "--file", file],
        &[],
    ));
    assert!(fresh.trim().starts_with("tsk_") && fresh.trim() != reader);
    ok(&tessera(
        &["clients", "remove", "reader", "--file", file],
        &[],
    ));
    let listed = json(&ok(&tessera(
        &["clients", "list", "--json", "--file", file],
        &[],
    )));
    assert_eq!(listed["clients"][0]["id"], "ops");
    assert_eq!(listed["clients"].as_array().unwrap().len(), 1);
    let last = tessera(&["clients", "remove", "ops", "--file", file], &[]);
    assert!(
        failed(&last).contains("left unchanged"),
        "the last client stays"
    );
    server.terminate().await;
}

/// Start-up errors are one line naming the cause, with no backtrace and no
/// dev-mode warning before them; DATABASE_URL is read.
#[test]
fn errors_name_the_database_and_the_connection() {
    let backtrace = [("RUST_BACKTRACE", "1")];
    let refused = failed(&tessera(
        &["--database-url", "postgres://postgres@127.0.0.1:1/x"],
        &backtrace,
    ));
    assert!(refused.contains("127.0.0.1:1") && refused.contains("connection refused"));
    assert!(
        !refused.contains("backtrace") && !refused.contains("dev mode"),
        "{refused}"
    );
    assert_eq!(
        refused.lines().filter(|l| l.starts_with("error:")).count(),
        1
    );

    let pg = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = pg.rsplit_once('/').unwrap().0;
    let missing = format!("{base}/tessera_no_such_database");
    let out = failed(&tessera(
        &["migrate", "--database-url", &missing],
        &backtrace,
    ));
    assert!(
        out.contains("has no database \"tessera_no_such_database\""),
        "{out}"
    );
    assert!(out.contains("createdb"), "{out}");

    // DATABASE_URL, when no --database-url: migrate says where, and which.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-env.db");
    let url = format!("sqlite://{}", file.display());
    let out = tessera(&["migrate"], &[("DATABASE_URL", &url)]);
    ok(&out);
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains("from DATABASE_URL") && said.contains("applying migration 1"),
        "{said}"
    );
    assert!(file.exists());
    let again = tessera(&["migrate"], &[("DATABASE_URL", &url)]);
    ok(&again);
    assert!(
        String::from_utf8(again.stderr)
            .unwrap()
            .contains("nothing to apply")
    );

    let none = failed(&tessera(&["health", "--addr", "127.0.0.1:1"], &backtrace));
    assert!(
        none.contains("refused") && !none.contains("backtrace"),
        "{none}"
    );

    let script = ok(&tessera(&["completions", "bash"], &[]));
    assert!(script.contains("tessera") && script.contains("grants"));
}

/// A plaintext client at a TLS port is told the port most likely speaks TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_at_a_tls_port_is_told_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cli test CA");
    let leaf = ca.server();
    let (cert, key) = (
        write(&dir, "tls.crt", &leaf.cert),
        write(&dir, "tls.key", &leaf.key),
    );
    let clients = write(&dir, "clients.toml", "");
    let entry = ok(&tessera(&["client-key", "ops", "admin"], &[]));
    std::fs::write(&clients, entry).unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let server = Process::spawn_with(
        &db,
        &clients,
        "info",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let addr = server.addr.to_string();
    let out = failed(&tessera(&["health", "--addr", &addr], &[]));
    assert!(out.contains("TLS") && out.contains("--tls-ca"), "{out}");
    let ca_file = write(&dir, "ca.crt", &ca.pem);
    let serving = tessera(
        &[
            "health",
            "--addr",
            &addr,
            "--tls-ca",
            ca_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(ok(&serving).trim(), "SERVING");
    server.terminate().await;
}
