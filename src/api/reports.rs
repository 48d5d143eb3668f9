//! Explained deadlines and attainment reports: read-only questions answered from a
//! ticket's fold and from the clocks index.

use std::collections::HashMap;

use chrono::{NaiveDate, TimeDelta};
use chrono_tz::Tz;

use super::app::{App, Reader, parse_body, rejected};
use super::convert::{self as cv};
use super::error::{ApiError, ApiResult, Check};
use super::pb;
use crate::domain::attainment::{self, Outcome, Period, Settled};
use crate::domain::explain::{self, Explanation};
use crate::domain::names::ResourceId;
use crate::domain::organization::Organization;
use crate::domain::policy::{BusinessDays, DurationRule};
use crate::store::{ClockCursor, ClockFilter, ResourceKind, Store, StoreError};

/// Longest attainment report, in days.
const MAX_REPORT_DAYS: i64 = 732;
/// Clocks read per page while a report is built.
const REPORT_PAGE: u32 = 5000;

/// A duration rule in words, and its kind.
pub fn describe_rule(rule: &DurationRule) -> (String, &'static str) {
    match rule {
        DurationRule::WallClock { minutes } => {
            (format!("{minutes} minutes, wall clock"), "wall_clock")
        }
        DurationRule::CalendarDays { days } => (
            format!("{days} calendar days, to the same local time"),
            "calendar_days",
        ),
        DurationRule::BusinessMinutes { calendar, minutes } => (
            format!("{minutes} business minutes on calendar slot {calendar}"),
            "business_minutes",
        ),
        DurationRule::BusinessDays {
            calendar,
            days,
            mode,
        } => (
            format!(
                "{days} business days on calendar slot {calendar}, {}",
                match mode {
                    BusinessDays::SameTime => "to the same time of day",
                    BusinessDays::EndOfDay => "to the end of the day",
                }
            ),
            "business_days",
        ),
        DurationRule::ScheduledTime => ("the ticket's scheduled time".into(), "scheduled_time"),
        DurationRule::NextWeek { calendar } => (
            format!("the first opening of the next ISO week on calendar slot {calendar}"),
            "next_week",
        ),
        DurationRule::ByOpenHours { calendar, .. } => (
            format!("by open hours of calendar slot {calendar}"),
            "by_open_hours",
        ),
        DurationRule::ByEstimate { .. } => ("by effort estimate".into(), "by_estimate"),
    }
}

fn interval(i: &crate::domain::OpenInterval) -> pb::TimeInterval {
    pb::TimeInterval {
        start_time: Some(cv::timestamp(i.start)),
        end_time: Some(cv::timestamp(i.end)),
    }
}

