//! The gRPC transport of `CalendarService`.

use crate::domain::ics::holidays_from_ics;
use tonic::{Request, Response, Status};

use super::catalog::{key, legacy_of, new_id};
use super::convert::{self as cv};
use super::error::Check;
use super::pb;
use super::{Api, client_of};
use crate::api::error::respond;
use crate::app::answer::Idempotency;
use crate::app::catalog::{at_version, json};
use crate::app::fingerprint::Fingerprint;
use crate::store::{ResourceKind, Store};

/// Largest iCalendar text accepted.
const MAX_ICS_BYTES: usize = 1 << 20;

#[tonic::async_trait]
impl<S: Store> pb::calendar_service_server::CalendarService for Api<S> {
    async fn create_calendar(
        &self,
        req: Request<pb::CreateCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.calendar_id);
        let mut c = Check::new();
        let id = new_id(&mut c, "calendar_id", &r.calendar_id);
        let cal = r.calendar.as_ref();
        let display = cv::display_name(
            &mut c,
            "calendar.display_name",
            cal.map(|c| c.display_name.as_str()).unwrap_or(""),
        );
        let spec = cv::calendar_definition(
            &mut c,
            "calendar.definition",
            cal.and_then(|c| c.definition.as_ref()),
        );
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(display).zip(spec).zip(rid));
        respond(
            async {
                let (((id, display), spec), rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "CreateCalendar", rid),
                    legacy: legacy_of(&[
                        ("calendar_id", &r.calendar_id),
                        ("calendar", &r.calendar),
                    ]),
                };
                let fp = Fingerprint::new()
                    .with("calendar_id", &id)
                    .with("display_name", &display)
                    .with("definition", &spec);
                self.app
                    .create_resource(
                        (&idem, &fp),
                        ResourceKind::Calendar,
                        &id,
                        display.as_str(),
                        json(&spec)?,
                        &cv::calendar_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn get_calendar(
        &self,
        req: Request<pb::GetCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let r = req.into_inner();
        respond(
            async {
                let mut cal = self
                    .get(
                        ResourceKind::Calendar,
                        &r.name,
                        r.version,
                        cv::calendar_to_pb,
                    )
                    .await?;
                cal.recomputation = self
                    .recomputation(ResourceKind::Calendar, &cal.name, cal.version)
                    .await?;
                Ok(cal)
            }
            .await,
        )
    }

    async fn list_calendars(
        &self,
        req: Request<pb::ListCalendarsRequest>,
    ) -> Result<Response<pb::ListCalendarsResponse>, Status> {
        let r = req.into_inner();
        respond(
            self.list(
                ResourceKind::Calendar,
                r.page_size,
                &r.page_token,
                r.show_archived,
                cv::calendar_to_pb,
            )
            .await
            .map(|(calendars, next_page_token)| pb::ListCalendarsResponse {
                calendars,
                next_page_token,
            }),
        )
    }

    async fn update_calendar(
        &self,
        req: Request<pb::UpdateCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let spec = cv::calendar_definition(&mut c, "definition", r.definition.as_ref());
        let effective = cv::optional_instant(&mut c, "effective_time", r.effective_time.as_ref());
        if !r.display_name.is_empty() {
            cv::display_name(&mut c, "display_name", &r.display_name);
        }
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let expected = cv::expected_version(&mut c, "expected_version", r.expected_version);
        let parsed = c.finish(id.zip(spec).zip(effective).zip(rid).zip(expected));
        let result = async {
            let ((((id, spec), effective), rid), expected) = parsed?;
            let idem = Idempotency {
                key: key(&client, "UpdateCalendar", rid),
                legacy: legacy_of(&[
                    ("name", &r.name),
                    ("display_name", &r.display_name),
                    ("definition", &r.definition),
                    ("effective_time", &r.effective_time),
                    ("expected_version", &r.expected_version),
                ]),
            };
            let fp = Fingerprint::new()
                .with("name", &id)
                .with("display_name", &r.display_name)
                .with("definition", &spec)
                .with("effective_time", &effective)
                .with("expected_version", &expected);
            let body = json(&spec)?;
            let answer = self
                .app
                .update_resource(
                    (&idem, &fp),
                    (ResourceKind::Calendar, &id),
                    Some(&r.display_name),
                    |current| {
                        at_version(current, expected)?;
                        Ok(body)
                    },
                    effective,
                    &cv::calendar_to_pb,
                )
                .await?;
            self.recompute_calendar_users(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }

    async fn preview_calendar_update(
        &self,
        req: Request<pb::PreviewCalendarUpdateRequest>,
    ) -> Result<Response<pb::ChangePreview>, Status> {
        let r = req.into_inner().update.unwrap_or_default();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "update.name", &r.name, ResourceKind::Calendar);
        let spec = cv::calendar_definition(&mut c, "update.definition", r.definition.as_ref());
        let effective =
            cv::optional_instant(&mut c, "update.effective_time", r.effective_time.as_ref());
        let parsed = c.finish(id.zip(spec).zip(effective));
        respond(
            async {
                let ((id, spec), effective) = parsed?;
                self.app
                    .preview_calendar(&id, spec, effective)
                    .await
                    .map(|p| cv::preview_to_pb(&p))
            }
            .await,
        )
    }

    async fn archive_calendar(
        &self,
        req: Request<pb::ArchiveCalendarRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(rid));
        respond(
            async {
                let (id, rid) = parsed?;
                let idem = Idempotency {
                    key: key(&client, "ArchiveCalendar", rid),
                    legacy: legacy_of(&[("name", &r.name)]),
                };
                let fp = Fingerprint::new().with("name", &id);
                self.app
                    .archive(
                        (&idem, &fp),
                        ResourceKind::Calendar,
                        &id,
                        &cv::calendar_to_pb,
                    )
                    .await
            }
            .await,
        )
    }

    async fn import_calendar_holidays(
        &self,
        req: Request<pb::ImportCalendarHolidaysRequest>,
    ) -> Result<Response<pb::Calendar>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        super::note("calendar", &r.name);
        let mut c = Check::new();
        let id = cv::resource_name(&mut c, "name", &r.name, ResourceKind::Calendar);
        let from = cv::plain_date(&mut c, "from_date", &r.from_date);
        let to = cv::plain_date(&mut c, "to_date", &r.to_date);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            c.fail("to_date", "must not be before from_date");
        }
        if r.ics.len() > MAX_ICS_BYTES {
            c.fail("ics", format!("is larger than {MAX_ICS_BYTES} bytes"));
        }
        let holidays = match (from, to) {
            (Some(f), Some(t)) if c.is_clean() => c.ok("ics", holidays_from_ics(&r.ics, f, t)),
            _ => None,
        };
        let effective = cv::optional_instant(&mut c, "effective_time", r.effective_time.as_ref());
        let rid = cv::request_id(&mut c, "request_id", &r.request_id);
        let parsed = c.finish(id.zip(holidays).zip(effective).zip(rid));
        let result = async {
            let (((id, holidays), effective), rid) = parsed?;
            let idem = Idempotency {
                key: key(&client, "ImportCalendarHolidays", rid),
                legacy: legacy_of(&[
                    ("name", &r.name),
                    ("ics", &r.ics),
                    ("from_date", &r.from_date),
                    ("to_date", &r.to_date),
                    ("effective_time", &r.effective_time),
                ]),
            };
            let dates: Vec<chrono::NaiveDate> = holidays.iter().map(|h| h.date).collect();
            let answer = self
                .app
                .import_holidays(&idem, &id, dates, effective, &cv::calendar_to_pb)
                .await?;
            self.recompute_calendar_users(&id);
            Ok(answer)
        }
        .await;
        respond(result)
    }
}
