//! Importing policy packs: creation, idempotency, new versions, validation and errors.

use pb::ImportOutcome as O;
use servicelevel::api::pb;
use servicelevel::api::pb::pack_service_client::PackServiceClient;
use tonic::Request;
use tonic::transport::Channel;

use crate::fixtures::*;
use crate::harness::*;

async fn packs(s: &TestServer) -> PackServiceClient<Channel> {
    PackServiceClient::new(connect(s.addr).await)
}

fn toml(text: &str, request_id: &str) -> pb::ImportPackRequest {
    pb::ImportPackRequest {
        source: Some(pb::import_pack_request::Source::PackToml(text.into())),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn outcomes(r: &pb::ImportPackResponse) -> Vec<(String, O, i32)> {
    r.resources
        .iter()
        .map(|x| {
            (
                x.name.clone(),
                O::try_from(x.outcome).expect("known outcome"),
                x.version,
            )
        })
        .collect()
}

const SMALL: &str = r#"
[pack]
name = "small"
title = "Small desk"
source = "test"

[calendars.support]
time_zone = "America/New_York"
weekdays = ["09:00-17:00"]
reading = "a test calendar"

[policy]
[[policy.clocks]]
metric = "first_response"
start = ["received"]
stop = ["event:agent_responded"]
[[policy.clocks.targets]]
duration = { business_minutes = 60, calendar = "support" }
quote = "within one business hour"

[[plans]]
name = "gold"
reading = "a test plan"
[[plans.buckets]]
bucket = "meetings"
period = "month"
allowance_minutes = 60
quote = "one meeting hour a month"
"#;

/// Every built-in pack imports; a second import changes nothing.
async fn every_builtin_pack_imports_once(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 2, 12, 0)).await;
    for name in [
        "concinnity",
        "priority-matrix",
        "contently",
        "clevr",
        "24social",
    ] {
        let first = import_pack(&s, name).await;
        assert_eq!(first.pack, name);
        assert!(
            first
                .resources
                .iter()
                .any(|r| r.name == format!("policies/{name}")),
            "{name}: {first:?}"
        );
        assert!(
            outcomes(&first)
                .iter()
                .all(|(_, o, v)| *o == O::Created && *v == 1),
            "{name}: {first:?}"
        );
        let again = import_pack(&s, name).await;
        assert!(
            outcomes(&again)
                .iter()
                .all(|(_, o, v)| *o == O::Unchanged && *v == 1),
            "{name}: {again:?}"
        );
        assert_eq!(again.resources.len(), first.resources.len());
    }
    // The imported policy is the one tickets run on: Clevr's sev-1 first response is one
    // business hour on Mon-Fri 08:00-18:30 Toronto.
    let policy = s
        .policies
        .clone()
        .get_policy(Request::new(pb::GetPolicyRequest {
            name: "policies/clevr".into(),
            version: 0,
        }))
        .await
        .expect("policy")
        .into_inner();
    let clocks = policy.definition.expect("definition").clocks;
    assert!(clocks.iter().any(|c| c.metric == "escalation"));
    s.stop().await;
}