impl<S: Store> App<S> {
    pub async fn explain_deadline(
        &self,
        ticket_id: &str,
        metric: &str,
        instance: Option<u32>,
    ) -> ApiResult<pb::DeadlineExplanation> {
        let record = self
            .store
            .get_ticket(ticket_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ApiError::NotFound(format!("tickets/{ticket_id}")),
                e => e.into(),
            })?;
        let stored = self.store.ticket_events(ticket_id).await?;
        let loaded = self.load(&mut Reader::Pool(&self.store), &record).await?;
        let now = self.now();
        let state = self
            .fold(&loaded, &record, &App::<S>::events(&stored), now)
            .map_err(|r| rejected(r, None))?;
        let view = state
            .clocks
            .iter()
            .filter(|c| c.metric.as_str() == metric)
            .filter(|c| instance.is_none_or(|i| c.instance == i))
            .max_by_key(|c| c.instance)
            .ok_or_else(|| {
                ApiError::NotFound(match instance {
                    Some(i) => format!("clock {metric} #{i} of tickets/{ticket_id}"),
                    None => format!("clock {metric} of tickets/{ticket_id}"),
                })
            })?;
        let (_, calendars) = &*loaded.context;
        let e: Explanation = explain::explain(view, calendars, now)
            .map_err(|e| ApiError::Internal(format!("explaining {metric}: {e}")))?;
        let (rule, rule_kind) = view.rule.as_ref().map(describe_rule).unwrap_or_default();
        let calendar = e
            .counted_on
            .as_ref()
            .and_then(|slot| {
                loaded
                    .organization()
                    .calendars
                    .iter()
                    .find(|b| &b.slot == slot)
            })
            .map(|b| cv::name_of(ResourceKind::Calendar, &b.calendar))
            .unwrap_or_default();
        let clock = cv::clock_to_pb(view, &loaded.policy);
        Ok(pb::DeadlineExplanation {
            policy: cv::name_of(ResourceKind::Policy, &record.ticket.policy),
            policy_version: record.ticket.policy_version as i32,
            target_index: clock.target_index,
            source: clock.source.clone(),
            rule,
            rule_kind: rule_kind.to_string(),
            calendar_slot: e
                .counted_on
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            calendar,
            counted: e.counted.iter().map(interval).collect(),
            paused: e.paused.iter().map(interval).collect(),
            holidays_skipped: e
                .holidays_skipped
                .iter()
                .map(NaiveDate::to_string)
                .collect(),
            closed_days_skipped: e
                .closed_days_skipped
                .iter()
                .map(NaiveDate::to_string)
                .collect(),
            truncated: e.truncated,
            counted_duration: Some(cv::duration(explain::total(&e.counted))),
            until_time: Some(cv::timestamp(e.until)),
            clock: Some(clock),
        })
    }

    pub async fn report_attainment(
        &self,
        filter: ClockFilter,
        period: Period,
        from: NaiveDate,
        to: NaiveDate,
    ) -> ApiResult<pb::ReportAttainmentResponse> {
        // Local dates in any zone lie within a day of UTC's: read a day wider, then keep
        // what falls in [from, to) in each organisation's own zone.
        let day = TimeDelta::days(1);
        let start = from.and_hms_opt(0, 0, 0).map(|t| t.and_utc() - day);
        let end = to.and_hms_opt(0, 0, 0).map(|t| t.and_utc() + day);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ApiError::Internal("report range".into()));
        };
        let mut settled = Vec::new();
        let mut zones: HashMap<String, Tz> = HashMap::new();
        let mut after: Option<ClockCursor> = None;
        loop {
            let page = self
                .store
                .settled_promises(start, end, &filter, after.as_ref(), REPORT_PAGE)
                .await?;
            for p in &page {
                if !zones.contains_key(&p.organization) {
                    zones.insert(p.organization.clone(), self.zone_of(&p.organization).await?);
                }
                let outcome = match p.state.as_str() {
                    "met" => Outcome::Met,
                    "breached" => Outcome::Breached,
                    "cancelled" => Outcome::Cancelled,
                    // A promise not started (no target) settles nothing.
                    _ => continue,
                };
                settled.push(Settled {
                    organization: p.organization.clone(),
                    metric: p.metric.clone(),
                    priority: p.priority.clone(),
                    outcome,
                    settled_at: p.settled_at,
                    elapsed_seconds: p.elapsed_seconds,
                });
            }
            match page.last() {
                Some(last) if page.len() == REPORT_PAGE as usize => {
                    after = Some(ClockCursor {
                        deadline_us: last.settled_at.timestamp_micros(),
                        ticket_id: last.ticket_id.clone(),
                        metric: last.metric.clone(),
                        instance: last.instance,
                    });
                }
                _ => break,
            }
        }
        let lines = attainment::report(
            settled,
            |org| zones.get(org).copied().unwrap_or(chrono_tz::UTC),
            period,
            from,
            to,
        );
        let seconds = |s: Option<i64>| s.map(|s| cv::duration(TimeDelta::seconds(s)));
        Ok(pb::ReportAttainmentResponse {
            lines: lines
                .into_iter()
                .map(|l| pb::AttainmentLine {
                    organization: format!("organizations/{}", l.organization),
                    metric: l.metric,
                    priority: l.priority.unwrap_or_default(),
                    period_start_date: l.period_start.to_string(),
                    met: l.met as i64,
                    breached: l.breached as i64,
                    cancelled: l.cancelled as i64,
                    attainment_rate: l.attainment,
                    median_time_to_stop: seconds(l.median_seconds),
                    p90_time_to_stop: seconds(l.p90_seconds),
                })
                .collect(),
        })
    }

    async fn zone_of(&self, organization: &str) -> ApiResult<Tz> {
        let Ok(id) = ResourceId::parse(organization) else {
            return Ok(chrono_tz::UTC);
        };
        match self
            .store
            .get_resource(ResourceKind::Organization, &id, None)
            .await
        {
            Ok(v) => Ok(parse_body::<Organization>(&v)?.zone),
            Err(StoreError::NotFound(_)) => Ok(chrono_tz::UTC),
            Err(e) => Err(e.into()),
        }
    }
}

/// Parses a ReportAttainment request.
pub fn attainment_request(
    r: &pb::ReportAttainmentRequest,
) -> ApiResult<(ClockFilter, Period, NaiveDate, NaiveDate)> {
    let mut c = Check::new();
    let organization = if r.organization.is_empty() {
        Some(None)
    } else {
        cv::resource_name(
            &mut c,
            "organization",
            &r.organization,
            ResourceKind::Organization,
        )
        .map(|o| Some(o.to_string()))
    };
    let period = match pb::AttainmentPeriod::try_from(r.period) {
        Ok(pb::AttainmentPeriod::Quarter) => Some(Period::Quarter),
        Ok(_) => Some(Period::Month),
        Err(_) => {
            c.fail("period", format!("unknown period {}", r.period));
            None
        }
    };
    let from = cv::plain_date(&mut c, "start_date", &r.start_date);
    let to = cv::plain_date(&mut c, "end_date", &r.end_date);
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            c.fail("end_date", "must be after start_date");
        } else if (t - f).num_days() > MAX_REPORT_DAYS {
            c.fail(
                "end_date",
                format!("at most {MAX_REPORT_DAYS} days after start_date"),
            );
        }
    }
    let metric = if r.metric.is_empty() {
        Some(None)
    } else {
        c.ok(
            "metric",
            crate::domain::names::MetricName::parse(&r.metric).map(|m| Some(m.to_string())),
        )
    };
    let parsed = c.finish(organization.zip(metric).zip(period).zip(from).zip(to))?;
    let ((((organization, metric), period), from), to) = parsed;
    Ok((
        ClockFilter {
            organization,
            metric,
            priority: None,
        },
        period,
        from,
        to,
    ))
}
