//! The shape of `src/` that CONTRIBUTING.md describes, checked: each
//! module imports only the layers below it, no two files import each other
//! (directly or around a loop), `unsafe` and code that differs by
//! PostgreSQL version stay in the modules that touch PostgreSQL internals,
//! the extension's own tables are named only under `state/`, and `api/`
//! runs no SQL of its own. Reads the source as text; needs no server.
//!
//! Each check is a function from source files (module path → text) to the
//! problems it finds, so that the tests at the end can plant a violation in
//! made-up files and see it reported, not just see today's tree pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the top of the program down. A module may use
/// the modules after it in this list, never one before it or beside it on
/// the same line. A layer may have no files yet (a folder being created).
const LAYERS: &[&[&str]] = &[
    &["api", "worker"],
    &["cycle"],
    &["act"],
    &["hooks"],
    &["state"],
    &["catalog"],
    &["shmem"],
    &["pg"],
    &["gucs", "error"],
];

/// Where `unsafe` may appear, besides the entry points in `lib.rs`.
const UNSAFE_ALLOWED: &[&str] = &["pg", "hooks", "shmem"];

/// The schema of the extension's own tables (`sql/schema.sql`).
const STATE_SCHEMA: &str = "partition_predict";

/// The one top-level module whose SQL may name the extension's own tables.
const STATE_MODULE: &str = "state";

/// Calls that run SQL, as written once whitespace around `.` and `::` is
/// gone (so `client\n    .select(` counts).
const SQL_CALLS: &[&str] = &["Spi::", "spi::", "client.select", "client.update"];

/// A string literal containing one of these is SQL. The codebase writes SQL
/// keywords upper-case, so prose ("select a table") does not count, but a
/// message quoting a statement ("run CREATE EXTENSION") does: such text
/// belongs with the errors, not in `api/`.
const SQL_MARKERS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "WITH ",
    "ALTER TABLE",
    "CREATE ",
    "DROP ",
];

/// Source files by module path: `act::migrate` for `act/migrate.rs`, `act`
/// for `act/mod.rs`, `lib` for `lib.rs`.
type Sources = BTreeMap<String, String>;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn src() -> PathBuf {
    manifest_dir().join("src")
}

/// Every `.rs` file under `src/`, test-only files left out.
fn modules() -> Sources {
    fn walk(dir: &Path, prefix: &[String], out: &mut Sources) {
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

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

fn layer_of(top_module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top_module))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A source file as the checks read it. Comments are gone from both views,
/// so prose that names a module, a table or the word unsafe does not count.
struct Lexed {
    /// The code with its string literals, where SQL and `feature = "pg16"`
    /// are written.
    code: String,
    /// The code with the contents of string and char literals blanked, so
    /// that braces and paths inside them are not taken for structure.
    skeleton: String,
    /// The contents of the string literals, escapes left as written.
    strings: Vec<String>,
}

/// Splits Rust source into code, comments and literals; knows line, nested
/// block and doc comments, plain, byte, C and raw strings, char literals
/// (`'"'` opens no string) and lifetimes.
fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Lexed {
        code: String::new(),
        skeleton: String::new(),
        strings: Vec::new(),
    };
    let string = |out: &mut Lexed, whole: &[char], content: &[char]| {
        out.code.extend(whole);
        out.skeleton.push_str("\"\"");
        out.strings.push(content.iter().collect());
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.code.push(' ');
            out.skeleton.push(' ');
        } else if c == '"' {
            let (close, end) = quoted(&chars, i);
            string(&mut out, &chars[i..end], &chars[i + 1..close]);
            i = end;
        } else if c == '\'' {
            match char_literal_end(&chars, i) {
                Some(end) => {
                    out.code.extend(&chars[i..end]);
                    out.skeleton.push_str("' '");
                    i = end;
                }
                None => {
                    out.code.push(c);
                    out.skeleton.push(c);
                    i += 1;
                }
            }
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if matches!(word.as_str(), "r" | "br" | "cr") && matches!(at(i), '"' | '#') {
                let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
                // Otherwise a raw identifier (`r#type`), read on as code.
                if at(i + hashes) == '"' {
                    let open = i + hashes + 1;
                    let close = (open..chars.len())
                        .find(|&j| chars[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#'))
                        .unwrap_or(chars.len());
                    let end = (close + 1 + hashes).min(chars.len());
                    string(&mut out, &chars[start..end], &chars[open..close]);
                    i = end;
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                let (close, end) = quoted(&chars, i);
                string(&mut out, &chars[start..end], &chars[i + 1..close]);
                i = end;
                continue;
            }
            if word == "b" && at(i) == '\'' {
                if let Some(end) = char_literal_end(&chars, i) {
                    out.code.extend(&chars[start..end]);
                    out.skeleton.push_str("' '");
                    i = end;
                    continue;
                }
            }
            out.code.push_str(&word);
            out.skeleton.push_str(&word);
        } else {
            out.code.push(c);
            out.skeleton.push(c);
            i += 1;
        }
    }
    out
}

/// Where the string opened by the `"` at `open` closes, and just past it
/// (the end of the file for both if it never closes).
fn quoted(chars: &[char], open: usize) -> (usize, usize) {
    let mut j = open + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return (j, j + 1),
            _ => j += 1,
        }
    }
    (chars.len(), chars.len())
}

