//! The token rules: mint, validate, claim, denials and their precedence.

use std::time::Duration;

use prost::Message;
use tessera::pb::{self, Denial, revoke_request::Target};
use tonic::Code;

use crate::support::{Backend, Options, TestApp, check, claim, eventually, mint_req, revoke};

crate::both_backends!(
    mint_returns_the_token_once_and_a_grant_without_secrets,
    ttl_defaults_and_bounds,
    validate_does_not_consume,
    single_use_claims_once_and_reveals_the_payload,
    max_uses_allows_exactly_n_claims,
    unlimited_uses_until_expiry,
    malformed_tokens_never_reach_the_database,
    expired_only_when_the_grant_would_otherwise_match,
    scopes_exact_and_family_wildcards,
    subject_binding,
    audience_limits_who_may_validate_and_claim,
    hidden_denials_are_indistinguishable,
    revoke_by_each_target,
    list_and_get_grants,
    last_used_at_is_kept,
);

async fn mint_returns_the_token_once_and_a_grant_without_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                subject: "user-1".into(),
                audience: vec!["proxy".into()],
                run_id: "run-1".into(),
                scopes: vec!["tool:search".into(), "connector:*".into()],
                labels: [("project".to_owned(), "p-9".to_owned())].into(),
                ttl: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                max_uses: 1,
                payload: b"secret-id-7".to_vec(),
                revoke_run_on_replay: false,
                payload_credential: None,
            },
        )
        .await
        .unwrap();
    let token = &minted.token;
    assert_eq!(token.len(), 53);
    assert!(token.starts_with("tsr_"));
    let grant = minted.grant.unwrap();
    assert!(grant.grant_id.starts_with("grt_"));
    assert_eq!(grant.token_hint, token[..8]);
    assert_eq!(grant.subject, "user-1");
    assert_eq!(grant.audience, ["proxy"]);
    assert_eq!(grant.run_id, "run-1");
    assert_eq!(grant.scopes, ["tool:search", "connector:*"]);
    assert_eq!(grant.labels["project"], "p-9");
    assert_eq!((grant.max_uses, grant.use_count), (1, 0));
    assert_eq!(grant.issued_by, "minter");
    let (issued, expires) = (grant.issued_at.unwrap(), grant.expires_at.unwrap());
    assert_eq!(expires.seconds - issued.seconds, 60);
    assert!(grant.revoked_at.is_none() && grant.last_used_at.is_none());
    let bytes = grant.encode_to_vec();
    assert!(!bytes.windows(11).any(|w| w == b"secret-id-7"));
    assert!(!bytes.windows(20).any(|w| w == &token.as_bytes()[8..28]));
    // Tokens differ every time.
    let second = app.mint("minter", mint_req("user-1")).await.unwrap();
    assert_ne!(second.token, minted.token);
}

async fn ttl_defaults_and_bounds(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            default_ttl: "90s",
            max_ttl: "1h",
            ..Options::default()
        },
    )
    .await;
    let grant = app
        .mint("minter", mint_req("u"))
        .await
        .unwrap()
        .grant
        .unwrap();
    assert_eq!(
        grant.expires_at.unwrap().seconds - grant.issued_at.unwrap().seconds,
        90
    );

    let at_max = pb::MintRequest {
        ttl: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..mint_req("u")
    };
    assert!(app.mint("minter", at_max).await.is_ok());

    for (seconds, nanos) in [
        (0, 0),
        (-5, 0),
        (3600, 1),
        (i64::MAX, 0),
        (i64::MIN, 0),
        (1, -1),
    ] {
        let request = pb::MintRequest {
            ttl: Some(prost_types::Duration { seconds, nanos }),
            ..mint_req("u")
        };
        let err = app.mint("minter", request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{seconds}s {nanos}ns");
        assert!(err.message().starts_with("ttl: "), "{}", err.message());
    }
    assert_eq!(app.count_all().await, 2, "rejected mints wrote nothing");
}

