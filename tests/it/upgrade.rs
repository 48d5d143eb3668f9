//! Upgrades keep the idempotency contract: a request the previous release answered gets
//! that same answer when retried against this one, although the request now has fields it
//! did not (`CalendarBinding.overrides`) and fingerprints are computed another way
//! (version 2, from the parsed request; see `src/app/fingerprint.rs`).
//!
//! `data/first_release_answers.json` holds the `idempotency` rows release 9b965be stored
//! for the requests below, captured by running that release's own test harness with them
//! on SQLite and reading its database. The requests are built field by field (no
//! fixtures), so both releases send exactly the same messages.

use prost::Message;
use servicelevel::api::pb;
use servicelevel::api::pb::hours_service_client::HoursServiceClient;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::harness::*;

struct StoredRow {
    client: String,
    method: String,
    request_id: String,
    fingerprint: String,
    response: Vec<u8>,
    create_us: i64,
}

fn stored_rows() -> Vec<StoredRow> {
    let text = include_str!("data/first_release_answers.json");
    let doc: serde_json::Value = serde_json::from_str(text).expect("the captured rows parse");
    let field = |row: &serde_json::Value, name: &str| -> String {
        row[name].as_str().expect("a text field").to_string()
    };
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let hex = field(row, "response_hex");
            let response = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            StoredRow {
                client: field(row, "client"),
                method: field(row, "method"),
                request_id: field(row, "request_id"),
                fingerprint: field(row, "fingerprint"),
                response,
                create_us: row["create_us"].as_i64().expect("create_us"),
            }
        })
        .collect()
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The captured rows into this database, as the previous release left them.
async fn restore(s: &TestServer, db: Db, rows: &[StoredRow]) {
    for r in rows {
        let hex: String = r.response.iter().map(|b| format!("{b:02x}")).collect();
        let blob = match db {
            Db::Sqlite => format!("X'{hex}'"),
            Db::Postgres => format!("'\\x{hex}'::bytea"),
        };
        s.store
            .execute_raw(&format!(
                "INSERT INTO idempotency (client, method, request_id, fingerprint, response, create_us) \
                 VALUES ({}, {}, {}, {}, {blob}, {})",
                quoted(&r.client),
                quoted(&r.method),
                quoted(&r.request_id),
                quoted(&r.fingerprint),
                r.create_us
            ))
            .await
            .expect("the captured row is stored");
    }
}

fn answer<M: Message + Default>(rows: &[StoredRow], method: &str) -> M {
    let row = rows
        .iter()
        .find(|r| r.method == method)
        .expect("a captured row for the method");
    M::decode(row.response.as_slice()).expect("the stored answer decodes")
}

fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

async fn answers_stored_by_the_previous_release_are_returned(db: Db) {
    let s = TestServer::start(db, utc(2026, 11, 12, 9, 30)).await;
    let rows = stored_rows();
    assert_eq!(rows.len(), 7, "one row per request");
    restore(&s, db, &rows).await;
    let mut hours = HoursServiceClient::new(connect(s.addr).await);

    // Each retry gets the stored answer, not a new execution: nothing below exists in
    // this database, so executing would fail (the ticket's organisation) or answer
    // differently (versions and times from this server's clock).
    let calendar = s
        .calendars
        .clone()
        .create_calendar(Request::new(upgrade_calendar()))
        .await
        .expect("the calendar retry is answered")
        .into_inner();
    assert_eq!(calendar, answer::<pb::Calendar>(&rows, "CreateCalendar"));
    let policy = s
        .policies
        .clone()
        .create_policy(Request::new(upgrade_policy()))
        .await
        .expect("the policy retry is answered")
        .into_inner();
    assert_eq!(policy, answer::<pb::Policy>(&rows, "CreatePolicy"));
    let organization = s
        .organizations
        .clone()
        .create_organization(Request::new(upgrade_organization()))
        .await
        .expect("the organisation retry is answered, its bindings now having overrides")
        .into_inner();
    assert_eq!(
        organization,
        answer::<pb::Organization>(&rows, "CreateOrganization")
    );
    let ticket = s
        .tickets
        .clone()
        .create_ticket(Request::new(upgrade_ticket()))
        .await
        .expect("the ticket retry is answered")
        .into_inner();
    assert_eq!(ticket, answer::<pb::Ticket>(&rows, "CreateTicket"));
    let plan = hours
        .create_plan(Request::new(upgrade_plan()))
        .await
        .expect("the plan retry is answered")
        .into_inner();
    assert_eq!(plan, answer::<pb::Plan>(&rows, "CreatePlan"));
    let contract = hours
        .set_hours_contract(Request::new(upgrade_contract()))
        .await
        .expect("the contract retry is answered")
        .into_inner();
    assert_eq!(
        contract,
        answer::<pb::HoursContract>(&rows, "SetHoursContract")
    );
    let usage = hours
        .record_usage(Request::new(upgrade_usage()))
        .await
        .expect("the usage retry is answered")
        .into_inner();
    assert_eq!(
        usage,
        answer::<pb::LedgerWriteResponse>(&rows, "RecordUsage")
    );
    assert!(
        usage
            .entries
            .iter()
            .any(|e| e.reason == "on-site visit" && e.minutes.abs() == 90),
        "the stored answer is the real one: {usage:?}"
    );
    let missing = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/office".into(),
            version: 0,
        }))
        .await
        .expect_err("a replay creates nothing");
    assert_eq!(missing.code(), Code::NotFound);

    // The same request ids with another meaning are refused, naming what differs.
    let mut other = upgrade_organization();
    if let Some(o) = other.organization.as_mut() {
        o.calendars[0].extra_holidays.push("2026-12-31".into());
    }
    let refused = s
        .organizations
        .clone()
        .create_organization(Request::new(other))
        .await
        .expect_err("another organisation under a used request id");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert_eq!(reason(&refused), "REQUEST_ID_REUSED");
    assert!(refused.message().contains("organization"), "{refused:?}");
    let mut other = upgrade_organization();
    if let Some(o) = other.organization.as_mut() {
        o.calendars[0].overrides.push(pb::DateOverride {
            date: "2026-12-31".into(),
            windows: vec![],
        });
    }
    let refused = s
        .organizations
        .clone()
        .create_organization(Request::new(other))
        .await
        .expect_err("a field the previous release did not have, set, differs too");
    assert_eq!(reason(&refused), "REQUEST_ID_REUSED", "{refused:?}");
    let mut other = upgrade_usage();
    other.minutes = 60;
    let refused = hours
        .record_usage(Request::new(other))
        .await
        .expect_err("other minutes under a used request id");
    assert_eq!(reason(&refused), "REQUEST_ID_REUSED", "{refused:?}");
    assert!(refused.message().contains("minutes"), "{refused:?}");
    s.stop().await;
}