/// Just past a char literal starting at `open`, or `None` for a lifetime or
/// a loop label, which have no closing quote.
fn char_literal_end(chars: &[char], open: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    if at(open + 1) == '\\' {
        let close = (open + 3..chars.len()).find(|&j| chars[j] == '\'')?;
        Some(close + 1)
    } else if at(open + 2) == '\'' {
        Some(open + 3)
    } else {
        None
    }
}

/// The code of a file without its comments.
fn code(text: &str) -> String {
    lex(text).code
}

/// Whether a path may start at byte `at`: not inside a longer word, not a
/// later segment of a path (`a::crate`), not a method (`x.name::<T>()`).
fn starts_path(text: &str, at: usize) -> bool {
    let before = &text[..at];
    !(before.ends_with(is_ident) || before.ends_with("::") || before.ends_with('.'))
}

/// Reads a use tree (or a plain path in an expression) that continues
/// `base`, and returns each full path it names with the name it binds:
/// after `base::`, `a::{b, c::{self, d as e}}` names `base::a::b` (binds
/// `b`), `base::a::c` (binds `c`) and `base::a::c::d` (binds `e`);
/// `f(x)` names `base::f`; `super` steps up from `base`.
fn use_tree(text: &str, base: Vec<String>) -> Vec<(Vec<String>, Option<String>)> {
    struct Cursor<'a> {
        text: &'a str,
        at: usize,
    }
    impl Cursor<'_> {
        fn skip_space(&mut self) {
            let rest = &self.text[self.at..];
            self.at += rest.len() - rest.trim_start().len();
        }
        fn eat(&mut self, token: &str) -> bool {
            self.skip_space();
            let found = self.text[self.at..].starts_with(token);
            if found {
                self.at += token.len();
            }
            found
        }
        fn word(&mut self) -> Option<String> {
            self.skip_space();
            let rest = &self.text[self.at..];
            let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            self.at += len;
            (len > 0).then(|| rest[..len].to_string())
        }
    }
    fn tree(
        cursor: &mut Cursor,
        mut path: Vec<String>,
        out: &mut Vec<(Vec<String>, Option<String>)>,
    ) {
        loop {
            if cursor.eat("{") {
                while !cursor.eat("}") && cursor.at < cursor.text.len() {
                    let before = cursor.at;
                    tree(cursor, path.clone(), out);
                    if !cursor.eat(",") && cursor.at == before {
                        return;
                    }
                }
                return;
            }
            let Some(word) = cursor.word() else {
                // A glob (`*`) or the end of what can be read.
                out.push((path, None));
                return;
            };
            match word.as_str() {
                "super" => {
                    path.pop();
                }
                "self" => {}
                _ => path.push(word.clone()),
            }
            if cursor.eat("::") {
                continue;
            }
            let mut binding = match word.as_str() {
                "self" => path.last().cloned(),
                "super" => None,
                _ => Some(word),
            };
            let before_alias = cursor.at;
            if cursor.word().as_deref() == Some("as") {
                binding = cursor.word().filter(|alias| alias != "_");
            } else {
                cursor.at = before_alias;
            }
            out.push((path, binding));
            return;
        }
    }
    let mut out = Vec::new();
    tree(&mut Cursor { text, at: 0 }, base, &mut out);
    out
}

