//! Every typed call against a real server.

use std::time::Duration;

use tessera_client::{
    Claim, ClaimOutcome, Client, Consistency, Delegate, Denial, Error, ListGrants, Mint, Revoke,
    RevokeReason, Rotate, Validate, Validation, pb,
};

use crate::support::Server;

fn claimed(outcome: ClaimOutcome) -> tessera_client::Claimed {
    match outcome {
        ClaimOutcome::Claimed(claimed) => claimed,
        ClaimOutcome::Denied(denial) => panic!("claim refused: {denial:?}"),
    }
}

#[tokio::test]
async fn mint_validate_and_a_single_use_claimed_once() {
    let server = Server::start();
    let tessera = server.client().await;
    let minted = tessera
        .mint(
            Mint::new("user-42")
                .scopes(["tool:search", "connector:*"])
                .run_id("run-1")
                .label("project", "p-1")
                .ttl(Duration::from_secs(60))
                .max_uses(1)
                .payload(b"secret-id-7".to_vec()),
        )
        .await
        .unwrap();
    assert!(minted.token.expose().starts_with("tsr_"));
    assert_eq!(minted.grant.subject, "user-42");
    assert_eq!(minted.grant.max_uses, 1);

    for consistency in [Consistency::Full, Consistency::Bounded] {
        let check = tessera
            .validate(
                Validate::new(&minted.token)
                    .scopes(["connector:github"])
                    .subject("user-42")
                    .consistency(consistency),
            )
            .await
            .unwrap();
        assert_eq!(check.grant().unwrap().grant_id, minted.grant.grant_id);
    }
    let missing = tessera
        .validate(Validate::new(&minted.token).scopes(["admin"]))
        .await
        .unwrap();
    assert_eq!(missing, Validation::Denied(Denial::ScopeMissing));

    let first = claimed(
        tessera
            .claim(Claim::new(&minted.token).scopes(["tool:search"]))
            .await
            .unwrap(),
    );
    assert_eq!(first.payload.expose(), b"secret-id-7");
    assert_eq!(first.grant.use_count, 1);
    // A new claim (a new key) finds it used up.
    let second = tessera.claim(Claim::new(&minted.token)).await.unwrap();
    assert_eq!(second, ClaimOutcome::Denied(Denial::TokenUnknown));
    let after = tessera
        .validate(Validate::new(&minted.token))
        .await
        .unwrap();
    assert_eq!(after, Validation::Denied(Denial::TokenUnknown));

    let garbage = tessera.validate(Validate::new("tsr_nope")).await.unwrap();
    assert_eq!(garbage, Validation::Denied(Denial::TokenMalformed));
}

#[tokio::test]
async fn a_retried_claim_with_the_same_key_gets_the_original_answer() {
    let server = Server::start();
    let tessera = server.client().await;
    let minted = tessera
        .mint(Mint::new("u").max_uses(1).payload(b"checkpoint-3".to_vec()))
        .await
        .unwrap();
    // What a retry after a lost reply sends: the same token, the same key.
    let claim = Claim::new(&minted.token).claim_key("call-1");
    let first = claimed(tessera.claim(claim.clone()).await.unwrap());
    let retry = claimed(tessera.claim(claim).await.unwrap());
    assert_eq!(retry.payload.expose(), b"checkpoint-3");
    assert_eq!(retry.grant.use_count, 1);
    assert_eq!(first, retry);
    let grant = tessera.get_grant(&minted.grant.grant_id).await.unwrap();
    assert_eq!(grant.use_count, 1, "the retry consumed nothing");
    // Another key is another claim: the single use is gone.
    let other = tessera
        .claim(Claim::new(&minted.token).claim_key("call-2"))
        .await
        .unwrap();
    assert_eq!(other, ClaimOutcome::Denied(Denial::TokenUnknown));
}

#[tokio::test]
async fn revoke_get_and_list() {
    let server = Server::start();
    let tessera = server.client().await;
    let one = tessera.mint(Mint::new("u").run_id("run-9")).await.unwrap();
    let two = tessera.mint(Mint::new("u").run_id("run-9")).await.unwrap();

    let page = tessera
        .list_grants(ListGrants::new().run_id("run-9").page_size(1))
        .await
        .unwrap();
    assert_eq!(page.grants.len(), 1);
    assert_eq!(page.active_count, 2);
    let rest = tessera
        .list_grants(
            ListGrants::new()
                .run_id("run-9")
                .page_token(page.next_page_token.clone().expect("a second page")),
        )
        .await
        .unwrap();
    assert_eq!(rest.grants.len(), 1);
    assert_eq!(rest.next_page_token, None);

    assert_eq!(tessera.revoke(Revoke::token(&one.token)).await.unwrap(), 1);
    assert_eq!(tessera.revoke(Revoke::token(&one.token)).await.unwrap(), 0);
    let refused = tessera.validate(Validate::new(&one.token)).await.unwrap();
    assert_eq!(refused, Validation::Denied(Denial::TokenUnknown));
    let grant = tessera.get_grant(&one.grant.grant_id).await.unwrap();
    assert!(grant.revoked_at.is_some());
    assert_eq!(grant.revoke_reason(), RevokeReason::Manual);

    let run = Revoke::run("run-9").reason(RevokeReason::RunEnded);
    assert_eq!(tessera.revoke(run).await.unwrap(), 1);
    assert!(
        !tessera
            .validate(Validate::new(&two.token))
            .await
            .unwrap()
            .is_valid()
    );

    let err = tessera.get_grant("grt_0000000000").await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound | Error::InvalidArgument(_)),
        "{err}"
    );
}

