//! Store behaviour the API layer relies on, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use servicelevel::store::{Store as _, StoreTx as _};

use crate::harness::*;

/// After-commit hooks run once the transaction has committed, in order, and never for a
/// transaction that is dropped (rolled back): what a call counts is what it recorded.
async fn after_commit_hooks_run_only_on_commit(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = |n: usize| {
        let ran = Arc::clone(&ran);
        Box::new(move || ran.lock().expect("not poisoned").push(n)) as Box<dyn FnOnce() + Send>
    };
    let mut tx = s.store.begin().await.expect("begins");
    tx.after_commit(hook(1));
    tx.after_commit(hook(2));
    assert!(
        ran.lock().expect("not poisoned").is_empty(),
        "not before the commit"
    );
    tx.commit().await.expect("commits");
    assert_eq!(*ran.lock().expect("not poisoned"), vec![1, 2]);

    let dropped = Arc::new(AtomicUsize::new(0));
    let mut tx = s.store.begin().await.expect("begins");
    let count = Arc::clone(&dropped);
    tx.after_commit(Box::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    drop(tx);
    // The next transaction commits; the dropped one's hook stays unrun.
    let tx = s.store.begin().await.expect("begins after a rollback");
    tx.commit().await.expect("commits");
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    assert_eq!(*ran.lock().expect("not poisoned"), vec![1, 2]);
    s.stop().await;
}

/// `answered` shows a key's record once its request is answered, never a claim still in
/// flight (whose transaction may yet roll back) nor one rolled back.
async fn answered_shows_only_answered_requests(db: Db) {
    use servicelevel::store::{Claim, IdempotencyKey};
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    let key = |id: &str| IdempotencyKey {
        client: "billing".into(),
        method: "RecordUsage",
        request_id: id.into(),
    };
    assert_eq!(s.store.answered(&key("a")).await.expect("reads"), None);
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(
        tx.claim(&key("a"), "{}").await.expect("claims"),
        Claim::Fresh
    );
    assert_eq!(
        s.store.answered(&key("a")).await.expect("reads"),
        None,
        "a claim in flight is not an answer"
    );
    tx.complete(&key("a"), b"answer").await.expect("completes");
    tx.commit().await.expect("commits");
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(
        tx.claim(&key("b"), "{}").await.expect("claims"),
        Claim::Fresh
    );
    tx.complete(&key("b"), b"lost").await.expect("completes");
    drop(tx);
    assert_eq!(
        s.store.answered(&key("a")).await.expect("reads"),
        Some(Claim::Seen {
            fingerprint: "{}".into(),
            response: b"answer".to_vec(),
        })
    );
    assert_eq!(
        s.store.answered(&key("b")).await.expect("reads"),
        None,
        "rolled back"
    );
    s.stop().await;
}

/// A group of writes claims, reads, releases and answers many keys at once: a key answered
/// before is not claimed again and its answer is read; a released claim is gone as if
/// never made; answers stored together are each key's own.
async fn many_keys_are_claimed_and_answered_at_once(db: Db) {
    use servicelevel::store::{Claim, IdempotencyKey};
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    let key = |id: &str| IdempotencyKey {
        client: "billing".into(),
        method: "RecordUsage",
        request_id: id.into(),
    };
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(
        tx.claim(&key("old"), "{\"n\":1}").await.expect("claims"),
        Claim::Fresh
    );
    tx.complete(&key("old"), b"old answer")
        .await
        .expect("completes");
    tx.commit().await.expect("commits");

    let mut tx = s.store.begin().await.expect("begins");
    let asked: Vec<(IdempotencyKey, String)> = ["a", "old", "b", "c"]
        .iter()
        .map(|id| (key(id), format!("{{\"id\":\"{id}\"}}")))
        .collect();
    let claimed = tx.claim_many(&asked).await.expect("claims");
    assert_eq!(claimed, vec![key("a"), key("b"), key("c")]);
    let seen = tx
        .answers_of(&[key("old"), key("a"), key("unknown")])
        .await
        .expect("reads");
    assert_eq!(
        seen,
        vec![(
            key("old"),
            Claim::Seen {
                fingerprint: "{\"n\":1}".into(),
                response: b"old answer".to_vec(),
            }
        )],
        "only answered keys, never a claim in flight"
    );
    tx.release_claims(&[key("b")]).await.expect("releases");
    tx.complete_many(&[
        (key("a"), "{\"id\":\"a\"}".into(), b"answer a".to_vec()),
        (key("c"), "{\"id\":\"c\"}".into(), b"answer c".to_vec()),
    ])
    .await
    .expect("completes");
    tx.commit().await.expect("commits");
    for (id, answer) in [
        ("a", Some("answer a")),
        ("b", None),
        ("c", Some("answer c")),
    ] {
        assert_eq!(
            s.store.answered(&key(id)).await.expect("reads"),
            answer.map(|a| Claim::Seen {
                fingerprint: format!("{{\"id\":\"{id}\"}}"),
                response: a.as_bytes().to_vec(),
            }),
            "{id}"
        );
    }
    // The released key is free: a later claim of it is fresh.
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(
        tx.claim(&key("b"), "{}").await.expect("claims"),
        Claim::Fresh
    );
    drop(tx);
    s.stop().await;
}

/// A billing client's RecordUsage key.
fn usage_key(id: &str) -> servicelevel::store::IdempotencyKey {
    servicelevel::store::IdempotencyKey {
        client: "billing".into(),
        method: "RecordUsage",
        request_id: id.into(),
    }
}

fn org_id(name: &str) -> servicelevel::domain::names::ResourceId {
    servicelevel::domain::names::ResourceId::parse(name).expect("an id")
}

/// A consumption entry of March 2026.
fn consume(seq: u64, minutes: i64) -> servicelevel::domain::ledger::Entry {
    serde_json::from_value(serde_json::json!({
        "seq": seq, "kind": "consume", "period": "2026-03-01",
        "recorded_at": "2026-03-09T12:00:00Z", "minutes": minutes,
    }))
    .expect("an entry")
}

/// Before a group: request "old" answered ("old answer", under `fingerprint`), `acme`'s
/// support account with two entries (-10 and -20 minutes), and `empty` accounts opened.
async fn old_answer_and_two_entries(
    store: &servicelevel::store::SqlStore,
    fingerprint: &str,
    acme: &servicelevel::domain::names::ResourceId,
    empty: &[&servicelevel::domain::names::ResourceId],
) {
    let mut tx = store.begin().await.expect("begins");
    tx.claim(&usage_key("old"), fingerprint)
        .await
        .expect("claims");
    tx.complete(&usage_key("old"), b"old answer")
        .await
        .expect("completes");
    assert_eq!(tx.lock_account(acme, "support").await.expect("locks"), 1);
    tx.append_entries(acme, "support", &[consume(1, -10), consume(2, -20)])
        .await
        .expect("appends");
    for o in empty {
        assert_eq!(tx.lock_account(o, "support").await.expect("locks"), 1);
    }
    tx.commit().await.expect("commits");
}

/// A group of ledger writes opens in one call (new keys claimed, earlier answers read,
/// accounts locked and created, the catalogue epoch) and closes in one (entries on
/// several accounts, refused claims given back, answers kept), as the single-purpose
/// calls would have done.
async fn a_group_of_ledger_writes_opens_and_closes_at_once(db: Db) {
    use servicelevel::domain::ledger::Entry;
    use servicelevel::store::{AccountEntries, Claim, IdempotencyKey};
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let (key, org, entry) = (usage_key, org_id, consume);
    let (acme, zeta) = (org("acme"), org("zeta"));
    // Before: one answered request, and acme's account with two entries.
    old_answer_and_two_entries(&s.store, "{\"n\":1}", &acme, &[]).await;
    let epoch = s.store.catalog_epoch().await.expect("reads");

    let mut tx = s.store.begin().await.expect("begins");
    let claims: Vec<(IdempotencyKey, String)> = ["a", "old", "b"]
        .iter()
        .map(|id| (key(id), format!("{{\"id\":\"{id}\"}}")))
        .collect();
    // Asked zeta (new) first: the numbers come back in the order asked.
    let accounts = vec![
        (zeta.clone(), "support".to_string()),
        (acme.clone(), "support".to_string()),
    ];
    let start = tx.open_group(&claims, &accounts).await.expect("opens");
    assert_eq!(start.claimed, vec![key("a"), key("b")]);
    assert_eq!(
        start.answered,
        vec![(
            key("old"),
            Claim::Seen {
                fingerprint: "{\"n\":1}".into(),
                response: b"old answer".to_vec(),
            }
        )]
    );
    assert_eq!(start.next_seqs, vec![1, 3]);
    assert_eq!(start.epoch, epoch);
    let (zeta_new, acme_new) = ([entry(1, -5)], [entry(3, -7), entry(4, -8)]);
    tx.close_group(
        &[
            AccountEntries {
                organization: &zeta,
                bucket: "support",
                entries: &zeta_new,
            },
            AccountEntries {
                organization: &acme,
                bucket: "support",
                entries: &acme_new,
            },
        ],
        &[key("b")],
        &[(key("a"), "{\"id\":\"a\"}".into(), b"answer a".to_vec())],
    )
    .await
    .expect("closes");
    tx.commit().await.expect("commits");

    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(tx.lock_account(&acme, "support").await.expect("locks"), 5);
    assert_eq!(tx.lock_account(&zeta, "support").await.expect("locks"), 2);
    let minutes = |entries: Vec<Entry>| -> Vec<(u64, i64)> {
        entries.iter().map(|e| (e.seq, e.minutes)).collect()
    };
    assert_eq!(
        minutes(
            tx.account_entries(&acme, "support", 1)
                .await
                .expect("reads")
        ),
        vec![(1, -10), (2, -20), (3, -7), (4, -8)]
    );
    assert_eq!(
        minutes(
            tx.account_entries(&zeta, "support", 1)
                .await
                .expect("reads")
        ),
        vec![(1, -5)]
    );
    drop(tx);
    assert_eq!(
        s.store.answered(&key("a")).await.expect("reads"),
        Some(Claim::Seen {
            fingerprint: "{\"id\":\"a\"}".into(),
            response: b"answer a".to_vec(),
        })
    );
    assert_eq!(s.store.answered(&key("b")).await.expect("reads"), None);
    // An entry numbered where one already is: the whole close is refused.
    let mut tx = s.store.begin().await.expect("begins");
    tx.open_group(&[(key("c"), "{}".into())], &accounts[1..])
        .await
        .expect("opens");
    let again = [entry(4, -1)];
    let refused = tx
        .close_group(
            &[AccountEntries {
                organization: &acme,
                bucket: "support",
                entries: &again,
            }],
            &[],
            &[(key("c"), "{}".into(), b"c".to_vec())],
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(servicelevel::store::StoreError::AlreadyExists(_))
        ),
        "{refused:?}"
    );
    drop(tx);
    assert_eq!(s.store.answered(&key("c")).await.expect("reads"), None);
    s.stop().await;
}