async fn validate_does_not_consume(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let answer = app.validate("minter", check(&minted.token)).await.unwrap();
        assert!(answer.valid);
        assert_eq!(answer.denial, Denial::Unspecified as i32);
        assert_eq!(answer.grant.unwrap().use_count, 0);
    }
    assert!(
        app.claim("minter", claim(&minted.token))
            .await
            .unwrap()
            .claimed
    );
}

async fn single_use_claims_once_and_reveals_the_payload(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                payload: b"secret-id-42".to_vec(),
                audience: vec!["proxy".into()],
                ..mint_req("agent")
            },
        )
        .await
        .unwrap();
    let first = app.claim("proxy", claim(&minted.token)).await.unwrap();
    assert!(first.claimed);
    assert_eq!(first.payload, b"secret-id-42");
    let grant = first.grant.unwrap();
    assert_eq!(grant.use_count, 1);
    assert!(grant.last_used_at.is_some());

    let second = app.claim("proxy", claim(&minted.token)).await.unwrap();
    assert!(!second.claimed);
    assert_eq!(second.denial, Denial::TokenUnknown as i32);
    assert!(second.payload.is_empty() && second.grant.is_none());
    let after = app.validate("proxy", check(&minted.token)).await.unwrap();
    assert_eq!(after.denial, Denial::TokenUnknown as i32);
}

async fn max_uses_allows_exactly_n_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 3,
                payload: b"p".to_vec(),
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    for n in 1..=3 {
        let answer = app.claim("minter", claim(&minted.token)).await.unwrap();
        assert!(answer.claimed, "claim {n}");
        assert_eq!(answer.grant.unwrap().use_count, n);
        assert_eq!(answer.payload, b"p");
    }
    let fourth = app.claim("minter", claim(&minted.token)).await.unwrap();
    assert_eq!(fourth.denial, Denial::TokenUnknown as i32);
    let grant = app
        .get("minter", &minted.grant.unwrap().grant_id)
        .await
        .unwrap();
    assert_eq!(grant.use_count, 3);
}

async fn unlimited_uses_until_expiry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // 5 s: slack for the ten claims that must come before expiry on a busy
    // machine.
    let ttl = Duration::from_secs(5);
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                ttl: Some(ttl.try_into().unwrap()),
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    let minted_at = std::time::Instant::now();
    for _ in 0..10 {
        assert!(
            app.claim("minter", claim(&minted.token))
                .await
                .unwrap()
                .claimed
        );
    }
    // Expired: the lifetime ran from before the mint's answer came.
    tokio::time::sleep_until((minted_at + ttl + Duration::from_millis(100)).into()).await;
    let late = app.claim("minter", claim(&minted.token)).await.unwrap();
    assert_eq!(late.denial, Denial::TokenExpired as i32);
    let grant = app
        .get("minter", &minted.grant.unwrap().grant_id)
        .await
        .unwrap();
    assert_eq!(grant.use_count, 10, "an expired claim consumes nothing");
}

async fn malformed_tokens_never_reach_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let real = app.mint("minter", mint_req("u")).await.unwrap().token;
    let mut typo = real.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [
        "not-a-token".to_owned(),
        typo,
        real.replacen("tsr_", "tsk_", 1),
        format!("{real}0"),
        real[..52].to_owned(),
        "tsr_\u{0}".to_owned(),
    ] {
        let v = app.validate("minter", check(&bad)).await.unwrap();
        assert_eq!(
            (v.valid, v.denial),
            (false, Denial::TokenMalformed as i32),
            "{bad:?}"
        );
        let c = app.claim("minter", claim(&bad)).await.unwrap();
        assert_eq!(
            (c.claimed, c.denial),
            (false, Denial::TokenMalformed as i32)
        );
    }
    // Missing or oversized is a bad request, not a denial.
    for bad in [String::new(), "x".repeat(129)] {
        let err = app.validate("minter", check(&bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("token: "));
    }
    // Well formed but never minted.
    let stranger = tessera::token::Token::generate();
    let v = app
        .validate("minter", check(stranger.expose()))
        .await
        .unwrap();
    assert_eq!(v.denial, Denial::TokenUnknown as i32);
}

