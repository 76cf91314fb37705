//! A delegated family against a hostile client: each attack of the second
//! security review (issue 16, finding 1), run as written and refused. A
//! family (a root, its descendants and their rotations) never outlives its
//! members' expiry or scheduled revocation, never takes more uses than its
//! root allows, and revoking any member, live or not, revokes every live
//! descendant, whoever minted it.

use serde_json::Value;
use tessera::pb::{self, revoke_request::Target, rotate_request};
use tonic::Code;

use crate::lineage::{delegate, secs};
use crate::support::{
    Backend, TestApp, check, claim,
    http::{Auth, Version, form, send},
    mint_req, revoke,
};

crate::both_backends!(
    a_child_of_a_rotated_parent_ends_with_its_overlap,
    revoking_either_side_of_a_rotation_reaches_the_children,
    a_used_up_parent_still_revokes_its_children,
    a_family_never_takes_more_uses_than_its_root,
    a_rotated_child_keeps_its_count,
    children_minted_by_another_client_are_revoked_with_the_run,
    a_replayed_parent_revokes_children_minted_by_another_client,
    a_child_cannot_change_its_parents_labels,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A root anyone of the test clients may delegate from and claim.
fn root(max_uses: u32) -> pb::MintRequest {
    pb::MintRequest {
        audience: vec!["minter".into(), "other".into(), "proxy".into()],
        scopes: vec!["tool:*".into()],
        run_id: "run-1".into(),
        max_uses,
        ttl: secs(3600),
        labels: [("tenant".to_owned(), "acme".to_owned())].into(),
        ..mint_req("user-1")
    }
}

fn child_of(token: &str, max_uses: u32) -> pb::DelegateRequest {
    pb::DelegateRequest {
        parent_token: token.to_owned(),
        max_uses,
        ..Default::default()
    }
}

async fn rotate(app: &TestApp, token: &str, overlap: i64) -> pb::RotateResponse {
    let request = pb::RotateRequest {
        target: Some(rotate_request::Target::Token(token.to_owned())),
        overlap: secs(overlap),
        ..Default::default()
    };
    let request = app.req("minter", request);
    app.client().rotate(request).await.unwrap().into_inner()
}

/// POST /oauth2/token, exchanging `token` as `client`.
async fn exchange(app: &TestApp, client: &str, token: &str) -> Value {
    let fields = [
        ("grant_type", EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", ACCESS),
    ];
    let auth = Auth::Basic(client, app.keys.key(client));
    let reply = send(
        app.http_addr,
        None,
        Version::H1,
        form("/oauth2/token", auth, &fields),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn valid(app: &TestApp, token: &str) -> bool {
    app.validate("proxy", check(token)).await.unwrap().valid
}

async fn claimed(app: &TestApp, token: &str) -> bool {
    app.claim("proxy", claim(token)).await.unwrap().claimed
}

fn seconds(at: &Option<prost_types::Timestamp>) -> i64 {
    at.as_ref().unwrap().seconds
}

async fn a_child_of_a_rotated_parent_ends_with_its_overlap(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app.mint("minter", root(0)).await.unwrap();
    // The attack used 2 s; 5 s leaves a busy machine room to
    // delegate and exchange inside the overlap, which is what is tested.
    let rotated = rotate(&app, &parent.token, 5).await;
    let overlap_ends = seconds(&rotated.previous.as_ref().unwrap().revoked_at);

    // During the overlap, from the old token, by Delegate and by exchange.
    let child = delegate(&app, "minter", child_of(&parent.token, 0))
        .await
        .unwrap();
    let child_grant = child.grant.unwrap();
    assert!(
        seconds(&child_grant.expires_at) <= overlap_ends,
        "the child expires with its parent's overlap, not its expiry"
    );
    let exchanged = exchange(&app, "other", &parent.token).await;
    assert!(
        exchanged["expires_in"].as_i64().unwrap() <= 5,
        "{exchanged}"
    );
    let exchanged = exchanged["access_token"].as_str().unwrap().to_owned();

    // A child cannot ask to outlive the overlap either.
    let longer = pb::DelegateRequest {
        ttl: secs(600),
        ..child_of(&parent.token, 0)
    };
    let err = delegate(&app, "minter", longer).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("ttl"), "{err:?}");

    // Once the old token is refused, so is every child it made.
    crate::support::eventually("the overlap ends", async || {
        !valid(&app, &parent.token).await
    })
    .await;
    for token in [&child.token, &exchanged] {
        assert!(!valid(&app, token).await, "a child outlived its parent");
        assert!(!claimed(&app, token).await);
    }
    assert!(valid(&app, &rotated.token).await);
}

async fn revoking_either_side_of_a_rotation_reaches_the_children(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Revoking the old grant by id, during its overlap.
    let parent = app.mint("minter", root(0)).await.unwrap();
    let old_id = parent.grant.unwrap().grant_id;
    let rotated = rotate(&app, &parent.token, 600).await;
    let child = delegate(&app, "minter", child_of(&parent.token, 0))
        .await
        .unwrap();
    let revoked = app
        .revoke("minter", revoke(Target::GrantId(old_id)))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 2, "the old grant and its child");
    assert!(!valid(&app, &child.token).await);
    assert!(
        valid(&app, &rotated.token).await,
        "a successor is not a child"
    );

    // Revoking the successor: the predecessor's overlap and children end.
    let parent = app.mint("minter", root(0)).await.unwrap();
    let rotated = rotate(&app, &parent.token, 600).await;
    let child = delegate(&app, "minter", child_of(&parent.token, 0))
        .await
        .unwrap();
    let revoked = app
        .revoke("minter", revoke(Target::Token(rotated.token.clone())))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 3, "successor, predecessor, child");
    for token in [&parent.token, &rotated.token, &child.token] {
        assert!(!valid(&app, token).await);
    }
}

async fn a_used_up_parent_still_revokes_its_children(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let family = async || {
        let parent = app.mint("minter", root(3)).await.unwrap();
        let child = delegate(&app, "minter", child_of(&parent.token, 1))
            .await
            .unwrap();
        assert!(claimed(&app, &parent.token).await);
        assert!(claimed(&app, &parent.token).await);
        assert!(!claimed(&app, &parent.token).await, "used up");
        (parent, child.token)
    };
    // By grant id, by token, and through RFC 7009.
    let (parent, child) = family().await;
    let id = parent.grant.unwrap().grant_id;
    let revoked = app
        .revoke("minter", revoke(Target::GrantId(id)))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 1, "the live child");
    assert!(!valid(&app, &child).await && !claimed(&app, &child).await);

    let (parent, child) = family().await;
    let revoked = app
        .revoke("minter", revoke(Target::Token(parent.token)))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 1);
    assert!(!valid(&app, &child).await && !claimed(&app, &child).await);

    let (parent, child) = family().await;
    let fields = [("token", parent.token.as_str())];
    let auth = Auth::Basic("minter", app.keys.key("minter"));
    let reply = send(
        app.http_addr,
        None,
        Version::H1,
        form("/oauth2/revoke", auth, &fields),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(!valid(&app, &child).await && !claimed(&app, &child).await);
}

