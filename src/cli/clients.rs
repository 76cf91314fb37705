//! `tessera clients …`: edits a clients file in place. Each edit reads the
//! file under a lock (a `.lock` file beside it, so two edits never lose
//! one another), changes only the entry concerned (comments and the other
//! entries keep their bytes), checks the result with the server's own
//! parser, and replaces the file atomically (a temporary file in the same
//! folder, fsynced, renamed over it), so a server reloading it reads the
//! old file or the new one, never half of one. Running servers reload it
//! on change.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Deserialize;
use serde_json::json;
use tessera::{
    clients::{Clients as Parsed, Role},
    token::ClientKey,
};

use super::{
    ops::{canonical_resource, entry},
    table,
};

#[derive(Subcommand)]
pub enum Clients {
    /// Add a client with a fresh key: the key is printed once (stdout),
    /// only its SHA-256 goes into the file.
    Add {
        /// The client's id (what audiences name).
        id: String,
        /// Roles to grant.
        #[arg(required = true, value_enum)]
        roles: Vec<Role>,
        /// The resource URI (RFC 8707) this client serves, for a resource
        /// server such as an MCP server: tokens minted for that resource
        /// name it in their audience.
        #[arg(long)]
        resource: Option<String>,
        #[command(flatten)]
        file: FileArg,
    },
    /// List the clients and their roles (never keys: the file has none).
    List {
        #[command(flatten)]
        file: FileArg,
    },
    /// Remove a client: its key stops working at the servers' next reload.
    Remove {
        id: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// Give a client a fresh key (printed once); the old one stops working
    /// at the servers' next reload.
    RotateKey {
        id: String,
        #[command(flatten)]
        file: FileArg,
    },
}

#[derive(clap::Args)]
pub struct FileArg {
    /// The clients file.
    #[arg(long = "file", env = "TESSERA_CLIENTS", default_value = "clients.toml")]
    path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    roles: Vec<String>,
    resource: Option<String>,
}

#[derive(Deserialize)]
struct Whole {
    #[serde(default)]
    clients: Vec<Entry>,
}

impl Clients {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Add {
                id,
                roles,
                resource,
                file,
            } => {
                tessera::input::required_id("id", id.clone())?;
                let resource = canonical_resource(resource.as_deref())?;
                let key = ClientKey::generate();
                edit(&file.path, true, |text| {
                    if blocks(text)?.iter().any(|(block_id, _)| *block_id == id) {
                        bail!("{}: a client {id:?} is listed already", file.path.display());
                    }
                    let mut text = text.to_owned();
                    if !text.is_empty() && !text.ends_with("\n\n") {
                        text.push_str(if text.ends_with('\n') { "\n" } else { "\n\n" });
                    }
                    text.push_str(&entry(&id, &key.sha256_hex(), &roles, resource.as_deref()));
                    Ok(text)
                })?;
                print_key(&file, &key, &format!("added {id:?} to"));
            }
            Self::List { file } => {
                let text = fs::read_to_string(&file.path)
                    .with_context(|| format!("reading {}", file.path.display()))?;
                let whole: Whole =
                    toml::from_str(&text).with_context(|| format!("in {}", file.path.display()))?;
                if file.json {
                    let list: Vec<_> = whole
                        .clients
                        .iter()
                        .map(|c| json!({ "id": c.id, "roles": c.roles, "resource": c.resource }))
                        .collect();
                    println!("{}", json!({ "clients": list }));
                } else {
                    let rows: Vec<Vec<String>> = whole
                        .clients
                        .iter()
                        .map(|c| {
                            let resource = c.resource.clone().unwrap_or_else(|| "-".into());
                            vec![c.id.clone(), c.roles.join(" "), resource]
                        })
                        .collect();
                    print!("{}", table::columns(&["ID", "ROLES", "RESOURCE"], &rows));
                }
            }
            Self::Remove { id, file } => {
                edit(&file.path, false, |text| {
                    let (start, end) = find(text, &id, &file.path)?;
                    Ok(format!("{}{}", &text[..start], &text[end..]))
                })?;
                eprintln!("removed {id:?} from {}", file.path.display());
            }
            Self::RotateKey { id, file } => {
                let key = ClientKey::generate();
                edit(&file.path, false, |text| {
                    let (start, end) = find(text, &id, &file.path)?;
                    let block = &text[start..end];
                    let mut replaced = 0;
                    let lines: Vec<String> = block
                        .split_inclusive('\n')
                        .map(|line| {
                            if line.trim_start().starts_with("key_sha256") {
                                replaced += 1;
                                format!("key_sha256 = \"{}\"\n", key.sha256_hex())
                            } else {
                                line.to_owned()
                            }
                        })
                        .collect();
                    anyhow::ensure!(
                        replaced == 1,
                        "{id:?}: its entry has no one key_sha256 line"
                    );
                    Ok(format!(
                        "{}{}{}",
                        &text[..start],
                        lines.concat(),
                        &text[end..]
                    ))
                })?;
                print_key(
                    &file,
                    &key,
                    &format!(
                        "new key for {id:?} (the old one ends at the servers' next reload) in"
                    ),
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The key, once: stdout (the point of the command), what was done: stderr.
fn print_key(file: &FileArg, key: &ClientKey, done: &str) {
    eprintln!("{done} {} (key shown once):", file.path.display());
    if file.json {
        println!("{}", json!({ "key": key.expose() }));
    } else {
        println!("{}", key.expose());
    }
}

/// Each `[[clients]]` entry's id and byte range (up to the next entry).
fn blocks(text: &str) -> anyhow::Result<Vec<(String, (usize, usize))>> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "[[clients]]" {
            starts.push(offset);
        }
        offset += line.len();
    }
    let mut out = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let whole: Whole = toml::from_str(&text[start..end])
            .with_context(|| format!("the entry at byte {start}"))?;
        let id = whole
            .clients
            .into_iter()
            .next()
            .map(|e| e.id)
            .unwrap_or_default();
        out.push((id, (start, end)));
    }
    Ok(out)
}

fn find(text: &str, id: &str, path: &Path) -> anyhow::Result<(usize, usize)> {
    blocks(text)?
        .into_iter()
        .find(|(block_id, _)| block_id == id)
        .map(|(_, range)| range)
        .with_context(|| format!("{}: no client {id:?}", path.display()))
}

/// Read, change, check and replace `path` under its lock.
fn edit(
    path: &Path,
    may_create: bool,
    change: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .context("the clients file needs a file name")?
        .to_string_lossy()
        .into_owned();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(format!(".{name}.lock")))
        .context("creating the clients file's lock")?;
    lock.lock().context("locking the clients file")?;
    let (text, mode) = match fs::read_to_string(path) {
        Ok(text) => (text, fs::metadata(path)?.permissions().mode() & 0o777),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && may_create => {
            (String::new(), 0o600)
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let changed = change(&text)?;
    // A file the servers would refuse (no client left, a bad entry) is
    // never written: they would keep the old clients, and the operator
    // would learn it only from their logs.
    Parsed::parse(&changed).with_context(|| {
        format!(
            "the edited {} would not load; left unchanged",
            path.display()
        )
    })?;
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> anyhow::Result<()> {
        let mut file: File = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(changed.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}
