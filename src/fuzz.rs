//! Property-based fuzzing of everything a caller controls before the
//! database: the token parser and request validation. A seeded run of 256
//! cases per property is part of `cargo test`; a long one is
//!
//! ```sh
//! FUZZ_CASES=200000 FUZZ_SEED=$RANDOM cargo test --release --lib fuzz
//! ```

use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed},
};

use crate::{
    grpc::convert,
    input,
    pb::{self, revoke_request::Target},
    token::{SECRET_LEN, Token},
};

fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("FUZZ_CASES").map_or(256, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        rng_seed: RngSeed::Fixed(env("FUZZ_SEED").unwrap_or(0x7e55e7a)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings that stress the rules: control characters, escapes, multi-byte
/// characters, lengths around every limit.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-z:*\\-]{0,10}[\\x00-\\x1f\\x7f\\u{1b}\\r\\n]{1,3}[a-z]{0,10}",
        "[a-z:*]{0,6}[\u{200B}-\u{200D}\u{2028}\u{2029}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{FEFF}]{1,2}[a-z*]{0,6}",
        (
            0usize..4,
            prop::sample::select(vec![63usize, 64, 65, 127, 128, 129, 255, 256, 257])
        )
            .prop_map(|(c, n)| ["x", "é", "\u{1F512}", "a b"][c].repeat(n)),
        Just(String::new()),
    ]
}

fn hostile_list() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        prop::collection::vec(hostile(), 0..4),
        prop::collection::vec("[a-z]{1,8}", 30..70),
        prop::collection::vec(Just("dup".to_owned()), 2..3),
    ]
}

/// An error names a field and never repeats the caller's text.
fn names_a_field(err: &input::InvalidInput, fields: &[&str], values: &[&str]) -> bool {
    let message = err.to_string();
    fields.iter().any(|f| err.field.starts_with(f))
        && values
            .iter()
            .filter(|v| v.len() >= 8)
            .all(|v| !message.contains(*v))
}

fn ok_text(text: &str, max: usize) -> bool {
    text.len() <= max
        && !text
            .chars()
            .any(|c| c.is_control() || input::is_invisible(c))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_token_parser(text in prop_oneof!["\\PC{0,80}", "tsr_[0-9A-Za-z]{49}"]) {
        // Never panics; whatever it accepts has the token's shape.
        if let Ok(token) = Token::parse(&text) {
            prop_assert_eq!(token.expose(), text.as_str());
            prop_assert_eq!(text.len(), SECRET_LEN);
            prop_assert!(text.starts_with("tsr_") && text.is_ascii());
        }
    }

    #[test]
    fn fuzz_one_changed_character_is_malformed(at in 4usize..SECRET_LEN, ch in "[0-9A-Za-z]") {
        let token = Token::generate().into_plaintext();
        prop_assert!(Token::parse(&token).is_ok());
        let mut changed = token.clone();
        changed.replace_range(at..=at, &ch);
        prop_assert_eq!(Token::parse(&changed).is_ok(), changed == token);
    }

    #[test]
    fn fuzz_mint_validation(
        subject in hostile(),
        run_id in hostile(),
        scopes in hostile_list(),
        audience in hostile_list(),
        label in (hostile(), hostile()),
        ttl in (any::<i64>(), any::<i32>()),
        payload_len in prop_oneof![0usize..16, Just(65_536), Just(65_537)],
    ) {
        let request = pb::MintRequest {
            subject: subject.clone(),
            run_id: run_id.clone(),
            scopes: scopes.clone(),
            audience: audience.clone(),
            labels: [label.clone()].into(),
            ttl: Some(prost_types::Duration { seconds: ttl.0, nanos: ttl.1 }),
            payload: vec![0; payload_len],
            ..Default::default()
        };
        let values: Vec<&str> = [&subject, &run_id, &label.0, &label.1].into_iter().map(String::as_str)
            .chain(scopes.iter().map(String::as_str)).chain(audience.iter().map(String::as_str)).collect();
        match convert::mint_spec(request) {
            Ok(spec) => {
                prop_assert!(!spec.subject.is_empty() && ok_text(&spec.subject, input::MAX_ID));
                prop_assert!(ok_text(&spec.run_id, input::MAX_ID));
                prop_assert!(spec.scopes.len() <= input::MAX_SCOPES);
                prop_assert!(spec.scopes.iter().all(|s| !s.is_empty() && ok_text(s, input::MAX_SCOPE) && !s.contains(char::is_whitespace) && !s.trim_end_matches(":*").contains('*')));
                prop_assert!(spec.audience.len() <= input::MAX_AUDIENCE);
                prop_assert!(spec.audience.iter().all(|a| !a.is_empty() && ok_text(a, input::MAX_ID)));
                prop_assert!(spec.labels.iter().all(|(k, v)| !k.is_empty() && ok_text(k, input::MAX_LABEL_KEY) && ok_text(v, input::MAX_LABEL_VALUE)));
                prop_assert!(spec.payload.len() <= input::MAX_PAYLOAD);
                prop_assert!(spec.ttl.is_some_and(|t| t >= std::time::Duration::from_millis(1)));
            }
            Err(err) => prop_assert!(
                names_a_field(&err, &["subject", "run_id", "scopes", "audience", "labels", "ttl", "payload"], &values),
                "{}", err
            ),
        }
    }

    #[test]
    fn fuzz_check_and_revoke_validation(
        token in hostile(),
        scopes in hostile_list(),
        subject in hostile(),
        claim_key in hostile(),
        consistency in any::<i32>(),
        reason in any::<i32>(),
        which in 0u8..5,
    ) {
        let values = [token.as_str(), subject.as_str(), claim_key.as_str()];
        let validate = pb::ValidateRequest {
            token: token.clone(), required_scopes: scopes.clone(), subject: subject.clone(), consistency,
            at_least_as_fresh: claim_key.clone(),
        };
        if let Err(err) = convert::validate_check(validate) {
            prop_assert!(names_a_field(&err, &["token", "required_scopes", "subject", "consistency", "at_least_as_fresh"], &values), "{}", err);
        }
        let claim = pb::ClaimRequest {
            token: token.clone(), required_scopes: scopes, subject: subject.clone(), claim_key: claim_key.clone(),
        };
        if let Err(err) = convert::claim_check(claim) {
            prop_assert!(names_a_field(&err, &["token", "required_scopes", "subject", "claim_key"], &values), "{}", err);
        }
        let target = match which {
            0 => Some(Target::Token(token.clone())),
            1 => Some(Target::GrantId(subject.clone())),
            2 => Some(Target::RunId(subject.clone())),
            3 => Some(Target::Subject(subject.clone())),
            _ => None,
        };
        match convert::revoke_target(pb::RevokeRequest { target, reason }) {
            Ok(_) => prop_assert!((1..=5).contains(&reason), "only a named reason is accepted"),
            Err(err) => prop_assert!(names_a_field(&err, &["reason", "target", "token", "grant_id", "run_id", "subject"], &values), "{}", err),
        }
    }
}
