//! Explained deadlines and attainment reports as proto: the request parsed, the answer
//! rendered (the rule in words, intervals, lines).

use chrono::{NaiveDate, TimeDelta};

use super::convert::{self as cv};
use super::error::{AppResult, Check};
use super::pb;
use crate::app::reports::ExplainedDeadline;
use crate::domain::attainment::{Line, Period};
use crate::domain::explain;
use crate::domain::policy::{BusinessDays, DurationRule};
use crate::store::{ClockFilter, ResourceKind};

/// Longest attainment report, in days.
const MAX_REPORT_DAYS: i64 = 732;

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

pub fn explanation_to_pb(x: &ExplainedDeadline) -> pb::DeadlineExplanation {
    let e = &x.explanation;
    let (rule, rule_kind) = x.clock.rule.as_ref().map(describe_rule).unwrap_or_default();
    let clock = cv::clock_to_pb(&x.clock, &x.policy);
    pb::DeadlineExplanation {
        policy: cv::name_of(ResourceKind::Policy, &x.policy_id),
        policy_version: x.policy_version as i32,
        target_index: clock.target_index,
        source: clock.source.clone(),
        rule,
        rule_kind: rule_kind.to_string(),
        calendar_slot: e
            .counted_on
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        calendar: x
            .calendar
            .as_ref()
            .map(|c| cv::name_of(ResourceKind::Calendar, c))
            .unwrap_or_default(),
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
    }
}

pub fn attainment_to_pb(lines: Vec<Line>) -> pb::ReportAttainmentResponse {
    let seconds = |s: Option<i64>| s.map(|s| cv::duration(TimeDelta::seconds(s)));
    pb::ReportAttainmentResponse {
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
    }
}

/// Parses a ReportAttainment request.
pub fn attainment_request(
    r: &pb::ReportAttainmentRequest,
) -> AppResult<(ClockFilter, Period, NaiveDate, NaiveDate)> {
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
