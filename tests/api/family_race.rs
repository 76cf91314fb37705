//! A family raced through two server processes sharing one database:
//! delegations and claims from every member against a rotation and then a
//! revocation of the newest member. Afterwards no member validates or
//! claims, and the family took no more uses than its root allowed.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tessera::pb::{self, token_authority_client::TokenAuthorityClient};

use crate::support::{Backend, Keys, Process, TestDb, channel, check, claim, keyed, mint_req};

const ROOT_USES: u32 = 24;
const TASKS: usize = 8;
const OPS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_raced_family_ends_whole() {
    a_raced_family_ends_whole(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_raced_family_ends_whole() {
    a_raced_family_ends_whole(Backend::Sqlite).await
}

/// The family's tokens so far, shared by the racers.
#[derive(Default)]
struct Family {
    tokens: Mutex<Vec<String>>,
    uses: AtomicUsize,
}

impl Family {
    fn pick(&self, n: usize) -> String {
        let tokens = self.tokens.lock().unwrap();
        tokens[n % tokens.len()].clone()
    }

    fn add(&self, token: String) {
        self.tokens.lock().unwrap().push(token);
    }

    fn len(&self) -> usize {
        self.tokens.lock().unwrap().len()
    }
}

async fn a_raced_family_ends_whole(backend: Backend) {
    let db = TestDb::new(backend).await;
    let keys = Keys::new();
    let a = Process::spawn(db.url(), keys.file.path(), "info").await;
    let b = Process::spawn(db.url(), keys.file.path(), "info").await;
    let channels = [channel(a.addr).await, channel(b.addr).await];
    let client = |i: usize| TokenAuthorityClient::new(channels[i % 2].clone());

    let root = pb::MintRequest {
        audience: vec!["minter".into(), "other".into(), "proxy".into()],
        run_id: "run-race".into(),
        max_uses: ROOT_USES,
        ttl: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..mint_req("user-race")
    };
    let root = client(0)
        .mint(keyed(keys.key("minter"), root))
        .await
        .unwrap()
        .into_inner();
    let family = Arc::new(Family::default());
    family.add(root.token.clone());

    let racers: Vec<_> = (0..TASKS)
        .map(|task| {
            let (family, keys, mut authority) = (family.clone(), keys.clone(), client(task));
            tokio::spawn(async move {
                for op in 0..OPS {
                    let token = family.pick(task * 7 + op * 3);
                    if (task + op) % 2 == 0 {
                        let by = if task % 3 == 0 { "other" } else { "minter" };
                        let ask = pb::DelegateRequest {
                            parent_token: token,
                            max_uses: 1 + (op % 2) as u32,
                            ..Default::default()
                        };
                        if let Ok(child) = authority.delegate(keyed(keys.key(by), ask)).await {
                            family.add(child.into_inner().token);
                        }
                    } else {
                        let answer = authority
                            .claim(keyed(keys.key("proxy"), claim(&token)))
                            .await;
                        if answer.is_ok_and(|a| a.into_inner().claimed) {
                            family.uses.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    // Meanwhile: rotate the root once the family has grown, then revoke
    // the successor (the newest member) while the racers go on.
    let mut operator = client(1);
    let grown_to = async |n: usize| {
        while family.len() < n && !racers.iter().all(|r| r.is_finished()) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    grown_to(4).await;
    let rotate = pb::RotateRequest {
        target: Some(pb::rotate_request::Target::Token(root.token.clone())),
        overlap: Some(prost_types::Duration {
            seconds: 600,
            nanos: 0,
        }),
        ..Default::default()
    };
    // The root may be used up by now (its uses went to children): then
    // it cannot be rotated, and the root itself is what is revoked.
    let newest = match operator.rotate(keyed(keys.key("minter"), rotate)).await {
        Ok(rotated) => {
            let rotated = rotated.into_inner();
            family.add(rotated.token);
            rotated.grant.unwrap().grant_id
        }
        Err(_) => root.grant.as_ref().unwrap().grant_id.clone(),
    };
    grown_to(8).await;
    let target = pb::revoke_request::Target::GrantId(newest);
    let revoke = crate::support::revoke(target);
    operator
        .revoke(keyed(keys.key("minter"), revoke))
        .await
        .unwrap();
    for racer in racers {
        racer.await.unwrap();
    }

    let tokens = family.tokens.lock().unwrap().clone();
    let mut checker = client(0);
    for token in &tokens {
        let answer = checker
            .validate(keyed(keys.key("proxy"), check(token)))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.valid, "a member outlived the revocation");
        let answer = checker
            .claim(keyed(keys.key("proxy"), claim(token)))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.claimed, "a member was claimed after the revocation");
    }
    let uses = family.uses.load(Ordering::SeqCst);
    assert!(
        uses <= ROOT_USES as usize,
        "{uses} uses from a root that allowed {ROOT_USES}"
    );
    assert!(tokens.len() > 4, "the family grew: {}", tokens.len());
    a.terminate().await;
    b.terminate().await;
}
