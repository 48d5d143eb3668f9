//! Small requests cause small work and small answers: lists over their documented limit
//! are refused before any work on their items, at most 20 violations are reported, and
//! echoed values are cut, so every error status stays well under the 16 KiB a gRPC client
//! accepts in trailers.

use std::time::{Duration, Instant};

use servicelevel::api::pb;
use tonic::{Code, Request, Status};

use crate::fixtures::*;
use crate::harness::*;

/// What a status costs on the wire: its message and its details (base64 in trailers).
fn wire_size(s: &Status) -> usize {
    s.message().len() + s.details().len().div_ceil(3) * 4
}

fn small(s: &Status) {
    assert!(wire_size(s) < 8 * 1024, "{} bytes: {s:?}", wire_size(s));
}

async fn oversized_lists_are_refused_before_any_work(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    // 1,000 identical targets: every pair overlaps. Refused on the list's size at once,
    // with one violation.
    let same = target(&[], &[], &[], wall(60));
    let policy = pb::PolicyDefinition {
        clocks: vec![promise(
            "first_response",
            vec![on_received()],
            vec![],
            vec![same; 1000],
        )],
        ..Default::default()
    };
    let started = Instant::now();
    let status = expect_code(
        s.policies
            .clone()
            .create_policy(Request::new(pb::CreatePolicyRequest {
                policy_id: "big".into(),
                policy: Some(pb::Policy {
                    display_name: "Big".into(),
                    definition: Some(policy),
                    ..Default::default()
                }),
                request_id: rid("pol"),
            }))
            .await,
        Code::InvalidArgument,
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        violations(&status),
        vec!["policy.definition.clocks[0].targets".to_string()]
    );
    assert!(status.message().contains("at most 64"), "{status:?}");
    small(&status);

    // 1,000 duplicate contacts, within the limit: at most 20 violations and a count.
    let contact = pb::Contact {
        contact_id: "same".into(),
        display_name: "Same".into(),
        ..Default::default()
    };
    create_calendar(
        &s,
        "office",
        weekdays("Europe/London", &[("09:00", "17:00")], &[]),
    )
    .await;
    create_policy(
        &s,
        "plain",
        pb::PolicyDefinition {
            clocks: vec![first_response_within_an_hour()],
            ..Default::default()
        },
    )
    .await;
    let status = expect_code(
        s.organizations
            .clone()
            .create_organization(Request::new(pb::CreateOrganizationRequest {
                organization_id: "dupes".into(),
                organization: Some(organization(
                    "Europe/London",
                    "",
                    "plain",
                    vec![],
                    vec![contact; 1000],
                )),
                request_id: rid("org"),
            }))
            .await,
        Code::InvalidArgument,
    );
    let listed = violations(&status);
    assert_eq!(listed.len(), 21, "20 violations and how many more");
    assert!(
        status.message().contains("more in the details"),
        "{status:?}"
    );
    small(&status);

    // A 5,000-character time zone: cut in the answer.
    let mut cal = weekdays("Europe/London", &[("09:00", "17:00")], &[]);
    cal.time_zone = "X".repeat(5000);
    let status = expect_code(
        s.calendars
            .clone()
            .create_calendar(Request::new(pb::CreateCalendarRequest {
                calendar_id: "long".into(),
                calendar: Some(pb::Calendar {
                    display_name: "Long".into(),
                    definition: Some(cal),
                    ..Default::default()
                }),
                request_id: rid("cal"),
            }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&status),
        vec!["calendar.definition.time_zone".to_string()]
    );
    small(&status);

    // A batch over its 500 items.
    let items = vec![pb::UpsertTicketItem::default(); 501];
    let status = expect_code(
        s.tickets
            .clone()
            .batch_upsert_tickets(Request::new(pb::BatchUpsertTicketsRequest { items }))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&status), vec!["items".to_string()]);
    s.stop().await;
}

crate::on_both_stores!(oversized_lists_are_refused_before_any_work);
