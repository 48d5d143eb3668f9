//! Prepaid hours through the API, on both stores.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use servicelevel::api::pb;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;

const LON: chrono_tz::Tz = chrono_tz::Europe::London;
const NY: chrono_tz::Tz = chrono_tz::America::New_York;

pub(crate) async fn hours(s: &TestServer) -> HoursServiceClient<Channel> {
    HoursServiceClient::new(connect(s.addr).await)
}

pub(crate) fn bucket(name: &str, unit: pb::PeriodUnit, minutes: i32) -> pb::BucketTerms {
    pb::BucketTerms {
        bucket: name.into(),
        period_unit: unit as i32,
        allowance_minutes: minutes,
        ..Default::default()
    }
}

pub(crate) fn bill(rate: i64, currency: &str) -> Option<pb::OverageRule> {
    Some(pb::OverageRule {
        kind: Some(pb::overage_rule::Kind::Bill(pb::BillRate {
            rate_minor_units_per_hour: rate,
            currency: currency.into(),
        })),
    })
}

pub(crate) async fn plan(
    h: &mut HoursServiceClient<Channel>,
    id: &str,
    buckets: Vec<pb::BucketTerms>,
) -> pb::Plan {
    h.create_plan(Request::new(pb::CreatePlanRequest {
        plan_id: id.into(),
        plan: Some(pb::Plan {
            display_name: id.into(),
            buckets,
            ..Default::default()
        }),
        request_id: rid("plan"),
    }))
    .await
    .expect("plan created")
    .into_inner()
}

pub(crate) async fn contract(
    h: &mut HoursServiceClient<Channel>,
    org: &str,
    start: &str,
    plans: &[(&str, &str)],
) -> pb::HoursContract {
    h.set_hours_contract(Request::new(pb::SetHoursContractRequest {
        contract: Some(pb::HoursContract {
            organization: format!("organizations/{org}"),
            start_date: start.into(),
            assignments: plans
                .iter()
                .map(|(p, d)| pb::PlanAssignment {
                    plan: format!("plans/{p}"),
                    effective_date: d.to_string(),
                })
                .collect(),
            ..Default::default()
        }),
        request_id: rid("contract"),
    }))
    .await
    .expect("contract set")
    .into_inner()
}

/// An organisation on a trivial SLA policy, so it can have tickets.
pub(crate) async fn org(s: &TestServer, id: &str, zone: &str, contacts: Vec<pb::Contact>) {
    if s.policies
        .clone()
        .get_policy(Request::new(pb::GetPolicyRequest {
            name: "policies/plain".into(),
            version: 0,
        }))
        .await
        .is_err()
    {
        create_policy(
            s,
            "plain",
            pb::PolicyDefinition {
                clocks: vec![first_response_within_an_hour()],
                ..Default::default()
            },
        )
        .await;
    }
    create_org(s, id, organization(zone, "", "plain", vec![], contacts)).await;
}

pub(crate) fn usage(
    org: &str,
    bucket: &str,
    minutes: i32,
    at: DateTime<Utc>,
) -> pb::RecordUsageRequest {
    pb::RecordUsageRequest {
        organization: format!("organizations/{org}"),
        bucket: bucket.into(),
        minutes,
        service_time: ts(at),
        request_id: rid("use"),
        ..Default::default()
    }
}

pub(crate) async fn statement(
    h: &mut HoursServiceClient<Channel>,
    org: &str,
    date: &str,
) -> pb::Statement {
    h.get_statement(Request::new(pb::GetStatementRequest {
        organization: format!("organizations/{org}"),
        date: date.into(),
        include_entries: true,
    }))
    .await
    .expect("statement")
    .into_inner()
}

fn bucket_of<'a>(s: &'a pb::Statement, name: &str) -> &'a pb::BucketStatement {
    s.buckets
        .iter()
        .find(|b| b.bucket == name)
        .unwrap_or_else(|| panic!("no bucket {name}"))
}