crate::on_both_stores!(answers_stored_by_the_previous_release_are_returned);

fn upgrade_calendar() -> pb::CreateCalendarRequest {
    pb::CreateCalendarRequest {
        calendar_id: "office".into(),
        calendar: Some(pb::Calendar {
            display_name: "Office".into(),
            definition: Some(pb::CalendarDefinition {
                time_zone: "Europe/London".into(),
                weekly_hours: (1..=5)
                    .map(|d| pb::DayHours {
                        day: d,
                        windows: vec![pb::OpeningWindow {
                            open: "09:00".into(),
                            close: "17:00".into(),
                        }],
                    })
                    .collect(),
                holidays: vec!["2026-12-25".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: "upgrade-calendar".into(),
    }
}

fn upgrade_policy() -> pb::CreatePolicyRequest {
    pb::CreatePolicyRequest {
        policy_id: "plain".into(),
        policy: Some(pb::Policy {
            display_name: "Plain".into(),
            definition: Some(pb::PolicyDefinition {
                clocks: vec![pb::ClockDefinition {
                    metric: "first_response".into(),
                    kind: pb::ClockKind::Promise as i32,
                    start: vec![pb::Trigger {
                        kind: Some(pb::trigger::Kind::Received(())),
                    }],
                    targets: vec![pb::Target {
                        duration: Some(pb::Duration {
                            kind: Some(pb::duration::Kind::BusinessMinutes(
                                pb::BusinessMinutesDuration {
                                    calendar: "business_hours".into(),
                                    minutes: 240,
                                },
                            )),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: "upgrade-policy".into(),
    }
}

fn upgrade_organization() -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        organization_id: "acme".into(),
        organization: Some(pb::Organization {
            display_name: "Acme".into(),
            time_zone: "Europe/London".into(),
            policy: "policies/plain".into(),
            calendars: vec![pb::CalendarBinding {
                slot: "business_hours".into(),
                calendar: "calendars/office".into(),
                extra_holidays: vec!["2026-12-24".into()],
                ..Default::default()
            }],
            contacts: vec![pb::Contact {
                contact_id: "alice".into(),
                display_name: "Alice".into(),
                role: "requester".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: "upgrade-organization".into(),
    }
}

fn upgrade_ticket() -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        ticket: Some(pb::Ticket {
            organization: "organizations/acme".into(),
            source_system: "crm".into(),
            external_id: "T-1".into(),
            request_type: "incident".into(),
            received_time: Some(prost_types::Timestamp {
                seconds: 1_794_387_600, // 2026-11-11 09:00 UTC
                nanos: 0,
            }),
            ..Default::default()
        }),
        request_id: "upgrade-ticket".into(),
    }
}

fn upgrade_plan() -> pb::CreatePlanRequest {
    pb::CreatePlanRequest {
        plan_id: "retainer".into(),
        plan: Some(pb::Plan {
            display_name: "Retainer".into(),
            buckets: vec![pb::BucketTerms {
                bucket: "support".into(),
                period_unit: pb::PeriodUnit::Month as i32,
                allowance_minutes: 960,
                ..Default::default()
            }],
            ..Default::default()
        }),
        request_id: "upgrade-plan".into(),
    }
}

fn upgrade_contract() -> pb::SetHoursContractRequest {
    pb::SetHoursContractRequest {
        contract: Some(pb::HoursContract {
            organization: "organizations/acme".into(),
            start_date: "2026-11-01".into(),
            assignments: vec![pb::PlanAssignment {
                plan: "plans/retainer".into(),
                effective_date: "2026-11-01".into(),
            }],
            ..Default::default()
        }),
        request_id: "upgrade-contract".into(),
    }
}

fn upgrade_usage() -> pb::RecordUsageRequest {
    pb::RecordUsageRequest {
        organization: "organizations/acme".into(),
        bucket: "support".into(),
        minutes: 90,
        service_time: Some(prost_types::Timestamp {
            seconds: 1_794_394_800, // 2026-11-11 11:00 UTC
            nanos: 0,
        }),
        reason: "on-site visit".into(),
        request_id: "upgrade-usage".into(),
        ..Default::default()
    }
}