async fn expired_only_when_the_grant_would_otherwise_match(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // 3 s: slack for the revoke that must come before expiry.
    let ttl = Duration::from_secs(3);
    let short = |subject: &str| pb::MintRequest {
        ttl: Some(ttl.try_into().unwrap()),
        audience: vec!["proxy".into()],
        max_uses: 1,
        ..mint_req(subject)
    };
    let plain = app.mint("minter", short("alice")).await.unwrap().token;
    let revoked = app.mint("minter", short("alice")).await.unwrap().token;
    app.revoke("minter", revoke(Target::Token(revoked.clone())))
        .await
        .unwrap();
    // Both lifetimes ran from before this point.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;

    let denial = |r: pb::ValidateResponse| r.denial;
    assert_eq!(
        denial(app.validate("proxy", check(&plain)).await.unwrap()),
        Denial::TokenExpired as i32
    );
    let c = app.claim("proxy", claim(&plain)).await.unwrap();
    assert_eq!(c.denial, Denial::TokenExpired as i32);
    // Anything that would hide the grant wins over expiry.
    assert_eq!(
        denial(app.validate("proxy", check(&revoked)).await.unwrap()),
        Denial::TokenUnknown as i32
    );
    let foreign_subject = pb::ValidateRequest {
        subject: "mallory".into(),
        ..check(&plain)
    };
    assert_eq!(
        denial(app.validate("proxy", foreign_subject).await.unwrap()),
        Denial::TokenUnknown as i32
    );
    assert_eq!(
        denial(app.validate("reader", check(&plain)).await.unwrap()),
        Denial::TokenUnknown as i32,
        "outside the audience"
    );
}

async fn scopes_exact_and_family_wildcards(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                scopes: vec!["tool:search".into(), "connector:*".into()],
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let with = |scopes: &[&str]| pb::ValidateRequest {
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..check(&token)
    };
    for ok in [
        &[][..],
        &["tool:search"],
        &["connector:github"],
        &["tool:search", "connector:slack:read"],
    ] {
        assert!(
            app.validate("minter", with(ok)).await.unwrap().valid,
            "{ok:?}"
        );
    }
    for missing in [
        &["tool:write"][..],
        &["tool:search", "tool:write"],
        &["connector"],
        &["tool:*"],
    ] {
        let answer = app.validate("minter", with(missing)).await.unwrap();
        assert_eq!(answer.denial, Denial::ScopeMissing as i32, "{missing:?}");
        assert!(answer.grant.is_none());
    }
    let denied = pb::ClaimRequest {
        required_scopes: vec!["tool:write".into()],
        ..claim(&token)
    };
    let answer = app.claim("minter", denied).await.unwrap();
    assert_eq!(answer.denial, Denial::ScopeMissing as i32);
    let ok = pb::ClaimRequest {
        required_scopes: vec!["connector:github".into()],
        ..claim(&token)
    };
    assert!(
        app.claim("minter", ok).await.unwrap().claimed,
        "the failed claim consumed nothing"
    );
}

async fn subject_binding(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .mint(
            "minter",
            pb::MintRequest {
                max_uses: 1,
                payload: b"checkpoint".to_vec(),
                ..mint_req("alice")
            },
        )
        .await
        .unwrap()
        .token;
    let as_subject = |subject: &str| pb::ClaimRequest {
        subject: subject.into(),
        ..claim(&token)
    };
    let foreign = app.claim("minter", as_subject("mallory")).await.unwrap();
    assert_eq!(
        (foreign.claimed, foreign.denial),
        (false, Denial::TokenUnknown as i32)
    );
    let peek = pb::ValidateRequest {
        subject: "alice".into(),
        ..check(&token)
    };
    assert!(app.validate("minter", peek).await.unwrap().valid);
    let owner = app.claim("minter", as_subject("alice")).await.unwrap();
    assert!(owner.claimed, "the foreign claim consumed nothing");
    assert_eq!(owner.payload, b"checkpoint");
}

