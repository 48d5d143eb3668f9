//! The gRPC transport of `PackService`.

use tonic::{Request, Response, Status};

use super::catalog::{key, legacy_of};
use super::convert::{self as cv};
use super::error::{AppResult, Check};
use super::pb;
use super::{Api, client_of};
use crate::app::answer::Idempotency;
use crate::app::packs::{Outcome, PackImport};
use crate::domain::pack::{self, Pack};
use crate::store::Store;

/// Largest pack text accepted.
const MAX_PACK_BYTES: usize = 256 * 1024;

/// The answer an import stores and returns.
pub fn import_to_pb(i: &PackImport) -> pb::ImportPackResponse {
    pb::ImportPackResponse {
        pack: i.pack.to_string(),
        title: i.title.clone(),
        source: i.source.clone(),
        resources: i
            .resources
            .iter()
            .map(|r| pb::ImportedResource {
                name: cv::name_of(r.kind, &r.id),
                outcome: match r.outcome {
                    Outcome::Created => pb::ImportOutcome::Created,
                    Outcome::NewVersion => pb::ImportOutcome::NewVersion,
                    Outcome::Unchanged => pb::ImportOutcome::Unchanged,
                } as i32,
                version: r.version as i32,
            })
            .collect(),
        validate_only: i.validate_only,
    }
}

/// Parses a pack from an embedded name or TOML text, naming the request field at fault.
pub fn parse_source(
    c: &mut Check,
    source: Option<&pb::import_pack_request::Source>,
) -> Option<Pack> {
    use pb::import_pack_request::Source;
    match source {
        None => {
            c.fail("source", "is required: set embedded_pack or pack_toml");
            None
        }
        Some(Source::EmbeddedPack(name)) => match pack::embedded(name) {
            None => {
                let known: Vec<&str> = pack::EMBEDDED.iter().map(|(n, _)| *n).collect();
                c.fail(
                    "embedded_pack",
                    format!("no pack {name:?} is built in; known: {}", known.join(", ")),
                );
                None
            }
            Some(text) => c.ok("embedded_pack", pack::parse(text)),
        },
        Some(Source::PackToml(text)) if text.len() > MAX_PACK_BYTES => {
            c.fail(
                "pack_toml",
                format!("is longer than {MAX_PACK_BYTES} bytes"),
            );
            None
        }
        Some(Source::PackToml(text)) => c.ok("pack_toml", pack::parse(text)),
    }
}

#[tonic::async_trait]
impl<S: Store> pb::pack_service_server::PackService for Api<S> {
    async fn import_pack(
        &self,
        req: Request<pb::ImportPackRequest>,
    ) -> Result<Response<pb::ImportPackResponse>, Status> {
        let client = client_of(&req);
        let r = req.into_inner();
        let mut c = Check::new();
        let pack = parse_source(&mut c, r.source.as_ref());
        let rid = if r.validate_only && r.request_id.is_empty() {
            Some(None)
        } else {
            cv::request_id(&mut c, "request_id", &r.request_id).map(Some)
        };
        let parsed = c.finish(pack.zip(rid));
        let result: AppResult<pb::ImportPackResponse> = async {
            let (pack, rid) = parsed?;
            let idempotent = rid.filter(|_| !r.validate_only).map(|rid| Idempotency {
                key: key(&client, "ImportPack", rid),
                legacy: legacy_of(&[("source", &r.source), ("validate_only", &r.validate_only)]),
            });
            let imported = self
                .app
                .import_pack(&pack, idempotent.as_ref(), r.validate_only, &import_to_pb)
                .await?;
            for calendar in &imported.changed_calendars {
                self.recompute
                    .request(crate::app::recompute::Scope::Calendar(calendar.clone()));
            }
            Ok(imported.answer)
        }
        .await;
        result.map(Response::new).map_err(Status::from)
    }
}