/// A server on its database with organisation `acme` on policy `plain` (a first-response
/// promise of an hour).
async fn acme_with_a_plain_policy(db: Db) -> TestServer {
    use crate::fixtures::*;
    use servicelevel::api::pb;
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    create_policy(
        &s,
        "plain",
        pb::PolicyDefinition {
            clocks: vec![first_response_within_an_hour()],
            ..Default::default()
        },
    )
    .await;
    create_org(&s, "acme", organization("UTC", "", "plain", vec![], vec![])).await;
    s
}

/// A ticket's events read inside a transaction are what a full read gives: the events
/// kept from an earlier committed read plus those appended since, never an event of a
/// transaction that rolled back.
async fn events_read_in_a_transaction_are_the_committed_ones(db: Db) {
    use crate::fixtures::*;
    use servicelevel::api::pb;
    use servicelevel::domain::ticket::{Actor, EventKind};
    use servicelevel::store::NewEvent;
    let s = acme_with_a_plain_policy(db).await;
    let t = create_ticket(
        &s,
        ticket("acme", "C-1", "incident", "", utc(2026, 3, 9, 11, 0)),
    )
    .await;
    let id = t.name.trim_start_matches("tickets/").to_string();
    let reply = |n: u32| NewEvent {
        occurred_at: utc(2026, 3, 9, 11, 10 + n),
        kind: EventKind::CustomerReplied,
        actor: Actor {
            client: "test".into(),
            contact: None,
        },
        request_id: format!("r-{n}"),
    };
    let seqs = |events: &[servicelevel::store::StoredEvent]| -> Vec<i64> {
        events.iter().map(|e| e.event.seq).collect()
    };
    let in_tx = |s: &TestServer, id: String| {
        let store = s.store.clone();
        async move {
            let mut tx = store.begin().await.expect("begins");
            let events = tx.ticket_events(&id).await.expect("reads");
            tx.commit().await.expect("commits");
            events
        }
    };
    let first = in_tx(&s, id.clone()).await;
    let n = first.len();
    // Appended and read in a transaction that rolls back.
    let mut tx = s.store.begin().await.expect("begins");
    tx.lock_ticket(&id).await.expect("locks");
    tx.append_event(&id, &reply(1), utc(2026, 3, 9, 11, 30))
        .await
        .expect("appends");
    assert_eq!(tx.ticket_events(&id).await.expect("reads").len(), n + 1);
    drop(tx);
    assert_eq!(
        in_tx(&s, id.clone()).await,
        first,
        "the rolled-back event is not served"
    );
    // Appended by another writer (the API) after the last read: read as a full read gives it.
    record(
        &s,
        &t.name,
        event(
            utc(2026, 3, 9, 11, 40),
            status(pb::TicketStatus::Processing),
        ),
    )
    .await
    .expect("recorded");
    let mut tx = s.store.begin().await.expect("begins");
    tx.lock_ticket(&id).await.expect("locks");
    tx.append_event(&id, &reply(2), utc(2026, 3, 9, 11, 45))
        .await
        .expect("appends");
    tx.commit().await.expect("commits");
    let now = in_tx(&s, id.clone()).await;
    assert_eq!(now, s.store.ticket_events(&id).await.expect("reads"));
    assert!(now.len() >= n + 2, "{:?}", seqs(&now));
    assert_eq!(seqs(&now), (1..=now.len() as i64).collect::<Vec<_>>());
    s.stop().await;
}

