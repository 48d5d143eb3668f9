//! Hostile input on every RPC, generated from the descriptor set (a new RPC is covered
//! without edits): random messages built from each request's descriptor (fields drawn
//! from plausible values half the time), with random mutations, raw garbage, invalid
//! UTF-8, wrong wire types, truncation, oversized lists and strings. Against a real
//! `servicelevel serve` process with a seeded catalogue, every call must be answered
//! within 2 s, never INTERNAL or UNKNOWN, with a status under 16 KiB; a refused call
//! changes no row of any table; and the process's peak memory grows by at most 64 MiB.
//!
//! Seeded and bounded: `SERVICELEVEL_FUZZ_CALLS` (per RPC, 12 by default) and
//! `SERVICELEVEL_FUZZ_SEED` run it longer or differently.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use servicelevel::api::pb;
use servicelevel::store::SqlStore;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::auth::Raw;
use crate::fixtures::*;
use crate::harness::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// The process's peak resident memory, in KiB.
    fn peak_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Message types by full name (`.servicelevel.v1.Ticket`), from every file of the set.
struct Types(BTreeMap<String, DescriptorProto>);

impl Types {
    fn load(set: &FileDescriptorSet) -> Types {
        let mut out = BTreeMap::new();
        fn add(out: &mut BTreeMap<String, DescriptorProto>, prefix: &str, m: &DescriptorProto) {
            let name = format!("{prefix}.{}", m.name());
            for nested in &m.nested_type {
                add(out, &name, nested);
            }
            out.insert(name, m.clone());
        }
        for f in &set.file {
            let prefix = format!(".{}", f.package());
            for m in &f.message_type {
                add(&mut out, &prefix, m);
            }
        }
        Types(out)
    }
}

/// Values that get requests past their first checks (existing resources, well-formed
/// names, dates, zones), drawn for string fields half the time.
const PLAUSIBLE: &[&str] = &[
    "organizations/fuzz",
    "organizations/absent",
    "policies/priority-matrix",
    "calendars/priority-matrix-support",
    "plans/basic",
    "fuzz",
    "P4",
    "P5",
    "support",
    "first_response",
    "incident",
    "zendesk",
    "1001",
    "2026-12-01",
    "2026-12-05",
    "America/New_York",
    "09:00",
    "17:00",
    "request-1",
    "main_stakeholder",
    "",
];

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn key(out: &mut Vec<u8>, number: i32, wire: u8) {
    varint(out, ((number as u64) << 3) | u64::from(wire));
}

