//! Calendars, organisations and policies through the API.

use servicelevel::api::pb;
use tonic::{Code, Request};

use crate::fixtures::*;
use crate::harness::*;

async fn calendars_are_created_versioned_and_validated(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    let created = create_calendar(
        &s,
        "office",
        weekdays("America/Toronto", &[("08:00", "18:30")], &["2026-07-01"]),
    )
    .await;
    assert_eq!(created.name, "calendars/office");
    assert_eq!(created.version, 1);
    let def = created.definition.clone().expect("definition");
    assert_eq!(def.weekly_hours.len(), 5);
    assert_eq!(def.holidays, vec!["2026-07-01".to_string()]);

    // Bad input: every violation is named, nothing is stored.
    let mut bad = weekdays("Mars/Olympus", &[("18:00", "08:00")], &["2026-13-01"]);
    bad.weekly_hours[0].windows.push(window("07:00", "09:00"));
    let status = expect_code(
        s.calendars
            .clone()
            .create_calendar(Request::new(pb::CreateCalendarRequest {
                calendar_id: "Bad Id".into(),
                calendar: Some(pb::Calendar {
                    display_name: "x".into(),
                    definition: Some(bad),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await,
        Code::InvalidArgument,
    );
    let fields = violations(&status);
    for f in [
        "calendar_id",
        "calendar.definition.time_zone",
        "calendar.definition.holidays[0]",
        "calendar.definition.weekly_hours[0].windows[0]",
        "request_id",
    ] {
        assert!(
            fields.contains(&f.to_string()),
            "{f} missing from {fields:?}"
        );
    }
    let list = s
        .calendars
        .clone()
        .list_calendars(Request::new(pb::ListCalendarsRequest::default()))
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(
        list.calendars.len(),
        1,
        "the invalid calendar was not stored"
    );

    // An update is a new version; the first stays readable.
    s.advance(chrono::TimeDelta::hours(1));
    let updated = s
        .calendars
        .clone()
        .update_calendar(Request::new(pb::UpdateCalendarRequest {
            name: "calendars/office".into(),
            definition: Some(weekdays("America/Toronto", &[("09:00", "17:00")], &[])),
            request_id: rid("upd"),
            ..Default::default()
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(
        from_ts(&updated.effective_time),
        Some(utc(2026, 3, 1, 13, 0))
    );
    let v1 = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/office".into(),
            version: 1,
        }))
        .await
        .expect("version 1")
        .into_inner();
    assert_eq!(v1.definition, created.definition);
    expect_code(
        s.calendars
            .clone()
            .get_calendar(Request::new(pb::GetCalendarRequest {
                name: "calendars/nope".into(),
                version: 0,
            }))
            .await,
        Code::NotFound,
    );
    s.stop().await;
}

async fn retries_are_idempotent_and_reused_keys_conflict(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    let request = pb::CreateCalendarRequest {
        calendar_id: "desk".into(),
        calendar: Some(pb::Calendar {
            display_name: "Desk".into(),
            definition: Some(always_open("UTC")),
            ..Default::default()
        }),
        request_id: "same-key".into(),
    };
    let first = s
        .calendars
        .clone()
        .create_calendar(Request::new(request.clone()))
        .await
        .expect("created");
    s.advance(chrono::TimeDelta::minutes(5));
    let second = s
        .calendars
        .clone()
        .create_calendar(Request::new(request.clone()))
        .await
        .expect("replayed");
    assert_eq!(
        first.into_inner(),
        second.into_inner(),
        "a retry returns the first answer"
    );
    let mut changed = request.clone();
    changed.calendar_id = "other".into();
    let status = expect_code(
        s.calendars
            .clone()
            .create_calendar(Request::new(changed))
            .await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains("calendar_id"),
        "names the difference: {}",
        status.message()
    );
    // Keys are scoped to the client: another client may use the same request id.
    let mut other = Request::new(pb::CreateCalendarRequest {
        calendar_id: "desk-2".into(),
        ..request
    });
    other
        .metadata_mut()
        .insert("x-servicelevel-client", "billing".parse().expect("ascii"));
    s.calendars
        .clone()
        .create_calendar(other)
        .await
        .expect("another client's key is its own");
    s.stop().await;
}

async fn organizations_check_their_references(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    create_calendar(
        &s,
        "support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    create_policy(
        &s,
        "desk",
        pb::PolicyDefinition {
            priorities: vec!["P1".into()],
            clocks: vec![promise(
                "first_response",
                vec![on_received()],
                vec![on_event(pb::EventSignal::AgentResponded)],
                vec![target(&[], &[], &[], business_minutes("support", 60))],
            )],
            ..Default::default()
        },
    )
    .await;
    // The policy counts on the slot "support": an organisation without it is refused.
    let status = expect_code(
        s.organizations
            .clone()
            .create_organization(Request::new(pb::CreateOrganizationRequest {
                organization_id: "acme".into(),
                organization: Some(organization("America/Toronto", "", "desk", vec![], vec![])),
                request_id: rid("org"),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("support"), "{}", status.message());
    let status = expect_code(
        s.organizations
            .clone()
            .create_organization(Request::new(pb::CreateOrganizationRequest {
                organization_id: "acme".into(),
                organization: Some(organization(
                    "America/Toronto",
                    "",
                    "nope",
                    vec![binding("support", "support")],
                    vec![],
                )),
                request_id: rid("org"),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("policies/nope"),
        "{}",
        status.message()
    );
    let org = create_org(
        &s,
        "acme",
        organization(
            "America/Toronto",
            "gold",
            "desk",
            vec![binding("support", "support")],
            vec![contact("ann", "main_stakeholder")],
        ),
    )
    .await;
    assert_eq!(org.name, "organizations/acme");
    assert_eq!(org.contacts.len(), 1);
    s.stop().await;
}

crate::on_both_stores!(
    calendars_are_created_versioned_and_validated,
    retries_are_idempotent_and_reused_keys_conflict,
    organizations_check_their_references,
);