/// Several tickets' events in one read are each ticket's events, in order, as a read of
/// that ticket alone gives them; a ticket without events (or unknown) has no entry.
async fn events_of_several_tickets_read_at_once(db: Db) {
    use crate::fixtures::*;
    use servicelevel::api::pb;
    let s = acme_with_a_plain_policy(db).await;
    let mut ids = Vec::new();
    for (i, n) in [3, 0, 1].into_iter().enumerate() {
        let t = create_ticket(
            &s,
            ticket(
                "acme",
                &format!("E-{i}"),
                "incident",
                "",
                utc(2026, 3, 9, 11, 0),
            ),
        )
        .await;
        for k in 0..n {
            record(
                &s,
                &t.name,
                event(
                    utc(2026, 3, 9, 11, 10 + k),
                    status(if k % 2 == 0 {
                        pb::TicketStatus::Processing
                    } else {
                        pb::TicketStatus::RequiresDeliverables
                    }),
                ),
            )
            .await
            .expect("recorded");
        }
        ids.push(t.name.trim_start_matches("tickets/").to_string());
    }
    let mut asked = ids.clone();
    asked.push("no-such-ticket".into());
    let many = s.store.events_of_tickets(&asked).await.expect("events");
    for id in &ids {
        let alone = s.store.ticket_events(id).await.expect("events");
        assert_eq!(many.get(id).cloned().unwrap_or_default(), alone, "{id}");
    }
    assert!(!many.contains_key("no-such-ticket"));
    s.stop().await;
}

