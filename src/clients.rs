//! Who may call: the clients file, roles, and bearer-key authentication.
//!
//! The file lists each client's id, the hex SHA-256 of its key and its
//! roles. Keys are looked up by their SHA-256, so the comparison that finds
//! a client runs over digests, never over the secret itself, and the server
//! holds no key it could leak.

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::{Arc, RwLock},
};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::{input, resource, token::key_digest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Mint,
    Validate,
    Claim,
    Revoke,
    /// Sees, lists and revokes every client's grants.
    Admin,
    /// Reads `/metrics` (whose counts include the hidden reasons of refusals).
    Metrics,
    /// Keeps credentials (the `Credentials` service), its own only.
    Credentials,
}

impl Role {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Mint => "mint",
            Role::Validate => "validate",
            Role::Claim => "claim",
            Role::Revoke => "revoke",
            Role::Admin => "admin",
            Role::Metrics => "metrics",
            Role::Credentials => "credentials",
        }
    }
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    /// The resource URI (RFC 8707, canonical form) this client serves, when
    /// it is a resource server such as an MCP server: tokens whose audience
    /// names it are for this client, as if they named its id.
    pub resource: Option<String>,
    roles: u8,
}

impl Caller {
    pub fn new(id: impl Into<String>, roles: &[Role]) -> Self {
        Self {
            id: id.into(),
            resource: None,
            roles: roles.iter().fold(0, |acc, role| acc | role.bit()),
        }
    }

    /// The same client, serving `resource` (already in canonical form).
    pub fn serving(self, resource: impl Into<String>) -> Self {
        Self {
            resource: Some(resource.into()),
            ..self
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles & role.bit() != 0
    }

    /// The issuer filter for operator calls: admins see every grant.
    pub fn issuer_scope(&self) -> Option<&str> {
        (!self.has(Role::Admin)).then_some(self.id.as_str())
    }
}

/// Why a call was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthenticated(Unauthenticated),
    #[error("this client lacks the `{}` role", .0.name())]
    PermissionDenied(Role),
}

/// What the caller can fix about its credentials, said where saying it
/// leaks nothing: whether a key was sent, and in which shape, is the
/// caller's own knowledge. Every key the server does not admit (unknown,
/// or Basic's id not the key's client) gets the one same `UnknownKey`, so
/// the answer tells nothing about which keys exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error(
        "no client key: send `authorization: Bearer <client key>` (make a key with `tessera \
         clients add ID ROLE...` or `tessera client-key ID ROLE...`)"
    )]
    NoKey,
    #[error(
        "the authorization header is not `Bearer <client key>` (one header: the scheme, one \
         space, the key)"
    )]
    Malformed,
    #[error(
        "not a known client key (make one with `tessera clients add ID ROLE...` or `tessera \
         client-key ID ROLE...`)"
    )]
    UnknownKey,
}

/// The clients allowed to call, or dev mode (everyone is `dev`, with every role).
pub struct Clients {
    by_key: HashMap<[u8; 32], Arc<Caller>>,
    dev: Option<Arc<Caller>>,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("count", &self.by_key.len())
            .field("dev", &self.dev.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clients: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    key_sha256: String,
    roles: Vec<Role>,
    /// The resource URI of the resource server this client is, if any.
    #[serde(default)]
    resource: Option<String>,
}

pub const DEV_CLIENT: &str = "dev";

impl Clients {
    pub fn dev() -> Self {
        let all = [
            Role::Mint,
            Role::Validate,
            Role::Claim,
            Role::Revoke,
            Role::Admin,
            Role::Metrics,
            Role::Credentials,
        ];
        Self {
            by_key: HashMap::new(),
            dev: Some(Arc::new(Caller::new(DEV_CLIENT, &all))),
        }
    }

    pub fn is_dev(&self) -> bool {
        self.dev.is_some()
    }

    /// How many clients the file lists (0 in dev mode).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)?;
        let mut by_key = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        let mut resources = std::collections::HashSet::new();
        for (i, entry) in file.clients.into_iter().enumerate() {
            let at = format!("clients[{i}]");
            input::required_id(&format!("{at}.id"), entry.id.clone())?;
            if !ids.insert(entry.id.clone()) {
                bail!("{at}.id: duplicate client id {:?}", entry.id);
            }
            if entry.id == crate::signin::REFRESH_AUDIENCE {
                bail!(
                    "{at}.id: {:?} is reserved for sign-in's refresh tokens",
                    entry.id
                );
            }
            if resource::is_uri(&entry.id) {
                bail!(
                    "{at}.id: must not contain `://` (audience entries with it are resource URIs)"
                );
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(entry.key_sha256.trim(), &mut digest)
                .with_context(|| format!("{at}.key_sha256: must be 64 hex digits"))?;
            if entry.roles.is_empty() {
                bail!("{at}.roles: must list at least one role");
            }
            let mut caller = Caller::new(entry.id, &entry.roles);
            if let Some(given) = entry.resource {
                let uri = resource::canonical(&given)
                    .map_err(|why| anyhow::anyhow!("{at}.resource: {why}"))?;
                // One server, one client: a second client naming the same
                // URI would see every token made for the first.
                if !resources.insert(uri.clone()) {
                    bail!("{at}.resource: another client serves the same resource");
                }
                caller = caller.serving(uri);
            }
            let caller = Arc::new(caller);
            if by_key.insert(digest, caller).is_some() {
                bail!("{at}.key_sha256: two clients share one key");
            }
        }
        if by_key.is_empty() {
            bail!("no [[clients]] listed; remove --clients to run in dev mode");
        }
        Ok(Self { by_key, dev: None })
    }

