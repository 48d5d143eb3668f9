//! The five contracts in `shared/seeds/`, each built through the API, with deadlines
//! worked out by hand.

use pb::TicketStatus as S;
use servicelevel::api::pb;

use crate::fixtures::*;
use crate::harness::*;

const NY: chrono_tz::Tz = chrono_tz::America::New_York;
const TO: chrono_tz::Tz = chrono_tz::America::Toronto;
const LON: chrono_tz::Tz = chrono_tz::Europe::London;

fn with_cancel(mut c: pb::ClockDefinition, cancel: Vec<pb::Trigger>) -> pb::ClockDefinition {
    c.cancel = cancel;
    c
}

/// 000_bd1a46f9f76fe2f5.txt, Concinnity Digital.
async fn concinnity(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 9, 10, 0)).await;
    create_calendar(
        &s,
        "concinnity-office",
        weekdays("America/New_York", &[("09:00", "17:00")], &[]),
    )
    .await;
    let mut receipt = promise(
        "receipt_confirmation",
        vec![on_received()],
        vec![entered(S::Confirmed)],
        vec![
            target(&["tier-1"], &[], &["task"], wall(48 * 60)),
            target(&["tier-2", "tier-3"], &[], &["task"], wall(24 * 60)),
            target(
                &["tier-4"],
                &[],
                &["task"],
                by_open_hours("office", wall(120), wall(720)),
            ),
        ],
    );
    receipt.targets[1].source = "Confirmed request receipt - 24 hours".into();
    let start_processing = with_cancel(
        promise(
            "start_processing",
            vec![entered(S::Confirmed)],
            vec![entered(S::Processing)],
            vec![
                target(
                    &["tier-1"],
                    &[],
                    &["task"],
                    business_days("office", 7, pb::BusinessDayMode::SameTime),
                ),
                target(
                    &["tier-2"],
                    &[],
                    &["task"],
                    business_days("office", 4, pb::BusinessDayMode::SameTime),
                ),
                target(
                    &["tier-3"],
                    &[],
                    &["task"],
                    business_days("office", 3, pb::BusinessDayMode::SameTime),
                ),
                target(
                    &["tier-4"],
                    &[],
                    &["task"],
                    business_days("office", 1, pb::BusinessDayMode::SameTime),
                ),
            ],
        ),
        vec![entered(S::OutOfScope)],
    );
    let mut review = promise(
        "review_autoclose",
        vec![entered(S::SubmittedForReview)],
        vec![left(S::SubmittedForReview)],
        vec![target(
            &[],
            &[],
            &["task"],
            business_days("office", 5, pb::BusinessDayMode::EndOfDay),
        )],
    );
    review.kind = pb::ClockKind::Timer as i32;
    review.no_pause = true;
    review.targets[0].on_due = Some(pb::DueAction {
        kind: Some(pb::due_action::Kind::MoveTo(pb::MoveToStatus {
            status: S::Closed as i32,
            reason: "auto_closed".into(),
        })),
    });
    create_policy(
        &s,
        "concinnity",
        pb::PolicyDefinition {
            clocks: vec![receipt, start_processing, review],
            ..Default::default()
        },
    )
    .await;
    for (org, plan) in [("tier-three", "tier-3"), ("tier-four", "tier-4")] {
        create_org(
            &s,
            org,
            organization(
                "America/New_York",
                plan,
                "concinnity",
                vec![binding("office", "concinnity-office")],
                vec![],
            ),
        )
        .await;
    }
    // Tier III, received Monday 2026-03-09 10:00: receipt within 24 wall-clock hours,
    // Tuesday 10:00. Confirmed Tuesday 09:00: start processing within 3 business days,
    // SameTime: D = Tuesday, T = Friday 09:00.
    let t = create_ticket(
        &s,
        ticket(
            "tier-three",
            "C-1",
            "task",
            "",
            local(NY, 2026, 3, 9, 10, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t, "receipt_confirmation"),
        Some(local(NY, 2026, 3, 10, 10, 0))
    );
    assert_eq!(
        clock(&t, "receipt_confirmation").source,
        "Confirmed request receipt - 24 hours"
    );
    s.set_now(local(NY, 2026, 3, 10, 9, 0));
    let t = record(
        &s,
        &t.name,
        event(local(NY, 2026, 3, 10, 9, 0), status(S::Confirmed)),
    )
    .await
    .expect("confirmed");
    assert_eq!(state(&t, "receipt_confirmation"), pb::ClockState::Met);
    assert_eq!(
        deadline(&t, "start_processing"),
        Some(local(NY, 2026, 3, 13, 9, 0))
    );
    // Submitted for review Friday 13 at 15:00: auto-closed after 5 business days, at the
    // end of the fifth (Mon 16 .. Fri 20): Friday 20 at 17:00.
    let t = record(
        &s,
        &t.name,
        event(local(NY, 2026, 3, 13, 15, 0), status(S::SubmittedForReview)),
    )
    .await
    .expect("submitted");
    assert_eq!(
        deadline(&t, "review_autoclose"),
        Some(local(NY, 2026, 3, 20, 17, 0))
    );
    assert_eq!(
        clock(&t, "review_autoclose").kind,
        pb::ClockKind::Timer as i32
    );
    // Tier IV received at 16:30, inside office hours: 2 wall-clock hours, 18:30 that day;
    // received at 17:30, outside: 12 hours, 05:30 the next morning.
    let t4 = create_ticket(
        &s,
        ticket(
            "tier-four",
            "C-2",
            "task",
            "",
            local(NY, 2026, 3, 9, 16, 30),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t4, "receipt_confirmation"),
        Some(local(NY, 2026, 3, 9, 18, 30))
    );
    let t4b = create_ticket(
        &s,
        ticket(
            "tier-four",
            "C-3",
            "task",
            "",
            local(NY, 2026, 3, 9, 17, 30),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t4b, "receipt_confirmation"),
        Some(local(NY, 2026, 3, 10, 5, 30))
    );
    // Out of scope cancels start_processing.
    let t4 = record(
        &s,
        &t4.name,
        event(local(NY, 2026, 3, 9, 17, 0), status(S::Confirmed)),
    )
    .await
    .expect("confirmed");
    // Confirmed Monday 17:00, as the office closes: the clock starts Tuesday 09:00, so
    // D = Tuesday and 1 business day SameTime is Wednesday 09:00.
    assert_eq!(
        deadline(&t4, "start_processing"),
        Some(local(NY, 2026, 3, 11, 9, 0))
    );
    let t4 = record(
        &s,
        &t4.name,
        event(local(NY, 2026, 3, 9, 17, 5), status(S::OutOfScope)),
    )
    .await
    .expect("out of scope");
    assert_eq!(state(&t4, "start_processing"), pb::ClockState::Cancelled);
    s.stop().await;
}