/// Concinnity tiers I-IV (000_bd1a46f9f76fe2f5.txt): meetings per month and training per
/// year; Tiers I-II include none ("subject to additional fees", billed at a placeholder
/// 150.00 USD an hour).
async fn concinnity_tiers(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 20, 12, 0)).await;
    let mut h = hours(&s).await;
    for (tier, meetings, training) in [
        ("tier-1", 0, 0),
        ("tier-2", 0, 0),
        ("tier-3", 60, 120),
        ("tier-4", 180, 720),
    ] {
        let mut m = bucket("meetings", pb::PeriodUnit::Month, meetings);
        m.overage = bill(15_000, "USD");
        let mut t = bucket("training", pb::PeriodUnit::Year, training);
        t.overage = bill(15_000, "USD");
        plan(&mut h, tier, vec![m, t]).await;
        org(&s, &format!("client-{tier}"), "America/New_York", vec![]).await;
        contract(
            &mut h,
            &format!("client-{tier}"),
            "2026-01-01",
            &[(tier, "2026-01-01")],
        )
        .await;
    }
    // Tier III: a 50-minute meeting on 3 March fits the hour; a 30-minute one on 10 March
    // takes the last 10 and bills 20 (20/60 x 150.00 = 50.00).
    h.record_usage(Request::new(usage(
        "client-tier-3",
        "meetings",
        50,
        local(NY, 2026, 3, 3, 10, 0),
    )))
    .await
    .expect("used");
    let r = h
        .record_usage(Request::new(usage(
            "client-tier-3",
            "meetings",
            30,
            local(NY, 2026, 3, 10, 10, 0),
        )))
        .await
        .expect("used")
        .into_inner();
    let line = r
        .entries
        .last()
        .and_then(|e| e.usage.clone())
        .expect("usage line");
    assert_eq!(
        (
            line.from_allowance_minutes,
            line.overage_minutes,
            line.overage_amount_minor_units
        ),
        (10, 20, 5_000)
    );
    // Training: 2 hours a year; 90 minutes in March leave 30 for the rest of the year.
    h.record_usage(Request::new(usage(
        "client-tier-3",
        "training",
        90,
        local(NY, 2026, 3, 12, 10, 0),
    )))
    .await
    .expect("used");
    let st = statement(&mut h, "client-tier-3", "2026-03-15").await;
    let m = bucket_of(&st, "meetings");
    assert_eq!(
        (
            m.period_start.as_str(),
            m.granted,
            m.consumed_from_allowance,
            m.overage_minutes
        ),
        ("2026-03-01", 60, 60, 20)
    );
    assert_eq!(
        m.overage_amounts,
        vec![pb::Money {
            currency: "USD".into(),
            minor_units: 5_000
        }]
    );
    let t = bucket_of(&st, "training");
    assert_eq!(
        (t.period_start.as_str(), t.granted, t.closing),
        ("2026-01-01", 120, 30)
    );
    // Tier IV: 3 hours of meetings a month, 12 hours of training a year.
    let st = statement(&mut h, "client-tier-4", "2026-03-15").await;
    assert_eq!(
        (
            bucket_of(&st, "meetings").granted,
            bucket_of(&st, "training").granted
        ),
        (180, 720)
    );
    // Tier I: none included, so a meeting is billed whole: 45 minutes = 112.50.
    let r = h
        .record_usage(Request::new(usage(
            "client-tier-1",
            "meetings",
            45,
            local(NY, 2026, 3, 4, 10, 0),
        )))
        .await
        .expect("used")
        .into_inner();
    let line = r
        .entries
        .last()
        .and_then(|e| e.usage.clone())
        .expect("usage line");
    assert_eq!(
        (line.overage_minutes, line.overage_amount_minor_units),
        (45, 11_250)
    );
    s.stop().await;
}

