/// The module tree keeps its layers: every `crate::<module>` path in `src/` names a module of a
/// lower layer than the file's own top-level module (or that module itself), every top-level
/// module has a layer, and the top-level modules form no cycle. The layers are the ones
/// `src/lib.rs` describes.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, bottom first. Modules of one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    &["core"],
    &["decode", "auth", "delivery", "storage"],
    &["alerts"],
    &["pipeline"],
    &["cluster"],
    &["ingest", "realtime"],
    &["web"],
    &["config"],
    &["service", "simulate"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// `(file, its top-level module, the top-level module it names)` for every `crate::` path.
type Edge = (PathBuf, String, String);

/// The top-level module a file under `src` belongs to (`None` for the crate root files).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line without its `//` comment (doc links are not imports).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every `crate::<name>` a file's code mentions, as top-level module names.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut rest = code(line);
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            // `in crate::x` (visibility) and `crate::x` alike; skip `foo_crate::`.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

fn edges(src: &Path) -> Vec<Edge> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut edges = Vec::new();
    for file in files {
        let Some(from) = top_module(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source file");
        for to in named_modules(&text) {
            if to != from {
                edges.push((file.clone(), from.clone(), to));
            }
        }
    }
    edges
}

/// What is wrong with the tree under `src`, one line per problem (empty: nothing).
fn problems(src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if let Some(m) = top_module(src, &path.join("mod.rs")).filter(|_| path.is_dir()) {
            modules.insert(m);
        } else if let Some(m) = top_module(src, &path) {
            modules.insert(m);
        }
    }
    for m in &modules {
        if rank(m).is_none() {
            problems.push(format!("top-level module `{m}` has no layer in LAYERS"));
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, from, to) in edges(src) {
        graph.entry(from.clone()).or_default().insert(to.clone());
        match (rank(&from), rank(&to)) {
            (Some(f), Some(t)) if t < f => {}
            (Some(_), Some(_)) => problems.push(format!(
                "{}: `{from}` (layer {}) imports `crate::{to}` (layer {}): only lower layers may be imported",
                file.display(),
                rank(&from).unwrap_or_default(),
                rank(&to).unwrap_or_default(),
            )),
            _ => {}
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!(
            "top-level modules form a cycle: {}",
            cycle.join(" -> ")
        ));
    }
    problems
}

/// A cycle in the module graph, if there is one (depth-first search with a path stack).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_source_tree_keeps_its_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = problems(&src);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself can fail: a tree with an upward import, a sibling import, a cycle and a
/// module without a layer is reported on every count.
#[test]
fn an_upward_import_and_a_cycle_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod core;\npub mod decode;\npub mod auth;\n");
    // core (layer 0) reaching up into decode, decode back into core: upward and a cycle.
    write(
        "core/mod.rs",
        "use crate::decode::Format; // crate::web in a comment is no import\n",
    );
    write(
        "decode/mod.rs",
        "use crate::core::ids;\nuse crate::auth::Principal;\n",
    );
    write("auth.rs", "pub(in crate::auth) fn x() {}\n");
    write("extra.rs", "use crate::core::ids;\n");
    let found = problems(src);
    let has = |needle: &str| found.iter().any(|p| p.contains(needle));
    assert!(
        has("`core` (layer 0) imports `crate::decode`"),
        "{found:#?}"
    );
    assert!(
        has("`decode` (layer 1) imports `crate::auth` (layer 1)"),
        "{found:#?}"
    );
    assert!(has("cycle: core -> decode -> core"), "{found:#?}");
    assert!(has("`extra` has no layer"), "{found:#?}");
    assert!(!has("crate::web"), "comments are not imports: {found:#?}");
    assert_eq!(found.len(), 4, "{found:#?}");
}