/// 001_3ce7cca10a53dfef.txt: the P1-P6 help-desk matrix.
async fn priority_matrix(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 14, 10, 0)).await;
    create_calendar(&s, "always", always_open("America/New_York")).await;
    create_calendar(
        &s,
        "eight-five",
        weekdays("America/New_York", &[("09:00", "17:00")], &[]),
    )
    .await;
    create_policy(
        &s,
        "matrix",
        pb::PolicyDefinition {
            priorities: ["P1", "P2", "P3", "P4", "P5", "P6"]
                .iter()
                .map(|p| p.to_string())
                .collect(),
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![on_event(pb::EventSignal::AgentResponded)],
                vec![
                    target(&[], &["P1"], &[], wall(15)),
                    target(&[], &["P2"], &[], wall(30)),
                    target(&[], &["P3"], &[], wall(240)),
                    target(
                        &[],
                        &["P4"],
                        &[],
                        business_days("support", 3, pb::BusinessDayMode::SameTime),
                    ),
                    target(
                        &[],
                        &["P5"],
                        &[],
                        business_days("support", 5, pb::BusinessDayMode::SameTime),
                    ),
                    target(&[], &["P6"], &[], scheduled()),
                ],
            )],
            ..Default::default()
        },
    )
    .await;
    create_org(
        &s,
        "client",
        organization(
            "America/New_York",
            "",
            "matrix",
            vec![binding("24x7", "always"), binding("support", "eight-five")],
            vec![],
        ),
    )
    .await;
    // P2 on a Saturday: 30 minutes around the clock, 10:30.
    let p2 = create_ticket(
        &s,
        ticket(
            "client",
            "M-1",
            "incident",
            "P2",
            local(NY, 2026, 3, 14, 10, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&p2, "first_response"),
        Some(local(NY, 2026, 3, 14, 10, 30))
    );
    // P4 on Friday 2026-03-13 15:00: 3 business days SameTime on 8x5: Mon, Tue, Wed ->
    // Wednesday 15:00.
    let p4 = create_ticket(
        &s,
        ticket(
            "client",
            "M-2",
            "incident",
            "P4",
            local(NY, 2026, 3, 13, 15, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&p4, "first_response"),
        Some(local(NY, 2026, 3, 18, 15, 0))
    );
    // P5 "1 week" = 5 business days: Friday 15:00 -> the next Friday 15:00.
    let p5 = create_ticket(
        &s,
        ticket(
            "client",
            "M-3",
            "incident",
            "P5",
            local(NY, 2026, 3, 13, 15, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&p5, "first_response"),
        Some(local(NY, 2026, 3, 20, 15, 0))
    );
    // P6 waits for a scheduled time, then uses it as given (a Sunday night).
    let mut t6 = ticket(
        "client",
        "M-4",
        "feature",
        "P6",
        local(NY, 2026, 3, 13, 15, 0),
    );
    let p6 = create_ticket(&s, t6.clone()).await;
    assert_eq!(state(&p6, "first_response"), pb::ClockState::NotStarted);
    t6.external_id = "M-5".into();
    t6.scheduled_time = ts(local(NY, 2026, 3, 22, 23, 0));
    let p6b = create_ticket(&s, t6).await;
    assert_eq!(
        deadline(&p6b, "first_response"),
        Some(local(NY, 2026, 3, 22, 23, 0))
    );
    s.stop().await;
}

/// 002_2ed81f82b9a6c46a.txt, Contently: first response, triage, engineering next week.
async fn contently(db: Db) {
    let s = TestServer::start(db, local(NY, 2026, 3, 12, 14, 0)).await;
    create_calendar(
        &s,
        "contently-business",
        weekdays("America/New_York", &[("09:00", "17:00")], &[]),
    )
    .await;
    let mut triage = promise(
        "escalation_triage",
        vec![entered(S::Escalated)],
        vec![
            on_event(pb::EventSignal::TriageCompleted),
            entered(S::Processing),
            entered(S::Resolved),
            entered(S::Closed),
        ],
        vec![target(
            &[],
            &[],
            &[],
            business_days("business", 1, pb::BusinessDayMode::SameTime),
        )],
    );
    triage.pause_statuses = vec![S::RequiresDeliverables as i32];
    let mut handoff = promise(
        "engineering_handoff",
        vec![
            on_stopped_unresolved("escalation_triage"),
            on_due("escalation_triage"),
        ],
        vec![
            on_custom("engineering_engaged"),
            entered(S::Resolved),
            entered(S::Closed),
        ],
        vec![target(&[], &[], &[], next_week("business"))],
    );
    handoff.no_pause = true;
    create_policy(
        &s,
        "contently",
        pb::PolicyDefinition {
            clocks: vec![
                promise(
                    "first_response",
                    vec![on_received()],
                    vec![on_event(pb::EventSignal::AgentResponded)],
                    vec![target(
                        &[],
                        &[],
                        &[],
                        business_days("business", 2, pb::BusinessDayMode::SameTime),
                    )],
                ),
                triage,
                handoff,
            ],
            ..Default::default()
        },
    )
    .await;
    create_org(
        &s,
        "publisher",
        organization(
            "America/New_York",
            "",
            "contently",
            vec![binding("business", "contently-business")],
            vec![],
        ),
    )
    .await;
    // Thursday 14:00 + 2 business days SameTime: Friday, Monday -> Monday 03-16 14:00.
    let t = create_ticket(
        &s,
        ticket(
            "publisher",
            "K-1",
            "support",
            "",
            local(NY, 2026, 3, 12, 14, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(NY, 2026, 3, 16, 14, 0))
    );
    // Escalated Monday 10:00: triage until Tuesday 10:00. Completed Tuesday 09:30 without
    // a resolution: engineering by the first opening of next week, Monday 03-23 09:00.
    s.set_now(local(NY, 2026, 3, 17, 9, 30));
    record(
        &s,
        &t.name,
        event(local(NY, 2026, 3, 16, 10, 0), status(S::Escalated)),
    )
    .await
    .expect("escalated");
    let t = record(
        &s,
        &t.name,
        event(
            local(NY, 2026, 3, 17, 9, 30),
            pb::ticket_event::Kind::TriageCompletion(()),
        ),
    )
    .await
    .expect("triaged");
    assert_eq!(state(&t, "escalation_triage"), pb::ClockState::Met);
    assert_eq!(
        deadline(&t, "engineering_handoff"),
        Some(local(NY, 2026, 3, 23, 9, 0))
    );
    s.stop().await;
}

/// 003_c9db4353a1f27684.txt, Clevr: severities on 8:00-18:30 Eastern.
async fn clevr(db: Db) {
    let s = TestServer::start(db, local(TO, 2026, 3, 13, 18, 0)).await;
    create_calendar(
        &s,
        "clevr-support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    let sevs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut resolution = promise(
        "resolution",
        vec![on_cycle()],
        vec![entered(S::Resolved), entered(S::Closed)],
        vec![
            target(
                &[],
                &["sev-1"],
                &[],
                business_days("support", 1, pb::BusinessDayMode::SameTime),
            ),
            target(
                &[],
                &["sev-2"],
                &[],
                business_days("support", 1, pb::BusinessDayMode::SameTime),
            ),
            target(
                &[],
                &["sev-3"],
                &[],
                business_days("support", 2, pb::BusinessDayMode::SameTime),
            ),
        ],
    );
    resolution.targets[0].warning_percentages = vec![50];
    let mut escalation = promise(
        "escalation",
        vec![on_received()],
        vec![entered(S::Resolved), entered(S::Closed)],
        vec![
            target(&[], &["sev-1"], &[], business_minutes("support", 60)),
            target(&[], &["sev-2"], &[], business_minutes("support", 480)),
            target(
                &[],
                &["sev-3"],
                &[],
                business_days("support", 2, pb::BusinessDayMode::SameTime),
            ),
        ],
    );
    escalation.kind = pb::ClockKind::Timer as i32;
    for (i, t) in escalation.targets.iter_mut().enumerate() {
        t.on_due = Some(pb::DueAction {
            kind: Some(pb::due_action::Kind::EscalateToLevel(i as i32 + 1)),
        });
    }
    create_policy(
        &s,
        "clevr",
        pb::PolicyDefinition {
            priorities: sevs(&["sev-1", "sev-2", "sev-3", "sev-4"]),
            clocks: vec![
                promise(
                    "first_response",
                    vec![on_received()],
                    vec![on_event(pb::EventSignal::AgentResponded)],
                    vec![
                        target(&[], &["sev-1"], &[], business_minutes("support", 60)),
                        target(&[], &["sev-2"], &[], business_minutes("support", 240)),
                        target(
                            &[],
                            &["sev-3", "sev-4"],
                            &[],
                            business_days("support", 1, pb::BusinessDayMode::SameTime),
                        ),
                    ],
                ),
                resolution,
                escalation,
            ],
            ..Default::default()
        },
    )
    .await;
    create_org(
        &s,
        "district",
        organization(
            "America/Toronto",
            "",
            "clevr",
            vec![binding("support", "clevr-support")],
            vec![],
        ),
    )
    .await;
    // Sev 1 on Friday 2026-03-13 18:00: 30 minutes left on Friday, so the 1-hour response
    // is due Monday 08:30, and the 1-hour escalation timer fires then too. Resolution, 1
    // business day SameTime, is Monday 18:00: a budget of 10 h 30 of open time (Friday
    // 30 min + Monday 08:00-18:00), so the 50 % warning comes after 5 h 15: Friday
    // 18:00-18:30, then Monday 08:00 + 4 h 45 = 12:45.
    let t = create_ticket(
        &s,
        ticket(
            "district",
            "V-1",
            "incident",
            "sev-1",
            local(TO, 2026, 3, 13, 18, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t, "first_response"),
        Some(local(TO, 2026, 3, 16, 8, 30))
    );
    assert_eq!(
        deadline(&t, "escalation"),
        Some(local(TO, 2026, 3, 16, 8, 30))
    );
    assert_eq!(
        deadline(&t, "resolution"),
        Some(local(TO, 2026, 3, 16, 18, 0))
    );
    assert_eq!(
        from_ts(&clock(&t, "resolution").warnings[0].time),
        Some(local(TO, 2026, 3, 16, 12, 45))
    );
    // Sev 3 on Monday 2026-03-16 10:00: response 1 business day (Tuesday 10:00),
    // resolution and escalation 2 business days (Wednesday 10:00).
    let t3 = create_ticket(
        &s,
        ticket(
            "district",
            "V-2",
            "incident",
            "sev-3",
            local(TO, 2026, 3, 16, 10, 0),
        ),
    )
    .await;
    assert_eq!(
        deadline(&t3, "first_response"),
        Some(local(TO, 2026, 3, 17, 10, 0))
    );
    assert_eq!(
        deadline(&t3, "resolution"),
        Some(local(TO, 2026, 3, 18, 10, 0))
    );
    // Sev 4: resolution "TBD" -- no target, the clock waits with its reason.
    let t4 = create_ticket(
        &s,
        ticket(
            "district",
            "V-3",
            "incident",
            "sev-4",
            local(TO, 2026, 3, 16, 10, 0),
        ),
    )
    .await;
    assert_eq!(state(&t4, "resolution"), pb::ClockState::NotStarted);
    assert!(
        clock(&t4, "resolution")
            .not_started_reason
            .contains("sev-4")
    );
    s.stop().await;
}

/// 004_7d3a5ac72f4831df.txt, 24social: lead time by estimate, main stakeholder.
async fn social(db: Db) {
    let s = TestServer::start(db, local(LON, 2026, 3, 23, 9, 0)).await;
    create_calendar(
        &s,
        "operations",
        weekdays("Europe/London", &[("09:00", "17:30")], &[]),
    )
    .await;
    let mut lead = promise(
        "lead_time",
        vec![on_event(pb::EventSignal::WorkAuthorised)],
        vec![entered(S::SubmittedForReview)],
        vec![target(
            &[],
            &[],
            &["task"],
            by_estimate(&[
                (180, wall(24 * 60)),
                (480, wall(72 * 60)),
                (960, calendar_days(7)),
            ]),
        )],
    );
    lead.targets[0].source = "0 hours - 3 hours = Up to 24 hours Lead Time".into();
    create_policy(
        &s,
        "social",
        pb::PolicyDefinition {
            clocks: vec![lead],
            approval_guards: vec![pb::ApprovalGuard {
                to: S::Closed as i32,
                role: "main_stakeholder".into(),
                waived_when_requested_by_role: true,
            }],
            work_authorisation_role: "main_stakeholder".into(),
            ..Default::default()
        },
    )
    .await;
    create_org(
        &s,
        "brand",
        organization(
            "Europe/London",
            "",
            "social",
            vec![binding("operations", "operations")],
            vec![contact("ann", "main_stakeholder"), contact("bob", "")],
        ),
    )
    .await;
    let mut t = ticket("brand", "S-1", "task", "", local(LON, 2026, 3, 23, 9, 0));
    t.estimate_minutes = 300;
    let t = create_ticket(&s, t).await;
    assert!(
        t.clocks.iter().all(|c| c.metric != "lead_time"),
        "no clock before the authorisation"
    );
    // Bob is not the main stakeholder: refused, nothing stored.
    let mut by_bob = event(
        local(LON, 2026, 3, 23, 10, 0),
        pb::ticket_event::Kind::WorkAuthorisation(()),
    );
    by_bob.contact_id = "bob".into();
    let err = record(&s, &t.name, by_bob)
        .await
        .expect_err("not authorised");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // Ann authorises Monday 10:00; 5 h estimated: 72 real hours, Thursday 10:00.
    let mut by_ann = event(
        local(LON, 2026, 3, 23, 10, 0),
        pb::ticket_event::Kind::WorkAuthorisation(()),
    );
    by_ann.contact_id = "ann".into();
    let t = record(&s, &t.name, by_ann).await.expect("authorised");
    assert_eq!(
        deadline(&t, "lead_time"),
        Some(local(LON, 2026, 3, 26, 10, 0))
    );
    // Re-estimated at 12 h: 7 calendar days, same local time across the 29 March change:
    // Monday 30 March 10:00 BST.
    let t = record(
        &s,
        &t.name,
        event(
            local(LON, 2026, 3, 23, 11, 0),
            pb::ticket_event::Kind::EstimateChange(pb::EstimateChange {
                estimate_minutes: 720,
            }),
        ),
    )
    .await
    .expect("estimated");
    assert_eq!(
        deadline(&t, "lead_time"),
        Some(local(LON, 2026, 3, 30, 10, 0))
    );
    // Publishing (CLOSED) needs Ann's approval.
    let err = record(
        &s,
        &t.name,
        event(local(LON, 2026, 3, 24, 10, 0), status(S::Closed)),
    )
    .await
    .expect_err("needs approval");
    assert!(err.message().contains("approval"), "{}", err.message());
    s.stop().await;
}

crate::on_both_stores!(concinnity, priority_matrix, contently, clevr, social);