/// 24social (004_7d3a5ac72f4831df.txt): March 2026 in London, worked out in docs/hours.md.
async fn social_month(db: Db, billed: bool) {
    let s = TestServer::start(db, local(LON, 2026, 3, 1, 9, 0)).await;
    let mut h = hours(&s).await;
    let mut cs = bucket("customer_success", pb::PeriodUnit::Month, 600);
    cs.rounding_increment_minutes = 15;
    cs.requires_authorisation = true;
    if billed {
        cs.overage = bill(8_500, "GBP");
    }
    cs.free_activities = vec![
        pb::FreeActivity {
            kind: "weekly_review".into(),
            per_occurrence_cap_minutes: 30,
            frequency: pb::Frequency::IsoWeek as i32,
            max_per_frequency: 1,
        },
        pb::FreeActivity {
            kind: "quarterly_review".into(),
            per_occurrence_cap_minutes: 180,
            frequency: pb::Frequency::Quarter as i32,
            max_per_frequency: 1,
        },
    ];
    plan(&mut h, "social-10h", vec![cs]).await;
    org(
        &s,
        "brand",
        "Europe/London",
        vec![contact("ann", "main_stakeholder"), contact("bob", "")],
    )
    .await;
    contract(
        &mut h,
        "brand",
        "2026-01-01",
        &[("social-10h", "2026-01-01")],
    )
    .await;
    // Tickets: S-1, S-3, S-4 authorised by Ann; S-2 only by Bob.
    let mut tickets = std::collections::HashMap::new();
    for (ext, who) in [
        ("S-1", "ann"),
        ("S-2", "bob"),
        ("S-3", "ann"),
        ("S-4", "ann"),
    ] {
        let t = create_ticket(
            &s,
            ticket("brand", ext, "task", "", local(LON, 2026, 3, 1, 9, 0)),
        )
        .await;
        let mut e = event(
            local(LON, 2026, 3, 1, 9, 5),
            pb::ticket_event::Kind::WorkAuthorisation(()),
        );
        e.contact_id = who.into();
        if who == "ann" {
            record(&s, &t.name, e).await.expect("authorised");
        } else {
            // The SLA policy here does not restrict who authorises; the hours do.
            let _ = record(&s, &t.name, e).await;
        }
        tickets.insert(ext, t.name.clone());
    }
    s.set_now(local(LON, 2026, 3, 31, 12, 0));
    let rec = |minutes, day, activity: &str, ticket: Option<&str>| {
        let mut u = usage(
            "brand",
            "customer_success",
            minutes,
            local(LON, 2026, 3, day, 10, 0),
        );
        u.activity_kind = activity.into();
        u.ticket = ticket.map(|t| tickets[t].clone()).unwrap_or_default();
        u
    };
    h.record_usage(Request::new(rec(30, 2, "weekly_review", None)))
        .await
        .expect("review");
    h.record_usage(Request::new(rec(250, 3, "", Some("S-1"))))
        .await
        .expect("S-1");
    let st = h
        .record_usage(Request::new(rec(60, 4, "", Some("S-2"))))
        .await
        .expect_err("not authorised");
    assert_eq!(st.code(), Code::FailedPrecondition);
    let st = h
        .record_usage(Request::new(rec(60, 4, "", None)))
        .await
        .expect_err("no ticket");
    assert_eq!(st.code(), Code::FailedPrecondition);
    h.record_usage(Request::new(rec(45, 9, "weekly_review", None)))
        .await
        .expect("review");
    h.record_usage(Request::new(rec(20, 12, "weekly_review", None)))
        .await
        .expect("second review");
    h.record_usage(Request::new(rec(200, 16, "quarterly_review", None)))
        .await
        .expect("quarterly");
    h.record_usage(Request::new(rec(200, 18, "", Some("S-3"))))
        .await
        .expect("S-3");
    let s4 = h
        .record_usage(Request::new(rec(100, 24, "", Some("S-4"))))
        .await;
    if billed {
        let line = s4
            .expect("billed")
            .into_inner()
            .entries
            .last()
            .and_then(|e| e.usage.clone())
            .expect("line");
        assert_eq!(
            (
                line.from_allowance_minutes,
                line.overage_minutes,
                line.overage_amount_minor_units
            ),
            (60, 45, 6_375)
        );
    } else {
        assert_eq!(
            s4.expect_err("refused whole").code(),
            Code::FailedPrecondition
        );
    }
    // Read on 4 April: March closed at 23:00Z on 3 April (end + 72 h).
    s.set_now(local(LON, 2026, 4, 4, 12, 0));
    let st = statement(&mut h, "brand", "2026-03-15").await;
    let b = bucket_of(&st, "customer_success");
    let free: Vec<(String, i64)> = b
        .non_deducted
        .iter()
        .map(|a| (a.activity_kind.clone(), a.minutes))
        .collect();
    assert_eq!(
        free,
        vec![
            ("quarterly_review".to_string(), 180),
            ("weekly_review".to_string(), 60)
        ]
    );
    assert!(b.closed);
    assert_eq!(
        (b.opening, b.granted, b.rolled_in, b.adjustments, b.closing),
        (0, 600, 0, 0, 0)
    );
    if billed {
        assert_eq!(
            (
                b.consumed_from_allowance,
                b.overage_minutes,
                b.expired,
                b.raw_minutes,
                b.billable_minutes
            ),
            (600, 45, 0, 845, 645)
        );
        assert_eq!(
            b.overage_amounts,
            vec![pb::Money {
                currency: "GBP".into(),
                minor_units: 6_375
            }]
        );
    } else {
        assert_eq!(
            (
                b.consumed_from_allowance,
                b.overage_minutes,
                b.expired,
                b.raw_minutes,
                b.billable_minutes
            ),
            (540, 0, 60, 745, 540)
        );
    }
    // April starts fresh with 600: unused hours never roll over.
    let bal = h
        .get_balance(Request::new(pb::GetBalanceRequest {
            organization: "organizations/brand".into(),
            bucket: "customer_success".into(),
            as_of_time: None,
        }))
        .await
        .expect("balance")
        .into_inner();
    assert_eq!(
        (
            bal.period_start.as_str(),
            bal.granted,
            bal.rolled_in,
            bal.available
        ),
        ("2026-04-01", 600, 0, 600)
    );
    // A closed statement never changes: reading it again gives the same lines.
    assert_eq!(
        statement(&mut h, "brand", "2026-03-15").await.buckets,
        st.buckets
    );
    s.stop().await;
}

