//! JSON logs are typed JSON: every line an object, strings plain, labels an
//! object, counts numbers, reasons by name; replays counted per grant.

use std::collections::HashMap;

use serde_json::{Value, json};
use tessera::pb::{self, revoke_request::Target, token_authority_client::TokenAuthorityClient};
use tonic::transport::Channel;

use crate::{
    secrets::{PAYLOAD, assert_secret_free},
    support::{
        Backend, Keys, Process, TestDb, channel, check, claim, eventually, keyed, mint_req, revoke,
    },
};

/// A full cycle through the real binary at `trace`: every line of its
/// output parses as a JSON object, the audit events' fields are typed, and
/// no line holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_of_a_full_cycle_is_typed_json() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let server = Process::spawn(db.url(), keys.file.path(), "trace").await;
    let mut client = TokenAuthorityClient::new(channel(server.addr).await);
    let labels = HashMap::from([
        ("env".to_owned(), "prod \"eu\"".to_owned()),
        ("team".to_owned(), "ml".to_owned()),
    ]);
    let spent = pb::MintRequest {
        run_id: "run-1".into(),
        labels: labels.clone(),
        scopes: vec!["tool:search".into()],
        max_uses: 1,
        payload: PAYLOAD.to_vec(),
        ..mint_req("u")
    };
    let spent = mint(&mut client, &keys, spent).await;
    let proxy = keys.key("proxy");
    let valid = client.validate(keyed(proxy, check(&spent.token))).await;
    assert!(valid.unwrap().into_inner().valid);
    let unscoped = pb::ValidateRequest {
        required_scopes: vec!["tool:admin".into()],
        ..check(&spent.token)
    };
    let unscoped = client.validate(keyed(proxy, unscoped)).await.unwrap();
    assert!(!unscoped.into_inner().valid);
    let claimed = client.claim(keyed(proxy, claim(&spent.token))).await;
    assert_eq!(claimed.unwrap().into_inner().payload, PAYLOAD);
    let replayed = client.claim(keyed(proxy, claim(&spent.token))).await;
    assert!(!replayed.unwrap().into_inner().claimed);
    // The rest of the run ends; a token is revoked, then presented again.
    let in_run = pb::MintRequest {
        run_id: "run-1".into(),
        ..mint_req("u")
    };
    mint(&mut client, &keys, in_run).await;
    let by_run = revoke(Target::RunId("run-1".into()));
    let by_run = pb::RevokeRequest {
        reason: pb::RevokeReason::RunEnded as i32,
        ..by_run
    };
    let minter = keys.key("minter");
    assert_eq!(
        client
            .revoke(keyed(minter, by_run))
            .await
            .unwrap()
            .into_inner()
            .revoked,
        1
    );
    let revoked = mint(&mut client, &keys, mint_req("u")).await;
    let by_token = revoke(Target::Token(revoked.token.clone()));
    assert_eq!(
        client
            .revoke(keyed(minter, by_token))
            .await
            .unwrap()
            .into_inner()
            .revoked,
        1
    );
    let replayed = client.validate(keyed(proxy, check(&revoked.token))).await;
    assert!(!replayed.unwrap().into_inner().valid);
    let forged = keyed("tsk_ForgedKeyForgedKeyForgedKey", check(&spent.token));
    assert!(client.validate(forged).await.is_err());
    // Replays are logged after the reply.
    eventually("both replays logged", async || {
        audit(&server.log.lock().unwrap())
            .iter()
            .filter(|e| e["event"] == "replay")
            .count()
            == 2
    })
    .await;

    let log = server.terminate().await;
    let lines: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for (line, parsed) in log.iter().zip(&lines) {
        assert!(parsed.is_object(), "not an object: {line}");
        for key in ["timestamp", "level", "target"] {
            assert!(parsed[key].is_string(), "no {key}: {line}");
        }
    }
    // One access line per call: at debug when served, at info when refused.
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tessera::access" && l["interface"] == "grpc")
        .filter(|l| !l["method"].as_str().unwrap().starts_with("Health"))
        .collect();
    assert_eq!(access.len(), 11, "{access:#?}");
    for line in &access {
        assert!(line["latency_us"].is_u64(), "{line}");
        assert!(
            line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        let refused = line["code"] == "UNAUTHENTICATED";
        assert_eq!(
            line["level"],
            if refused { "INFO" } else { "DEBUG" },
            "{line}"
        );
        let client = line["client"].as_str().unwrap();
        assert!(refused == client.is_empty(), "{line}");
    }
    let methods: Vec<&str> = access
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    for method in ["Mint", "Validate", "Claim", "Revoke"] {
        assert!(methods.contains(&method), "{methods:?}");
    }
    assert_eq!(access.iter().filter(|l| l["code"] == "OK").count(), 10);
    assert!(
        access
            .iter()
            .any(|l| l["client"] == "proxy" && l["method"] == "Claim")
    );

    let audit = audit(&log);
    let one = |event: &str, grant: &pb::MintResponse, extra: &dyn Fn(&Value) -> bool| {
        let grant_id = grant_id(grant);
        let found: Vec<_> = audit
            .iter()
            .filter(|e| e["event"] == event && e["grant_id"] == grant_id && extra(e))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {event} event of {grant_id}: {audit:#?}"
        );
        found[0].clone()
    };
    let minted = one("mint", &spent, &|_| true);
    assert_eq!(minted["labels"], json!(labels));
    assert_eq!(minted["subject"], "u");
    assert_eq!(minted["run_id"], "run-1");
    assert_eq!(minted["client"], "minter");
    assert_eq!(minted["max_uses"], 1);
    assert!(minted["ttl_ms"].is_u64(), "{minted}");
    let claim = one("claim", &spent, &|e| e["outcome"] == "claimed");
    assert_eq!(
        (&claim["use_count"], &claim["labels"]),
        (&json!(1), &json!(labels))
    );
    let refused = |e: &Value| e["outcome"] == "refused";
    let unscoped = one("validate", &spent, &refused);
    assert_eq!(unscoped["denial"], "SCOPE_MISSING");
    assert!(unscoped.get("why").is_none(), "{unscoped}");
    let used_up = one("claim", &spent, &refused);
    assert_eq!(
        (&used_up["denial"], &used_up["why"]),
        (&json!("TOKEN_UNKNOWN"), &json!("USED_UP"))
    );
    let dead = one("validate", &revoked, &refused);
    assert_eq!(
        (&dead["denial"], &dead["why"]),
        (&json!("TOKEN_UNKNOWN"), &json!("REVOKED"))
    );
    for grant in [&spent, &revoked] {
        let replay = one("replay", grant, &|_| true);
        assert_eq!(replay["replays"], 1, "{replay}");
        assert_eq!(replay["token_mac"], minted_mac(&audit, grant));
    }
    let revokes: Vec<_> = audit.iter().filter(|e| e["event"] == "revoke").collect();
    let [run, token] = &revokes[..] else {
        panic!("two revokes: {revokes:#?}")
    };
    assert_eq!(
        (
            &run["target_kind"],
            &run["target_id"],
            &run["reason"],
            &run["revoked"]
        ),
        (
            &json!("run_id"),
            &json!("run-1"),
            &json!("RUN_ENDED"),
            &json!(1)
        )
    );
    assert_eq!(
        (&token["target_kind"], &token["reason"]),
        (&json!("token"), &json!("MANUAL"))
    );
    assert!(token.get("target_id").is_none(), "{token}");
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "authenticate" && e["outcome"] == "refused"),
        "{audit:#?}"
    );

    let log = log.join("\n");
    let mut keys = keys.all();
    keys.push("tsk_ForgedKeyForgedKeyForgedKey".into());
    assert_secret_free(log.as_bytes(), &spent.token, &keys);
    assert_secret_free(log.as_bytes(), &revoked.token, &keys);
}