/// The inline modules of a file (`mod tests { … }`): where each one's body
/// starts and ends in `skeleton`, and its name.
fn inline_modules(skeleton: &str) -> Vec<(usize, usize, String)> {
    let bytes = skeleton.as_bytes();
    let mut found = Vec::new();
    for (at, _) in skeleton.match_indices("mod") {
        if skeleton[..at].ends_with(is_ident) {
            continue;
        }
        let rest = &skeleton[at + 3..];
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let name_at = at + 3 + (rest.len() - rest.trim_start().len());
        let name: String = skeleton[name_at..]
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        let after = &skeleton[name_at + name.len()..];
        if name.is_empty() || !after.trim_start().starts_with('{') {
            continue;
        }
        let open = name_at + name.len() + (after.len() - after.trim_start().len());
        let mut depth = 0;
        let mut close = bytes.len();
        for (j, b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((open, close, name));
    }
    found
}

/// The file a full module path lands in: its longest prefix that is a file
/// of `sources` (`lib` for the crate root).
fn file_of(path: &[String], sources: &Sources) -> Option<String> {
    (0..=path.len()).rev().find_map(|len| {
        let name = if len == 0 {
            "lib".to_string()
        } else {
            path[..len].join("::")
        };
        sources.contains_key(&name).then_some(name)
    })
}

/// The other files `module` depends on: each path it writes from
/// `crate::`, `super::` or `self::` (groups `{…}` read item by item), and
/// each path continuing a module it imported by name (`catalog::table::f`
/// after `use crate::catalog`). `super` and `self` are relative to the
/// module the text is in, inline modules (`mod tests { use super::*; }`)
/// included; which kind of file holds it does not matter.
fn references(module: &str, text: &str, sources: &Sources) -> BTreeSet<String> {
    let skeleton = lex(text).skeleton;
    let own: Vec<String> = if module == "lib" {
        Vec::new()
    } else {
        module.split("::").map(String::from).collect()
    };
    let inline = inline_modules(&skeleton);
    let scope_at = |at: usize| -> Vec<String> {
        let mut scope = own.clone();
        scope.extend(
            inline
                .iter()
                .filter(|(open, close, _)| *open < at && at < *close)
                .map(|(_, _, name)| name.clone()),
        );
        scope
    };
    let mut paths = Vec::new();
    let mut imported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for anchor in ["crate::", "super::", "self::"] {
        for (at, _) in skeleton.match_indices(anchor) {
            if !starts_path(&skeleton, at) {
                continue;
            }
            let mut base = if anchor == "crate::" {
                Vec::new()
            } else {
                scope_at(at)
            };
            if anchor == "super::" {
                base.pop();
            }
            for (path, binding) in use_tree(&skeleton[at + anchor.len()..], base) {
                if let Some(name) = binding {
                    if sources.contains_key(&path.join("::")) {
                        imported.insert(name, path.clone());
                    }
                }
                paths.push(path);
            }
        }
    }
    for (name, module_path) in &imported {
        let continued = format!("{name}::");
        for (at, _) in skeleton.match_indices(&continued) {
            if starts_path(&skeleton, at) {
                let tree = use_tree(&skeleton[at + continued.len()..], module_path.clone());
                paths.extend(tree.into_iter().map(|(path, _)| path));
            }
        }
    }
    paths
        .iter()
        .filter_map(|path| file_of(path, sources))
        .filter(|target| target != module)
        .collect()
}

/// Each import of a module of the same layer or of one above.
fn imports_against_the_layering(sources: &Sources) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, text) in sources {
        if module == "lib" {
            continue;
        }
        let Some(from) = layer_of(top(module)) else {
            wrong.push(format!(
                "{module}: {} is in no layer of tests/layout.rs",
                top(module)
            ));
            continue;
        };
        for target in references(module, text, sources) {
            if target == "lib" || top(&target) == top(module) {
                continue;
            }
            // A target in no layer is reported as a module of its own.
            if layer_of(top(&target)).is_some_and(|to| to <= from) {
                wrong.push(format!("{module} uses {target}"));
            }
        }
    }
    wrong
}