async fn social_month_reject(db: Db) {
    social_month(db, false).await;
}

async fn social_month_bill(db: Db) {
    social_month(db, true).await;
}

/// 32 concurrent clients on one `reject` account of 600 minutes, 25 minutes each: exactly
/// 24 fit. Refused requests leave nothing behind; the entries add up to the balance.
async fn concurrent_usage_never_overdraws(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 20, 12, 0)).await;
    let mut h = hours(&s).await;
    plan(
        &mut h,
        "hot",
        vec![bucket("customer_success", pb::PeriodUnit::Month, 600)],
    )
    .await;
    org(&s, "hot", "Europe/London", vec![]).await;
    contract(&mut h, "hot", "2026-01-01", &[("hot", "2026-01-01")]).await;
    let h = Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut h = (*h).clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..2 {
                let r = h
                    .record_usage(Request::new(usage(
                        "hot",
                        "customer_success",
                        25,
                        local(LON, 2026, 3, 2 + k, 9, i),
                    )))
                    .await;
                match r {
                    Ok(_) => return 1,
                    Err(st) if st.code() == Code::FailedPrecondition => continue,
                    Err(st) => panic!("unexpected {st:?}"),
                }
            }
            0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("task");
    }
    assert_eq!(ok, 24);
    let mut h = (*h).clone();
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
    let consumes = entries
        .iter()
        .filter(|e| e.kind == pb::EntryKind::Consume as i32)
        .count();
    assert_eq!(consumes, 24, "refused requests posted nothing");
    let sum: i64 = entries.iter().map(|e| e.minutes).sum();
    let bal = h
        .get_balance(Request::new(pb::GetBalanceRequest {
            organization: "organizations/hot".into(),
            bucket: "customer_success".into(),
            as_of_time: None,
        }))
        .await
        .expect("balance")
        .into_inner();
    assert_eq!((sum, bal.balance, bal.consumed_from_allowance), (0, 0, 600));
    let seqs: Vec<i64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(
        seqs,
        (1..=entries.len() as i64).collect::<Vec<_>>(),
        "numbered without gaps"
    );
    s.stop().await;
}

