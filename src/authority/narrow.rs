//! What a delegated child may have: what it asked for, each part checked
//! against its parent as found, or the parent's own where it asked for
//! nothing. Pure, so every limit is a unit test; the store re-checks the
//! parent and takes the child's uses in the same transaction.

use std::time::Duration;

use super::{DelegateSpec, Result};
use crate::{
    grant::{Grant, Micros, micros},
    input::{InvalidInput, MAX_LABELS},
    rules,
};

/// What a child may have: what it asked for, each part checked against
/// its parent, or the parent's own where it asked for nothing.
pub(super) struct Narrowed {
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub max_uses: u32,
    pub ttl: Micros,
}

pub(super) fn narrow(
    parent: &Grant,
    now: Micros,
    spec: &DelegateSpec,
    max_ttl: Duration,
) -> Result<Narrowed> {
    let scopes = if spec.scopes.is_empty() {
        parent.scopes.clone()
    } else {
        if let Some(wider) = spec
            .scopes
            .iter()
            .find(|scope| !rules::scope_granted(&parent.scopes, scope))
        {
            return Err(InvalidInput::new(
                "scopes",
                format!("{wider:?} is not granted by the parent token"),
            )
            .into());
        }
        spec.scopes.clone()
    };
    let audience = if spec.audience.is_empty() {
        parent.audience.clone()
    } else {
        let outside = spec
            .audience
            .iter()
            .find(|id| !parent.audience.is_empty() && !parent.audience.contains(id));
        if let Some(outside) = outside {
            return Err(InvalidInput::new(
                "audience",
                format!("{outside:?} is not in the parent token's audience"),
            )
            .into());
        }
        spec.audience.clone()
    };
    // A rotated parent is revoked at the end of its overlap: its life ends
    // there, not at its expiry.
    let ends_at = parent
        .revoked_at
        .map_or(parent.expires_at, |at| at.min(parent.expires_at));
    let remaining_life = ends_at - now;
    let ttl = match spec.ttl {
        None => remaining_life,
        Some(ttl) if ttl > max_ttl || micros(ttl) > remaining_life => {
            let left = Duration::from_micros(u64::try_from(remaining_life).unwrap_or(0));
            return Err(InvalidInput::new(
                "ttl",
                format!(
                    "must not outlive the parent token, which expires in {}s",
                    left.as_secs()
                ),
            )
            .into());
        }
        Some(ttl) => micros(ttl),
    };
    let max_uses = match parent.max_uses {
        0 => spec.max_uses,
        limit => {
            let left = limit.saturating_sub(parent.use_count);
            match spec.max_uses {
                0 => left,
                asked if asked <= left => asked,
                _ => {
                    return Err(InvalidInput::new(
                        "max_uses",
                        format!("must be at most the parent token's {left} remaining uses"),
                    )
                    .into());
                }
            }
        }
    };
    // A child's labels add keys; the parent's are what it is (a tenant, a
    // project) and a sub-agent cannot relabel itself out of them.
    if let Some((key, _)) = spec
        .labels
        .iter()
        .find(|(key, value)| parent.labels.get(*key).is_some_and(|own| own != *value))
    {
        return Err(InvalidInput::new(
            "labels",
            format!("{key:?} is set by the parent token and cannot be changed"),
        )
        .into());
    }
    let mut labels = parent.labels.clone();
    labels.extend(spec.labels.clone());
    if labels.len() > MAX_LABELS {
        return Err(InvalidInput::new(
            "labels",
            format!("with the parent's, must have at most {MAX_LABELS} entries"),
        )
        .into());
    }
    Ok(Narrowed {
        scopes,
        audience,
        labels,
        max_uses,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Grant {
        Grant {
            scopes: vec!["connector:*".into(), "tool:search".into()],
            audience: vec!["proxy".into(), "agent".into()],
            max_uses: 5,
            use_count: 2,
            expires_at: 1_000_000_000,
            ..Grant::default()
        }
    }

    fn spec() -> DelegateSpec {
        DelegateSpec {
            parent_token: String::new(),
            scopes: Vec::new(),
            audience: Vec::new(),
            ttl: None,
            max_uses: 0,
            labels: Default::default(),
            payload: Vec::new(),
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_child_inherits_what_it_does_not_narrow() {
        let child = narrow(&parent(), 0, &spec(), DAY).unwrap();
        assert_eq!(child.scopes, parent().scopes);
        assert_eq!(child.audience, parent().audience);
        assert_eq!((child.max_uses, child.ttl), (3, 1_000_000_000));
    }

    #[test]
    fn a_child_never_exceeds_its_parent() {
        let ok = DelegateSpec {
            scopes: vec!["connector:github".into()],
            audience: vec!["proxy".into()],
            max_uses: 3,
            ttl: Some(Duration::from_secs(10)),
            ..spec()
        };
        let child = narrow(&parent(), 0, &ok, DAY).unwrap();
        assert_eq!(child.scopes, ["connector:github"]);
        let too_much = [
            (
                "scopes",
                DelegateSpec {
                    scopes: vec!["tool:admin".into()],
                    ..spec()
                },
            ),
            (
                "scopes",
                DelegateSpec {
                    scopes: vec!["tool:*".into()],
                    ..spec()
                },
            ),
            (
                "audience",
                DelegateSpec {
                    audience: vec!["reader".into()],
                    ..spec()
                },
            ),
            (
                "max_uses",
                DelegateSpec {
                    max_uses: 4,
                    ..spec()
                },
            ),
            (
                "ttl",
                DelegateSpec {
                    ttl: Some(Duration::from_secs(1001)),
                    ..spec()
                },
            ),
        ];
        for (field, asked) in too_much {
            let err = narrow(&parent(), 0, &asked, DAY).err().unwrap().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        // Under a parent for anyone, any audience; under an unlimited one,
        // unlimited uses.
        let open = Grant {
            audience: vec![],
            max_uses: 0,
            ..parent()
        };
        let anyone = DelegateSpec {
            audience: vec!["reader".into()],
            ..spec()
        };
        let child = narrow(&open, 0, &anyone, DAY).unwrap();
        assert_eq!(
            (child.audience, child.max_uses),
            (vec!["reader".to_owned()], 0)
        );
    }

    #[test]
    fn a_child_of_a_rotated_parent_lives_until_its_overlap_ends() {
        let rotated = Grant {
            revoked_at: Some(2_000_000),
            ..parent()
        };
        let child = narrow(&rotated, 0, &spec(), DAY).unwrap();
        assert_eq!(child.ttl, 2_000_000);
        let longer = DelegateSpec {
            ttl: Some(Duration::from_secs(3)),
            ..spec()
        };
        let err = narrow(&rotated, 0, &longer, DAY).err().unwrap().to_string();
        assert!(err.starts_with("ttl"), "{err}");
    }

    #[test]
    fn a_child_adds_labels_and_never_changes_its_parents() {
        let labelled = Grant {
            labels: [("tenant".to_owned(), "acme".to_owned())].into(),
            ..parent()
        };
        let ask = |key: &str, value: &str| DelegateSpec {
            labels: [(key.to_owned(), value.to_owned())].into(),
            ..spec()
        };
        let err = narrow(&labelled, 0, &ask("tenant", "evil-corp"), DAY)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("labels") && err.contains("tenant"), "{err}");
        for (key, value) in [("tenant", "acme"), ("agent", "sub-1")] {
            let child = narrow(&labelled, 0, &ask(key, value), DAY).unwrap();
            assert_eq!(child.labels["tenant"], "acme");
        }
    }
}