#[tokio::test]
async fn rotate_carries_the_payload_to_the_new_token() {
    let server = Server::start();
    let tessera = server.client().await;
    let minted = tessera
        .mint(
            Mint::new("team")
                .scopes(["tool:search"])
                .payload(b"p".to_vec()),
        )
        .await
        .unwrap();
    let rotated = tessera
        .rotate(Rotate::token(&minted.token).ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_ne!(rotated.token, minted.token);
    assert_eq!(rotated.grant.rotated_from, minted.grant.grant_id);
    assert_eq!(rotated.previous.rotated_to, rotated.grant.grant_id);
    assert!(
        !tessera
            .validate(Validate::new(&minted.token))
            .await
            .unwrap()
            .is_valid(),
        "no overlap: the old token is revoked at once"
    );
    let claim = claimed(tessera.claim(Claim::new(&rotated.token)).await.unwrap());
    assert_eq!(claim.payload.expose(), b"p");
    // A grant rotates once.
    let again = tessera.rotate(Rotate::grant(&minted.grant.grant_id)).await;
    assert!(
        matches!(again, Err(Error::FailedPrecondition(_))),
        "{again:?}"
    );

    let with_overlap = tessera.mint(Mint::new("team")).await.unwrap();
    let next = tessera
        .rotate(Rotate::grant(&with_overlap.grant.grant_id).overlap(Duration::from_secs(60)))
        .await
        .unwrap();
    for token in [&with_overlap.token, &next.token] {
        assert!(
            tessera
                .validate(Validate::new(token))
                .await
                .unwrap()
                .is_valid()
        );
    }
}

#[tokio::test]
async fn delegate_narrows_and_follows_its_parent() {
    let server = Server::start();
    let tessera = server.client().await;
    let parent = tessera
        .mint(
            Mint::new("user-42")
                .scopes(["connector:*", "tool:search"])
                .ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let child = tessera
        .delegate(
            Delegate::new(&parent.token)
                .scopes(["connector:github"])
                .ttl(Duration::from_secs(60))
                .max_uses(1)
                .label("agent", "sub-1"),
        )
        .await
        .unwrap();
    assert_eq!(child.grant.parent_grant_id, parent.grant.grant_id);
    assert_eq!(child.grant.depth, 1);
    assert_eq!(child.grant.subject, "user-42");
    let narrower = tessera
        .validate(Validate::new(&child.token).scopes(["tool:search"]))
        .await
        .unwrap();
    assert_eq!(narrower, Validation::Denied(Denial::ScopeMissing));

    let wider = tessera
        .delegate(Delegate::new(&parent.token).scopes(["admin"]))
        .await;
    assert!(matches!(wider, Err(Error::InvalidArgument(_))), "{wider:?}");

    tessera.revoke(Revoke::token(&parent.token)).await.unwrap();
    let orphan = tessera.validate(Validate::new(&child.token)).await.unwrap();
    assert_eq!(orphan, Validation::Denied(Denial::TokenUnknown));
}

#[tokio::test]
async fn debug_never_prints_a_token_a_key_or_a_payload() {
    let (key, entry) = Server::client_key("agent", &["mint", "validate", "claim", "revoke"]);
    let server = Server::start_with(Some(&entry), &[]);
    let tessera = Client::builder(server.url.clone())
        .key(key.clone())
        .connect()
        .await
        .unwrap();
    let minted = tessera
        .mint(Mint::new("u").payload(b"upstream-secret".to_vec()))
        .await
        .unwrap();
    let claim = tessera.claim(Claim::new(&minted.token)).await.unwrap();
    let validation = tessera
        .validate(Validate::new(&minted.token))
        .await
        .unwrap();
    let rotated = tessera.rotate(Rotate::token(&minted.token)).await.unwrap();
    let child = tessera
        .delegate(Delegate::new(&rotated.token))
        .await
        .unwrap();
    let printed = [
        format!("{tessera:?}"),
        format!("{minted:?}"),
        format!("{claim:?}"),
        format!("{validation:?}"),
        format!("{rotated:?}"),
        format!("{child:?}"),
        format!("{:?}", Claim::new(&minted.token).claim_key("k")),
        format!("{:?}", Validate::new(&minted.token)),
        format!("{:?}", Revoke::token(&minted.token)),
        format!("{:?}", Rotate::token(&minted.token)),
        format!(
            "{:?}",
            Delegate::new(&minted.token).payload(b"upstream-secret".to_vec())
        ),
        format!("{:?}", Client::builder(server.url.clone()).key(key.clone())),
        format!("{:?}", tessera.credentials()),
        format!(
            "{:?}",
            pb::MintResponse {
                token: minted.token.expose().to_owned(),
                grant: None,
                revision: String::new(),
            }
        ),
    ];
    let secrets = [
        &minted.token.expose()[4..],
        &rotated.token.expose()[4..],
        &child.token.expose()[4..],
        &key[4..],
        "upstream-secret",
    ];
    for line in &printed {
        for secret in secrets {
            assert!(!line.contains(secret), "{line}");
        }
        assert!(!line.contains("117, 112, 115"), "payload bytes: {line}");
    }

    // The key is what lets this client in.
    let anonymous = Client::connect(server.url.clone()).await.unwrap();
    let err = anonymous.mint(Mint::new("u")).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_after_bounded_retries() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = Client::connect(url.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err}");

    let lazy = Client::builder(url)
        .timeout(Duration::from_secs(5))
        .connect_lazy()
        .unwrap();
    let started = std::time::Instant::now();
    let err = lazy.mint(Mint::new("u")).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { unsent: true, .. }),
        "{err:?}"
    );
    let err = lazy.validate(Validate::new("tsr_x")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