/// Holds, captures and releases; late usage for a locked period; retries; reversals.
async fn holds_locks_retries_and_reversals(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 10, 12, 0)).await;
    let mut h = hours(&s).await;
    let mut meetings = bucket("meetings", pb::PeriodUnit::Month, 180);
    meetings.overage = bill(6_000, "GBP");
    plan(&mut h, "meet", vec![meetings]).await;
    org(&s, "acme", "Europe/London", vec![]).await;
    contract(&mut h, "acme", "2026-01-01", &[("meet", "2026-01-01")]).await;
    let hold = |id: &str, minutes: i32, day: u32| pb::HoldMinutesRequest {
        organization: "organizations/acme".into(),
        bucket: "meetings".into(),
        hold_id: id.into(),
        minutes,
        service_time: ts(local(LON, 2026, 3, day, 14, 0)),
        request_id: rid("hold"),
        ..Default::default()
    };
    // Two 90-minute bookings use the 180 minutes up: a third must be billed, it cannot
    // promise the same hour.
    let a = h
        .hold_minutes(Request::new(hold("b-1", 90, 20)))
        .await
        .expect("held")
        .into_inner();
    assert_eq!(
        a.balance.as_ref().map(|b| (b.held, b.available)),
        Some((90, 90))
    );
    h.hold_minutes(Request::new(hold("b-2", 90, 21)))
        .await
        .expect("held");
    let c = h
        .hold_minutes(Request::new(hold("b-3", 60, 22)))
        .await
        .expect("held as overage")
        .into_inner();
    assert_eq!(c.balance.as_ref().map(|b| b.available), Some(0));
    // b-1 took 60 minutes: 60 consumed, 30 released; b-2 is cancelled.
    s.set_now(local(LON, 2026, 3, 21, 18, 0));
    let cap = h
        .capture_hold(Request::new(pb::CaptureHoldRequest {
            organization: "organizations/acme".into(),
            bucket: "meetings".into(),
            hold_id: "b-1".into(),
            minutes: 60,
            request_id: rid("cap"),
        }))
        .await
        .expect("captured")
        .into_inner();
    let kinds: Vec<i32> = cap.entries.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&(pb::EntryKind::Capture as i32)),
        "{kinds:?}"
    );
    let release = pb::ReleaseHoldRequest {
        organization: "organizations/acme".into(),
        bucket: "meetings".into(),
        hold_id: "b-2".into(),
        reason: "cancelled".into(),
        request_id: "release-b2".into(),
    };
    let first = h
        .release_hold(Request::new(release.clone()))
        .await
        .expect("released")
        .into_inner();
    // A retry returns the first answer and posts nothing more.
    let again = h
        .release_hold(Request::new(release.clone()))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(first, again);
    let mut changed = release;
    changed.hold_id = "b-3".into();
    let st = h
        .release_hold(Request::new(changed))
        .await
        .expect_err("different request, same key");
    assert_eq!(st.code(), Code::AlreadyExists);
    assert!(st.message().contains("hold_id"), "{}", st.message());
    // Reverse the capture (entered by mistake): its minutes come back.
    let capture_seq = cap
        .entries
        .iter()
        .find(|e| e.kind == pb::EntryKind::Capture as i32)
        .map(|e| e.sequence)
        .expect("capture entry");
    let rev = h
        .reverse_entry(Request::new(pb::ReverseEntryRequest {
            organization: "organizations/acme".into(),
            bucket: "meetings".into(),
            sequence: capture_seq,
            reason: "recorded on the wrong organisation".into(),
            request_id: rid("rev"),
        }))
        .await
        .expect("reversed")
        .into_inner();
    assert_eq!(rev.entries.last().map(|e| e.reverses), Some(capture_seq));
    // On 2 April the billing job locks March; late usage for 30 March then lands in April
    // as an adjustment naming its service time, and March's statement stays as it was.
    s.set_now(local(LON, 2026, 4, 2, 9, 0));
    h.lock_period(Request::new(pb::LockPeriodRequest {
        organization: "organizations/acme".into(),
        bucket: "meetings".into(),
        period_start: "2026-03-01".into(),
        request_id: rid("lock"),
    }))
    .await
    .expect("locked");
    let march = statement(&mut h, "acme", "2026-03-15").await;
    assert!(bucket_of(&march, "meetings").closed);
    let late = h
        .record_usage(Request::new(usage(
            "acme",
            "meetings",
            30,
            local(LON, 2026, 3, 30, 10, 0),
        )))
        .await
        .expect("late usage")
        .into_inner();
    let posted = late.entries.last().expect("entry");
    assert_eq!(
        (posted.kind, posted.period_start.as_str()),
        (pb::EntryKind::Adjust as i32, "2026-04-01")
    );
    assert_eq!(
        from_ts(&posted.service_time),
        Some(local(LON, 2026, 3, 30, 10, 0))
    );
    assert_eq!(
        statement(&mut h, "acme", "2026-03-15").await.buckets,
        march.buckets
    );
    // Bad input is named, and posts nothing.
    let st = h
        .record_usage(Request::new(pb::RecordUsageRequest {
            organization: "acme".into(),
            bucket: "Not A Bucket".into(),
            minutes: -5,
            ..Default::default()
        }))
        .await
        .expect_err("invalid");
    let v = violations(&st);
    for f in [
        "organization",
        "bucket",
        "minutes",
        "service_time",
        "request_id",
    ] {
        assert!(v.contains(&f.to_string()), "{f} not in {v:?}");
    }
    s.stop().await;
}

