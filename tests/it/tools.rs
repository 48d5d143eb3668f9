//! Generic tools against a server with authentication on: the Helm NOTES' `buf curl`
//! lines, run as written (the chart's template variables filled in), and the error
//! details decoded by a generic client (Python grpcio, every type learnt through
//! reflection, `tests/clients/decode_error_details.py`).
//!
//! buf comes from the npm registry (`@bufbuild/buf`), installed under `target/tools`
//! like scripts/proto-check.sh does, or from `BUF` / a `buf` on PATH.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use servicelevel::auth::{ReflectionAccess, Scope, Security};

use crate::auth::{client, scopes, secured};
use crate::fixtures::rid;
use crate::harness::*;

/// The buf binary, installed once per test run when missing.
fn buf() -> &'static Path {
    static BUF: OnceLock<PathBuf> = OnceLock::new();
    BUF.get_or_init(|| {
        if let Some(b) = std::env::var_os("BUF") {
            return PathBuf::from(b);
        }
        if let Ok(out) = std::process::Command::new("sh")
            .args(["-c", "command -v buf"])
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools");
        let bin = tools.join("node_modules/.bin/buf");
        if !bin.exists() {
            std::fs::create_dir_all(&tools).expect("target/tools");
            let status = std::process::Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tools)
                .arg("@bufbuild/buf@1")
                .status()
                .expect("npm runs (buf comes from the npm registry)");
            assert!(status.success(), "npm install @bufbuild/buf failed");
        }
        bin
    })
}

/// A Python with grpcio and grpcio-reflection (from PyPI), in a venv under
/// `target/tools`, made once per test run when missing.
fn python_grpc() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/grpc-venv");
        let python = venv.join("bin/python");
        let ready = || {
            std::process::Command::new(&python)
                .args(["-c", "import grpc, grpc_reflection"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ready() {
            let made = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "python3 -m venv failed");
            let installed = std::process::Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "grpcio==1.85.3",
                    "grpcio-reflection==1.85.1",
                ])
                .status()
                .expect("pip runs (grpcio comes from PyPI)");
            assert!(installed.success(), "pip install grpcio-reflection failed");
        }
        python
    })
}

/// The `buf curl` commands of the chart's NOTES, each joined across its `\` line breaks,
/// with the template's variables filled in as for a plaintext release on `port`.
fn notes_commands(port: u16) -> Vec<String> {
    let notes = include_str!("../../helm/servicelevel/templates/NOTES.txt");
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in notes.lines() {
        let line = line.trim();
        let started = current.is_some() || line.starts_with("npx buf curl");
        if !started {
            continue;
        }
        let (text, more) = match line.strip_suffix('\\') {
            Some(t) => (t.trim_end(), true),
            None => (line, false),
        };
        let joined = match current.take() {
            Some(c) => format!("{c} {text}"),
            None => text.to_string(),
        };
        if more {
            current = Some(joined);
        } else {
            commands.push(joined);
        }
    }
    commands
        .into_iter()
        .map(|c| {
            let c = c
                .replace("{{ $flags }}", "--http2-prior-knowledge ")
                .replace("{{ $scheme }}", "http")
                .replace("{{ $port }}", &port.to_string());
            assert!(!c.contains("{{"), "a template expression left in: {c}");
            c
        })
        .collect()
}

/// Runs a shell command line with `npx buf` as the installed buf and `$token` set.
fn run(command: &str, token: &str) -> std::process::Output {
    let line = command.replacen("npx buf", &buf().display().to_string(), 1);
    std::process::Command::new("sh")
        .args(["-c", &line])
        .env("token", token)
        .output()
        .expect("sh runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn the_notes_buf_curl_lines_work_with_auth_on(db: Db) {
    let mut s = TestServer::start(db, utc(2026, 3, 9, 12, 0)).await;
    for security in [
        secured(),
        Security {
            reflection: ReflectionAccess::Token,
            ..secured()
        },
    ] {
        let reflection = security.reflection;
        s.secure(security).await;
        let token = client(
            &s,
            &format!("notes-{}", rid("c").to_lowercase().replace('_', "-")),
            scopes(&[Scope::PoliciesRead]),
            &[],
        )
        .await;
        let commands = notes_commands(s.addr.port());
        assert_eq!(commands.len(), 3, "list, health, a call: {commands:#?}");
        for command in &commands {
            let out = run(command, &token);
            assert!(
                out.status.success(),
                "{command} (reflection {reflection:?}):\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            let stdout = text(&out.stdout);
            if command.contains("--list-methods") {
                assert!(
                    stdout.contains("servicelevel.v1.TicketService/CreateTicket"),
                    "{stdout}"
                );
            } else if command.contains("Health/Check") {
                assert!(stdout.contains("SERVING"), "{stdout}");
            }
        }
        // Without a token, health and reflection still answer by default; with
        // reflection behind tokens, buf cannot even resolve the method.
        let health = commands
            .iter()
            .find(|c| c.contains("Health/Check"))
            .expect("the health line");
        let anonymous = run(health, "");
        assert_eq!(
            anonymous.status.success(),
            reflection == ReflectionAccess::Public,
            "{}",
            text(&anonymous.stderr)
        );
    }
    // The error details reach a generic client: buf prints each with its type (it shows
    // the values as base64: buf decodes error details only for types compiled into it,
    // not through reflection, which serves them; see the reflection test in auth.rs).
    // Back to the default, reflection open to all: the generic client below sends its
    // token on calls only.
    s.secure(secured()).await;
    let token = client(&s, "notes-bad", scopes(&[Scope::TicketsRead]), &[]).await;
    let out = run(
        &format!(
            "npx buf curl --http2-prior-knowledge --protocol grpc -H \"authorization: Bearer $token\" \
             --reflect-header '*' -d '{{\"name\":\"nonsense\"}}' \
             http://127.0.0.1:{}/servicelevel.v1.TicketService/GetTicket",
            s.addr.port()
        ),
        &token,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid_argument")
            && err.contains("\"google.rpc.BadRequest\"")
            && err.contains("\"google.rpc.ErrorInfo\""),
        "{err}"
    );
    // A generic client that learns every type through reflection decodes them all.
    let out = std::process::Command::new(python_grpc())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/decode_error_details.py"))
        .args([
            &s.addr.to_string(),
            &token,
            "servicelevel.v1.TicketService",
            "GetTicket",
            r#"{"name": "nonsense"}"#,
        ])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decoded: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    assert_eq!(decoded["code"], "INVALID_ARGUMENT");
    let details = decoded["details"].as_array().expect("details");
    let detail = |name: &str| {
        details
            .iter()
            .find(|d| d["type"] == name)
            .map(|d| d["value"].clone())
            .unwrap_or_else(|| panic!("no {name} in {decoded}"))
    };
    assert_eq!(
        detail("google.rpc.BadRequest")["fieldViolations"][0]["field"],
        "name"
    );
    let info = detail("google.rpc.ErrorInfo");
    assert_eq!(info["reason"], "INVALID_REQUEST");
    assert_eq!(info["domain"], "servicelevel.dev");
    s.stop().await;
}

crate::on_both_stores!(the_notes_buf_curl_lines_work_with_auth_on);
