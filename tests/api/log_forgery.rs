//! Log lines cannot be forged. Every caller-supplied text that reaches a
//! log line (subject, run id, labels, a revoke's target, a credential's
//! bearer id and name, and a client id, which the clients file controls)
//! is sent holding quotes, backslashes and `key=value` text, and, where
//! the API lets text through at all, line breaks. The real binary's lines
//! are then read back as a log pipeline would: in text, by a strict
//! `key="value"` reader; in JSON, as objects. Each value comes back exactly
//! as sent, in its own field, and no line or field appears that the server
//! did not write.

use std::{collections::HashMap, io::Write};

use serde_json::{Map, Value, json};
use tessera::{
    config::LogFormat,
    pb::{
        self, credentials_client::CredentialsClient, revoke_request::Target,
        token_authority_client::TokenAuthorityClient,
    },
    token::ClientKey,
};
use tonic::Code;

use crate::{
    credentials::K1,
    support::{
        Backend, Process, TestDb, channel, check, claim, eventually,
        http::{Auth, Version, form, send},
        keyed, mint_req, revoke, seal_key_file, text_log,
    },
};

/// Text that would end a bare value and write fields of its own (short
/// enough for a label key, at most 64 bytes).
const FORGED: &str = r#"x" event="credential_deleted" client="admin" k=v \"#;
/// The same with a line break and a whole forged line after it.
const FORGED_LINE: &str = "x\n2026-01-01T00:00:00.000000Z  INFO tessera::audit: credential deleted \
     event=\"credential_deleted\" client=\"admin\" bearer_id=\"victim\"";
/// A client id as a clients file may spell it.
const CLIENT: &str = r#"ops" client="admin" k=v"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_cannot_be_forged() {
    let lines = attack(LogFormat::Text).await;
    let parsed: Vec<Map<String, Value>> = lines
        .iter()
        .map(|line| {
            let line = text_log::parse(line).unwrap_or_else(|e| panic!("{e}"));
            let mut map = Map::new();
            map.insert("level".into(), line.level.into());
            map.insert("target".into(), line.target.into());
            map.insert("message".into(), line.message.into());
            for (key, value) in line.fields {
                // Labels are compact JSON inside the quoted string.
                let value = match key.as_str() {
                    "labels" => serde_json::from_str(&value).unwrap(),
                    _ => Value::String(value),
                };
                map.insert(key, value);
            }
            map
        })
        .collect();
    check_events(&parsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_cannot_be_forged() {
    let lines = attack(LogFormat::Json).await;
    let parsed: Vec<Map<String, Value>> = lines
        .iter()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(map)) => map,
            _ => panic!("not a JSON object: {line}"),
        })
        .collect();
    check_events(&parsed);
}