/// Plans and contracts are checked as a whole.
async fn plans_and_contracts_are_validated(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 10, 12, 0)).await;
    let mut h = hours(&s).await;
    let mut bad = bucket("meetings", pb::PeriodUnit::Unspecified, -1);
    bad.overage = bill(-5, "pounds");
    bad.free_activities = vec![pb::FreeActivity {
        kind: "weekly_review".into(),
        per_occurrence_cap_minutes: 0,
        frequency: 0,
        max_per_frequency: 1,
    }];
    let st = h
        .create_plan(Request::new(pb::CreatePlanRequest {
            plan_id: "bad".into(),
            plan: Some(pb::Plan {
                display_name: "Bad".into(),
                buckets: vec![bad],
                ..Default::default()
            }),
            request_id: rid("plan"),
        }))
        .await
        .expect_err("invalid plan");
    let v = violations(&st);
    for f in [
        "plan.buckets[0].period_unit",
        "plan.buckets[0].allowance_minutes",
        "plan.buckets[0].overage.bill.currency",
        "plan.buckets[0].free_activities[0].per_occurrence_cap_minutes",
        "plan.buckets[0].free_activities[0].frequency",
    ] {
        assert!(v.contains(&f.to_string()), "{f} not in {v:?}");
    }
    org(&s, "acme", "Europe/London", vec![]).await;
    let st = h
        .set_hours_contract(Request::new(pb::SetHoursContractRequest {
            contract: Some(pb::HoursContract {
                organization: "organizations/acme".into(),
                start_date: "2026-01-01".into(),
                assignments: vec![pb::PlanAssignment {
                    plan: "plans/nope".into(),
                    effective_date: "2026-01-01".into(),
                }],
                ..Default::default()
            }),
            request_id: rid("contract"),
        }))
        .await
        .expect_err("unknown plan");
    assert_eq!(st.code(), Code::FailedPrecondition);
    // No contract: usage is refused, naming what is missing.
    let st = h
        .record_usage(Request::new(usage(
            "acme",
            "meetings",
            30,
            local(LON, 2026, 3, 9, 10, 0),
        )))
        .await
        .expect_err("no contract");
    assert_eq!(st.code(), Code::FailedPrecondition);
    let _ = TimeDelta::zero();
    s.stop().await;
}

