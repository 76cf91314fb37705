//! Rotate and Delegate end to end: successors with an overlap, sub-agent
//! tokens that never exceed their parent, and revocation down the tree.

use std::time::Duration;

use tessera::pb::{self, revoke_request, rotate_request};
use tonic::Code;

use crate::support::{Backend, TestApp, check, claim, mint_req, revoke};

crate::both_backends!(
    rotation_by_token_keeps_the_payload_and_honours_the_overlap,
    rotation_by_id_and_who_may_rotate,
    one_rotation_wins_a_race,
    a_delegated_token_never_exceeds_its_parent,
    a_parent_that_is_not_yours_to_use_is_unknown,
    revoking_or_rotating_a_parent_revokes_its_descendants,
    delegation_depth_is_bounded,
);

pub(crate) fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

async fn rotate(
    app: &TestApp,
    client: &str,
    request: pb::RotateRequest,
) -> Result<pb::RotateResponse, tonic::Status> {
    let request = app.req(client, request);
    app.client().rotate(request).await.map(|r| r.into_inner())
}

pub(crate) async fn delegate(
    app: &TestApp,
    client: &str,
    request: pb::DelegateRequest,
) -> Result<pb::DelegateResponse, tonic::Status> {
    let request = app.req(client, request);
    app.client().delegate(request).await.map(|r| r.into_inner())
}

fn by_token(token: &str) -> pb::RotateRequest {
    pb::RotateRequest {
        target: Some(rotate_request::Target::Token(token.to_owned())),
        ..Default::default()
    }
}

fn by_id(grant_id: &str) -> pb::RotateRequest {
    pb::RotateRequest {
        target: Some(rotate_request::Target::GrantId(grant_id.to_owned())),
        ..Default::default()
    }
}

async fn valid(app: &TestApp, token: &str) -> bool {
    app.validate("proxy", check(token)).await.unwrap().valid
}

async fn rotation_by_token_keeps_the_payload_and_honours_the_overlap(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app
        .mint(
            "minter",
            pb::MintRequest {
                audience: vec!["proxy".into()],
                scopes: vec!["library:docs".into()],
                labels: [("team".to_owned(), "ml".to_owned())].into(),
                payload: b"team-secret-ref".to_vec(),
                // Unlimited, as team tokens are: a grant with a use limit
                // hands its remaining uses to its successor and is used up
                // at once (`a_family_never_takes_more_uses_than_its_root`).
                max_uses: 0,
                ttl: secs(60),
                ..mint_req("team-7")
            },
        )
        .await
        .unwrap();
    let old = team.grant.unwrap();
    app.claim("proxy", claim(&team.token)).await.unwrap();

    // The overlap is slack for the three calls that must come inside it on
    // a busy machine.
    let overlap = Duration::from_secs(5);
    let rotated = rotate(
        &app,
        "minter",
        pb::RotateRequest {
            overlap: secs(5),
            ..by_token(&team.token)
        },
    )
    .await
    .unwrap();
    let rotated_at = std::time::Instant::now();
    let (new, previous) = (rotated.grant.unwrap(), rotated.previous.unwrap());
    assert_ne!(rotated.token, team.token);
    assert_eq!(new.rotated_from, old.grant_id);
    assert_eq!(previous.rotated_to, new.grant_id);
    assert_eq!(previous.revoke_reason, pb::RevokeReason::Rotated as i32);
    assert_eq!(
        (&new.subject, &new.audience, &new.scopes, &new.labels),
        (&old.subject, &old.audience, &old.scopes, &old.labels)
    );
    assert_eq!((new.max_uses, new.use_count), (0, 1), "its uses so far");
    let lifetime = |g: &pb::Grant| g.expires_at.unwrap().seconds - g.issued_at.unwrap().seconds;
    assert!((lifetime(&new) - 60).abs() <= 1, "{}", lifetime(&new));

    // Both tokens work during the overlap; the successor carries the payload.
    assert!(valid(&app, &team.token).await && valid(&app, &rotated.token).await);
    let claimed = app.claim("proxy", claim(&rotated.token)).await.unwrap();
    assert_eq!(claimed.payload, b"team-secret-ref");
    // The overlap ran from before the answer came.
    tokio::time::sleep_until((rotated_at + overlap + Duration::from_millis(100)).into()).await;
    let after = app.validate("proxy", check(&team.token)).await.unwrap();
    assert_eq!(after.denial, pb::Denial::TokenUnknown as i32);
    assert!(valid(&app, &rotated.token).await);

    // A grant is rotated once.
    let again = rotate(&app, "minter", by_id(&old.grant_id))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
}