async fn a_family_never_takes_more_uses_than_its_root(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A single-use parent and three single-use children: one use in all.
    let parent = app.mint("minter", root(1)).await.unwrap();
    let mut tokens = vec![parent.token.clone()];
    for _ in 0..3 {
        if let Ok(child) = delegate(&app, "minter", child_of(&parent.token, 1)).await {
            tokens.push(child.token);
        }
    }
    assert_eq!(tokens.len(), 2, "the first child took the parent's one use");
    let mut uses = 0;
    for token in &tokens {
        uses += usize::from(claimed(&app, token).await);
    }
    assert_eq!(uses, 1);

    // A child asking for nothing takes what the parent has left.
    let parent = app.mint("minter", root(4)).await.unwrap();
    assert!(claimed(&app, &parent.token).await);
    let child = delegate(&app, "minter", child_of(&parent.token, 0))
        .await
        .unwrap();
    assert_eq!(child.grant.unwrap().max_uses, 3);
    assert!(
        !valid(&app, &parent.token).await,
        "its uses are the child's"
    );
    let mut uses = 0;
    for _ in 0..5 {
        uses += usize::from(claimed(&app, &child.token).await);
    }
    assert_eq!(uses, 3);
}

async fn a_rotated_child_keeps_its_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app.mint("minter", root(4)).await.unwrap();
    let child = delegate(&app, "minter", child_of(&parent.token, 2))
        .await
        .unwrap();
    assert!(claimed(&app, &child.token).await);
    let rotated = rotate(&app, &child.token, 60).await;
    let successor = rotated.grant.unwrap();
    assert_eq!((successor.max_uses, successor.use_count), (2, 1));
    let previous = rotated.previous.unwrap();
    assert_eq!(previous.use_count, previous.max_uses, "its rest went on");

    // Five tries on each of the old child, its successor and the parent.
    let mut uses = 0;
    for token in [&child.token, &rotated.token, &parent.token] {
        for _ in 0..5 {
            uses += usize::from(claimed(&app, token).await);
        }
    }
    assert_eq!(uses, 3, "four uses in all, one taken before the rotation");
}

