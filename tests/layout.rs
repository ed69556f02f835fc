//! The source tree keeps its shape: every file small enough to read, the
//! transport in its own rooms, and no two rooms that import each other.
//! Read as text, so it runs in milliseconds and needs nothing built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines. A file past it does more than one job.
const MAX_LINES: usize = 900;

/// The rooms (top-level modules) allowed to name protobuf types or tonic.
const TRANSPORT_ROOMS: &[&str] = &["grpc", "app", "bin"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code of a file without comments (line comments and doc comments),
/// so that doc links do not count as imports.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The room of a source file under `src/`: its top-level module, or for
/// the pure domain its own module (`domain::model`), where a cycle would
/// hide most easily.
fn room(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [first, second, ..] if first == "domain" && second != "mod" => format!("domain::{second}"),
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "training/src", "training/tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn protobuf_and_tonic_stay_in_the_transport_rooms() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let r = room(rel);
        let top = r.split("::").next().unwrap_or_default();
        if TRANSPORT_ROOMS.contains(&top) || rel == Path::new("lib.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&f).unwrap());
        for needle in ["tonic", "pb::", "prost"] {
            if text.contains(needle) {
                offenders.push(format!("{} names {needle}", rel.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn no_two_rooms_import_each_other() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut rooms: BTreeSet<String> = BTreeSet::new();
    let mut texts = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_owned();
        if rel == Path::new("lib.rs") || rel.starts_with("bin") {
            continue;
        }
        rooms.insert(room(&rel));
        texts.push((room(&rel), code(&std::fs::read_to_string(f).unwrap())));
    }
    // Edges from each room to the rooms its code names as `crate::...`.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, text) in &texts {
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let target = if first == "domain" {
                let after = &rest[first.len()..];
                let second: String = after
                    .trim_start_matches("::")
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                format!("domain::{second}")
            } else {
                first
            };
            if rooms.contains(&target) && target != *from {
                edges.entry(from.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a cycle; report its path.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for r in &rooms {
        if state.get(r.as_str()).copied().unwrap_or(0) == 0 {
            let mut path = Vec::new();
            if let Some(cycle) = visit(r, &edges, &mut state, &mut path) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_crate_map_names_every_module() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let src = root().join("src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "bin" {
            continue;
        }
        if !lib.contains(&format!("[`{name}`]")) {
            missing.push(name.clone());
        }
        if p.is_dir() {
            for sub in std::fs::read_dir(&p).unwrap() {
                let s = sub.unwrap().path();
                let stem = s.file_stem().unwrap().to_string_lossy().into_owned();
                if stem == "mod" {
                    continue;
                }
                let path = format!("{name}::{stem}");
                // Private submodules are named by their file name.
                if !lib.contains(&format!("[`{path}`]")) && !lib.contains(&format!("`{stem}`")) {
                    missing.push(path);
                }
            }
        }
    }
    assert!(missing.is_empty(), "src/lib.rs's Layout omits {missing:?}");
}
