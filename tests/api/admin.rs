//! The `admin` role is not a way around the `credentials` role: no path
//! hands a stored secret to a caller its owner did not mint for (issue 16,
//! finding 2).

use tessera::pb::{self, rotate_request::Target};
use tonic::Code;

use crate::{
    credentials::{ACCESS, put, secret, spawn},
    support::{Backend, claim, mint_req},
};

crate::both_backends!(an_admin_cannot_rotate_its_way_to_a_stored_secret);

async fn an_admin_cannot_rotate_its_way_to_a_stored_secret(backend: Backend) {
    let (app, _key) = spawn(backend).await;
    // Client A stores a credential and mints a grant that hands it over.
    app.credentials()
        .put(app.req("minter", put("bearer-1", ACCESS, None)))
        .await
        .unwrap();
    let mint = pb::MintRequest {
        max_uses: 1,
        payload_credential: Some(pb::CredentialRef {
            bearer_id: "bearer-1".into(),
            name: "github".into(),
        }),
        ..mint_req("bearer-1")
    };
    let minted = app.mint("minter", mint).await.unwrap();
    let grant_id = minted.grant.unwrap().grant_id;

    // Client B (admin, mint, claim; no credentials) rotates it, by id and
    // by token, to claim the successor: refused, and nothing changed.
    for target in [
        Target::GrantId(grant_id.clone()),
        Target::Token(minted.token.clone()),
    ] {
        let rotate = pb::RotateRequest {
            target: Some(target),
            ..Default::default()
        };
        let err = app
            .client()
            .rotate(app.req("root", rotate))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("stored credential"), "{err:?}");
    }
    let grant = app.get("root", &grant_id).await.unwrap();
    assert_eq!((grant.rotated_to.as_str(), grant.revoked_at), ("", None));
    // B reading the credential directly is refused too.
    let get = crate::credentials::get("bearer-1");
    let err = app
        .credentials()
        .get(app.req("root", get))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Its owner may rotate it, and the successor's claim hands the secret
    // to the audience A chose.
    let rotate = pb::RotateRequest {
        target: Some(Target::GrantId(grant_id)),
        ..Default::default()
    };
    let rotated = app
        .client()
        .rotate(app.req("minter", rotate))
        .await
        .unwrap()
        .into_inner();
    let claimed = app.claim("proxy", claim(&rotated.token)).await.unwrap();
    assert_eq!(claimed.credential, secret(ACCESS));
}
