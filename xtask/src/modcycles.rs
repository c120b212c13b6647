//! File-level module circles, a step of `cargo xtask lint` (standard library only).
//!
//! Every `.rs` file under a crate's `src/` is a module (`mod.rs`, and `lib.rs` or
//! `main.rs` at the root, stand for their folder; `src/bin/` holds other crates, and
//! a `main.rs` beside a `lib.rs` uses the library by name, so both are left out).
//! File A depends on file B when A names a path that resolves into B: a `use` (nested
//! groups, `self`, `as`, globs) or a path in code that starts with `crate::`,
//! `super::` (any depth), `self::`, a module declared in the same scope (`mod x;`) or a
//! name a `use` brought in. The path's longest prefix that is a file's module is B
//! (inline modules, such as `mod tests`, belong to their file; `super::` inside them
//! counts from them). A file naming its own ancestors (`super::Shared` from a child)
//! is not an edge: a child sits inside its parent, and "the parent holds what its
//! children share" is the layout this project uses. A circle is a set of two or more
//! files that all reach each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates checked, relative to the workspace root.
pub const CRATES: [&str; 8] = [
    "proxy/src",
    "proxy-ebpf/src",
    "proxy-common/src",
    "proxy-schema/src",
    "ebpf-build/src",
    "lab/src",
    "bench/src",
    "xtask/src",
];

/// A module path from the crate root (`["control", "admin"]`); empty for the root.
type ModPath = Vec<String>;