/// Loops of imports between files, each as `a -> b -> a`: at least one for
/// every set of files that import each other around a loop.
fn import_loops(sources: &Sources) -> Vec<String> {
    let graph: BTreeMap<String, BTreeSet<String>> = sources
        .iter()
        .map(|(m, text)| (m.clone(), references(m, text, sources)))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        OnStack,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, Colour>,
        stack: &mut Vec<String>,
        loops: &mut Vec<String>,
    ) {
        colour.insert(node.to_string(), Colour::OnStack);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next.as_str()) {
                Some(Colour::OnStack) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    loops.push(cycle.join(" -> "));
                }
                None => visit(next, graph, colour, stack, loops),
                Some(Colour::Done) => {}
            }
        }
        stack.pop();
        colour.insert(node.to_string(), Colour::Done);
    }
    let mut colour = BTreeMap::new();
    let mut loops = Vec::new();
    for node in graph.keys() {
        if !colour.contains_key(node) {
            visit(node, &graph, &mut colour, &mut Vec::new(), &mut loops);
        }
    }
    loops
}

/// `unsafe` (the keyword, not the word in a message) outside the modules
/// allowed it, and modules that allow it themselves.
fn unsafe_outside_the_internals(sources: &Sources) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, text) in sources {
        let allowed = module == "lib" || UNSAFE_ALLOWED.contains(&top(module));
        let skeleton = lex(text).skeleton;
        let unsafe_words = skeleton
            .split(|c: char| !is_ident(c))
            .filter(|w| *w == "unsafe")
            .count();
        if !allowed && unsafe_words > 0 {
            wrong.push(format!("{module}: {unsafe_words} use(s) of unsafe"));
        }
        if module != "lib" && skeleton.contains("allow(unsafe_code)") {
            wrong.push(format!("{module}: allows unsafe_code itself"));
        }
    }
    wrong
}

/// Modules outside the internals with a `#[cfg(feature = "pgNN")]`.
fn version_gates_outside_the_internals(sources: &Sources) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, text) in sources {
        let allowed = module == "lib" || UNSAFE_ALLOWED.contains(&top(module));
        let code = code(text);
        let gated = ["pg15", "pg16", "pg17", "pg18"]
            .iter()
            .any(|v| code.contains(&format!("feature = \"{v}\"")));
        if !allowed && gated {
            wrong.push(module.clone());
        }
    }
    wrong
}

/// The names of the tables `schema_sql` creates in the extension's schema
/// (`CREATE [UNLOGGED] TABLE [IF NOT EXISTS] partition_predict.name`).
fn state_tables(schema_sql: &str) -> BTreeSet<String> {
    let without_comments: Vec<&str> = schema_sql
        .lines()
        .map(|line| line.split("--").next().unwrap())
        .collect();
    let words: Vec<&str> = without_comments
        .iter()
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '('))
        .filter(|w| !w.is_empty())
        .collect();
    let is = |i: usize, keyword: &str| {
        words
            .get(i)
            .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
    };
    let mut tables = BTreeSet::new();
    for start in 0..words.len() {
        if !is(start, "CREATE") {
            continue;
        }
        let mut i = start + 1;
        if is(i, "UNLOGGED") {
            i += 1;
        }
        if !is(i, "TABLE") {
            continue;
        }
        i += 1;
        if is(i, "IF") && is(i + 1, "NOT") && is(i + 2, "EXISTS") {
            i += 3;
        }
        let Some(name) = words
            .get(i)
            .and_then(|w| w.strip_prefix(&format!("{STATE_SCHEMA}.")))
        else {
            continue;
        };
        let name: String = name
            .trim_start_matches('"')
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        if !name.is_empty() {
            tables.insert(name);
        }
    }
    tables
}

