//! Every bad input is INVALID_ARGUMENT naming the field, and writes nothing.

use tessera::pb::{self, revoke_request::Target};
use tonic::Code;

use crate::support::{Backend, TestApp, claim, mint_req, revoke};

crate::both_backends!(
    bad_mints_name_the_field_and_write_nothing,
    bad_checks_and_revokes
);

fn strings(n: usize, len: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0>len$}")).collect()
}

async fn bad_mints_name_the_field_and_write_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let base = || mint_req("alice");
    let cases: Vec<(&str, pb::MintRequest)> = vec![
        (
            "subject",
            pb::MintRequest {
                subject: String::new(),
                ..base()
            },
        ),
        (
            "subject",
            pb::MintRequest {
                subject: "x".repeat(257),
                ..base()
            },
        ),
        (
            "subject",
            pb::MintRequest {
                subject: "a\nINFO forged line".into(),
                ..base()
            },
        ),
        (
            "subject",
            pb::MintRequest {
                subject: "nul\0".into(),
                ..base()
            },
        ),
        (
            "run_id",
            pb::MintRequest {
                run_id: "\u{1b}[2J".into(),
                ..base()
            },
        ),
        // Invisible and bidirectional code points make two values look alike.
        (
            "subject",
            pb::MintRequest {
                subject: "alice\u{200B}".into(),
                ..base()
            },
        ),
        (
            "run_id",
            pb::MintRequest {
                run_id: "run\u{202E}7".into(),
                ..base()
            },
        ),
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec!["tool:\u{FEFF}search".into()],
                ..base()
            },
        ),
        (
            "labels value",
            pb::MintRequest {
                labels: [("project".into(), "p\u{2066}1".into())].into(),
                ..base()
            },
        ),
        // The scope grammar: `*` only as a final `:*` after a family.
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec!["*".into()],
                ..base()
            },
        ),
        (
            "scopes[1]",
            pb::MintRequest {
                scopes: vec!["ok".into(), ":*".into()],
                ..base()
            },
        ),
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec!["x:".into()],
                ..base()
            },
        ),
        (
            "run_id",
            pb::MintRequest {
                run_id: "r".repeat(257),
                ..base()
            },
        ),
        (
            "scopes",
            pb::MintRequest {
                scopes: strings(65, 3),
                ..base()
            },
        ),
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec!["x".repeat(129)],
                ..base()
            },
        ),
        (
            "scopes[1]",
            pb::MintRequest {
                scopes: vec!["a".into(), String::new()],
                ..base()
            },
        ),
        (
            "scopes[1]",
            pb::MintRequest {
                scopes: vec!["a".into(), "a".into()],
                ..base()
            },
        ),
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec!["has space".into()],
                ..base()
            },
        ),
        (
            "audience",
            pb::MintRequest {
                audience: strings(33, 3),
                ..base()
            },
        ),
        (
            "audience[0]",
            pb::MintRequest {
                audience: vec!["cr\r".into()],
                ..base()
            },
        ),
        (
            "audience[1]",
            pb::MintRequest {
                audience: vec!["p".into(), "p".into()],
                ..base()
            },
        ),
        (
            "labels",
            pb::MintRequest {
                labels: (0..33).map(|i| (i.to_string(), "v".to_owned())).collect(),
                ..base()
            },
        ),
        (
            "labels key",
            pb::MintRequest {
                labels: [("k".repeat(65), "v".into())].into(),
                ..base()
            },
        ),
        (
            "labels",
            pb::MintRequest {
                labels: [(String::new(), "v".into())].into(),
                ..base()
            },
        ),
        (
            "labels value",
            pb::MintRequest {
                labels: [("k".into(), "v".repeat(257))].into(),
                ..base()
            },
        ),
        (
            "labels value",
            pb::MintRequest {
                labels: [("k".into(), "\n".into())].into(),
                ..base()
            },
        ),
        (
            "payload",
            pb::MintRequest {
                payload: vec![7; 64 * 1024 + 1],
                ..base()
            },
        ),
    ];
    for (field, request) in cases {
        let err = app.mint("minter", request).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{field}: {}",
            err.message()
        );
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "expected {field}, got {:?}",
            err.message()
        );
        assert!(!err.message().contains("forged") && !err.message().contains('\u{1b}'));
    }
    // Exactly at every limit is fine.
    let at_limits = pb::MintRequest {
        subject: "s".repeat(256),
        run_id: "r".repeat(256),
        scopes: strings(64, 128),
        audience: strings(32, 256),
        labels: (0..32)
            .map(|i| (format!("{i:0>64}"), "v".repeat(256)))
            .collect(),
        payload: vec![7; 64 * 1024],
        ..base()
    };
    app.mint("minter", at_limits).await.unwrap();
    assert_eq!(app.count_all().await, 1, "only the valid mint wrote");

    // A message past the 1 MiB decoding limit is refused by the transport,
    // and the connection stays usable.
    let huge = pb::MintRequest {
        labels: [("k".into(), "v".repeat(1024 * 1024 + 1))].into(),
        ..base()
    };
    let err = app.mint("minter", huge).await.unwrap_err();
    assert!(err.code() == Code::OutOfRange, "{err:?}");
    assert!(app.mint("minter", base()).await.is_ok());
    assert_eq!(app.count_all().await, 2);
}