/// Random sequences of usages, holds, captures, releases, adjustments, reversals, locks
/// and the passing of time, through the API, against the pure ledger core deciding the
/// same commands at the same instants: the store, its caches and its locking must not
/// change a single entry. (The core itself is checked against a simple model in
/// `src/domain/ledger/model_tests.rs`.)
async fn random_sequences_match_the_core(db: Db) {
    use servicelevel::domain::ledger::{
        BucketName, BucketTerms, Command, Contract, Currency, Entry, Ledger, Overage, PeriodUnit,
        Plan, Rollover, TermsHistory, Usage, start_of_day,
    };
    use servicelevel::domain::names::{ExternalId, PlanName, ShortText};
    let zone = chrono_tz::Pacific::Kiritimati;
    for seed in [7u64, 2026, 99] {
        let start = local(zone, 2026, 1, 31, 12, 0);
        let s = TestServer::start(db, start).await;
        let mut h = hours(&s).await;
        let mut b = bucket("support", pb::PeriodUnit::Month, 120);
        b.rollover = Some(pb::RolloverRule {
            kind: Some(pb::rollover_rule::Kind::CappedMinutes(60)),
        });
        b.overage = bill(9_000, "AUD");
        b.rounding_increment_minutes = 15;
        b.grace_hours = 24;
        plan(&mut h, "rnd", vec![b]).await;
        org(&s, "rnd", "Pacific/Kiritimati", vec![]).await;
        contract(&mut h, "rnd", "2026-01-31", &[("rnd", "2026-01-31")]).await;
        // The same contract, built by hand for the core.
        let mut terms = BucketTerms::new(
            BucketName::parse("support").expect("valid"),
            PeriodUnit::Month,
            120,
        );
        terms.rollover = Rollover::Capped { minutes: 60 };
        terms.overage = Overage::Bill {
            rate_minor_units_per_hour: 9_000,
            currency: Currency::parse("AUD").expect("valid"),
        };
        terms.rounding_increment_minutes = 15;
        terms.grace_hours = 24;
        let anchor = chrono::NaiveDate::from_ymd_opt(2026, 1, 31).expect("valid");
        let contract_core = Contract {
            zone,
            start: anchor,
            terms: TermsHistory::single(
                start_of_day(zone, anchor).expect("in range"),
                Plan {
                    name: PlanName::parse("rnd").expect("valid"),
                    buckets: vec![terms],
                },
            )
            .expect("valid"),
        };
        let mut core = Ledger::new(
            &contract_core,
            BucketName::parse("support").expect("valid"),
            vec![],
        )
        .expect("ledger");
        let actor = ExternalId::parse("anonymous").expect("valid");
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut now = start;
        let mut holds: Vec<String> = Vec::new();
        let (mut posted, mut refused) = (0, 0);
        let org_name = "organizations/rnd".to_string();
        for step in 0..40 {
            now += TimeDelta::hours(1 + next(60) as i64);
            s.set_now(now);
            let service = now - TimeDelta::hours(next(30) as i64);
            let (api, cmd): (Result<pb::LedgerWriteResponse, tonic::Status>, Command) =
                match next(7) {
                    0..=2 => {
                        let minutes = 1 + next(90) as i32;
                        let mut u = usage("rnd", "support", minutes, service);
                        u.request_id = format!("u-{seed}-{step}");
                        (
                            h.record_usage(Request::new(u))
                                .await
                                .map(|r| r.into_inner()),
                            Command::RecordUsage(Usage {
                                minutes: minutes as u32,
                                activity: None,
                                service_at: service,
                                ticket: None,
                                actor: actor.clone(),
                                reason: None,
                            }),
                        )
                    }
                    3 => {
                        let id = format!("h-{step}");
                        let minutes = 1 + next(60) as i32;
                        let at = now + TimeDelta::days(next(20) as i64);
                        holds.push(id.clone());
                        (
                            h.hold_minutes(Request::new(pb::HoldMinutesRequest {
                                organization: org_name.clone(),
                                bucket: "support".into(),
                                hold_id: id.clone(),
                                minutes,
                                service_time: ts(at),
                                request_id: format!("h-{seed}-{step}"),
                                ..Default::default()
                            }))
                            .await
                            .map(|r| r.into_inner()),
                            Command::Hold {
                                hold: ExternalId::parse(&id).expect("valid"),
                                minutes: minutes as u32,
                                service_at: at,
                                activity: None,
                                ticket: None,
                                actor: actor.clone(),
                            },
                        )
                    }
                    4 if !holds.is_empty() => {
                        let id = holds[next(holds.len() as u64) as usize].clone();
                        let minutes = next(70) as i32;
                        (
                            h.capture_hold(Request::new(pb::CaptureHoldRequest {
                                organization: org_name.clone(),
                                bucket: "support".into(),
                                hold_id: id.clone(),
                                minutes,
                                request_id: format!("c-{seed}-{step}"),
                            }))
                            .await
                            .map(|r| r.into_inner()),
                            Command::Capture {
                                hold: ExternalId::parse(&id).expect("valid"),
                                minutes: minutes as u32,
                                actor: actor.clone(),
                            },
                        )
                    }
                    5 => {
                        let minutes = next(61) as i32 - 30;
                        let minutes = if minutes == 0 { 5 } else { minutes };
                        (
                            h.adjust_balance(Request::new(pb::AdjustBalanceRequest {
                                organization: org_name.clone(),
                                bucket: "support".into(),
                                minutes,
                                reason: "correction".into(),
                                request_id: format!("a-{seed}-{step}"),
                            }))
                            .await
                            .map(|r| r.into_inner()),
                            Command::Adjust {
                                minutes: i64::from(minutes),
                                reason: ShortText::parse("correction").expect("valid"),
                                actor: actor.clone(),
                            },
                        )
                    }
                    _ => {
                        let entry = 1 + next(core.next_seq().max(1));
                        (
                            h.reverse_entry(Request::new(pb::ReverseEntryRequest {
                                organization: org_name.clone(),
                                bucket: "support".into(),
                                sequence: entry as i64,
                                reason: "mistake".into(),
                                request_id: format!("r-{seed}-{step}"),
                            }))
                            .await
                            .map(|r| r.into_inner()),
                            Command::Reverse {
                                entry,
                                reason: ShortText::parse("mistake").expect("valid"),
                                actor: actor.clone(),
                            },
                        )
                    }
                };
            let want: Result<Vec<Entry>, _> = core.decide(&cmd, now);
            match (api, want) {
                (Ok(got), Ok(want)) => {
                    let got: Vec<(i64, i32, String, i64, i64)> = got
                        .entries
                        .iter()
                        .map(|e| {
                            (
                                e.sequence,
                                e.kind,
                                e.period_start.clone(),
                                e.minutes,
                                e.held_minutes,
                            )
                        })
                        .collect();
                    let expect: Vec<(i64, i32, String, i64, i64)> = want
                        .iter()
                        .map(|e| {
                            let kind = serde_json::to_value(e.kind).expect("kind");
                            let code = match kind.as_str().unwrap_or("") {
                                "grant" => pb::EntryKind::Grant,
                                "consume" => pb::EntryKind::Consume,
                                "hold" => pb::EntryKind::Hold,
                                "capture" => pb::EntryKind::Capture,
                                "release" => pb::EntryKind::Release,
                                "rollover" => pb::EntryKind::Rollover,
                                "expire" => pb::EntryKind::Expire,
                                "adjust" => pb::EntryKind::Adjust,
                                _ => pb::EntryKind::Reversal,
                            };
                            (
                                e.seq as i64,
                                code as i32,
                                e.period.to_string(),
                                e.minutes,
                                e.held_minutes,
                            )
                        })
                        .collect();
                    assert_eq!(got, expect, "seed {seed} step {step}: {cmd:?}");
                    core.apply(want).expect("core applies its own decision");
                    posted += 1;
                }
                (Err(st), Err(e)) => {
                    assert_ne!(st.code(), Code::Internal, "seed {seed} step {step}: {e}");
                    refused += 1;
                }
                (got, want) => {
                    panic!("seed {seed} step {step} {cmd:?}: api {got:?} vs core {want:?}")
                }
            }
        }
        assert!(
            posted >= 20 && refused >= 1,
            "seed {seed}: {posted} posted, {refused} refused"
        );
        s.stop().await;
    }
}

