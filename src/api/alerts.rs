//! The gRPC transport of `AlertService`: live alerts from the outbox, resumable from a
//! cursor (`app::alerts`).

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::{self as cv};
use super::error::Check;
use super::pb;
use crate::app::alerts::Alert;
use crate::app::settle::SYSTEM_ACTOR;
use crate::domain::names::MetricName;
use crate::store::{AlertFilter, ResourceKind, Store};

fn encode(cursor: (i64, i64)) -> String {
    format!("v1.{}.{}", cursor.0, cursor.1)
}

fn decode(s: &str) -> Option<(i64, i64)> {
    let mut parts = s.strip_prefix("v1.")?.split('.');
    let tx = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((tx, id))
}

fn alert_kind(kind: &str) -> pb::AlertKind {
    match kind {
        "warning" => pb::AlertKind::Warning,
        "breach" => pb::AlertKind::Breach,
        "escalation" => pb::AlertKind::Escalation,
        "move" => pb::AlertKind::Move,
        "retraction" => pb::AlertKind::Retraction,
        _ => pb::AlertKind::Unspecified,
    }
}

pub fn to_pb(alert: &Alert) -> pb::Alert {
    let (a, kind) = (&alert.row, &alert.event);
    pb::Alert {
        cursor: encode(a.cursor),
        organization: format!("organizations/{}", a.organization),
        ticket: format!("tickets/{}", a.ticket_id),
        metric: a.metric.clone(),
        kind: alert_kind(&a.kind) as i32,
        event: Some(pb::TicketEvent {
            occurred_time: Some(cv::timestamp(a.occurred_at)),
            kind: Some(cv::event_kind_to_pb(kind, a.occurred_at)),
            sequence: a.event_seq,
            recorded_by: SYSTEM_ACTOR.to_string(),
            record_time: Some(cv::timestamp(a.recorded_at)),
            ..Default::default()
        }),
        record_time: Some(cv::timestamp(a.recorded_at)),
    }
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::Alert, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Store> pb::alert_service_server::AlertService for Api<S> {
    type WatchAlertsStream = AlertStream;

    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<AlertStream>, Status> {
        super::OrgScope::of(&req).allow(&req.get_ref().organization)?;
        let r = req.into_inner();
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
        let metric = if r.metric.is_empty() {
            Some(None)
        } else {
            c.ok("metric", MetricName::parse(&r.metric))
                .map(|m| Some(m.to_string()))
        };
        let cursor = if r.cursor.is_empty() {
            Some(None)
        } else {
            match decode(&r.cursor) {
                Some(cur) => Some(Some(cur)),
                None => {
                    c.fail("cursor", "is not a cursor an alert carried");
                    None
                }
            }
        };
        if r.from_now && !r.cursor.is_empty() {
            c.fail("from_now", "cannot be combined with a cursor");
        }
        let ((organization, metric), cursor) = c.finish(organization.zip(metric).zip(cursor))?;
        let filter = AlertFilter {
            organization,
            metric,
        };
        let rx = self
            .app
            .watch_alerts(filter, cursor, r.from_now)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|r| r.map(|a| to_pb(&a)).map_err(Status::from)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode(&encode((7, 42))), Some((7, 42)));
        assert_eq!(decode(&encode((-1, 0))), Some((-1, 0)));
        assert_eq!(decode("v2.1.2"), None);
        assert_eq!(decode("v1.1"), None);
        assert_eq!(decode("v1.1.2.3"), None);
    }
}