async fn bad_checks_and_revokes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let bad_checks: Vec<(&str, pb::ClaimRequest)> = vec![
        ("token", claim("")),
        ("token", claim(&"t".repeat(129))),
        (
            "required_scopes",
            pb::ClaimRequest {
                required_scopes: strings(65, 2),
                ..claim(&token)
            },
        ),
        (
            "required_scopes[0]",
            pb::ClaimRequest {
                required_scopes: vec![String::new()],
                ..claim(&token)
            },
        ),
        (
            "subject",
            pb::ClaimRequest {
                subject: "a\r\nb".into(),
                ..claim(&token)
            },
        ),
        (
            "subject",
            pb::ClaimRequest {
                subject: "\u{202A}u".into(),
                ..claim(&token)
            },
        ),
        (
            "required_scopes[0]",
            pb::ClaimRequest {
                required_scopes: vec!["*".into()],
                ..claim(&token)
            },
        ),
    ];
    for (field, request) in bad_checks {
        let v = pb::ValidateRequest {
            token: request.token.clone(),
            required_scopes: request.required_scopes.clone(),
            subject: request.subject.clone(),
            ..Default::default()
        };
        let err = app.validate("minter", v).await.unwrap_err();
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{}",
            err.message()
        );
        let err = app.claim("minter", request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{}",
            err.message()
        );
    }

    let unspecified = pb::RevokeRequest {
        target: Some(Target::Token(token.clone())),
        reason: 0,
    };
    let unknown_reason = pb::RevokeRequest {
        target: Some(Target::Token(token.clone())),
        reason: 99,
    };
    let no_target = pb::RevokeRequest {
        target: None,
        reason: pb::RevokeReason::Manual as i32,
    };
    let cases: Vec<(&str, pb::RevokeRequest)> = vec![
        ("reason", unspecified),
        ("reason", unknown_reason),
        ("target", no_target),
        ("token", revoke(Target::Token("not-a-token".into()))),
        ("token", revoke(Target::Token(String::new()))),
        ("grant_id", revoke(Target::GrantId("bogus".into()))),
        ("run_id", revoke(Target::RunId(String::new()))),
        ("subject", revoke(Target::Subject("x".repeat(257)))),
    ];
    for (field, request) in cases {
        let err = app.revoke("minter", request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{}",
            err.message()
        );
    }
    // None of that consumed or revoked anything.
    assert!(app.claim("minter", claim(&token)).await.unwrap().claimed);
}