/// Runs every call with forged text against a server logging in `format`;
/// returns its log.
async fn attack(format: LogFormat) -> Vec<String> {
    let db = TestDb::new(Backend::Postgres).await;
    let key = ClientKey::generate();
    let mut clients = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        clients,
        "[[clients]]\nid = {CLIENT:?}\nkey_sha256 = {:?}\n\
         roles = [\"mint\", \"validate\", \"claim\", \"revoke\", \"credentials\"]",
        key.sha256_hex()
    )
    .unwrap();
    let seal = seal_key_file(&[("k1", K1)]);
    let seal_flag = ["--seal-key", seal.path().to_str().unwrap()];
    let server = Process::spawn_logging(db.url(), clients.path(), "info", &seal_flag, format).await;
    let key = key.expose();
    let mut grants = TokenAuthorityClient::new(channel(server.addr).await);
    let mut credentials = CredentialsClient::new(channel(server.addr).await);

    // Line breaks are refused where they come in, naming the field.
    let labelled = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
    let broken_mints = [
        ("subject", mint_req(FORGED_LINE)),
        (
            "run_id",
            pb::MintRequest {
                run_id: FORGED_LINE.into(),
                ..mint_req("u")
            },
        ),
        (
            "labels key",
            pb::MintRequest {
                labels: labelled(FORGED_LINE, "v"),
                ..mint_req("u")
            },
        ),
        (
            "labels value",
            pb::MintRequest {
                labels: labelled("k", FORGED_LINE),
                ..mint_req("u")
            },
        ),
        (
            "audience[0]",
            pb::MintRequest {
                audience: vec![FORGED_LINE.into()],
                ..mint_req("u")
            },
        ),
        (
            "scopes[0]",
            pb::MintRequest {
                scopes: vec![FORGED_LINE.into()],
                ..mint_req("u")
            },
        ),
    ];
    for (field, request) in broken_mints {
        let err = grants.mint(keyed(key, request)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }
    for (field, target) in [
        ("run_id", Target::RunId(FORGED_LINE.into())),
        ("subject", Target::Subject(FORGED_LINE.into())),
        ("grant_id", Target::GrantId(FORGED_LINE.into())),
    ] {
        let err = grants.revoke(keyed(key, revoke(target))).await.unwrap_err();
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }
    for (field, bearer_id, name) in [
        ("bearer_id", FORGED_LINE, "github"),
        ("name", "u", FORGED_LINE),
    ] {
        let put = put(bearer_id, name);
        let err = credentials.put(keyed(key, put)).await.unwrap_err();
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }

    // Quotes, backslashes and `key=value` text are taken as they are.
    let minted = pb::MintRequest {
        run_id: FORGED.into(),
        labels: labelled(FORGED, FORGED),
        audience: vec![CLIENT.into()],
        scopes: vec![r#"tool:"x"=y\z"#.into()],
        max_uses: 1,
        ..mint_req(FORGED)
    };
    let minted = grants.mint(keyed(key, minted)).await.unwrap().into_inner();
    let bound = pb::ValidateRequest {
        subject: FORGED.into(),
        ..check(&minted.token)
    };
    assert!(
        grants
            .validate(keyed(key, bound))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    for claimed in [true, false] {
        let reply = grants.claim(keyed(key, claim(&minted.token))).await;
        assert_eq!(reply.unwrap().into_inner().claimed, claimed);
    }
    // (A grant id has a fixed form: forged text is refused like a line break.)
    for target in [Target::RunId(FORGED.into()), Target::Subject(FORGED.into())] {
        grants.revoke(keyed(key, revoke(target))).await.unwrap();
    }
    credentials
        .put(keyed(key, put(FORGED, FORGED)))
        .await
        .unwrap();
    let begin = pb::BeginRefreshRequest {
        bearer_id: FORGED.into(),
        name: FORGED.into(),
        lease_ttl: None,
    };
    let lease = credentials
        .begin_refresh(keyed(key, begin))
        .await
        .unwrap()
        .into_inner();
    let complete = pb::CompleteRefreshRequest {
        lease_id: lease.lease_id,
        secret: HashMap::from([("access_token".to_owned(), b"at-new".to_vec())]),
        expires_at: None,
    };
    credentials
        .complete_refresh(keyed(key, complete))
        .await
        .unwrap();
    let delete = pb::DeleteRequest {
        bearer_id: FORGED.into(),
        name: FORGED.into(),
    };
    assert!(
        credentials
            .delete(keyed(key, delete))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    // A client id the caller writes itself, with a key that is not its.
    let basic = form(
        "/oauth2/introspect",
        Auth::Basic(FORGED, key),
        &[("token", &minted.token)],
    );
    assert_eq!(
        send(server.addr, None, Version::H1, basic).await.status,
        401
    );

    // The replay is logged after its reply.
    let logged = server.log.clone();
    eventually("the replay logged", async || {
        let logged = logged.lock().unwrap();
        logged
            .iter()
            .any(|line| line.contains("a consumed or revoked token was presented again"))
    })
    .await;
    server.terminate().await
}

fn put(bearer_id: &str, name: &str) -> pb::PutRequest {
    pb::PutRequest {
        bearer_id: bearer_id.into(),
        name: name.into(),
        secret: HashMap::from([("access_token".to_owned(), b"at-old".to_vec())]),
        expires_at: None,
        if_version: None,
    }
}

/// Each event holds the forged text whole, in its own field, and there
/// are exactly the events the calls made.
fn check_events(lines: &[Map<String, Value>]) {
    let audit: Vec<&Map<String, Value>> = lines
        .iter()
        .filter(|line| line["target"] == "tessera::audit")
        .collect();
    let events = |name: &str| -> Vec<&Map<String, Value>> {
        audit
            .iter()
            .copied()
            .filter(|e| e["event"] == name)
            .collect()
    };
    for line in lines {
        for (key, value) in line {
            let forged = ["admin", "victim", "credential_deleted"];
            if key != "event" && value.as_str().is_some_and(|v| forged.contains(&v)) {
                panic!("a forged {key}: {line:?}");
            }
        }
        assert!(!line.contains_key("k"), "a forged field: {line:?}");
    }
    let [mint] = &events("mint")[..] else {
        panic!("one mint: {audit:#?}")
    };
    assert_eq!(
        (&mint["client"], &mint["subject"], &mint["run_id"]),
        (&json!(CLIENT), &json!(FORGED), &json!(FORGED))
    );
    assert_eq!(mint["labels"], json!({ FORGED: FORGED }));
    let claims = events("claim");
    assert_eq!(claims.len(), 2, "{claims:#?}");
    let [replay] = &events("replay")[..] else {
        panic!("one replay: {audit:#?}")
    };
    assert_eq!(
        (&replay["run_id"], &replay["client"]),
        (&json!(FORGED), &json!(CLIENT))
    );
    let revokes = events("revoke");
    let kinds: Vec<&Value> = revokes.iter().map(|e| &e["target_kind"]).collect();
    assert_eq!(kinds, [&json!("run_id"), &json!("subject")]);
    for revoke in &revokes {
        assert_eq!(revoke["target_id"], FORGED, "{revoke:?}");
    }
    for event in [
        "credential_put",
        "credential_lease",
        "credential_refreshed",
        "credential_deleted",
    ] {
        let found = events(event);
        let [one] = &found[..] else {
            panic!("one {event}: {audit:#?}")
        };
        assert_eq!(
            (&one["client"], &one["bearer_id"], &one["name"]),
            (&json!(CLIENT), &json!(FORGED), &json!(FORGED)),
            "{event}"
        );
    }
    assert_eq!(events("authenticate").len(), 1, "{audit:#?}");
    // And nothing else: every audit line is one of the events above.
    assert_eq!(audit.len(), 1 + 2 + 1 + 2 + 4 + 1, "{audit:#?}");
}