/// A group decided on folds kept in memory is written (one statement on Postgres) only for
/// the accounts nothing moved on: an account whose number moved, one with a request id
/// seen before, all of them when the catalogue moved, and a request id claimed by a write
/// in flight leave nothing written for them.
async fn a_posted_group_writes_only_the_accounts_nothing_moved_on(db: Db) {
    use servicelevel::domain::names::ResourceId;
    use servicelevel::store::{Claim, IdempotencyKey, PostedAccount, PostedWrite};
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    let (key, org, entry) = (usage_key, org_id, consume);
    let (acme, zeta, beta) = (org("acme"), org("zeta"), org("beta"));
    old_answer_and_two_entries(&s.store, "{}", &acme, &[&zeta, &beta]).await;
    let epoch = s.store.catalog_epoch().await.expect("reads");
    let (k_a, k_b, k_c, k_old) = (key("a"), key("b"), key("c"), key("old"));
    let write = |key, answer: Option<&[u8]>| PostedWrite {
        key,
        fingerprint: "{}".into(),
        answer: answer.map(<[u8]>::to_vec),
    };
    let acme_new = [entry(3, -7), entry(4, -8)];
    let (zeta_new, beta_new) = ([entry(2, -5)], [entry(1, -5)]);
    let posted = s
        .store
        .post_group(
            epoch,
            &[
                PostedAccount {
                    organization: &acme,
                    bucket: "support",
                    decided_at: 3,
                    entries: &acme_new,
                    writes: vec![write(&k_a, Some(b"answer a")), write(&k_b, None)],
                },
                // Decided on a fold one entry ahead of the account.
                PostedAccount {
                    organization: &zeta,
                    bucket: "support",
                    decided_at: 2,
                    entries: &zeta_new,
                    writes: vec![write(&k_c, Some(b"answer c"))],
                },
                // A retry, decided afresh.
                PostedAccount {
                    organization: &beta,
                    bucket: "support",
                    decided_at: 1,
                    entries: &beta_new,
                    writes: vec![write(&k_old, Some(b"new answer"))],
                },
            ],
        )
        .await
        .expect("posts");
    assert_eq!(posted, vec![true, false, false]);
    let numbers_and_minutes = |o: ResourceId| {
        let store = s.store.clone();
        async move {
            let mut tx = store.begin().await.expect("begins");
            let next = tx.lock_account(&o, "support").await.expect("locks");
            let entries = tx.account_entries(&o, "support", 1).await.expect("reads");
            (
                next,
                entries
                    .iter()
                    .map(|e| (e.seq, e.minutes))
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        numbers_and_minutes(acme.clone()).await,
        (5, vec![(1, -10), (2, -20), (3, -7), (4, -8)])
    );
    assert_eq!(numbers_and_minutes(zeta.clone()).await, (1, vec![]));
    assert_eq!(numbers_and_minutes(beta.clone()).await, (1, vec![]));
    let answered = |k: IdempotencyKey| {
        let store = s.store.clone();
        async move { store.answered(&k).await.expect("reads") }
    };
    let seen = |answer: &[u8]| {
        Some(Claim::Seen {
            fingerprint: "{}".into(),
            response: answer.to_vec(),
        })
    };
    assert_eq!(answered(key("a")).await, seen(b"answer a"));
    assert_eq!(answered(key("old")).await, seen(b"old answer"));
    assert_eq!(answered(key("b")).await, None);
    assert_eq!(answered(key("c")).await, None);
    // The refused write's key was never taken: it can be claimed.
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(tx.claim(&k_b, "{}").await.expect("claims"), Claim::Fresh);
    drop(tx);

    // The catalogue moved: nothing is written.
    let zeta_first = [entry(1, -5)];
    let zeta_part = |writes| PostedAccount {
        organization: &zeta,
        bucket: "support",
        decided_at: 1,
        entries: &zeta_first,
        writes,
    };
    let posted = s
        .store
        .post_group(epoch + 1, &[zeta_part(vec![write(&k_c, Some(b"c"))])])
        .await
        .expect("posts");
    assert_eq!(posted, vec![false]);
    assert_eq!(numbers_and_minutes(zeta.clone()).await, (1, vec![]));

    // A key claimed by a write in flight: the call waits for it and, once that write has
    // kept its answer, writes nothing (Postgres fails the statement on the key, SQLite
    // finds the key taken).
    let mut tx = s.store.begin().await.expect("begins");
    assert_eq!(tx.claim(&k_c, "{}").await.expect("claims"), Claim::Fresh);
    let store = s.store.clone();
    let (zeta_c, k_c2) = (zeta.clone(), k_c.clone());
    let racing = tokio::spawn(async move {
        let first = [entry(1, -5)];
        let part = PostedAccount {
            organization: &zeta_c,
            bucket: "support",
            decided_at: 1,
            entries: &first,
            writes: vec![PostedWrite {
                key: &k_c2,
                fingerprint: "{}".into(),
                answer: Some(b"racing".to_vec()),
            }],
        };
        store.post_group(epoch, &[part]).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.complete(&k_c, b"first").await.expect("completes");
    tx.commit().await.expect("commits");
    match racing.await.expect("runs") {
        Ok(posted) => assert_eq!(posted, vec![false]),
        Err(e) => assert!(e.to_string().contains("idempotency"), "{e}"),
    }
    assert_eq!(numbers_and_minutes(zeta.clone()).await, (1, vec![]));
    assert_eq!(answered(key("c")).await, seen(b"first"));
}

crate::on_both_stores!(
    a_group_of_ledger_writes_opens_and_closes_at_once,
    a_posted_group_writes_only_the_accounts_nothing_moved_on,
    events_read_in_a_transaction_are_the_committed_ones,
    events_of_several_tickets_read_at_once,
    after_commit_hooks_run_only_on_commit,
    answered_shows_only_answered_requests,
    many_keys_are_claimed_and_answered_at_once,
    an_older_database_upgrades_in_place,
    event_keys_stored_per_client_move_under_their_ticket,
    tickets_become_unique_per_organisation_on_upgrade,
);

/// RecordEvent's idempotency records were per client before events were keyed per
/// ticket: the upgrade copies each under its ticket, so a retry after it gets the first
/// answer, whoever sends it.
async fn event_keys_stored_per_client_move_under_their_ticket(db: Db) {
    use servicelevel::store::{Claim, IdempotencyKey};
    let fresh = fresh_database(db).await;
    let store = servicelevel::store::SqlStore::connect(&fresh.direct_url, 2)
        .await
        .expect("opens");
    store.migrate_until(2).await.expect("the second schema");
    let fingerprint = r#"{"event":"Some(TicketEvent { .. })","ticket":"\"tickets/t-1\""}"#;
    let mut tx = store.begin().await.expect("begins");
    let old = IdempotencyKey {
        client: "crm".into(),
        method: "RecordEvent",
        request_id: "comment-1".into(),
    };
    assert_eq!(
        tx.claim(&old, fingerprint).await.expect("claims"),
        Claim::Fresh
    );
    tx.complete(&old, b"first answer").await.expect("completes");
    tx.commit().await.expect("commits");
    store.migrate().await.expect("upgrades");
    let mut tx = store.begin().await.expect("begins");
    let claim = tx
        .claim(&IdempotencyKey::event("t-1", "comment-1"), fingerprint)
        .await
        .expect("claims");
    assert_eq!(
        claim,
        Claim::Seen {
            fingerprint: fingerprint.to_string(),
            response: b"first answer".to_vec(),
        }
    );
    // The same id on another ticket is another event.
    assert_eq!(
        tx.claim(&IdempotencyKey::event("t-2", "comment-1"), fingerprint)
            .await
            .expect("claims"),
        Claim::Fresh
    );
    drop(tx);
    store.close().await;
    fresh.remove().await;
}

/// A database as the first release left it, with a ticket in it, upgrades in place at
/// start: the ticket reads back unchanged, without a trace context, and migrating again
/// changes nothing.
async fn an_older_database_upgrades_in_place(db: Db) {
    let fresh = fresh_database(db).await;
    let store = servicelevel::store::SqlStore::connect(&fresh.direct_url, 2)
        .await
        .expect("opens");
    store.migrate_until(1).await.expect("the first schema");
    store
        .execute_raw(
            "INSERT INTO tickets (id, organization, source_system, external_id, request_type, \
             received_us, policy, policy_version, status, cycle, create_us, update_us) \
             VALUES ('t-1', 'acme', 'crm', 'C-1', 'incident', 1772366400000000, 'desk', 1, 'NEW', 0, \
             1772366400000000, 1772366400000000)",
        )
        .await
        .expect("a ticket of the first release");
    store.migrate().await.expect("upgrades");
    store.migrate().await.expect("migrating again is nothing");
    let t = store.get_ticket("t-1").await.expect("reads back");
    assert_eq!(t.ticket.external_id.as_str(), "C-1");
    assert_eq!(t.ticket.received_at, utc(2026, 3, 1, 12, 0));
    assert_eq!(t.trace_context, None);
    store.close().await;
    fresh.remove().await;
}

/// Tickets became unique per organisation: a database from before (with a ticket, its
/// event and clocks) upgrades in place, keeps them, and then takes a second
/// organisation's ticket with the same source and external id; the same organisation
/// still cannot have two.
async fn tickets_become_unique_per_organisation_on_upgrade(db: Db) {
    let fresh = fresh_database(db).await;
    let store = servicelevel::store::SqlStore::connect(&fresh.direct_url, 2)
        .await
        .expect("opens");
    store.migrate_until(3).await.expect("the third schema");
    store
        .execute_raw(
            "INSERT INTO tickets (id, organization, source_system, external_id, request_type, \
             received_us, policy, policy_version, status, cycle, create_us, update_us, trace_context) \
             VALUES ('t-1', 'acme', 'zendesk', '1001', 'incident', 1772366400000000, 'desk', 1, 'NEW', 0, \
             1772366400000000, 1772366400000000, '00-abc-def-01')",
        )
        .await
        .expect("a ticket");
    store
        .execute_raw(
            "INSERT INTO ticket_events (ticket_id, seq, occurred_us, body, client, request_id, record_us) \
             VALUES ('t-1', 1, 1772366400000000, '{\"type\":\"agent_responded\"}', 'crm', 'e-1', 1772366400000000)",
        )
        .await
        .expect("its event");
    store.migrate().await.expect("upgrades");
    let t = store.get_ticket("t-1").await.expect("reads back");
    assert_eq!(t.trace_context.as_deref(), Some("00-abc-def-01"));
    assert_eq!(store.ticket_events("t-1").await.expect("events").len(), 1);
    let other = |id: &str, org: &str| {
        format!(
            "INSERT INTO tickets (id, organization, source_system, external_id, request_type, \
             received_us, policy, policy_version, status, cycle, create_us, update_us) \
             VALUES ('{id}', '{org}', 'zendesk', '1001', 'incident', 1772366400000000, 'desk', 1, \
             'NEW', 0, 1772366400000000, 1772366400000000)"
        )
    };
    store
        .execute_raw(&other("t-2", "globex"))
        .await
        .expect("another organisation's 1001");
    assert!(
        store.execute_raw(&other("t-3", "acme")).await.is_err(),
        "the same organisation's 1001 twice"
    );
    let acme = servicelevel::domain::names::ResourceId::parse("acme").expect("valid");
    let found = store
        .find_ticket(&acme, "zendesk", "1001")
        .await
        .expect("finds")
        .expect("acme's");
    assert_eq!(found.ticket.id, "t-1");
    store.close().await;
    fresh.remove().await;
}

/// `sqlite://FILE` creates a missing file (no `?mode=rwc` needed), relative paths too;
/// a URL naming its own mode keeps it (`mode=rw` refuses a missing file).
#[tokio::test]
async fn a_sqlite_url_to_a_new_file_creates_it() {
    let dir = std::env::temp_dir().join(format!(
        "servicelevel-new-db-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _dir = TempDir(dir.clone());
    let file = dir.join("new.db");
    assert!(!file.exists());
    let store = servicelevel::store::SqlStore::connect(&format!("sqlite://{}", file.display()), 1)
        .await
        .expect("a new file opens");
    store.migrate().await.expect("migrations apply");
    store.close().await;
    assert!(file.exists(), "the file was created");
    let missing = dir.join("missing.db");
    let refused = servicelevel::store::SqlStore::connect(
        &format!("sqlite://{}?mode=rw", missing.display()),
        1,
    )
    .await;
    assert!(refused.is_err(), "mode=rw is kept: no file is created");
    assert!(!missing.exists());
}