/// Runs the check on [`CRATES`]; the error lists every circle.
pub fn check(root: &Path) -> Result<(), String> {
    println!("[lint] module circles");
    let mut report = String::new();
    for krate in CRATES {
        let src = root.join(krate);
        let files = read_crate(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
        for circle in circles(&files) {
            report.push_str(&format!(
                "{krate}: a circle of {} files:\n",
                circle.files.len()
            ));
            for edge in &circle.edges {
                report.push_str(&format!("  {edge}\n"));
            }
        }
    }
    if report.is_empty() {
        return Ok(());
    }
    Err(format!(
        "module circles (break each by moving code to where it belongs):\n{report}"
    ))
}

/// Source files by module: (path shown in reports, text).
type Files = BTreeMap<ModPath, (String, String)>;

fn read_crate(src: &Path) -> std::io::Result<Files> {
    let mut paths = Vec::new();
    walk(src, &mut paths)?;
    let has_lib = src.join("lib.rs").exists();
    let mut files = Files::new();
    for path in paths {
        let rel = path.strip_prefix(src).unwrap_or(&path);
        if rel.starts_with("bin") || (has_lib && rel == Path::new("main.rs")) {
            continue;
        }
        if let Some(module) = module_of(rel) {
            let text = std::fs::read_to_string(&path)?;
            files.insert(module, (rel.display().to_string(), text));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `control/admin/mod.rs` → `control::admin`; `lib.rs` → the root.
fn module_of(rel: &Path) -> Option<ModPath> {
    let mut parts: ModPath = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?.strip_suffix(".rs")?.to_string();
    let at_root = parts.is_empty();
    if last != "mod" && !(at_root && (last == "lib" || last == "main")) {
        parts.push(last);
    }
    Some(parts)
}

/// One circle: its files, and each dependency between them with where it is named.
#[derive(Debug)]
pub struct Circle {
    pub files: Vec<String>,
    pub edges: Vec<String>,
}

/// The circles among `files`.
fn circles(files: &Files) -> Vec<Circle> {
    // Edges between files, each with its first reference ("file:line path").
    let mut graph: BTreeMap<&ModPath, BTreeMap<&ModPath, String>> = BTreeMap::new();
    for (module, (shown, text)) in files {
        for reference in references(text, module) {
            let Some(target) = (0..=reference.path.len())
                .rev()
                .map(|n| &reference.path[..n])
                .find_map(|p| files.get_key_value(p).map(|(k, _)| k))
            else {
                continue;
            };
            // Itself, or an ancestor of it: not a dependency between files.
            if module.starts_with(target) {
                continue;
            }
            let text = format!(
                "{shown}:{} names {} ({})",
                reference.line,
                reference.path.join("::"),
                files[target].0
            );
            graph
                .entry(module)
                .or_default()
                .entry(target)
                .or_insert(text);
        }
    }
    let mut out = Vec::new();
    for component in strongly_connected(&graph) {
        let members: BTreeSet<&ModPath> = component.iter().copied().collect();
        let edges = members
            .iter()
            .flat_map(|from| graph.get(from).into_iter().flatten())
            .filter(|(to, _)| members.contains(*to))
            .map(|(_, text)| text.clone())
            .collect();
        let files = members.iter().map(|m| files[*m].0.clone()).collect();
        out.push(Circle { files, edges });
    }
    out
}

/// Tarjan's algorithm; components of two or more nodes.
fn strongly_connected<'a>(
    graph: &BTreeMap<&'a ModPath, BTreeMap<&'a ModPath, String>>,
) -> Vec<Vec<&'a ModPath>> {
    struct State<'a> {
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        out: Vec<Vec<&'a ModPath>>,
    }
    fn visit<'a>(
        v: &'a ModPath,
        graph: &BTreeMap<&'a ModPath, BTreeMap<&'a ModPath, String>>,
        s: &mut State<'a>,
    ) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in graph.get(v).into_iter().flat_map(|e| e.keys().copied()) {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}

/// A path a file names, made absolute (crate root first), and its line.
#[derive(Debug, PartialEq)]
struct Reference {
    path: ModPath,
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// The tokens of `src` that matter here, with their lines: comments, strings,
/// character literals, lifetimes and numbers are skipped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident_char = |ch: char| ch == '_' || ch.is_alphanumeric();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Skips to just after the `"` closing a string whose body starts at `j`
    // (`Some(hashes)`: a raw string, no escapes, closed by `"` and that many `#`).
    let skip_string = |mut j: usize, hashes: Option<usize>, line: &mut usize| -> usize {
        while j < c.len() {
            match (c[j], hashes) {
                ('\n', _) => *line += 1,
                ('\\', None) => {
                    if at(j + 1) == '\n' {
                        *line += 1;
                    }
                    j += 1;
                }
                ('"', None) => return j + 1,
                ('"', Some(h)) if (1..=h).all(|k| at(j + k) == '#') => return j + 1 + h,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(i + 1, None, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped character literal: '\n', '\'', '\u{..}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit())) {
                i += 1;
            }
        } else if ident_char(ch) || (ch == '$' && ident_char(at(i + 1))) {
            let start = i;
            i += 1;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if (word == "r" || word == "br") && matches!(at(i), '"' | '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // A raw string: r"..", r#".."#, br"..".
                    i = skip_string(i + hashes + 1, Some(hashes), &mut line);
                    continue;
                }
                if word == "r" && hashes == 1 {
                    // A raw identifier: r#type.
                    let start = i + 1;
                    i = start;
                    while i < c.len() && ident_char(c[i]) {
                        i += 1;
                    }
                    out.push((Tok::Ident(c[start..i].iter().collect()), line));
                    continue;
                }
            }
            if word == "b" && matches!(at(i), '"' | '\'') {
                // A byte string or character: the literal follows.
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// One leaf of a `use` tree: its path as written, and the name it brings in.
#[derive(Debug, PartialEq)]
struct UseLeaf {
    path: Vec<String>,
    name: Option<String>,
}

/// Parses the `use` tree starting at `toks[*i]` under `prefix`.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    let mut path = prefix;
    while let Some((tok, _)) = toks.get(*i) {
        match tok {
            Tok::Sep => {
                // A leading `::` (an extern crate path): never resolves locally.
                path.push("::".into());
                *i += 1;
            }
            Tok::Ident(name) if toks.get(*i + 1).map(|t| &t.0) == Some(&Tok::Sep) => {
                path.push(name.clone());
                *i += 2;
            }
            Tok::Ident(name) => {
                *i += 1;
                let mut local = path.last().cloned();
                if name != "self" {
                    path.push(name.clone());
                    local = Some(name.clone());
                }
                if let (Some((Tok::Ident(kw), _)), Some((Tok::Ident(alias), _))) =
                    (toks.get(*i), toks.get(*i + 1))
                    && kw == "as"
                {
                    local = Some(alias.clone()).filter(|a| a != "_");
                    *i += 2;
                }
                out.push(UseLeaf { path, name: local });
                return;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push(UseLeaf { path, name: None });
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                while let Some((tok, _)) = toks.get(*i) {
                    match tok {
                        Tok::Punct('}') => {
                            *i += 1;
                            return;
                        }
                        Tok::Punct(',') => *i += 1,
                        _ => {
                            let before = *i;
                            use_tree(toks, i, path.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

/// Every path `text` (the file of module `module`) names that can be local, made
/// absolute; paths that cannot be resolved here (extern crates, local items) are
/// left out.
fn references(text: &str, module: &[String]) -> Vec<Reference> {
    let toks = tokens(text);
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).map(|x| &x.0) == Some(&t);
    // One pass: the scope (inline modules) of every position, declared modules per
    // scope, `use` leaves and code paths with their scope.
    let mut scopes: Vec<(ModPath, usize)> = vec![(module.to_vec(), 0)];
    let mut depth = 0;
    let mut declared: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    let mut uses: Vec<(ModPath, UseLeaf, usize)> = Vec::new();
    let mut paths: Vec<(ModPath, Vec<String>, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let scope = scopes.last().map(|s| s.0.clone()).unwrap_or_default();
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if scopes.len() > 1 && scopes.last().is_some_and(|s| depth < s.1) {
                    scopes.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(i + 1) {
                    declared
                        .entry(scope.clone())
                        .or_default()
                        .insert(name.to_string());
                    if is(i + 2, Tok::Punct('{')) {
                        let mut inner = scope.clone();
                        inner.push(name.to_string());
                        depth += 1;
                        scopes.push((inner, depth));
                        i += 3;
                        continue;
                    }
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                let line = toks[i].1;
                let mut leaves = Vec::new();
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut leaves);
                uses.extend(leaves.into_iter().map(|l| (scope.clone(), l, line)));
                continue;
            }
            Tok::Ident(first) if is(i + 1, Tok::Sep) && !(i > 0 && is(i - 1, Tok::Sep)) => {
                let line = toks[i].1;
                let mut path = vec![first.clone()];
                i += 1;
                while is(i, Tok::Sep)
                    && let Some(next) = ident(i + 1)
                {
                    path.push(next.to_string());
                    i += 2;
                }
                paths.push((scope, path, line));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let no_aliases = BTreeMap::new();
    let mut aliases: BTreeMap<ModPath, BTreeMap<String, ModPath>> = BTreeMap::new();
    let mut out = Vec::new();
    for (scope, leaf, line) in uses {
        if let Some(path) = absolute(&leaf.path, &scope, &declared, &no_aliases) {
            if let Some(name) = leaf.name {
                aliases.entry(scope).or_default().insert(name, path.clone());
            }
            out.push(Reference { path, line });
        }
    }
    for (scope, path, line) in paths {
        if let Some(path) = absolute(&path, &scope, &declared, &aliases) {
            out.push(Reference { path, line });
        }
    }
    out
}

/// `path` as named in `scope`, from the crate root; `None` when it cannot be local.
fn absolute(
    path: &[String],
    scope: &[String],
    declared: &BTreeMap<ModPath, BTreeSet<String>>,
    aliases: &BTreeMap<ModPath, BTreeMap<String, ModPath>>,
) -> Option<ModPath> {
    let first = path.first()?.as_str();
    let rest = |from: usize| path[from..].iter().cloned();
    match first {
        "crate" | "$crate" => Some(rest(1).collect()),
        "self" => Some(scope.iter().cloned().chain(rest(1)).collect()),
        "super" => {
            let up = path.iter().take_while(|p| *p == "super").count();
            let base = scope.get(..scope.len().checked_sub(up)?)?;
            Some(base.iter().cloned().chain(rest(up)).collect())
        }
        name if declared.get(scope).is_some_and(|d| d.contains(name)) => {
            Some(scope.iter().cloned().chain(rest(0)).collect())
        }
        name => {
            let target = aliases.get(scope)?.get(name)?;
            Some(target.iter().cloned().chain(rest(1)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> ModPath {
        s.split("::")
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    }

    fn paths(text: &str, module: &str) -> Vec<String> {
        references(text, &m(module))
            .into_iter()
            .map(|r| r.path.join("::"))
            .collect()
    }

    #[test]
    fn nested_use_groups_self_aliases_and_globs() {
        let text = "use crate::a::{b::{c, d as e}, self, f::*};\nuse std::sync::Arc;";
        assert_eq!(paths(text, "x"), ["a::b::c", "a::b::d", "a", "a::f"]);
    }

    #[test]
    fn super_at_any_depth_and_self() {
        let text = "use super::super::z::w; fn f() { super::q(); self::k::m(); }";
        assert_eq!(paths(text, "x::y"), ["z::w", "x::q", "x::y::k::m"]);
        // From a mod.rs the module is the folder: one `super` reaches the root.
        assert_eq!(paths("use super::z;", "x"), ["z"]);
        // Above the root: not a local path.
        assert!(paths("use super::super::z;", "x").is_empty());
    }

    #[test]
    fn inline_modules_count_super_from_themselves() {
        let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::p::q;\n}\nuse self::r;";
        assert_eq!(paths(text, "a::b"), ["a::b", "a::p::q", "a::b::r"]);
    }

    #[test]
    fn declared_children_and_imported_names_start_paths() {
        let text = "pub mod server;\nuse crate::x::y;\nfn f() { server::start(); y::z::w(); std::mem::drop(1); }";
        assert_eq!(
            paths(text, "admin"),
            ["x::y", "admin::server::start", "x::y::z::w"]
        );
    }

    #[test]
    fn comments_strings_and_literals_are_not_code() {
        let text = r####"
            // crate::a::x
            /* crate::b /* nested */ crate::c */
            const S: &str = "crate::d \" crate::e";
            const R: &str = r#"crate::f "# ;
            const C: char = '"'; const Q: char = '\''; fn g<'a>(x: &'a u8) {}
            const B: &[u8] = b"crate::h";
            fn real() { crate::ok::yes(); }
        "####;
        assert_eq!(paths(text, "m"), ["ok::yes"]);
        let lines: Vec<usize> = references(text, &m("m")).iter().map(|r| r.line).collect();
        assert_eq!(lines, [8]);
    }

    fn crate_of(files: &[(&str, &str)]) -> Files {
        files
            .iter()
            .map(|(module, text)| (m(module), (format!("{module}.rs"), text.to_string())))
            .collect()
    }

    #[test]
    fn finds_a_circle_between_siblings() {
        let files = crate_of(&[
            ("", "mod a; mod b; mod c;"),
            ("a", "use crate::b::B; pub struct A;"),
            ("b", "pub struct B(crate::a::A);"),
            ("c", "use crate::a::A;"),
        ]);
        let found = circles(&files);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].files, ["a.rs", "b.rs"]);
        assert_eq!(found[0].edges.len(), 2);
    }

    #[test]
    fn finds_the_circle_through_a_parent_that_calls_its_child() {
        // admin (mod.rs) -> admin::server -> handover::offer -> admin.
        let files = crate_of(&[
            (
                "admin",
                "pub mod server; pub struct Admin; fn start() { server::start(); }",
            ),
            (
                "admin::server",
                "use super::Admin; fn f() { crate::handover::offer::serve(); }",
            ),
            ("handover", "pub mod offer;"),
            ("handover::offer", "use crate::admin::Admin;"),
        ]);
        let found = circles(&files);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].files,
            ["admin.rs", "admin::server.rs", "handover::offer.rs"]
        );
    }

    #[test]
    fn a_child_using_its_parent_is_no_circle() {
        let files = crate_of(&[
            ("c", "pub mod d; pub struct C; fn f() { d::g(); }"),
            ("c::d", "use super::C; pub fn g() {}"),
        ]);
        assert!(circles(&files).is_empty());
    }

    #[test]
    fn module_paths_of_files() {
        assert_eq!(module_of(Path::new("lib.rs")), Some(m("")));
        assert_eq!(module_of(Path::new("a/mod.rs")), Some(m("a")));
        assert_eq!(module_of(Path::new("a/b.rs")), Some(m("a::b")));
        assert_eq!(module_of(Path::new("a/main.rs")), Some(m("a::main")));
        assert_eq!(module_of(Path::new("a/notes.txt")), None);
    }
}
