//! The shape of `src/` that CONTRIBUTING.md describes, checked: each
//! module imports only the layers below it, no two files import each other
//! (directly or around a loop), and `unsafe` and code that differs by
//! PostgreSQL version stay in the modules that touch PostgreSQL internals.
//! Reads the source as text; needs no server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the top of the program down. A module may use
/// the modules after it in this list (and `gucs` and `error`, used by all),
/// never one before it or beside it on the same line.
const LAYERS: &[&[&str]] = &[
    &["api", "worker"],
    &["cycle"],
    &["act"],
    &["hooks"],
    &["catalog"],
    &["shmem"],
    &["pg"],
    &["gucs", "error"],
];

/// Where `unsafe` may appear, besides the entry points in `lib.rs`.
const UNSAFE_ALLOWED: &[&str] = &["pg", "hooks", "shmem"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, by module path (`act::migrate`, `act` for
/// `act/mod.rs`, `lib` for `lib.rs`), test-only files left out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(stem);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") && stem != "pg_tests" {
                let mut parts = prefix.to_vec();
                if stem != "mod" {
                    parts.push(stem);
                }
                let name = if parts.is_empty() {
                    "lib".to_string()
                } else {
                    parts.join("::")
                };
                out.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), &[], &mut out);
    out
}

/// The code of a file without its comments, so prose that names a module
/// or the word unsafe does not count.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules (files) `module` refers to through `crate::`, `super::` or
/// `self::` paths, resolved to the deepest existing module.
fn references(module: &str, text: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let own: Vec<&str> = if module == "lib" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    // A module with children is a directory's mod.rs (or lib.rs).
    let is_mod_rs = module == "lib" || known.keys().any(|k| k.starts_with(&format!("{module}::")));
    let mut found = BTreeSet::new();
    let code = code(text);
    let bytes = code.as_bytes();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut b = own.clone();
            if !is_mod_rs {
                b.pop();
            }
            b.pop();
            b
        }),
        ("self::", {
            let mut b = own.clone();
            if !is_mod_rs {
                b.pop();
            }
            b
        }),
    ] {
        let mut start = 0;
        while let Some(i) = code[start..].find(anchor) {
            let at = start + i;
            start = at + anchor.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let path: Vec<String> = code[start..]
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect();
            let mut parts: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            let mut resolved = None;
            for seg in path {
                parts.push(seg);
                let candidate = parts.join("::");
                if known.contains_key(&candidate) {
                    resolved = Some(candidate);
                } else {
                    break;
                }
            }
            if let Some(target) = resolved {
                if target != module {
                    found.insert(target);
                }
            }
        }
    }
    found
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

fn layer_of(top_module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top_module))
        .unwrap_or_else(|| panic!("module {top_module} is in no layer of tests/layout.rs"))
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let known = modules();
    let base = layer_of("gucs");
    let mut wrong = Vec::new();
    for (module, text) in &known {
        if module == "lib" {
            continue;
        }
        let from = layer_of(top(module));
        for target in references(module, text, &known) {
            if target == "lib" || top(&target) == top(module) {
                continue;
            }
            let to = layer_of(top(&target));
            if to <= from || (from == base && to == base) {
                wrong.push(format!("{module} uses {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_even_around_a_loop() {
    let known = modules();
    let graph: BTreeMap<String, BTreeSet<String>> = known
        .iter()
        .map(|(m, text)| (m.clone(), references(m, text, &known)))
        .collect();
    // Depth-first search with colours: grey nodes on the stack close a loop.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, colour, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(node.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if colour.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, &graph, &mut colour, &mut Vec::new()) {
                panic!("import loop: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn unsafe_code_stays_where_postgresql_internals_are_touched() {
    let mut wrong = Vec::new();
    for (module, text) in modules() {
        let allowed = module == "lib" || UNSAFE_ALLOWED.contains(&top(&module));
        let code = code(&text);
        let unsafe_words = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| *w == "unsafe")
            .count();
        if !allowed && unsafe_words > 0 {
            wrong.push(format!("{module}: {unsafe_words} use(s) of unsafe"));
        }
        if module != "lib" && code.contains("allow(unsafe_code)") {
            wrong.push(format!("{module}: allows unsafe_code itself"));
        }
    }
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        code(&lib).contains("#![deny(unsafe_code)]"),
        "lib.rs no longer denies unsafe_code"
    );
    assert!(
        wrong.is_empty(),
        "unsafe outside pg/, hooks/, shmem/ and lib.rs:\n{}",
        wrong.join("\n")
    );
    for krate in ["partition_core", "forecast"] {
        let lib = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("crates/{krate}/src/lib.rs")),
        )
        .unwrap();
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "crates/{krate} must forbid unsafe code"
        );
    }
}

#[test]
fn code_that_differs_by_postgresql_version_stays_with_the_internals() {
    let mut wrong = Vec::new();
    for (module, text) in modules() {
        let allowed = module == "lib" || UNSAFE_ALLOWED.contains(&top(&module));
        let code = code(&text);
        let version_gates = ["pg15", "pg16", "pg17", "pg18"]
            .iter()
            .filter(|v| code.contains(&format!("feature = \"{v}\"")))
            .count();
        if !allowed && version_gates > 0 {
            wrong.push(module);
        }
    }
    assert!(
        wrong.is_empty(),
        "#[cfg(feature = \"pgNN\")] outside pg/, hooks/, shmem/ and lib.rs: {wrong:?}"
    );
}