async fn audience_limits_who_may_validate_and_claim(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let for_proxy = app
        .mint(
            "minter",
            pb::MintRequest {
                audience: vec!["proxy".into()],
                max_uses: 1,
                ..mint_req("u")
            },
        )
        .await
        .unwrap()
        .token;
    let other = app.claim("other", claim(&for_proxy)).await.unwrap();
    assert_eq!(other.denial, Denial::TokenUnknown as i32);
    let minter = app.validate("minter", check(&for_proxy)).await.unwrap();
    assert_eq!(
        minter.denial,
        Denial::TokenUnknown as i32,
        "the issuer is not in the audience"
    );
    assert!(app.claim("proxy", claim(&for_proxy)).await.unwrap().claimed);

    let anyone = app.mint("minter", mint_req("u")).await.unwrap().token;
    for client in ["minter", "other", "proxy", "reader"] {
        assert!(
            app.validate(client, check(&anyone)).await.unwrap().valid,
            "{client}"
        );
    }
}

/// Response headers other than `date`, which only says when.
fn headers(metadata: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    let mut headers: Vec<_> = metadata
        .clone()
        .into_headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    headers
}

/// Never minted, revoked, used up, bound to another subject, outside the
/// audience: the same bytes on the wire, and nothing consumed. A keyed claim
/// asking for a scope the grant lacks is judged the same way: a dead grant
/// does not reveal its scopes to whoever holds its token.
async fn hidden_denials_are_indistinguishable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mint = |m: pb::MintRequest| app.mint("minter", m);
    let single = || pb::MintRequest {
        max_uses: 1,
        audience: vec!["proxy".into()],
        ..mint_req("alice")
    };
    let revoked = mint(single()).await.unwrap().token;
    app.revoke("minter", revoke(Target::Token(revoked.clone())))
        .await
        .unwrap();
    let used = mint(single()).await.unwrap().token;
    assert!(app.claim("proxy", claim(&used)).await.unwrap().claimed);
    let bound = mint(single()).await.unwrap();
    let audience = mint(single()).await.unwrap();
    let never = tessera::token::Token::generate().into_plaintext();

    let cases = [
        ("never minted", "proxy", never, ""),
        ("revoked", "proxy", revoked, ""),
        ("used up", "proxy", used, ""),
        ("other subject", "proxy", bound.token.clone(), "mallory"),
        ("outside audience", "other", audience.token.clone(), ""),
    ];
    let mut validate_bytes = Vec::new();
    let mut claim_bytes = Vec::new();
    let mut keyed_bytes = Vec::new();
    for (name, client, token, subject) in &cases {
        let k = pb::ClaimRequest {
            subject: subject.to_string(),
            required_scopes: vec!["tool:admin".into()],
            claim_key: "k".into(),
            ..claim(token)
        };
        let k = app.client().claim(app.req(client, k)).await.unwrap();
        let k_meta = headers(k.metadata());
        keyed_bytes.push((name, k.into_inner().encode_to_vec(), k_meta));
        let v = pb::ValidateRequest {
            subject: subject.to_string(),
            ..check(token)
        };
        let v = app.client().validate(app.req(client, v)).await.unwrap();
        let c = pb::ClaimRequest {
            subject: subject.to_string(),
            ..claim(token)
        };
        let c = app.client().claim(app.req(client, c)).await.unwrap();
        let (v_meta, c_meta) = (headers(v.metadata()), headers(c.metadata()));
        validate_bytes.push((name, v.into_inner().encode_to_vec(), v_meta));
        claim_bytes.push((name, c.into_inner().encode_to_vec(), c_meta));
    }
    assert_eq!(keyed_bytes[0].1, claim_bytes[0].1, "keyed or not, the same");
    for list in [&validate_bytes, &claim_bytes, &keyed_bytes] {
        for (name, bytes, meta) in list.iter() {
            assert_eq!(
                (bytes, meta),
                (&list[0].1, &list[0].2),
                "{name} differs from {}",
                list[0].0
            );
        }
    }
    assert_eq!(
        pb::ClaimResponse::decode(&claim_bytes[0].1[..])
            .unwrap()
            .denial,
        Denial::TokenUnknown as i32
    );
    // Expiry comes before scopes, keyed or not.
    let short = pb::MintRequest {
        ttl: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1_000_000,
        }),
        ..single()
    };
    let expired = mint(short).await.unwrap().token;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let keyed = pb::ClaimRequest {
        required_scopes: vec!["tool:admin".into()],
        claim_key: "k".into(),
        ..claim(&expired)
    };
    let answer = app.claim("proxy", keyed).await.unwrap();
    assert_eq!(answer.denial, Denial::TokenExpired as i32);

    // The refused claims consumed nothing: the rightful callers still can.
    let bound_ok = pb::ClaimRequest {
        subject: "alice".into(),
        ..claim(&bound.token)
    };
    assert!(app.claim("proxy", bound_ok).await.unwrap().claimed);
    assert!(
        app.claim("proxy", claim(&audience.token))
            .await
            .unwrap()
            .claimed
    );
}

