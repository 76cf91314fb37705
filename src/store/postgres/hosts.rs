//! Several hosts in one `--database-url`, as libpq takes them
//! (`postgres://h1:5432,h2:5433/tessera?target_session_attrs=read-write`).
//!
//! sqlx 0.9 parses one host per URL, so the list is split here into one
//! URL per member; [`super::primary`] then connects to the one that
//! accepts writes and follows it when it moves. Every member gets the
//! same session settings ([`configure`]).

use sqlx::postgres::PgConnectOptions;

use crate::config::DatabaseConfig;

/// The members named by a `--database-url`, one URL each, in the order given.
#[derive(PartialEq, Eq)]
pub(super) struct Members {
    pub urls: Vec<String>,
    /// Connect only to a member that accepts writes, and follow it when a
    /// failover moves it: `target_session_attrs=read-write` (or `primary`),
    /// implied when several hosts are named.
    pub read_write: bool,
}

/// Splits a multi-host URL into one URL per host and reads (and removes)
/// `target_session_attrs`, which sqlx does not know. Errors name the flag
/// and never repeat the URL, which may hold a password.
pub(super) fn parse(url: &str) -> Result<Members, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("--database-url: expected postgres://HOST[:PORT][,HOST[:PORT]...]/DATABASE")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut attrs = None;
    let mut kept = Vec::new();
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        match param.split_once('=') {
            Some(("target_session_attrs", value)) => attrs = Some(value),
            _ if param.is_empty() => {}
            _ => kept.push(param),
        }
    }
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() > 1 && hosts.iter().any(|host| host.is_empty()) {
        return Err("--database-url: an empty host in the host list".into());
    }
    let read_write = match attrs {
        None => hosts.len() > 1,
        Some("read-write" | "primary") => true,
        Some("any") if hosts.len() == 1 => false,
        Some("any") => {
            return Err(
                "--database-url: target_session_attrs=any with several hosts could \
                        send writes to a standby; use read-write"
                    .into(),
            );
        }
        Some("read-only" | "standby" | "prefer-standby") => {
            return Err("--database-url: every write goes through it, so \
                        target_session_attrs must be read-write (or primary)"
                .into());
        }
        Some(_) => {
            return Err(
                "--database-url: target_session_attrs must be read-write, primary \
                        or any"
                    .into(),
            );
        }
    };
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let urls = hosts
        .iter()
        .map(|host| format!("{scheme}://{userinfo}{host}{path}{query}"))
        .collect();
    Ok(Members { urls, read_write })
}

/// The session settings every connection of a member gets.
pub(super) fn configure(options: PgConnectOptions, db: &DatabaseConfig) -> PgConnectOptions {
    // The URL may name the connections (`application_name=`), e.g. one
    // name per replica; otherwise they are "tessera".
    let options = match options.get_application_name() {
        Some(_) => options,
        None => options.application_name("tessera"),
    };
    options.options([
        (
            "statement_timeout",
            format!("{}ms", db.statement_timeout.as_millis()),
        ),
        // Every statement is prepared once per connection and looks rows
        // up by a unique key or an index: the generic plan is the right
        // one, and replanning each execution (which PostgreSQL does
        // while a custom plan looks cheaper, as for array parameters)
        // would cost more than running it.
        ("plan_cache_mode", "force_generic_plan".to_owned()),
        // NOTICEs (`relation "_sqlx_migrations" already exists, skipping`
        // on every start) are not worth an INFO line.
        ("client_min_messages", "warning".to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(url: &str) -> (Vec<String>, bool) {
        let members = parse(url).unwrap_or_else(|err| panic!("{url}: {err}"));
        (members.urls, members.read_write)
    }

    #[test]
    fn one_host_is_left_as_it_was() {
        let url = "postgres://app:pw@db:5432/tessera?sslmode=require";
        assert_eq!(members(url), (vec![url.to_owned()], false));
        assert_eq!(
            members("postgres://db/tessera?target_session_attrs=read-write"),
            (vec!["postgres://db/tessera".to_owned()], true)
        );
    }

    #[test]
    fn several_hosts_become_one_url_each_and_want_the_primary() {
        assert_eq!(
            members(
                "postgresql://app:pw@h1:5432,h2:5433,[::1]:5434/tessera?application_name=a\
                 &target_session_attrs=read-write&sslmode=disable"
            ),
            (
                vec![
                    "postgresql://app:pw@h1:5432/tessera?application_name=a&sslmode=disable"
                        .to_owned(),
                    "postgresql://app:pw@h2:5433/tessera?application_name=a&sslmode=disable"
                        .to_owned(),
                    "postgresql://app:pw@[::1]:5434/tessera?application_name=a&sslmode=disable"
                        .to_owned(),
                ],
                true
            )
        );
        // Without target_session_attrs, several hosts still mean the primary.
        assert!(members("postgres://h1,h2/db").1);
        assert_eq!(
            members("postgres://h1,h2?target_session_attrs=primary").0[1],
            "postgres://h2"
        );
    }

    #[test]
    fn what_could_write_to_a_standby_is_refused_by_name() {
        for url in [
            "postgres://h1,h2/db?target_session_attrs=any",
            "postgres://h1,h2/db?target_session_attrs=prefer-standby",
            "postgres://h1/db?target_session_attrs=standby",
            "postgres://h1/db?target_session_attrs=sometimes",
            "postgres://u:secret@h1,,h2/db",
            "h1,h2/db",
        ] {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} accepted"));
            assert!(err.starts_with("--database-url: "), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
