//! The layering the README promises, checked on the source itself: the domain is pure, the
//! store knows only the domain, the application knows neither tonic nor the generated
//! proto types nor SQL, and no two folders (or top-level files) import each other in a
//! loop. Test modules are left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments and its test module (clippy keeps test
/// modules last, so everything from `#[cfg(test)]` on is test code).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The unit a file belongs to: its folder under `src/`, or its own name at the top.
fn unit(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts = rel.iter();
    let first = parts.next().expect("a file").to_string_lossy().to_string();
    if parts.next().is_some() {
        first
    } else {
        first.trim_end_matches(".rs").to_string()
    }
}

/// The units `code` names through `crate::x` (or `servicelevel::x` from the binaries).
fn mentions(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "servicelevel::"] {
        for (i, _) in code.match_indices(prefix) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

struct Tree {
    /// unit -> (file, its code)
    files: BTreeMap<String, Vec<(PathBuf, String)>>,
}

impl Tree {
    fn read() -> Tree {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        sources(&src, &mut paths);
        let mut files: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).expect("a readable source file");
            files
                .entry(unit(&src, &p))
                .or_default()
                .push((p.clone(), code(&text)));
        }
        Tree { files }
    }

    fn units(&self) -> BTreeSet<String> {
        self.files.keys().cloned().collect()
    }

    /// Files of `unit` whose code contains any of `words`, with the word found.
    fn containing(&self, unit: &str, words: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for (path, code) in self.files.get(unit).map(Vec::as_slice).unwrap_or(&[]) {
            for w in words {
                if code.contains(w) {
                    found.push(format!("{} uses `{w}`", path.display()));
                }
            }
        }
        found
    }

    /// unit -> the other units it names.
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let units = self.units();
        self.files
            .iter()
            .map(|(u, files)| {
                let deps = files
                    .iter()
                    .flat_map(|(_, code)| mentions(code))
                    .filter(|d| d != u && units.contains(d))
                    .collect();
                (u.clone(), deps)
            })
            .collect()
    }
}

/// A loop in `graph`, if any, as the units along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        u: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == u) {
            let mut c = path[i..].to_vec();
            c.push(u.to_string());
            return Some(c);
        }
        if done.contains(u) {
            return None;
        }
        path.push(u.to_string());
        for d in g.get(u).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(u.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for u in graph.keys() {
        if let Some(c) = visit(graph, u, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_application_layer_speaks_neither_grpc_nor_sql() {
    let tree = Tree::read();
    let found = tree.containing(
        "app",
        &[
            "tonic",
            "prost",
            "pb::",
            "crate::api",
            "crate::http",
            "sqlx",
            "axum",
            "hyper",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_domain_is_pure() {
    let tree = Tree::read();
    let mut found = tree.containing(
        "domain",
        &[
            "async fn",
            ".await",
            "tokio",
            "sqlx",
            "tonic",
            "prost",
            "std::fs",
            "std::net",
            "Utc::now",
            "getrandom",
        ],
    );
    let graph = tree.graph();
    for d in &graph["domain"] {
        found.push(format!("domain names crate::{d}"));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_store_knows_only_the_domain_and_transports_write_no_sql() {
    let tree = Tree::read();
    let graph = tree.graph();
    let beyond: Vec<_> = graph["store"].iter().filter(|d| *d != "domain").collect();
    assert!(beyond.is_empty(), "store names {beyond:?}");
    let found = tree.containing("api", &["sqlx", "SELECT ", "INSERT "]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn no_two_folders_import_each_other() {
    let graph = Tree::read().graph();
    // The check sees the layers it is about.
    for u in ["domain", "store", "app", "api", "server", "main"] {
        assert!(graph.contains_key(u), "no unit {u} in {:?}", graph.keys());
    }
    assert!(graph["api"].contains("app"), "api calls the application");
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn a_loop_is_found() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(cycle(&g), None);
    assert_eq!(
        mentions("use crate::app::x; servicelevel::store::Y; my_crate::no"),
        BTreeSet::from(["app".to_string(), "store".to_string()])
    );
}