async fn revoke_by_each_target(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let in_run = |run: &str, subject: &str| pb::MintRequest {
        run_id: run.into(),
        ..mint_req(subject)
    };
    let by_token = app.mint("minter", in_run("r0", "s0")).await.unwrap();
    let by_id = app.mint("minter", in_run("r0", "s0")).await.unwrap();
    let run_a = [
        app.mint("minter", in_run("run-a", "s1")).await.unwrap(),
        app.mint("minter", in_run("run-a", "s2")).await.unwrap(),
        app.mint("minter", in_run("run-a", "s2")).await.unwrap(),
    ];
    let subject_b = [
        app.mint("minter", in_run("r1", "bob")).await.unwrap(),
        app.mint("minter", in_run("r2", "bob")).await.unwrap(),
    ];
    let keep = app.mint("minter", in_run("run-b", "carol")).await.unwrap();

    let count = |r: pb::RevokeResponse| r.revoked;
    let with_reason = |target, reason: pb::RevokeReason| pb::RevokeRequest {
        target: Some(target),
        reason: reason as i32,
    };
    assert_eq!(
        count(
            app.revoke("minter", revoke(Target::Token(by_token.token.clone())))
                .await
                .unwrap()
        ),
        1
    );
    let id = by_id.grant.as_ref().unwrap().grant_id.clone();
    assert_eq!(
        count(
            app.revoke(
                "minter",
                with_reason(Target::GrantId(id.clone()), pb::RevokeReason::Compromised)
            )
            .await
            .unwrap()
        ),
        1
    );
    assert_eq!(
        count(
            app.revoke(
                "minter",
                with_reason(Target::RunId("run-a".into()), pb::RevokeReason::RunEnded)
            )
            .await
            .unwrap()
        ),
        3
    );
    assert_eq!(
        count(
            app.revoke(
                "minter",
                with_reason(
                    Target::Subject("bob".into()),
                    pb::RevokeReason::SubjectDisabled
                )
            )
            .await
            .unwrap()
        ),
        2
    );
    // Again: nothing live is left to revoke.
    assert_eq!(
        count(
            app.revoke("minter", revoke(Target::Token(by_token.token.clone())))
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        count(
            app.revoke("minter", revoke(Target::GrantId(id.clone())))
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        count(
            app.revoke("minter", revoke(Target::RunId("run-a".into())))
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        count(
            app.revoke("minter", revoke(Target::RunId("no-such-run".into())))
                .await
                .unwrap()
        ),
        0
    );

    for minted in [&by_token, &by_id]
        .into_iter()
        .chain(&run_a)
        .chain(&subject_b)
    {
        assert_eq!(
            app.validate("minter", check(&minted.token))
                .await
                .unwrap()
                .denial,
            Denial::TokenUnknown as i32
        );
    }
    assert!(
        app.validate("minter", check(&keep.token))
            .await
            .unwrap()
            .valid
    );

    let grant = app.get("minter", &id).await.unwrap();
    assert!(grant.revoked_at.is_some());
    assert_eq!(grant.revoke_reason, pb::RevokeReason::Compromised as i32);
    let run_grant = app
        .get("minter", &run_a[0].grant.as_ref().unwrap().grant_id)
        .await
        .unwrap();
    assert_eq!(run_grant.revoke_reason, pb::RevokeReason::RunEnded as i32);

    let missing = app
        .revoke(
            "minter",
            revoke(Target::GrantId("grt_0000000000000000000000".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn list_and_get_grants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = pb::MintRequest {
            run_id: "run-x".into(),
            max_uses: 1,
            ..mint_req(&format!("s{i}"))
        };
        ids.push(app.mint("minter", m).await.unwrap());
    }
    app.mint(
        "minter",
        pb::MintRequest {
            run_id: "run-y".into(),
            ..mint_req("s0")
        },
    )
    .await
    .unwrap();
    assert!(
        app.claim("minter", claim(&ids[0].token))
            .await
            .unwrap()
            .claimed
    );
    app.revoke("minter", revoke(Target::Token(ids[1].token.clone())))
        .await
        .unwrap();

    let run_x = |include_inactive, page_size, page_token: &str| pb::ListGrantsRequest {
        run_id: "run-x".into(),
        include_inactive,
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    let live = app.list("minter", run_x(false, 0, "")).await.unwrap();
    assert_eq!(live.active_count, 3);
    let live_ids: Vec<_> = live.grants.iter().map(|g| g.grant_id.clone()).collect();
    let expected: Vec<_> = ids[2..]
        .iter()
        .map(|m| m.grant.as_ref().unwrap().grant_id.clone())
        .collect();
    assert_eq!(live_ids, expected, "live grants, oldest first");
    assert!(live.next_page_token.is_empty());

    // Pages of two over all five, in mint order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app.list("minter", run_x(true, 2, &token)).await.unwrap();
        assert_eq!(page.active_count, 3);
        assert!(page.grants.len() <= 2);
        seen.extend(page.grants.into_iter().map(|g| g.grant_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let all: Vec<_> = ids
        .iter()
        .map(|m| m.grant.as_ref().unwrap().grant_id.clone())
        .collect();
    assert_eq!(seen, all);

    let by_subject = pb::ListGrantsRequest {
        subject: "s0".into(),
        ..Default::default()
    };
    let by_subject = app.list("minter", by_subject).await.unwrap();
    assert_eq!(
        by_subject.active_count, 1,
        "s0's run-x grant is used up; run-y's is live"
    );
    assert_eq!(by_subject.grants.len(), 1);

    let grant = app.get("minter", &all[0]).await.unwrap();
    assert_eq!(grant.use_count, 1);
    for (bad, code) in [
        ("nope", Code::InvalidArgument),
        ("grt_0000000000000000000000", Code::NotFound),
    ] {
        assert_eq!(
            app.get("minter", bad).await.unwrap_err().code(),
            code,
            "{bad}"
        );
    }
    let too_big = pb::ListGrantsRequest {
        page_size: 1001,
        ..Default::default()
    };
    let err = app.list("minter", too_big).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_size: "));
    let bad_token = pb::ListGrantsRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    assert!(
        app.list("minter", bad_token)
            .await
            .unwrap_err()
            .message()
            .starts_with("page_token: ")
    );
}

async fn last_used_at_is_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    let id = minted.grant.unwrap().grant_id;
    let first = app
        .validate("minter", check(&minted.token))
        .await
        .unwrap()
        .grant
        .unwrap();
    let stamped = first.last_used_at.expect("validate records its use");
    // Written off the reply path, within a second.
    eventually("last_used_at is written", async || {
        app.get("minter", &id).await.unwrap().last_used_at == Some(stamped)
    })
    .await;
    // Within a minute, Validate does not write again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.validate("minter", check(&minted.token)).await.unwrap();
    assert_eq!(
        app.get("minter", &id).await.unwrap().last_used_at,
        Some(stamped)
    );
    // Claim always records.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = app
        .claim("minter", claim(&minted.token))
        .await
        .unwrap()
        .grant
        .unwrap();
    let at = claimed.last_used_at.unwrap();
    assert!((at.seconds, at.nanos) > (stamped.seconds, stamped.nanos));
}