fn len_delimited(out: &mut Vec<u8>, number: i32, bytes: &[u8]) {
    key(out, number, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Gen<'a> {
    types: &'a Types,
    rng: Rng,
    /// The ticket the seeding created, for `tickets/...` values.
    ticket: String,
}

impl Gen<'_> {
    fn string(&mut self) -> Vec<u8> {
        match self.rng.below(10) {
            0..=4 => {
                let pick = self.rng.below(PLAUSIBLE.len() as u64 + 1) as usize;
                match PLAUSIBLE.get(pick) {
                    Some(s) => s.as_bytes().to_vec(),
                    None => self.ticket.as_bytes().to_vec(),
                }
            }
            5 | 6 => (0..self.rng.below(24))
                .map(|_| b"abcxyz-_/.:0189AZ "[self.rng.below(18) as usize])
                .collect(),
            // Invalid UTF-8.
            7 => vec![0xff, 0xfe, b'a', 0xc3],
            // Long.
            8 => vec![b'x'; 1 + self.rng.below(20_000) as usize],
            _ => (0..self.rng.below(12))
                .map(|_| self.rng.below(256) as u8)
                .collect(),
        }
    }

    fn int(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self.rng.below(10),
            2 => self.rng.below(100_000),
            3 => u64::MAX, // -1 as a varint
            4 => i64::MIN as u64,
            _ => self.rng.next(),
        }
    }

    fn field(&mut self, out: &mut Vec<u8>, f: &FieldDescriptorProto, depth: usize) {
        let n = f.number();
        match f.r#type() {
            Type::String | Type::Bytes => {
                let s = self.string();
                len_delimited(out, n, &s);
            }
            Type::Message | Type::Group => {
                if depth > 5 {
                    return;
                }
                let body = self.message(f.type_name(), depth + 1);
                len_delimited(out, n, &body);
            }
            Type::Bool
            | Type::Enum
            | Type::Int32
            | Type::Int64
            | Type::Uint32
            | Type::Uint64
            | Type::Sint32
            | Type::Sint64 => {
                key(out, n, 0);
                let v = self.int();
                varint(out, v);
            }
            Type::Fixed64 | Type::Sfixed64 | Type::Double => {
                key(out, n, 1);
                out.extend_from_slice(&self.rng.next().to_le_bytes());
            }
            Type::Fixed32 | Type::Sfixed32 | Type::Float => {
                key(out, n, 5);
                out.extend_from_slice(&(self.rng.next() as u32).to_le_bytes());
            }
        }
    }

    /// A random message of type `name`: each field present or not, repeated fields from
    /// none to (rarely) thousands of items.
    fn message(&mut self, name: &str, depth: usize) -> Vec<u8> {
        let Some(m) = self.types.0.get(name).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in &m.field {
            if !self.rng.chance(60) {
                continue;
            }
            let count = if f.label() == Label::Repeated {
                match self.rng.below(10) {
                    0 => 2_000 + self.rng.below(3_000),
                    1..=3 => 0,
                    _ => 1 + self.rng.below(4),
                }
            } else {
                1
            };
            // Deep oversized lists would make a message of gigabytes: only at the top.
            let count = if depth > 0 { count.min(8) } else { count };
            for _ in 0..count {
                self.field(&mut out, f, depth);
            }
        }
        out
    }

    /// A request for `input` (a type name), whole or mangled.
    fn request(&mut self, input: &str) -> Vec<u8> {
        let mut m = self.message(input, 0);
        match self.rng.below(10) {
            0 if !m.is_empty() => {
                let at = self.rng.below(m.len() as u64) as usize;
                m.truncate(at);
            }
            1 => {
                m = (0..self.rng.below(64))
                    .map(|_| self.rng.below(256) as u8)
                    .collect()
            }
            2 => {
                // A field with a wire type it does not have.
                key(&mut m, 1 + self.rng.below(8) as i32, 5);
                m.extend_from_slice(&[1, 2, 3, 4]);
            }
            3 if !m.is_empty() => {
                for _ in 0..1 + self.rng.below(4) {
                    let at = self.rng.below(m.len() as u64) as usize;
                    m[at] ^= 1 << self.rng.below(8);
                }
            }
            _ => {}
        }
        m
    }
}

/// Every row count, by table.
async fn rows(db: &SqlStore, tables: &[String]) -> Vec<i64> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(
            db.count_raw(&format!("SELECT count(*) FROM \"{t}\""))
                .await
                .unwrap_or(-1),
        );
    }
    out
}

struct Method {
    path: String,
    input: String,
    streaming: bool,
}

/// Every method of the API, and of the health service (built on tonic's codec); the
/// reflection service is bidirectional streaming, which this harness does not drive.
fn methods(set: &FileDescriptorSet) -> Vec<Method> {
    let mut out = Vec::new();
    for f in &set.file {
        if !f.package().starts_with("servicelevel.") && f.package() != "grpc.health.v1" {
            continue;
        }
        for s in &f.service {
            for m in &s.method {
                out.push(Method {
                    path: format!("/{}.{}/{}", f.package(), s.name(), m.name()),
                    input: m.input_type().to_string(),
                    streaming: m.server_streaming(),
                });
            }
        }
    }
    out
}

/// The call's code, its status size on the wire, and how long it took.
async fn call(ch: &Channel, m: &Method, body: Vec<u8>) -> (Code, usize, Duration) {
    let started = Instant::now();
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.expect("ready");
    let path = PathAndQuery::try_from(m.path.as_str()).expect("path");
    let req = Request::new(body);
    let result = if m.streaming {
        match grpc.server_streaming(req, path, Raw).await {
            Ok(r) => {
                let mut stream = r.into_inner();
                match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                    Ok(Err(s)) => Err(s),
                    _ => Ok(()),
                }
            }
            Err(s) => Err(s),
        }
    } else {
        grpc.unary(req, path, Raw).await.map(|_| ())
    };
    let took = started.elapsed();
    match result {
        Ok(()) => (Code::Ok, 0, took),
        Err(s) => (
            s.code(),
            s.message().len() + s.details().len().div_ceil(3) * 4,
            took,
        ),
    }
}

