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

/// Calendar `support` and policy `desk`, whose P1 first response counts on slot `support`.
async fn support_desk(s: &TestServer) {
    create_calendar(
        s,
        "support",
        weekdays("America/Toronto", &[("08:00", "18:30")], &[]),
    )
    .await;
    create_policy(
        s,
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
}

async fn organizations_check_their_references(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    support_desk(&s).await;
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

fn update_org(
    org: pb::Organization,
    paths: &[&str],
    expected_version: i32,
    request_id: &str,
) -> Request<pb::UpdateOrganizationRequest> {
    Request::new(pb::UpdateOrganizationRequest {
        organization: Some(org),
        request_id: request_id.into(),
        update_mask: (!paths.is_empty()).then(|| prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        expected_version,
    })
}

/// A masked update changes only the fields it names, on the current version; a stated
/// version guards a read-modify-write; bad masks name their paths; retries answer again.
async fn organization_updates_merge_masked_fields_and_guard_versions(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 1, 12, 0)).await;
    support_desk(&s).await;
    let v1 = create_org(
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
    assert_eq!(v1.version, 1);
    let mut orgs = s.organizations.clone();

    // The CRM replaces the contacts; it sends nothing else, and nothing else changes.
    let contacts_only = pb::Organization {
        name: "organizations/acme".into(),
        contacts: vec![contact("bob", "main_stakeholder"), contact("cy", "agent")],
        ..Default::default()
    };
    let update = || update_org(contacts_only.clone(), &["contacts"], 0, "crm-1");
    let v2 = orgs
        .update_organization(update())
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.contacts, contacts_only.contacts);
    let unchanged = |o: &pb::Organization| {
        (
            o.display_name.clone(),
            o.time_zone.clone(),
            o.plan.clone(),
            o.policy.clone(),
            o.calendars.clone(),
            o.external_ids.clone(),
        )
    };
    assert_eq!(unchanged(&v2), unchanged(&v1));
    // A retry answers the same, with no third version.
    let again = orgs
        .update_organization(update())
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again, v2);

    // Billing, which read version 1, moves the plan with that version stated: refused,
    // nothing written. With the version it now reads it goes through, keeping the contacts.
    let plan_only = pb::Organization {
        name: "organizations/acme".into(),
        plan: "platinum".into(),
        ..Default::default()
    };
    let st = expect_code(
        orgs.update_organization(update_org(plan_only.clone(), &["plan"], 1, "bill-1"))
            .await,
        Code::Aborted,
    );
    assert!(st.message().contains("version 2"), "{st:?}");
    let current = orgs
        .get_organization(Request::new(pb::GetOrganizationRequest {
            name: "organizations/acme".into(),
        }))
        .await
        .expect("found")
        .into_inner();
    assert_eq!(current.version, 2);
    assert_eq!(current.plan, "gold");
    let v3 = orgs
        .update_organization(update_org(
            plan_only.clone(),
            &["organization.plan", "version"],
            2,
            "bill-2",
        ))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!((v3.version, v3.plan.as_str()), (3, "platinum"));
    assert_eq!(v3.contacts, contacts_only.contacts);
    // Its retry, with the now stale version, still gets its first answer.
    let again = orgs
        .update_organization(update_org(
            plan_only,
            &["organization.plan", "version"],
            2,
            "bill-2",
        ))
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again, v3);

    // A masked field is checked like a whole update: an unknown zone is refused.
    let bad_zone = pb::Organization {
        name: "organizations/acme".into(),
        time_zone: "Mars/Olympus".into(),
        ..Default::default()
    };
    let st = expect_code(
        orgs.update_organization(update_org(bad_zone, &["time_zone"], 0, "tz-1"))
            .await,
        Code::InvalidArgument,
    );
    assert!(
        violations(&st).iter().any(|f| f.contains("time_zone")),
        "{st:?}"
    );
    // Unknown paths, `*` with others, negative versions.
    let st = expect_code(
        orgs.update_organization(update_org(
            pb::Organization {
                name: "organizations/acme".into(),
                ..Default::default()
            },
            &["plan", "colour"],
            -1,
            "bad-1",
        ))
        .await,
        Code::InvalidArgument,
    );
    let mut fields = violations(&st);
    fields.sort();
    assert_eq!(fields, vec!["expected_version", "update_mask"]);
    assert!(st.message().contains("colour"), "{st:?}");
    let st = expect_code(
        orgs.update_organization(update_org(
            pb::Organization {
                name: "organizations/acme".into(),
                ..Default::default()
            },
            &["*", "plan"],
            0,
            "bad-2",
        ))
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&st), vec!["update_mask"]);
    // None of it was written.
    let current = orgs
        .get_organization(Request::new(pb::GetOrganizationRequest {
            name: "organizations/acme".into(),
        }))
        .await
        .expect("found")
        .into_inner();
    // (GetOrganization adds the recomputation's progress.)
    assert_eq!(
        pb::Organization {
            recomputation: None,
            ..current
        },
        v3
    );

    // A whole replacement with a stale version is refused too; with the current one it
    // replaces everything (contacts gone).
    let whole = organization(
        "America/Toronto",
        "gold",
        "desk",
        vec![binding("support", "support")],
        vec![],
    );
    let named = pb::Organization {
        name: "organizations/acme".into(),
        ..whole
    };
    expect_code(
        orgs.update_organization(update_org(named.clone(), &[], 2, "whole-1"))
            .await,
        Code::Aborted,
    );
    let v4 = orgs
        .update_organization(update_org(named, &["*"], 3, "whole-2"))
        .await
        .expect("replaced")
        .into_inner();
    assert_eq!(v4.version, 4);
    assert!(v4.contacts.is_empty());

    // Calendars and policies take a version guard as well.
    let st = expect_code(
        s.calendars
            .clone()
            .update_calendar(Request::new(pb::UpdateCalendarRequest {
                name: "calendars/support".into(),
                definition: Some(always_open("UTC")),
                request_id: rid("cal"),
                expected_version: 7,
                ..Default::default()
            }))
            .await,
        Code::Aborted,
    );
    assert!(st.message().contains("calendars/support"), "{st:?}");
    let cal = s
        .calendars
        .clone()
        .update_calendar(Request::new(pb::UpdateCalendarRequest {
            name: "calendars/support".into(),
            definition: Some(always_open("UTC")),
            request_id: rid("cal"),
            expected_version: 1,
            ..Default::default()
        }))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(cal.version, 2);
    s.stop().await;
}

crate::on_both_stores!(
    organization_updates_merge_masked_fields_and_guard_versions,
    calendars_are_created_versioned_and_validated,
    retries_are_idempotent_and_reused_keys_conflict,
    organizations_check_their_references,
);
