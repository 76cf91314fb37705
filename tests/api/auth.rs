//! Who may call what: keys, roles, the issuer rule, dev mode.

use tessera::pb::{self, revoke_request::Target};
use tonic::Code;

use crate::support::tls::replace;

use crate::support::{
    Backend, Options, TestApp, check, claim, eventually, keyed, metric, mint_req, revoke,
};

crate::both_backends!(
    keys_and_roles_are_checked_before_anything_else,
    non_admins_see_and_revoke_only_their_own_grants,
    dev_mode_allows_every_call_as_dev,
);

async fn keys_and_roles_are_checked_before_anything_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.mint("minter", mint_req("u")).await.unwrap().token;

    // No key, or a key nobody has: UNAUTHENTICATED, whatever the call.
    let forged = keyed("tsk_NotARealKeyNotARealKey", mint_req("u"));
    let err = app.client().mint(forged).await.unwrap_err();
    assert!(
        !err.message().contains("NotARealKey"),
        "the message never echoes a key"
    );
    assert!(
        err.message().starts_with("not a known client key")
            && err.message().contains("tessera clients add"),
        "{}",
        err.message()
    );
    let forged = keyed("tsk_NotARealKeyNotARealKey", mint_req("u"));
    assert_eq!(
        app.client().mint(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let err = app.mint("", mint_req("u")).await.unwrap_err();
    assert!(
        err.message().starts_with("no client key"),
        "{}",
        err.message()
    );
    assert_eq!(
        app.mint("", mint_req("u")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.validate("", check(&token)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        app.get("", "grt_0000000000000000000000")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let err = app.list("", Default::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A known key without the role: PERMISSION_DENIED, even for a request
    // that is also invalid (the role is checked first).
    let invalid_mint = pb::MintRequest::default();
    let err = app.mint("proxy", invalid_mint).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("mint"), "{}", err.message());
    assert_eq!(
        app.claim("reader", claim(&token)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        app.validate("ops", check(&token)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let r = app
        .revoke("proxy", revoke(Target::Token(token.clone())))
        .await
        .unwrap_err();
    assert_eq!(r.code(), Code::PermissionDenied);
    assert_eq!(
        app.mint("minter", pb::MintRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    // Operator reads need only a key.
    assert!(app.list("reader", Default::default()).await.is_ok());
    // Nothing was consumed or revoked by the refused calls.
    assert!(app.claim("minter", claim(&token)).await.unwrap().claimed);
}

async fn non_admins_see_and_revoke_only_their_own_grants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let in_run = |subject: &str| pb::MintRequest {
        run_id: "shared-run".into(),
        ..mint_req(subject)
    };
    let mine = app.mint("minter", in_run("alice")).await.unwrap();
    let theirs = app.mint("other", in_run("alice")).await.unwrap();
    let my_id = mine.grant.unwrap().grant_id;
    let their_id = theirs.grant.unwrap().grant_id;

    // Another client's grant id does not exist for me.
    assert_eq!(
        app.get("minter", &their_id).await.unwrap_err().code(),
        Code::NotFound
    );
    let err = app
        .revoke("minter", revoke(Target::GrantId(their_id.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = app.list("minter", Default::default()).await.unwrap();
    assert_eq!(listed.grants.len(), 1);
    assert_eq!(listed.grants[0].grant_id, my_id);
    assert_eq!(listed.active_count, 1);
    // A revoke by token I did not issue revokes nothing.
    let by_token = app
        .revoke("minter", revoke(Target::Token(theirs.token.clone())))
        .await
        .unwrap();
    assert_eq!(by_token.revoked, 0);

    // Revoking the shared run or subject touches only my grant.
    let run = app
        .revoke("minter", revoke(Target::RunId("shared-run".into())))
        .await
        .unwrap();
    assert_eq!(run.revoked, 1);
    let subject = app
        .revoke("minter", revoke(Target::Subject("alice".into())))
        .await
        .unwrap();
    assert_eq!(subject.revoked, 0);
    assert!(
        app.validate("other", check(&theirs.token))
            .await
            .unwrap()
            .valid
    );

    // The admin sees and revokes everything.
    assert_eq!(app.get("ops", &their_id).await.unwrap().issued_by, "other");
    let all = pb::ListGrantsRequest {
        include_inactive: true,
        ..Default::default()
    };
    assert_eq!(app.list("ops", all).await.unwrap().grants.len(), 2);
    // `ops` has only the admin role: it may read, but Revoke needs `revoke`.
    let err = app
        .revoke("ops", revoke(Target::Subject("alice".into())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

async fn dev_mode_allows_every_call_as_dev(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            keyed: false,
            ..Options::default()
        },
    )
    .await;
    let minted = app.mint("", mint_req("u")).await.unwrap();
    assert_eq!(minted.grant.unwrap().issued_by, "dev");
    assert!(app.validate("", check(&minted.token)).await.unwrap().valid);
    assert!(app.claim("", claim(&minted.token)).await.unwrap().claimed);
    let revoked = app
        .revoke("", revoke(Target::Token(minted.token)))
        .await
        .unwrap();
    assert_eq!(revoked.revoked, 1);
}

/// The clients file is read again when it changes: a new client is let in
/// on its next call, and a file that does not parse changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_file_is_reloaded_when_it_changes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let path = app.keys.file.path().to_owned();
    let original = std::fs::read_to_string(&path).unwrap();
    let newcomer = tessera::token::ClientKey::generate();
    let entry = format!(
        "[[clients]]\nid = \"newcomer\"\nkey_sha256 = \"{}\"\nroles = [\"mint\"]\n",
        newcomer.sha256_hex()
    );
    let denied = app
        .client()
        .mint(keyed(newcomer.expose(), mint_req("u")))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);

    replace(&path, &format!("{original}\n{entry}"));
    eventually("the newcomer is let in", async || {
        app.client()
            .mint(keyed(newcomer.expose(), mint_req("u")))
            .await
            .is_ok()
    })
    .await;

    // A broken file keeps the clients in force.
    replace(&path, "[[clients]]\nid = ");
    // The server has read the broken file (and kept the clients in force).
    eventually("the broken file is read", async || {
        metric(&app, FAILED_RELOADS).await >= 1
    })
    .await;
    assert!(
        app.client()
            .mint(keyed(newcomer.expose(), mint_req("u")))
            .await
            .is_ok()
    );
    assert!(app.mint("minter", mint_req("u")).await.is_ok());
}

const FAILED_RELOADS: &str = r#"tessera_reloads_total{file="clients",result="failed"} "#;
