//! Generic tools against a server with authentication on: the Helm NOTES' `buf curl`
//! lines, run as written (the chart's template variables filled in), and error details
//! decoded by buf through reflection rather than printed as base64.
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
    s.stop().await;
}

crate::on_both_stores!(the_notes_buf_curl_lines_work_with_auth_on);
