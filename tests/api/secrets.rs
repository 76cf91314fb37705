//! Tokens, client keys and payloads never reach a log line or the database.

use crate::support::{
    Backend, Keys, Process, TestApp, TestDb, channel, check, claim, keyed, mint_req, revoke,
};
use tessera::pb::{self, revoke_request::Target, token_authority_client::TokenAuthorityClient};

crate::both_backends!(the_database_holds_no_token_and_no_payload);

/// The SQLite database, and the WAL and shared-memory files beside it, are
/// readable and writable by the server's user only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let minted = app.mint("minter", mint_req("u")).await.unwrap();
    assert!(
        app.validate("minter", check(&minted.token))
            .await
            .unwrap()
            .valid
    );
    let path = app.db.url().trim_start_matches("sqlite://").to_owned();
    for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}: {:o}", mode & 0o777);
    }
}

pub(crate) const PAYLOAD: &[u8] = b"sk-live-UPSTREAM-SECRET-0042";

async fn the_database_holds_no_token_and_no_payload(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minted = app
        .mint(
            "minter",
            pb::MintRequest {
                payload: PAYLOAD.to_vec(),
                max_uses: 2,
                ..mint_req("u")
            },
        )
        .await
        .unwrap();
    let claimed = app.claim("minter", claim(&minted.token)).await.unwrap();
    assert_eq!(claimed.payload, PAYLOAD);
    let rows = app.db.dump().await;
    assert_eq!(rows.len(), 1);
    assert_secret_free(&rows[0], &minted.token, &app.keys.all());
    // Sanity: the dump does hold the grant.
    let id = minted.grant.unwrap().grant_id;
    assert!(rows[0].windows(id.len()).any(|w| w == id.as_bytes()));
}

pub(crate) fn assert_secret_free(haystack: &[u8], token: &str, keys: &[String]) {
    let contains = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    // The hint (first 8 characters) is public; the rest of the token is not.
    assert!(!contains(&token.as_bytes()[8..]), "token found");
    assert!(!contains(&PAYLOAD[..16]), "payload found");
    assert!(
        !contains(hex::encode(PAYLOAD).as_bytes()),
        "payload (hex) found"
    );
    for key in keys {
        assert!(!contains(&key.as_bytes()[4..]), "client key found");
    }
}

/// A full mint / validate / claim / revoke cycle at the most verbose log
/// level, through the real binary: no log line holds a token, a key or the
/// payload, in any encoding a log might use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_full_cycle_hold_no_secret() {
    let db = TestDb::new(Backend::Postgres).await;
    let keys = Keys::new();
    let server = Process::spawn(db.url(), keys.file.path(), "trace").await;
    let mut client = TokenAuthorityClient::new(channel(server.addr).await);
    let minted = client
        .mint(keyed(
            keys.key("minter"),
            pb::MintRequest {
                payload: PAYLOAD.to_vec(),
                max_uses: 1,
                ..mint_req("u")
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let token = minted.token.clone();
    client
        .validate(keyed(keys.key("proxy"), check(&token)))
        .await
        .unwrap();
    let claimed = client
        .claim(keyed(keys.key("proxy"), claim(&token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.payload, PAYLOAD);
    client
        .claim(keyed(keys.key("proxy"), claim(&token)))
        .await
        .unwrap(); // a replay, denied
    client
        .revoke(keyed(
            keys.key("minter"),
            revoke(Target::Token(token.clone())),
        ))
        .await
        .unwrap();
    client
        .validate(keyed(keys.key("proxy"), check("tsr_garbage")))
        .await
        .unwrap();
    // Refusals of a real grant: another subject's, and outside the audience.
    let bound = pb::MintRequest {
        payload: PAYLOAD.to_vec(),
        audience: vec!["proxy".into()],
        ..mint_req("alice")
    };
    let bound = client.mint(keyed(keys.key("minter"), bound)).await.unwrap();
    let bound = bound.into_inner().token;
    let foreign = pb::ClaimRequest {
        subject: "mallory".into(),
        ..claim(&bound)
    };
    let refused = client
        .claim(keyed(keys.key("proxy"), foreign))
        .await
        .unwrap();
    assert!(!refused.into_inner().claimed);
    let refused = client
        .claim(keyed(keys.key("other"), claim(&bound)))
        .await
        .unwrap();
    assert!(!refused.into_inner().claimed);
    // A failed authentication with a real-looking key.
    let forged = keyed("tsk_ForgedKeyForgedKeyForgedKey", check(&token));
    assert!(client.validate(forged).await.is_err());

    let log = server.terminate().await.join("\n");
    assert!(log.contains("claimed"), "the log is being captured");
    let grant_id = minted.grant.unwrap().grant_id;
    assert!(log.contains(&grant_id), "the log names the grant");

    // The audit trail: mint, claim and the replay of this token, correlated
    // by one keyed MAC of the token (never the token).
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|e: &serde_json::Value| e["target"] == "tessera::audit")
        .collect();
    let of = |event: &str| {
        audit
            .iter()
            .find(|e| e["event"] == event && e["grant_id"] == grant_id.as_str())
            .unwrap_or_else(|| panic!("no {event} audit event: {audit:#?}"))
    };
    let mac = of("mint")["token_mac"].as_str().unwrap().to_owned();
    assert_eq!(mac.len(), 32);
    assert_eq!(of("claim")["token_mac"], mac.as_str());
    assert_eq!(of("replay")["token_mac"], mac.as_str());
    assert_eq!(of("replay")["replays"], 1, "the first replay of this grant");
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "revoke" && e["client"] == "minter"),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "authenticate" && e["outcome"] == "refused"),
        "the forged key is an audit event: {audit:#?}"
    );
    let mut keys = keys.all();
    keys.push("tsk_ForgedKeyForgedKeyForgedKey".into());
    assert_secret_free(log.as_bytes(), &token, &keys);
    assert_secret_free(log.as_bytes(), &bound, &keys);
    use base64_free::b64;
    assert!(!log.contains(&b64(PAYLOAD)[..20]), "payload (base64) found");
}

/// Base64 without a dependency: enough to search logs for an encoded payload.
mod base64_free {
    pub fn b64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
        }
        out
    }
}