/// Whether `code` names `partition_predict.<table>` as a whole word (also
/// with the table's name quoted, `partition_predict.\"table\"`).
fn names_table(code: &str, table: &str) -> bool {
    let qualifier = format!("{STATE_SCHEMA}.");
    code.match_indices(&qualifier).any(|(at, _)| {
        let rest = &code[at + qualifier.len()..];
        let rest = rest
            .strip_prefix("\\\"")
            .or_else(|| rest.strip_prefix('"'))
            .unwrap_or(rest);
        !code[..at].ends_with(is_ident)
            && rest
                .strip_prefix(table)
                .is_some_and(|after| !after.starts_with(is_ident))
    })
}

/// Each file outside `state/` whose code names one of `tables`, with the
/// table: the SQL on the extension's own tables lives in `state/`. Names
/// built at run time (`format!("{schema}.{table}")`) are not seen.
fn state_tables_named_outside_state(sources: &Sources, tables: &BTreeSet<String>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, text) in sources {
        if top(module) == STATE_MODULE {
            continue;
        }
        let code = without_row_type_names(&code(text));
        for table in tables {
            if names_table(&code, table) {
                wrong.push(format!("{module}: {STATE_SCHEMA}.{table}"));
            }
        }
    }
    wrong
}

/// The code with the arguments of `composite_type!(…)` blanked out: a
/// pgrx signature must spell out a table's row type (`manage()` returns a
/// row of the configuration) for the SQL it generates, which names the type,
/// not a statement on the table.
fn without_row_type_names(code: &str) -> String {
    const MACRO: &str = "composite_type!(";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MACRO) {
        let (before, after) = rest.split_at(at + MACRO.len());
        out.push_str(before);
        let end = after.find(')').unwrap_or(after.len());
        out.extend(std::iter::repeat_n(' ', end));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The code with no whitespace next to `.` or `:`, so that a call split
/// over lines reads as one word.
fn without_space_around_paths(code: &str) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in code.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !matches!(c, '.' | ':') && !out.ends_with(['.', ':']) {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// What in `api/` runs SQL: a call of SQL_CALLS in its code, or a string
/// literal containing one of SQL_MARKERS (whitespace in the literal read
/// as a space, so `"SELECT\n"` counts). Comments do not count.
fn sql_in_api(sources: &Sources) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, text) in sources.iter().filter(|(m, _)| top(m) == "api") {
        let lexed = lex(text);
        let calls = without_space_around_paths(&lexed.skeleton);
        for call in SQL_CALLS {
            let count = calls
                .match_indices(call)
                .filter(|(at, _)| !calls[..*at].ends_with(is_ident))
                .count();
            if count > 0 {
                wrong.push(format!("{module}: {count} call(s) of {call}"));
            }
        }
        let sql: Vec<String> = lexed
            .strings
            .iter()
            .map(|s| {
                s.replace("\\n", " ")
                    .replace("\\t", " ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    + " "
            })
            .filter(|s| SQL_MARKERS.iter().any(|marker| s.contains(marker)))
            .collect();
        if let Some(first) = sql.first() {
            let first: String = first.trim().chars().take(60).collect();
            wrong.push(format!(
                "{module}: {} string literal(s) of SQL, the first \"{first}…\"",
                sql.len()
            ));
        }
    }
    wrong
}

fn assert_none(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn every_module_imports_only_layers_below_it() {
    assert_none(
        imports_against_the_layering(&modules()),
        "imports against the layering",
    );
}

#[test]
fn no_two_files_import_each_other_even_around_a_loop() {
    assert_none(import_loops(&modules()), "import loops");
}

#[test]
fn unsafe_code_stays_where_postgresql_internals_are_touched() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        code(&lib).contains("#![deny(unsafe_code)]"),
        "lib.rs no longer denies unsafe_code"
    );
    assert_none(
        unsafe_outside_the_internals(&modules()),
        "unsafe outside pg/, hooks/, shmem/ and lib.rs",
    );
    for krate in ["partition_core", "forecast"] {
        let lib =
            std::fs::read_to_string(manifest_dir().join(format!("crates/{krate}/src/lib.rs")))
                .unwrap();
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "crates/{krate} must forbid unsafe code"
        );
    }
}

