//! The audit trail's tests: keyed MACs, and that each event's JSON line
//! holds what [`Event::write`] promises.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::audit::Uncounted;
use crate::{
    grant::{Grant, RevokeReason},
    rules::{Denial, Hidden},
    store::{RevokeTarget, StoreError},
    telemetry::json::tests::logged,
    token::Token,
};

/// The JSON line an event writes, without its timestamp.
fn line(event: Event<'_>) -> Value {
    let (_, mut line) = logged(|| event.write());
    assert!(line.remove("timestamp").is_some());
    Value::Object(line)
}

fn grant() -> Grant {
    Grant {
        grant_id: "g1".into(),
        run_id: "r1".into(),
        subject: "u".into(),
        labels: [("env".to_owned(), "prod".to_owned())].into(),
        max_uses: 3,
        use_count: 1,
        ..Grant::default()
    }
}

#[test]
fn a_mint_is_one_line_on_the_audit_target_without_its_token() {
    let token = Token::generate();
    let mac = Audit::new(Some([7; 32])).token_mac(&token);
    let event = Event::Mint {
        client: "minter",
        grant: &grant(),
        token_mac: &mac,
        ttl: Duration::from_secs(600),
    };
    let (text, _) = logged(|| event.write());
    assert!(!text.contains(token.expose()), "{text}");
    assert_eq!(
        line(event),
        json!({
            "level": "INFO",
            "target": "tessera::audit",
            "message": "minted",
            "event": "mint",
            "token_mac": mac.as_str(),
            "client": "minter",
            "grant_id": "g1",
            "run_id": "r1",
            "subject": "u",
            "labels": {"env": "prod"},
            "max_uses": 3,
            "ttl_ms": 600_000,
        })
    );
}

#[test]
fn a_claim_names_its_outcome() {
    let mac = Audit::new(None).token_mac(&Token::generate());
    let event = Event::Claim {
        outcome: ClaimOutcome::Retried,
        client: "c",
        grant: &grant(),
        token_mac: &mac,
    };
    let line = line(event);
    assert_eq!(line["event"], "claim");
    assert_eq!(line["outcome"], "retried");
    assert_eq!(line["use_count"], 1);
}

#[test]
fn a_refusal_is_named_for_its_operation_with_its_real_reason() {
    let event = Event::Refused {
        operation: Operation::Validate,
        client: "c",
        grant_id: None,
        token_mac: None,
        denial: Denial::Malformed,
        why: None,
    };
    assert_eq!(
        line(event),
        json!({
            "level": "INFO",
            "target": "tessera::audit",
            "message": "token refused",
            "event": "validate",
            "outcome": "refused",
            "client": "c",
            "grant_id": "",
            "token_mac": "",
            "denial": "TOKEN_MALFORMED",
        })
    );
    let event = Event::Refused {
        operation: Operation::Claim,
        client: "c",
        grant_id: Some("g1"),
        token_mac: None,
        denial: Denial::Unknown,
        why: Some(Hidden::UsedUp),
    };
    let line = line(event);
    assert_eq!(line["event"], "claim");
    assert_eq!(line["why"], "USED_UP");
}

#[test]
fn a_replay_is_a_warning() {
    let mac = Audit::new(None).token_mac(&Token::generate());
    let err = StoreError::Internal(sqlx::Error::RowNotFound);
    let event = Event::Replay {
        client: "c",
        grant_id: "g1",
        run_id: "r1",
        token_mac: &mac,
        replays: None,
        error: Some(Uncounted::Failed(&err)),
    };
    let line = line(event);
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["event"], "replay");
    assert_eq!(line["error"], "database error");
    assert!(line.get("replays").is_none());

    let event = Event::Replay {
        client: "c",
        grant_id: "g1",
        run_id: "r1",
        token_mac: &mac,
        replays: None,
        error: Some(Uncounted::Backlog),
    };
    let uncounted = self::line(event);
    assert_eq!(uncounted["event"], "replay");
    assert_eq!(uncounted["error"], "too many replays waiting to be counted");
}

#[test]
fn a_revoke_by_token_names_no_token() {
    let token = Token::generate();
    let target = RevokeTarget::Token(token.hash());
    let event = Event::Revoke {
        client: "c",
        cause: RevokeCause::Request,
        target: &target,
        reason: RevokeReason::Manual,
        revoked: 1,
        descendants: 2,
    };
    assert_eq!(
        line(event),
        json!({
            "level": "INFO",
            "target": "tessera::audit",
            "message": "revoked",
            "event": "revoke",
            "client": "c",
            "cause": "request",
            "target_kind": "token",
            "reason": "MANUAL",
            "revoked": 1,
            "descendants": 2,
        })
    );
}

#[test]
fn macs_are_keyed_and_stable() {
    let token = Token::generate();
    let a = Audit::new(Some([1; 32]));
    let b = Audit::new(Some([2; 32]));
    assert_eq!(a.token_mac(&token), a.token_mac(&token));
    assert_ne!(a.token_mac(&token), b.token_mac(&token));
    assert_eq!(a.token_mac(&token).as_str().len(), 32);
    assert!(
        !a.token_mac(&token)
            .as_str()
            .contains(&token.expose()[4..12])
    );
}