/// The replay count is the grant's, kept in the database: two replays of
/// one grant on two replicas log 1 then 2; a replay of another grant logs 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_counted_per_grant_across_replicas() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let first = Process::spawn(db.url(), keys.file.path(), "info").await;
    let second = Process::spawn(db.url(), keys.file.path(), "info").await;
    let mut client = TokenAuthorityClient::new(channel(first.addr).await);
    let single = pb::MintRequest {
        max_uses: 1,
        ..mint_req("u")
    };
    let once = mint(&mut client, &keys, single.clone()).await;
    let other = mint(&mut client, &keys, single).await;
    let proxy = keys.key("proxy");
    for grant in [&once, &other] {
        let claimed = client
            .claim(keyed(proxy, claim(&grant.token)))
            .await
            .unwrap();
        assert!(claimed.into_inner().claimed);
    }
    let replays = async |server: &Process, grant: &pb::MintResponse, count: usize| {
        let mut client = TokenAuthorityClient::new(channel(server.addr).await);
        let replayed = client.claim(keyed(proxy, claim(&grant.token))).await;
        assert!(!replayed.unwrap().into_inner().claimed);
        let grant_id = grant_id(grant);
        let mut logged = Vec::new();
        eventually("the replay logged", async || {
            logged = audit(&server.log.lock().unwrap())
                .into_iter()
                .filter(|e| e["event"] == "replay" && e["grant_id"] == grant_id)
                .map(|e| e["replays"].clone())
                .collect();
            logged.len() == count
        })
        .await;
        logged
    };
    assert_eq!(replays(&first, &once, 1).await, [1]);
    assert_eq!(replays(&second, &once, 1).await, [2]);
    assert_eq!(replays(&second, &other, 1).await, [1]);
    first.terminate().await;
    second.terminate().await;
}

async fn mint(
    client: &mut TokenAuthorityClient<Channel>,
    keys: &Keys,
    request: pb::MintRequest,
) -> pb::MintResponse {
    let minted = client.mint(keyed(keys.key("minter"), request)).await;
    minted.unwrap().into_inner()
}

fn grant_id(minted: &pb::MintResponse) -> &str {
    &minted.grant.as_ref().unwrap().grant_id
}

/// The audit events among JSON log lines.
fn audit(log: &[String]) -> Vec<Value> {
    log.iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|e: &Value| e["target"] == "tessera::audit")
        .collect()
}

/// The token MAC of a grant's mint event.
fn minted_mac(audit: &[Value], grant: &pb::MintResponse) -> Value {
    let grant_id = grant_id(grant);
    let minted = audit
        .iter()
        .find(|e| e["event"] == "mint" && e["grant_id"] == grant_id);
    minted.expect("a mint event")["token_mac"].clone()
}