async fn hostile_requests_get_client_errors_and_change_nothing(db: Db) {
    let fresh = fresh_database(db).await;
    let seed: u64 = std::env::var("SERVICELEVEL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_1234_5678);
    let per_rpc: usize = std::env::var("SERVICELEVEL_FUZZ_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_servicelevel"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--pack",
                "priority-matrix",
            ])
            .env("SERVICELEVEL_DATABASE_URL", &fresh.url)
            .env("SERVICELEVEL_MIGRATION_DATABASE_URL", &fresh.direct_url)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("servicelevel starts"),
    );
    let ch = connect(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    // A catalogue and a ticket to aim at.
    let mut orgs = pb::organization_service_client::OrganizationServiceClient::new(ch.clone());
    let mut created = None;
    for _ in 0..100 {
        let r = orgs
            .create_organization(Request::new(pb::CreateOrganizationRequest {
                organization_id: "fuzz".into(),
                organization: Some(organization(
                    "America/New_York",
                    "",
                    "priority-matrix",
                    vec![
                        binding("support", "priority-matrix-support"),
                        binding("24x7", "priority-matrix-24x7"),
                    ],
                    vec![],
                )),
                request_id: "seed-org".into(),
            }))
            .await;
        if r.is_ok() {
            created = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    created.expect("organisation created on the server");
    let t = pb::ticket_service_client::TicketServiceClient::new(ch.clone())
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(ticket(
                "fuzz",
                "seed-1",
                "incident",
                "P5",
                chrono::Utc::now(),
            )),
            request_id: "seed-ticket".into(),
        }))
        .await
        .expect("ticket created")
        .into_inner();
    let store = SqlStore::connect(&fresh.url, 1)
        .await
        .expect("reads the database");
    let table_query = match db {
        Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'".to_string(),
        Db::Postgres => "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()".to_string(),
    };
    let tables = store.strings_raw(&table_query).await.expect("tables");
    assert!(tables.len() >= 8, "{tables:?}");

    let mut set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    set.file.extend(
        FileDescriptorSet::decode(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .expect("health descriptors")
            .file,
    );
    let types = Types::load(&set);
    let mut g = Gen {
        types: &types,
        rng: Rng(seed),
        ticket: t.name.clone(),
    };
    let all = methods(&set);
    assert!(all.len() > 40);
    let baseline_kib = server.peak_kib();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for m in &all {
        for i in 0..per_rpc {
            let body = g.request(&m.input);
            let before = rows(&store, &tables).await;
            let (code, size, took) = call(&ch, m, body.clone()).await;
            let what = format!("{} call {i} ({} bytes, seed {seed:#x})", m.path, body.len());
            assert!(
                !matches!(code, Code::Internal | Code::Unknown),
                "{what}: {code:?}"
            );
            assert!(size < 16 * 1024, "{what}: a status of {size} bytes");
            assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
            if code != Code::Ok {
                let after = rows(&store, &tables).await;
                assert_eq!(before, after, "{what}: refused ({code:?}) but rows changed");
            }
            *codes.entry(format!("{code:?}")).or_default() += 1;
        }
    }
    let grown_kib = server.peak_kib().saturating_sub(baseline_kib);
    assert!(
        grown_kib <= 64 * 1024,
        "peak memory grew by {grown_kib} KiB (from {baseline_kib} KiB)"
    );
    eprintln!("fuzz answers by code: {codes:?}");
    // The mix shows the generator reaches past decoding.
    assert!(
        codes.get("InvalidArgument").copied().unwrap_or(0) > 0,
        "{codes:?}"
    );
    assert!(codes.len() >= 3, "{codes:?}");
    drop(server);
    store.close().await;
    fresh.remove().await;
}

crate::on_both_stores!(hostile_requests_get_client_errors_and_change_nothing);