#[test]
fn code_that_differs_by_postgresql_version_stays_with_the_internals() {
    assert_none(
        version_gates_outside_the_internals(&modules()),
        "#[cfg(feature = \"pgNN\")] outside pg/, hooks/, shmem/ and lib.rs",
    );
}

#[test]
fn only_state_names_the_extensions_own_tables() {
    let schema = std::fs::read_to_string(manifest_dir().join("sql/schema.sql")).unwrap();
    let tables = state_tables(&schema);
    // An empty list would make the check pass whatever the code says.
    assert!(
        tables.contains("config"),
        "no CREATE TABLE {STATE_SCHEMA}.config found in sql/schema.sql: {tables:?}"
    );
    assert_none(
        state_tables_named_outside_state(&modules(), &tables),
        "the extension's tables named outside src/state/",
    );
}

#[test]
fn api_runs_no_sql_of_its_own() {
    assert_none(sql_in_api(&modules()), "SQL in src/api/");
}

// The checks on planted input: each must report what it exists to catch.

fn planted(files: &[(&str, &str)]) -> Sources {
    files
        .iter()
        .map(|(module, text)| (module.to_string(), text.to_string()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn a_loop_inside_one_folder_through_super_is_found() {
    // Fails with the resolution this file had before: it stepped up twice
    // from `act::a`, read `super::b` as a top-level `b`, found no such
    // module and so saw no import at all.
    let sources = planted(&[
        ("act", "mod a;\nmod b;\n"),
        ("act::a", "use super::b::f;\npub fn g() { f() }\n"),
        ("act::b", "pub fn f() { super::a::g() }\n"),
    ]);
    let loops = import_loops(&sources);
    assert_eq!(loops, ["act::a -> act::b -> act::a"], "{loops:?}");
}

#[test]
fn super_and_self_are_relative_to_the_module_whatever_file_holds_it() {
    let sources = planted(&[
        ("lib", "mod act;\n"),
        ("act", "pub use self::migrate::run;\nuse super::lib_item;\n"),
        (
            "act::migrate",
            "use super::activate;\nuse self::inner::x;\n",
        ),
        ("act::activate", "use super::super::act::migrate;\n"),
        ("act::quarantine", "fn f() { super::g() }\n"),
    ]);
    let refs = |m: &str| references(m, &sources[m], &sources);
    assert_eq!(refs("act"), set(&["act::migrate", "lib"]));
    // `self::inner` is the file's own module: no dependency.
    assert_eq!(refs("act::migrate"), set(&["act::activate"]));
    assert_eq!(refs("act::activate"), set(&["act::migrate"]));
    // An item of the parent module is a use of the parent's file.
    assert_eq!(refs("act::quarantine"), set(&["act"]));
}

#[test]
fn every_item_of_a_use_group_is_an_import() {
    let sources = planted(&[
        ("catalog", ""),
        ("catalog::table", ""),
        ("catalog::state", ""),
        ("catalog::history", ""),
        ("pg", ""),
        ("pg::session", ""),
        ("pg::locks", ""),
        (
            "act::migrate",
            "use crate::catalog::{table::{self, Name}, state};\n\
             use crate::{\n    pg::{session::as_role, locks as held},\n};\n",
        ),
        (
            "act::ingest",
            "use super::{migrate, activate::{self, f}};\n",
        ),
        ("act::activate", ""),
        ("act", ""),
    ]);
    let refs = |m: &str| references(m, &sources[m], &sources);
    assert_eq!(
        refs("act::migrate"),
        set(&[
            "catalog::state",
            "catalog::table",
            "pg::locks",
            "pg::session"
        ])
    );
    assert_eq!(refs("act::ingest"), set(&["act::activate", "act::migrate"]));
}

#[test]
fn a_path_continuing_an_imported_module_is_an_import() {
    let sources = planted(&[
        ("catalog", ""),
        ("catalog::table", ""),
        ("catalog::history", ""),
        (
            "act::migrate",
            "use crate::catalog::{self, history as past};\n\
             fn f() { catalog::table::name(); past::g(); x.catalog::<u8>(); }\n",
        ),
    ]);
    let refs = references("act::migrate", &sources["act::migrate"], &sources);
    assert_eq!(
        refs,
        set(&["catalog", "catalog::history", "catalog::table"])
    );
}

#[test]
fn an_inline_module_is_part_of_its_file() {
    let sources = planted(&[
        ("hooks", "pub mod rewrite;\n"),
        (
            "hooks::rewrite",
            "fn all_queries() {}\n\
             mod permissions {\n    use super::{all_queries, range_table};\n    fn f() { self::g() }\n}\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::planner;\n}\n",
        ),
        ("hooks::planner", ""),
    ]);
    let refs = references("hooks::rewrite", &sources["hooks::rewrite"], &sources);
    assert_eq!(refs, set(&["hooks::planner"]));
}

#[test]
fn comments_and_literals_are_told_apart_from_code() {
    let lexed = lex(concat!(
        "let a = \"http://x // not a comment\"; // crate::cycle\n",
        "/* outer /* inner */ crate::cycle */ let q = '\"'; let e = '\\'';\n",
        "let r = r#\"a \"quoted\" b\"#; let l: &'static str = b\"x\";\n",
        "let r#type = 1; // unsafe\n",
    ));
    assert_eq!(
        lexed.strings,
        ["http://x // not a comment", "a \"quoted\" b", "x"]
    );
    assert!(!lexed.code.contains("crate::cycle"), "{}", lexed.code);
    assert!(!lexed.code.contains("unsafe"), "{}", lexed.code);
    assert!(lexed.code.contains("let r#type = 1;"), "{}", lexed.code);
    assert!(lexed.code.contains("&'static str"), "{}", lexed.code);
    assert!(!lexed.skeleton.contains("http"), "{}", lexed.skeleton);
}

#[test]
fn an_upward_import_inside_a_folder_is_found() {
    let sources = planted(&[
        ("cycle", "pub mod y;\n"),
        ("cycle::y", "pub fn y() {}\n"),
        ("pg", "pub mod x;\n"),
        ("pg::x", "use crate::cycle::y;\n"),
    ]);
    assert_eq!(
        imports_against_the_layering(&sources),
        ["pg::x uses cycle::y"]
    );
}

#[test]
fn state_sits_above_catalog_and_may_have_no_files_yet() {
    let downward = planted(&[
        ("catalog::relation", "use crate::shmem::routing;\n"),
        ("shmem::routing", ""),
    ]);
    assert_none(imports_against_the_layering(&downward), "no state/ yet");
    let sources = planted(&[
        ("state::managed", "use crate::catalog::relation;\n"),
        ("catalog::relation", "use crate::state::managed;\n"),
        ("gucs", "use crate::error::PredictError;\n"),
        ("error", ""),
        ("stray", ""),
    ]);
    assert_eq!(
        imports_against_the_layering(&sources),
        [
            "catalog::relation uses state::managed",
            "gucs uses error",
            "stray: stray is in no layer of tests/layout.rs",
        ]
    );
}

#[test]
fn state_tables_are_read_from_the_schema() {
    let schema = "CREATE SCHEMA partition_predict;\n\
                  CREATE TABLE partition_predict.config (\n  parent oid\n);\n\
                  create unlogged table partition_predict.frontier_hours(hour timestamptz);\n\
                  CREATE TABLE IF NOT EXISTS partition_predict.\"samples\" ();\n\
                  -- CREATE TABLE partition_predict.commented_out ();\n\
                  CREATE TABLE public.elsewhere ();\n\
                  CREATE INDEX ON partition_predict.config (parent);\n\
                  CREATE TYPE partition_predict.cycle_summary AS (x int);\n\
                  EXECUTE 'CREATE TABLE partition_predict.%I ()';\n";
    assert_eq!(
        state_tables(schema),
        set(&["config", "frontier_hours", "samples"])
    );
}

#[test]
fn a_state_table_named_outside_state_is_found() {
    let tables = set(&["config", "samples"]);
    let sources = planted(&[
        (
            "cycle::x",
            "fn f() { Spi::run(\"UPDATE partition_predict.config SET x = 1\") }\n",
        ),
        (
            "state::x",
            "fn f() { Spi::run(\"UPDATE partition_predict.config SET x = 1\") }\n",
        ),
        (
            "act::y",
            "// reads partition_predict.config, through state::x\n\
             fn f() { g(\"partition_predict.config_history\", \"partition_predict.samplesx\") }\n",
        ),
        (
            "act::z",
            "const T: &str = \"partition_predict.\\\"samples\\\"\";\n",
        ),
        (
            // The row type a signature returns is a type, not a statement;
            // the same name in a call after it still counts.
            "api::w",
            "fn f() -> pgrx::composite_type!('static, \"partition_predict.config\") { g() }\n\
             fn g() { h(\"partition_predict.samples\") }\n",
        ),
    ]);
    assert_eq!(
        state_tables_named_outside_state(&sources, &tables),
        [
            "act::z: partition_predict.samples",
            "api::w: partition_predict.samples",
            "cycle::x: partition_predict.config",
        ]
    );
}

#[test]
fn sql_in_api_is_found() {
    let sources = planted(&[
        ("api::x", "fn f() { Spi::get_one(\"SELECT 1\") }\n"),
        (
            "api::y",
            "fn f() {\n    pgrx::spi::Spi::connect(|client| client\n        .select(Q, None, &[]));\n}\n\
             const Q: &str = r#\"WITH a AS (SELECT 1)\n\"#;\n",
        ),
        (
            "api::clean",
            "// SELECT 1 via Spi::get_one, in a comment\n\
             fn f() { state::get_one(); error!(\"select a table\"); MySpi::x(); }\n",
        ),
        ("cycle::x", "fn f() { Spi::get_one(\"SELECT 1\") }\n"),
    ]);
    assert_eq!(
        sql_in_api(&sources),
        [
            "api::x: 1 call(s) of Spi::",
            "api::x: 1 string literal(s) of SQL, the first \"SELECT 1…\"",
            "api::y: 1 call(s) of Spi::",
            "api::y: 1 call(s) of spi::",
            "api::y: 1 call(s) of client.select",
            "api::y: 1 string literal(s) of SQL, the first \"WITH a AS (SELECT 1)…\"",
        ]
    );
}

#[test]
fn unsafe_and_version_gates_outside_the_internals_are_found() {
    let sources = planted(&[
        (
            "cycle::x",
            "fn f() { unsafe { g() } }\n#[cfg(feature = \"pg16\")]\nfn h() {}\n",
        ),
        (
            "act::y",
            "#![allow(unsafe_code)]\n// unsafe in prose\nconst M: &str = \"unsafe\";\n",
        ),
        (
            "pg::z",
            "fn f() { unsafe { g() } }\n#[cfg(feature = \"pg17\")]\nfn h() {}\n",
        ),
    ]);
    assert_eq!(
        unsafe_outside_the_internals(&sources),
        [
            "act::y: allows unsafe_code itself",
            "cycle::x: 1 use(s) of unsafe"
        ]
    );
    assert_eq!(version_gates_outside_the_internals(&sources), ["cycle::x"]);
}