async fn children_minted_by_another_client_are_revoked_with_the_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for target in [
        Target::RunId("run-1".into()),
        Target::Subject("user-1".into()),
    ] {
        let parent = app.mint("minter", root(2)).await.unwrap();
        // `other` exchanges the parent: the child is `other`'s, and takes
        // both uses, so the parent is used up.
        let child = exchange(&app, "other", &parent.token).await;
        let child = child["access_token"].as_str().unwrap().to_owned();
        assert!(!valid(&app, &parent.token).await && valid(&app, &child).await);
        let revoked = app.revoke("minter", revoke(target)).await.unwrap();
        assert_eq!(revoked.revoked, 1, "the other client's child");
        assert!(!valid(&app, &child).await && !claimed(&app, &child).await);
    }
}

async fn a_replayed_parent_revokes_children_minted_by_another_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = pb::MintRequest {
        revoke_run_on_replay: true,
        ..root(1)
    };
    let parent = app.mint("minter", parent).await.unwrap();
    let child = exchange(&app, "other", &parent.token).await;
    let child = child["access_token"].as_str().unwrap().to_owned();
    // The parent, used up by its child, presented again: a replay.
    assert!(!claimed(&app, &parent.token).await);
    crate::support::eventually("the replay revokes the run", async || {
        !valid(&app, &child).await
    })
    .await;
    assert!(!claimed(&app, &child).await);
}

async fn a_child_cannot_change_its_parents_labels(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let parent = app.mint("minter", root(0)).await.unwrap();
    let before = app.count_all().await;
    let relabel = pb::DelegateRequest {
        labels: [("tenant".to_owned(), "evil-corp".to_owned())].into(),
        ..child_of(&parent.token, 0)
    };
    let err = delegate(&app, "minter", relabel).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("labels"), "{err:?}");
    assert!(err.message().contains("tenant"), "{err:?}");
    assert_eq!(app.count_all().await, before, "nothing written");

    // The same value, and keys of its own, are fine.
    let adds = pb::DelegateRequest {
        labels: [
            ("tenant".to_owned(), "acme".to_owned()),
            ("agent".to_owned(), "sub-1".to_owned()),
        ]
        .into(),
        ..child_of(&parent.token, 0)
    };
    let child = delegate(&app, "minter", adds).await.unwrap().grant.unwrap();
    assert_eq!(child.labels["tenant"], "acme");
    assert_eq!(child.labels["agent"], "sub-1");
}