/// The export streams every organisation with an hours contract once, by organisation id,
/// each statement the one GetStatement gives; a client that stops reading stops it.
async fn the_export_streams_each_statement_once_in_order(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 20, 12, 0)).await;
    let mut h = hours(&s).await;
    plan(
        &mut h,
        "small",
        vec![bucket("customer_success", pb::PeriodUnit::Month, 120)],
    )
    .await;
    // More organisations than the export reads at once, created out of id order.
    let mut ids: Vec<String> = (0..13)
        .map(|i| format!("org-{:02}", (i * 7) % 13))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        org(&s, id, "Europe/London", vec![]).await;
        contract(&mut h, id, "2026-01-01", &[("small", "2026-01-01")]).await;
        for k in 0..(i % 3) {
            h.record_usage(Request::new(usage(
                id,
                "customer_success",
                30,
                local(LON, 2026, 3, 2 + k as u32, 9, 0),
            )))
            .await
            .expect("usage recorded");
        }
    }
    // One organisation without a contract is not exported.
    org(&s, "no-contract", "Europe/London", vec![]).await;
    ids.sort();

    let mut export = h
        .export_statements(pb::ExportStatementsRequest {
            date: "2026-03-15".into(),
            include_entries: true,
        })
        .await
        .expect("export")
        .into_inner();
    let mut exported = Vec::new();
    while let Some(st) = export.message().await.expect("statement") {
        exported.push(st);
    }
    let names: Vec<String> = exported.iter().map(|st| st.organization.clone()).collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("organizations/{id}")).collect();
    assert_eq!(names, expected);
    for (st, id) in exported.iter().zip(&ids) {
        assert_eq!(st, &statement(&mut h, id, "2026-03-15").await, "{id}");
    }
    assert!(
        exported
            .iter()
            .any(|st| bucket_of(st, "customer_success").consumed_from_allowance == 60),
        "the statements carry their usage"
    );

    // A client that reads one statement and goes away; the server goes on serving.
    let mut export = h
        .export_statements(pb::ExportStatementsRequest {
            date: "2026-03-15".into(),
            include_entries: true,
        })
        .await
        .expect("export")
        .into_inner();
    export
        .message()
        .await
        .expect("statement")
        .expect("a first one");
    drop(export);
    assert_eq!(statement(&mut h, &ids[0], "2026-03-15").await, exported[0]);
    s.stop().await;
}

crate::on_both_stores!(
    the_export_streams_each_statement_once_in_order,
    concinnity_tiers,
    social_month_reject,
    social_month_bill,
    concurrent_usage_never_overdraws,
    holds_locks_retries_and_reversals,
    plans_and_contracts_are_validated,
    random_sequences_match_the_core,
);
