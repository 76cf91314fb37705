//! The resources file: which resource URIs (RFC 8707) people may sign in
//! for, the scopes each offers and those it grants when a client asks for
//! none. Read at start and again like the clients file; a file that does
//! not load leaves the previous one in force.

use std::{
    path::Path,
    sync::{Arc, RwLock},
};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::{input, resource};

/// One resource server people may grant access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Canonical form.
    pub uri: String,
    /// Shown on the consent page.
    pub name: String,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    resource: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    uri: String,
    name: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    default_scopes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Resources(Vec<Resource>);

impl Resources {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)?;
        let mut resources: Vec<Resource> = Vec::new();
        for (i, entry) in file.resource.into_iter().enumerate() {
            let at = format!("resource[{i}]");
            let uri =
                resource::canonical(&entry.uri).map_err(|why| anyhow::anyhow!("{at}.uri {why}"))?;
            if resources.iter().any(|r| r.uri == uri) {
                bail!("{at}.uri: listed twice");
            }
            let scopes = input::scopes(&format!("{at}.scopes"), entry.scopes)?;
            let default_scopes =
                input::scopes(&format!("{at}.default_scopes"), entry.default_scopes)?;
            if let Some(extra) = default_scopes.iter().find(|s| !scopes.contains(s)) {
                bail!("{at}.default_scopes: {extra:?} is not in scopes");
            }
            let name = entry.name.unwrap_or_else(|| uri.clone());
            if name.len() > 200 {
                bail!("{at}.name: must be at most 200 bytes");
            }
            resources.push(Resource {
                uri,
                name,
                scopes,
                default_scopes,
            });
        }
        Ok(Self(resources))
    }

    pub fn get(&self, uri: &str) -> Option<&Resource> {
        self.0.iter().find(|r| r.uri == uri)
    }

    /// Every scope some resource offers, for the metadata's `scopes_supported`.
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for scope in self.0.iter().flat_map(|r| &r.scopes) {
            if !all.contains(scope) {
                all.push(scope.clone());
            }
        }
        all
    }
}

/// The resources in force, swapped whole on reload.
pub struct ResourceFile {
    path: std::path::PathBuf,
    current: RwLock<(Arc<Resources>, String)>,
}

impl ResourceFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = read(path)?;
        let resources = Resources::parse(&text).with_context(|| format!("{}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((Arc::new(resources), text)),
        })
    }

    pub fn get(&self) -> Arc<Resources> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(Some(count))` if the file changed and loaded, `Ok(None)` if it
    /// is as last read; an error leaves the previous resources in force.
    pub fn reload(&self) -> anyhow::Result<Option<usize>> {
        let text = read(&self.path)?;
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == text {
            return Ok(None);
        }
        let parsed = Resources::parse(&text);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Remember the text either way, so a bad file is reported once.
        current.1 = text;
        let resources = parsed.with_context(|| format!("{}", self.path.display()))?;
        let count = resources.0.len();
        current.0 = Arc::new(resources);
        Ok(Some(count))
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uris_and_checked_defaults() {
        let parsed = Resources::parse(
            r#"
            [[resource]]
            uri = "HTTPS://MCP.example.com/mcp/"
            name = "Docs"
            scopes = ["docs:read", "docs:write"]
            default_scopes = ["docs:read"]
            "#,
        )
        .unwrap();
        let docs = parsed.get("https://mcp.example.com/mcp").unwrap();
        assert_eq!(docs.name, "Docs");
        assert_eq!(docs.default_scopes, ["docs:read"]);
        assert_eq!(parsed.all_scopes(), ["docs:read", "docs:write"]);

        let bad = Resources::parse(
            "[[resource]]\nuri = \"https://a.example/mcp\"\nscopes = [\"a\"]\ndefault_scopes = [\"b\"]\n",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("default_scopes"), "{bad}");
        let http = Resources::parse("[[resource]]\nuri = \"http://a.example/mcp\"\n").unwrap_err();
        assert!(http.to_string().contains("resource[0].uri"), "{http}");
    }
}