    /// Finds the client a bearer key belongs to. Roles are checked per call
    /// ([`Caller::has`]).
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Arc<Caller>, AuthError> {
        match &self.dev {
            Some(dev) => Ok(dev.clone()),
            None => bearer
                .and_then(|key| self.by_key.get(&key_digest(key)))
                .cloned()
                .ok_or(AuthError::Unauthenticated(Unauthenticated::UnknownKey)),
        }
    }
}

/// The clients in force. A reload replaces them whole: a call
/// authenticates against one file's clients, never a mix of two.
pub struct Directory {
    current: RwLock<Arc<Clients>>,
    /// SHA-256 of the file last read, loaded or not, so that a bad file is
    /// reported once, not at every look.
    seen: RwLock<[u8; 32]>,
}

impl Directory {
    pub fn new(clients: Clients) -> Self {
        Self {
            current: RwLock::new(Arc::new(clients)),
            seen: RwLock::default(),
        }
    }

    /// Reads `path` at start: its clients, and its digest for [`Self::reload`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = read(path)?;
        let clients = Clients::parse(&text).with_context(|| at(path))?;
        let directory = Self::new(clients);
        *directory.seen.write().unwrap_or_else(|p| p.into_inner()) = digest(&text);
        Ok(directory)
    }

    pub fn get(&self) -> Arc<Clients> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads `path` again: `Ok(Some(count))` if it changed and its clients
    /// are now in force, `Ok(None)` if it is as last read, an error (and the
    /// old clients still in force) if it changed but does not load.
    pub fn reload(&self, path: &Path) -> anyhow::Result<Option<usize>> {
        let text = read(path)?;
        {
            let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
            if *seen == digest(&text) {
                return Ok(None);
            }
            *seen = digest(&text);
        }
        let clients = Clients::parse(&text).with_context(|| at(path))?;
        let count = clients.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(clients);
        Ok(Some(count))
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading clients file {}", path.display()))
}

fn at(path: &Path) -> String {
    format!("in clients file {}", path.display())
}

fn digest(text: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::ClientKey;

    fn file(key: &ClientKey) -> String {
        format!(
            "[[clients]]\nid = \"proxy\"\nkey_sha256 = \"{}\"\nroles = [\"claim\", \"validate\"]\n",
            key.sha256_hex()
        )
    }

    #[test]
    fn key_then_role() {
        let key = ClientKey::generate();
        let clients = Clients::parse(&file(&key)).unwrap();
        let caller = clients.authenticate(Some(key.expose())).unwrap();
        assert_eq!(caller.id, "proxy");
        assert_eq!(caller.issuer_scope(), Some("proxy"));
        assert!(caller.has(Role::Claim) && caller.has(Role::Validate));
        assert!(!caller.has(Role::Mint) && !caller.has(Role::Admin));
        assert_eq!(
            clients.authenticate(Some("tsk_wrong")),
            Err(AuthError::Unauthenticated(Unauthenticated::UnknownKey))
        );
        assert_eq!(
            clients.authenticate(None),
            Err(AuthError::Unauthenticated(Unauthenticated::UnknownKey))
        );
    }

    #[test]
    fn rejects_bad_files() {
        let key = ClientKey::generate();
        let one = file(&key);
        for (text, expected) in [
            (String::new(), "no [[clients]]"),
            (format!("{one}{one}"), "duplicate client id"),
            (
                one.replace("[\"claim\", \"validate\"]", "[]"),
                "at least one role",
            ),
            (one.replace("\"claim\"", "\"root\""), "unknown variant"),
            (one.replace(&key.sha256_hex(), "abc"), "64 hex digits"),
            (
                one.replace("id = \"proxy\"", "id = \"https://proxy\""),
                "clients[0].id: must not contain `://`",
            ),
            (
                format!("{one}resource = \"http://mcp.example.com/mcp\"\n"),
                "clients[0].resource: must use https",
            ),
            (
                format!(
                    "{one}resource = \"https://a.example/mcp\"\n{}resource = \"HTTPS://A.example/mcp/\"\n",
                    file(&ClientKey::generate()).replace("proxy", "other")
                ),
                "clients[1].resource: another client serves the same resource",
            ),
        ] {
            let err = format!("{:#}", Clients::parse(&text).unwrap_err());
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_resource_server_names_its_uri_in_canonical_form() {
        let key = ClientKey::generate();
        let text = format!(
            "{}resource = \"HTTPS://MCP.example.com/mcp/\"\n",
            file(&key)
        );
        let clients = Clients::parse(&text).unwrap();
        let caller = clients.authenticate(Some(key.expose())).unwrap();
        assert_eq!(
            caller.resource.as_deref(),
            Some("https://mcp.example.com/mcp")
        );
        let plain = Clients::parse(&file(&key)).unwrap();
        assert_eq!(
            plain.authenticate(Some(key.expose())).unwrap().resource,
            None
        );
    }

    #[test]
    fn dev_mode_allows_everything() {
        let clients = Clients::dev();
        let caller = clients.authenticate(None).unwrap();
        assert!(caller.has(Role::Admin) && caller.has(Role::Mint));
        assert!(caller.has(Role::Credentials));
        assert_eq!(caller.id, DEV_CLIENT);
        assert_eq!(caller.issuer_scope(), None);
    }
}
