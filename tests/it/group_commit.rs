//! Group commit on hour accounts: writes queued on one account are decided together in
//! one transaction, and come out exactly as if applied one at a time in arrival order.

use std::sync::Arc;
use std::time::Duration;

use servicelevel::api::pb;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use sqlx::Connection as _;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;
use crate::hours::{bucket, contract, hours, org, plan};

const LON: chrono_tz::Tz = chrono_tz::Europe::London;

/// One ledger write of the model run.
#[derive(Debug, Clone)]
enum Op {
    Usage(pb::RecordUsageRequest),
    Hold(pb::HoldMinutesRequest),
}

/// What a write answered: the response, or the refusal's code and message.
type Outcome = Result<pb::LedgerWriteResponse, (Code, String)>;

async fn apply(h: &mut HoursServiceClient<Channel>, op: Op) -> Outcome {
    let answer = match op {
        Op::Usage(r) => h.record_usage(Request::new(r)).await,
        Op::Hold(r) => h.hold_minutes(Request::new(r)).await,
    };
    answer
        .map(|r| r.into_inner())
        .map_err(|s| (s.code(), s.message().to_string()))
}

/// An account of 600 minutes a month whose overage is refused, with 10 minutes used.
async fn account(s: &TestServer) -> HoursServiceClient<Channel> {
    let mut h = hours(s).await;
    plan(
        &mut h,
        "hot",
        vec![bucket("customer_success", pb::PeriodUnit::Month, 600)],
    )
    .await;
    org(s, "hot", "Europe/London", vec![]).await;
    contract(&mut h, "hot", "2026-01-01", &[("hot", "2026-01-01")]).await;
    let first = usage_request(10, 1, "first");
    apply(&mut h, Op::Usage(first))
        .await
        .expect("the account's first usage");
    h
}

fn usage_request(minutes: i32, day: u32, request_id: &str) -> pb::RecordUsageRequest {
    pb::RecordUsageRequest {
        organization: "organizations/hot".into(),
        bucket: "customer_success".into(),
        minutes,
        service_time: ts(local(LON, 2026, 3, day, 9, 0)),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// Random usage and holds, some too big for what is left (refused), retries of earlier
/// requests (answered as before) and request ids reused for other requests (refused).
fn model_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut ops: Vec<Op> = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.below(10);
        let op = if roll < 1 && !ops.is_empty() {
            ops[rng.below(ops.len() as u64) as usize].clone()
        } else if roll < 2 && !ops.is_empty() {
            let mut reused = ops[rng.below(ops.len() as u64) as usize].clone();
            match &mut reused {
                Op::Usage(r) => r.minutes += 1,
                Op::Hold(r) => r.minutes += 1,
            }
            reused
        } else {
            let minutes = 5 + rng.below(80) as i32;
            let day = 2 + rng.below(20) as u32;
            if roll < 4 {
                Op::Hold(pb::HoldMinutesRequest {
                    organization: "organizations/hot".into(),
                    bucket: "customer_success".into(),
                    hold_id: format!("hold-{i}"),
                    minutes,
                    service_time: ts(local(LON, 2026, 3, day, 14, 0)),
                    request_id: format!("hold-{seed}-{i}"),
                    ..Default::default()
                })
            } else {
                Op::Usage(usage_request(minutes, day, &format!("use-{seed}-{i}")))
            }
        };
        ops.push(op);
    }
    ops
}

/// Another session holds the account's row lock (SQLite: the one write lock), so the
/// server's writes to it queue.
struct AccountLock(sqlx::AnyConnection);

impl AccountLock {
    async fn take(s: &TestServer, db: Db) -> AccountLock {
        let mut conn = sqlx::AnyConnection::connect(&s.url)
            .await
            .expect("a second session");
        let sql = match db {
            Db::Sqlite => "BEGIN IMMEDIATE",
            Db::Postgres => {
                "BEGIN; SELECT next_seq FROM hour_accounts WHERE organization = 'hot' FOR UPDATE"
            }
        };
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .expect("lock taken");
        AccountLock(conn)
    }

