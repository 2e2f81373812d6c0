//! Guards the module graph of `src/` (the library; `src/cli` and `main.rs` are the binary on
//! top): imports only point down. Every module has a layer in [`LAYERS`]; a module may use
//! `crate::X` only where X sits in a lower layer (or is one of its own submodules), and
//! [`FORBIDDEN`] names the few pairs that the layers alone would allow but the design does
//! not. A new module fails this test until it is given a layer, so the table stays the map.
//!
//! It reads the source as text: every `crate::name` and `crate::{a, b}` outside comments.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// From the bottom up. Pure formats and leaf helpers first, then storage and local state,
/// then the engine, then what serves it.
const LAYERS: &[(&str, u32)] = &[
    // pure formats and shared vocabulary
    ("error", 0),
    ("pos", 0),
    ("platform", 0),
    ("layout", 1),
    ("compress", 0),
    ("sqlite", 1),
    ("fault", 1),
    ("event", 1),
    ("secret", 0),
    // leaf helpers
    ("fsutil", 2),
    ("busy", 0),
    ("metrics", 2),
    ("watch", 2),
    // storage
    ("backend", 3),
    // the config resolves into the backends' settings (`backend::ReplicaTarget` and the
    // settings type of each backend)
    ("config", 4),
    // reading a replica back
    ("restore", 4),
    ("retention", 4),
    ("validate", 5),
    // the local state of one database
    ("shadow", 4),
    ("db", 6),
    // one destination, then everything: the engine ships (db -> replica -> backend), the
    // follower applies (backend -> restore -> its copy); neither uses the other
    ("replica", 7),
    ("engine", 8),
    ("follow", 8),
    // above the engine
    ("server", 9),
    ("extension", 10),
];

/// Imports that the layers allow but the design does not: storage knows nothing of
/// metrics (the engine hands each network backend a counter for its requests).
const FORBIDDEN: &[(&str, &str)] = &[("backend", "metrics")];

/// What the crate root re-exports, by the module that defines it.
const ROOT_REEXPORTS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("Generation", "pos"),
    ("Pos", "pos"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`backend/s3.rs` -> `backend`);
/// `None` for the crate root and the binary.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    match name.as_str() {
        "lib" | "main" | "cli" => None,
        _ => Some(name),
    }
}

/// Every module named after `crate::` in `code` (comments already removed).
fn crate_refs(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.push(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    for m in &mut out {
        if let Some((_, module)) = ROOT_REEXPORTS.iter().find(|(name, _)| name == m) {
            *m = module.to_string();
        }
    }
    out
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal (a URL) is rare in the import lines that matter;
            // cutting there can only hide a reference, never invent one.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn imports_only_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let Some(from) = module_of(rel) else { continue };
        seen += 1;
        let Some(&from_layer) = layer.get(from.as_str()) else {
            problems.push(format!(
                "{}: module {from:?} has no layer in tests/layers.rs",
                rel.display()
            ));
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(f).unwrap());
        for to in crate_refs(&code) {
            if to == from {
                continue;
            }
            match layer.get(to.as_str()) {
                None => problems.push(format!(
                    "{}: uses crate::{to}, which has no layer in tests/layers.rs",
                    rel.display()
                )),
                Some(&to_layer) if to_layer >= from_layer => problems.push(format!(
                    "{}: {from} (layer {from_layer}) uses crate::{to} (layer {to_layer}): \
                     imports must point down",
                    rel.display()
                )),
                Some(_) if FORBIDDEN.contains(&(from.as_str(), to.as_str())) => problems.push(
                    format!("{}: {from} must not use crate::{to}", rel.display()),
                ),
                Some(_) => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        seen > 20,
        "read only {seen} library files under {}",
        src.display()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_every_form_of_crate_path() {
    let code = "use crate::a::B;\nuse crate::{c, d::E, f::{g, h}};\nlet x = crate::i::j();";
    assert_eq!(crate_refs(code), ["a", "c", "d", "f", "i"]);
    assert_eq!(
        crate_refs(&without_comments("// see crate::db\nuse crate::pos;")),
        ["pos"]
    );
}