async fn rotation_by_id_and_who_may_rotate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let plain = app.mint("minter", mint_req("u")).await.unwrap();
    let id = plain.grant.unwrap().grant_id;
    // Another issuer's grant is not found; a client without `mint` is denied.
    let err = rotate(&app, "other", by_id(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = rotate(&app, "other", by_token(&plain.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = rotate(&app, "reader", by_id(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // No overlap: the old token stops at once.
    let rotated = rotate(&app, "minter", by_id(&id)).await.unwrap();
    assert!(!valid(&app, &plain.token).await);
    assert!(valid(&app, &rotated.token).await);

    // A payload is sealed under its token: rotating by id cannot carry it.
    let with_payload = pb::MintRequest {
        payload: b"p".to_vec(),
        ..mint_req("u")
    };
    let sealed = app.mint("minter", with_payload).await.unwrap();
    let err = rotate(&app, "minter", by_id(&sealed.grant.unwrap().grant_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("rotate it by token"), "{err:?}");
    assert!(valid(&app, &sealed.token).await, "nothing changed");

    let bad = pb::RotateRequest {
        overlap: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..by_id(&id)
    };
    let err = rotate(&app, "minter", bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("overlap"), "{err:?}");
    let err = rotate(&app, "minter", pb::RotateRequest::default())
        .await
        .unwrap_err();
    assert!(err.message().starts_with("target"), "{err:?}");
}

async fn one_rotation_wins_a_race(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    let id = minted.grant.unwrap().grant_id;
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move { rotate(&app, "minter", by_id(&id)).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => won += 1,
            Err(err) => assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}"),
        }
    }
    assert_eq!(won, 1);
}

fn parent_request() -> pb::MintRequest {
    pb::MintRequest {
        audience: vec!["minter".into(), "proxy".into()],
        scopes: vec!["connector:*".into(), "tool:search".into()],
        run_id: "run-9".into(),
        max_uses: 5,
        ttl: secs(120),
        labels: [("project".to_owned(), "p-1".to_owned())].into(),
        ..mint_req("user-42")
    }
}

async fn a_delegated_token_never_exceeds_its_parent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app.mint("minter", parent_request()).await.unwrap();
    let parent_grant = parent.grant.unwrap();
    let child = delegate(
        &app,
        "minter",
        pb::DelegateRequest {
            parent_token: parent.token.clone(),
            scopes: vec!["connector:github".into()],
            audience: vec!["proxy".into()],
            max_uses: 2,
            ttl: secs(30),
            labels: [("agent".to_owned(), "sub-1".to_owned())].into(),
            payload: b"checkpoint".to_vec(),
        },
    )
    .await
    .unwrap();
    let grant = child.grant.unwrap();
    assert_eq!(grant.parent_grant_id, parent_grant.grant_id);
    assert_eq!((grant.depth, grant.max_uses), (1, 2));
    assert_eq!(
        (&grant.subject[..], &grant.run_id[..]),
        ("user-42", "run-9")
    );
    assert_eq!(grant.labels.len(), 2, "the parent's labels and its own");
    let ok = pb::ValidateRequest {
        required_scopes: vec!["connector:github".into()],
        ..check(&child.token)
    };
    assert!(app.validate("proxy", ok).await.unwrap().valid);
    let wider = pb::ValidateRequest {
        required_scopes: vec!["tool:search".into()],
        ..check(&child.token)
    };
    let denied = app.validate("proxy", wider).await.unwrap();
    assert_eq!(denied.denial, pb::Denial::ScopeMissing as i32);
    assert_eq!(
        app.claim("proxy", claim(&child.token))
            .await
            .unwrap()
            .payload,
        b"checkpoint"
    );

    // Asking for more than the parent has: INVALID_ARGUMENT naming the
    // field, and nothing written.
    let asks = [
        (
            "scopes",
            pb::DelegateRequest {
                scopes: vec!["tool:*".into()],
                ..Default::default()
            },
        ),
        (
            "scopes",
            pb::DelegateRequest {
                scopes: vec!["admin".into()],
                ..Default::default()
            },
        ),
        (
            "audience",
            pb::DelegateRequest {
                audience: vec!["reader".into()],
                ..Default::default()
            },
        ),
        (
            "max_uses",
            pb::DelegateRequest {
                max_uses: 6,
                ..Default::default()
            },
        ),
        (
            "ttl",
            pb::DelegateRequest {
                ttl: secs(3600),
                ..Default::default()
            },
        ),
    ];
    for (field, ask) in asks {
        let ask = pb::DelegateRequest {
            parent_token: parent.token.clone(),
            ..ask
        };
        let err = delegate(&app, "minter", ask).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }
    let all = pb::ListGrantsRequest {
        run_id: "run-9".into(),
        include_inactive: true,
        ..Default::default()
    };
    let listed = app
        .client()
        .list_grants(app.req("minter", all))
        .await
        .unwrap();
    assert_eq!(
        listed.into_inner().grants.len(),
        2,
        "parent and one child only"
    );

    // Without a ttl the child lives exactly as long as its parent.
    let whole = pb::DelegateRequest {
        parent_token: parent.token.clone(),
        ..Default::default()
    };
    let whole = delegate(&app, "minter", whole)
        .await
        .unwrap()
        .grant
        .unwrap();
    assert_eq!(whole.expires_at, parent_grant.expires_at);
    assert_eq!(whole.scopes, parent_grant.scopes);
}

async fn a_parent_that_is_not_yours_to_use_is_unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app.mint("minter", parent_request()).await.unwrap();
    let revoked = app.mint("minter", parent_request()).await.unwrap();
    app.revoke(
        "minter",
        revoke(revoke_request::Target::Token(revoked.token.clone())),
    )
    .await
    .unwrap();
    let never = tessera::token::Token::generate().expose().to_owned();
    let ask = |token: &str| pb::DelegateRequest {
        parent_token: token.to_owned(),
        ..Default::default()
    };
    let mut answers = Vec::new();
    // `other` may mint but is not in the parent's audience.
    for (client, token) in [
        ("other", &parent.token),
        ("minter", &revoked.token),
        ("minter", &never),
    ] {
        let err = delegate(&app, client, ask(token)).await.unwrap_err();
        answers.push((err.code(), err.message().to_owned()));
    }
    assert_eq!(answers[0].0, Code::NotFound);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
}

async fn revoking_or_rotating_a_parent_revokes_its_descendants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let family = async |app: &TestApp| {
        let root = app.mint("minter", parent_request()).await.unwrap();
        // Each takes some of its parent's uses and leaves it live.
        let ask = |token: &str, max_uses| pb::DelegateRequest {
            parent_token: token.to_owned(),
            max_uses,
            ..Default::default()
        };
        let child = delegate(app, "minter", ask(&root.token, 3)).await.unwrap();
        let grandchild = delegate(app, "minter", ask(&child.token, 1)).await.unwrap();
        assert_eq!(grandchild.grant.as_ref().unwrap().depth, 2);
        (root, child.token, grandchild.token)
    };
    let (root, child, grandchild) = family(&app).await;
    let revoked = app
        .revoke(
            "minter",
            revoke(revoke_request::Target::Token(root.token.clone())),
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 3);
    for token in [&root.token, &child, &grandchild] {
        assert!(!valid(&app, token).await);
    }

    let (root, child, grandchild) = family(&app).await;
    let rotated = rotate(&app, "minter", by_token(&root.token)).await.unwrap();
    for token in [&root.token, &child, &grandchild] {
        assert!(!valid(&app, token).await);
    }
    assert!(valid(&app, &rotated.token).await);
    let id = rotated.grant.unwrap().grant_id;
    let got = app
        .client()
        .get_grant(app.req("minter", pb::GetGrantRequest { grant_id: id }))
        .await;
    assert_eq!(got.unwrap().into_inner().grant.unwrap().parent_grant_id, "");
}

async fn delegation_depth_is_bounded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut token = app.mint("minter", parent_request()).await.unwrap().token;
    for depth in 1..=4 {
        let ask = pb::DelegateRequest {
            parent_token: token.clone(),
            ..Default::default()
        };
        let child = delegate(&app, "minter", ask).await.unwrap();
        assert_eq!(child.grant.unwrap().depth, depth);
        token = child.token;
    }
    let ask = pb::DelegateRequest {
        parent_token: token,
        ..Default::default()
    };
    let err = delegate(&app, "minter", ask).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

/// A delegation racing its parent's revocation: either the child is made
/// first and revoked with it, or the parent is gone and no child is made.
/// No live child survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_outlives_a_racing_revoke() {
    let app = std::sync::Arc::new(TestApp::spawn(Backend::Postgres).await);
    for round in 0..5 {
        let parent = app.mint("minter", parent_request()).await.unwrap().token;
        let children: Vec<_> = (0..12)
            .map(|_| {
                let (app, parent) = (app.clone(), parent.clone());
                tokio::spawn(async move {
                    let ask = pb::DelegateRequest {
                        parent_token: parent,
                        ..Default::default()
                    };
                    delegate(&app, "minter", ask).await.ok().map(|c| c.token)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(round)).await;
        app.revoke("minter", revoke(revoke_request::Target::Token(parent)))
            .await
            .unwrap();
        for child in children {
            if let Some(token) = child.await.unwrap() {
                assert!(!valid(&app, &token).await, "a child outlived its parent");
            }
        }
    }
}