/// A changed pack versions only what changed; the calendar keeps holidays added to it.
async fn a_changed_pack_versions_what_changed(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 2, 12, 0)).await;
    let mut p = packs(&s).await;
    let first = p
        .import_pack(Request::new(toml(SMALL, "small-1")))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(
        outcomes(&first),
        vec![
            ("calendars/small-support".into(), O::Created, 1),
            ("policies/small".into(), O::Created, 1),
            ("plans/small-gold".into(), O::Created, 1),
        ]
    );
    // The operator adds a holiday to the pack's calendar.
    let mut cal = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/small-support".into(),
            version: 0,
        }))
        .await
        .expect("calendar")
        .into_inner();
    let mut def = cal.definition.take().expect("definition");
    def.holidays.push("2026-12-25".into());
    s.calendars
        .clone()
        .update_calendar(Request::new(pb::UpdateCalendarRequest {
            name: "calendars/small-support".into(),
            definition: Some(def),
            request_id: rid("cal"),
            ..Default::default()
        }))
        .await
        .expect("holiday added");

    // Same pack again: nothing changes, the added holiday is no difference.
    let same = p
        .import_pack(Request::new(toml(SMALL, "small-2")))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(
        outcomes(&same),
        vec![
            ("calendars/small-support".into(), O::Unchanged, 2),
            ("policies/small".into(), O::Unchanged, 1),
            ("plans/small-gold".into(), O::Unchanged, 1),
        ]
    );

    // New hours and a longer target: the calendar and the policy get new versions, the
    // plan does not, and the calendar keeps its holiday.
    let changed_text = SMALL
        .replace("09:00-17:00", "08:00-18:00")
        .replace("business_minutes = 60", "business_minutes = 120");
    let preview = p
        .import_pack(Request::new(pb::ImportPackRequest {
            validate_only: true,
            ..toml(&changed_text, "")
        }))
        .await
        .expect("validate only")
        .into_inner();
    let expected = vec![
        ("calendars/small-support".to_string(), O::NewVersion, 3),
        ("policies/small".to_string(), O::NewVersion, 2),
        ("plans/small-gold".to_string(), O::Unchanged, 1),
    ];
    assert!(preview.validate_only);
    assert_eq!(outcomes(&preview), expected);
    // validate_only wrote nothing.
    let policy = s
        .policies
        .clone()
        .get_policy(Request::new(pb::GetPolicyRequest {
            name: "policies/small".into(),
            version: 0,
        }))
        .await
        .expect("policy")
        .into_inner();
    assert_eq!(policy.version, 1);

    let changed = p
        .import_pack(Request::new(toml(&changed_text, "small-3")))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(outcomes(&changed), expected);
    let cal = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/small-support".into(),
            version: 0,
        }))
        .await
        .expect("calendar")
        .into_inner();
    assert_eq!(cal.version, 3);
    let def = cal.definition.expect("definition");
    assert_eq!(def.holidays.len(), 1, "the holiday survives: {def:?}");
    assert_eq!(def.weekly_hours[0].windows[0].open, "08:00");

    // A retry of the same request answers the first answer, even though the pack is
    // now current (a fresh import would say unchanged).
    let retried = p
        .import_pack(Request::new(toml(&changed_text, "small-3")))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(outcomes(&retried), expected);
    // The same request id with another pack is refused.
    expect_code(
        p.import_pack(Request::new(toml(SMALL, "small-3"))).await,
        tonic::Code::AlreadyExists,
    );
    s.stop().await;
}

/// Bad packs are refused with the field and the place in the pack, and change nothing.
async fn bad_packs_are_refused_and_change_nothing(db: Db) {
    let s = TestServer::start(db, utc(2026, 3, 2, 12, 0)).await;
    let mut p = packs(&s).await;
    let typo = SMALL.replace("\"received\"", "\"recieved\"");
    let e = expect_code(
        p.import_pack(Request::new(toml(&typo, "bad-1"))).await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violations(&e), vec!["pack_toml".to_string()]);
    assert!(
        e.message().contains("policy.clocks[0].start[0]"),
        "{}",
        e.message()
    );
    let e = expect_code(
        p.import_pack(Request::new(pb::ImportPackRequest {
            source: Some(pb::import_pack_request::Source::EmbeddedPack("acme".into())),
            request_id: "bad-2".into(),
            ..Default::default()
        }))
        .await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violations(&e), vec!["embedded_pack".to_string()]);
    let e = expect_code(
        p.import_pack(Request::new(pb::ImportPackRequest {
            request_id: "bad-3".into(),
            ..Default::default()
        }))
        .await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violations(&e), vec!["source".to_string()]);
    let e = expect_code(
        p.import_pack(Request::new(toml(SMALL, ""))).await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violations(&e), vec!["request_id".to_string()]);
    // Nothing was created by any of them.
    expect_code(
        s.policies
            .clone()
            .get_policy(Request::new(pb::GetPolicyRequest {
                name: "policies/small".into(),
                version: 0,
            }))
            .await,
        tonic::Code::NotFound,
    );
    // An archived resource in the way stops the whole import.
    p.import_pack(Request::new(toml(SMALL, "ok-1")))
        .await
        .expect("import");
    s.policies
        .clone()
        .archive_policy(Request::new(pb::ArchivePolicyRequest {
            name: "policies/small".into(),
            request_id: rid("arch"),
        }))
        .await
        .expect("archived");
    let changed = SMALL.replace("09:00-17:00", "10:00-16:00");
    expect_code(
        p.import_pack(Request::new(toml(&changed, "ok-2"))).await,
        tonic::Code::FailedPrecondition,
    );
    let cal = s
        .calendars
        .clone()
        .get_calendar(Request::new(pb::GetCalendarRequest {
            name: "calendars/small-support".into(),
            version: 0,
        }))
        .await
        .expect("calendar")
        .into_inner();
    assert_eq!(cal.version, 1, "the calendar was not versioned either");
    s.stop().await;
}

crate::on_both_stores!(
    every_builtin_pack_imports_once,
    a_changed_pack_versions_what_changed,
    bad_packs_are_refused_and_change_nothing,
);