    async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("lock released");
    }
}

async fn entries_and_balance(
    h: &mut HoursServiceClient<Channel>,
) -> (Vec<pb::LedgerEntry>, pb::Balance) {
    let entries = h
        .list_ledger_entries(Request::new(pb::ListLedgerEntriesRequest {
            organization: "organizations/hot".into(),
            bucket: "customer_success".into(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .expect("entries")
        .into_inner()
        .entries;
    let balance = h
        .get_balance(Request::new(pb::GetBalanceRequest {
            organization: "organizations/hot".into(),
            bucket: "customer_success".into(),
            as_of_time: None,
        }))
        .await
        .expect("balance")
        .into_inner();
    (entries, balance)
}

/// The model test: writes queued while the account is locked are decided as one group
/// (the first alone, the others together once it commits); a second server applies the
/// same writes one at a time in the same order. Answers, refusals, entries and balances
/// are the same.
async fn queued_writes_are_decided_as_one_at_a_time(db: Db) {
    let now = local(LON, 2026, 3, 25, 12, 0);
    for seed in [7u64, 1_000_003] {
        let ops = model_ops(seed, 40);

        let metrics = Arc::new(servicelevel::metrics::Metrics::default());
        let options = servicelevel::server::ServeOptions {
            metrics: Some(Arc::clone(&metrics)),
            ..test_options()
        };
        let grouped = TestServer::start_with(db, now, options).await;
        let h = account(&grouped).await;
        let lock = AccountLock::take(&grouped, db).await;
        let mut calls = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let mut h = h.clone();
            let op = op.clone();
            calls.push(tokio::spawn(async move { apply(&mut h, op).await }));
            // Arrival order is the order of the calls: each is queued before the next
            // leaves (the first one waits on the lock, the rest queue behind it).
            let mut waited = 0;
            while metrics.hours_writes_waiting_now() < i as i64 + 1 {
                waited += 1;
                assert!(waited < 1000, "write {i} was never queued");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        lock.release().await;
        let mut together: Vec<Outcome> = Vec::new();
        for c in calls {
            together.push(c.await.expect("call"));
        }
        assert_eq!(
            metrics.hours_writes_waiting_now(),
            0,
            "every write answered"
        );
        let mut h = h;
        let grouped_state = entries_and_balance(&mut h).await;
        grouped.stop().await;

        let single = TestServer::start(db, now).await;
        let mut h = account(&single).await;
        let mut alone: Vec<Outcome> = Vec::new();
        for op in ops.iter().cloned() {
            alone.push(apply(&mut h, op).await);
        }
        let single_state = entries_and_balance(&mut h).await;
        single.stop().await;

        let refused = alone.iter().filter(|o| o.is_err()).count();
        assert!(
            refused >= 5 && refused < ops.len() - 5,
            "seed {seed}: the run mixes answers and refusals ({refused} refused)"
        );
        for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
            assert_eq!(a, b, "seed {seed}: write {i} ({:?})", ops[i]);
        }
        assert_eq!(
            grouped_state, single_state,
            "seed {seed}: entries and balance"
        );
    }
}

/// A caller that gives up while its write is queued does not take the write with it: it
/// is applied, once, and a retry under its request id gets its answer.
async fn a_queued_write_whose_caller_gives_up_is_applied(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 25, 12, 0)).await;
    let h = account(&s).await;
    let lock = AccountLock::take(&s, db).await;
    let request = usage_request(30, 3, "given-up");
    let mut impatient = h.clone();
    let mut call = Request::new(request.clone());
    call.set_timeout(Duration::from_millis(200));
    let gave_up = impatient
        .record_usage(call)
        .await
        .expect_err("the caller's deadline passes while the account is locked");
    assert!(
        matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gave_up:?}"
    );
    lock.release().await;

    let mut h = h;
    let mut applied = false;
    for _ in 0..100 {
        let (entries, _) = entries_and_balance(&mut h).await;
        if entries.iter().any(|e| e.minutes == -30) {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        applied,
        "the queued write was applied after its caller left"
    );
    let retried = h
        .record_usage(Request::new(request.clone()))
        .await
        .expect("the retry gets the answer")
        .into_inner();
    let again = h
        .record_usage(Request::new(request))
        .await
        .expect("and again")
        .into_inner();
    assert_eq!(retried, again);
    assert_eq!(retried.entries.len(), 1);
    let (entries, balance) = entries_and_balance(&mut h).await;
    assert_eq!(
        entries.iter().filter(|e| e.minutes == -30).count(),
        1,
        "applied once"
    );
    assert_eq!(balance.consumed_from_allowance, 40);
    s.stop().await;
}

/// Two servers writing to one account: each one's kept fold falls behind whenever the
/// other writes, and the write is decided again on the locked account. Whatever the
/// interleaving, no write is lost or counted twice and the account is never overdrawn:
/// 40 usages of 20 minutes against the 590 minutes left, so exactly 29 go through.
async fn two_servers_writing_one_account_lose_nothing(db: Db) {
    let metrics = Arc::new(servicelevel::metrics::Metrics::default());
    let options = servicelevel::server::ServeOptions {
        metrics: Some(Arc::clone(&metrics)),
        ..test_options()
    };
    let s = TestServer::start_with(db, local(LON, 2026, 3, 25, 12, 0), options).await;
    let mut first = account(&s).await;
    let (addr, stop) = s.another_server().await;
    let second = HoursServiceClient::new(connect(addr).await);
    // Each server has written (and keeps a fold) before they race.
    for (i, h) in [first.clone(), second.clone()].into_iter().enumerate() {
        let mut h = h;
        apply(
            &mut h,
            Op::Usage(usage_request(20, 2, &format!("warm-{i}"))),
        )
        .await
        .expect("a usage");
    }
    let mut calls = Vec::new();
    for i in 0..40 {
        let mut h = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        calls.push(tokio::spawn(async move {
            apply(
                &mut h,
                Op::Usage(usage_request(20, 3, &format!("race-{i}"))),
            )
            .await
        }));
    }
    let mut accepted = 0;
    for c in calls {
        match c.await.expect("call") {
            Ok(_) => accepted += 1,
            Err((code, message)) => {
                assert_eq!(code, Code::FailedPrecondition, "{message}");
            }
        }
    }
    // 600 - 10 (the account's first usage) - 2 x 20 (warm-up) = 550: 27 more fit.
    assert_eq!(accepted, 27, "usages accepted");
    let (entries, balance) = entries_and_balance(&mut first).await;
    let usages = entries.iter().filter(|e| e.usage.is_some()).count();
    assert_eq!(usages, 1 + 2 + 27, "one entry a usage");
    let seqs: Vec<i64> = entries.iter().map(|e| e.sequence).collect();
    let gapless: Vec<i64> = (1..=entries.len() as i64).collect();
    assert_eq!(seqs, gapless, "numbered without gaps");
    assert_eq!(balance.available, 600 - 10 - 40 - 27 * 20);
    // A retry through the other server gets the first answer, not a second entry.
    let mut second = second;
    let retried = apply(&mut second, Op::Usage(usage_request(20, 3, "race-0"))).await;
    assert_eq!(entries_and_balance(&mut first).await.0.len(), entries.len());
    if let Ok(answer) = retried {
        assert_eq!(answer.entries.len(), 1, "the first answer's entry");
    }
    // Both ways were taken: on kept folds, and locked where the other server had
    // written (both servers count into the same metrics here).
    let (kept, locked) = (
        metrics.ledger_writes_decided_now("kept"),
        metrics.ledger_writes_decided_now("locked"),
    );
    assert!(kept > 0 && locked > 3, "kept {kept}, locked {locked}");
    let _ = stop.send(());
    s.stop().await;
}

crate::on_both_stores!(
    two_servers_writing_one_account_lose_nothing,
    queued_writes_are_decided_as_one_at_a_time,
    a_queued_write_whose_caller_gives_up_is_applied,
);
