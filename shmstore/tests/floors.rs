//! The crate's floors: imports run one way, from the facade and the typed handles down through
//! the entry machinery and the state of one store file to the pure format and platform code.
//! This test reads the sources under `src/` and fails, naming the file and the path, when a
//! module imports a floor above its own.

/// The floors of the crate, bottom up: a module may import its own floor and those below,
/// never one above. Every top-level module (a file, or a folder with all it holds) has one.
const FLOORS: &[(&str, &[&str])] = &[
    ("leaves", &["layout", "fixed_str"]),
    ("pure format and platform code", &["format", "sys", "__private"]),
    ("vocabulary", &["error", "options"]),
    ("the state of one store file", &["file"]),
    ("the entry machinery", &["entry"]),
    (
        "the facade and the typed handles",
        &[
            "lib",
            "store",
            "temp",
            "bytes",
            "inspect",
            "migrate",
            "array",
            "guard_free",
            "object",
            "offline",
            "stream",
            "untyped",
            "view",
        ],
    ),
];

/// The floor of the top-level module `module`, as an index into [`FLOORS`].
fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, modules)| modules.contains(&module))
}

/// `source` without comments, string and character literals, and `#[cfg(test)]` items (tests
/// may use anything): only the paths that code names are left.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let peek = |j: usize| chars.get(j).copied().unwrap_or(' ');
        let c = chars[i];
        if c == '/' && peek(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && peek(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && peek(i + 1) == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (peek(i + 1) == '"' || peek(i + 1) == '#') && !(i > 0 && is_ident(chars[i - 1])) {
            // A raw string: r"..." or r#"..."#.
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].starts_with(&closing.chars().collect::<Vec<_>>()) {
                i += 1;
            }
            i += closing.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && peek(i + 1) == '\\' {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && peek(i + 2) == '\'' {
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    // Drop each `#[cfg(test)]` item: up to its `;`, or its braces' end.
    while let Some(at) = out.find("#[cfg(test)]") {
        let (mut depth, mut end) = (0usize, out.len());
        for (j, c) in out[at..].char_indices() {
            match c {
                ';' if depth == 0 => {}
                '{' => {
                    depth += 1;
                    continue;
                }
                '}' if depth > 1 => {
                    depth -= 1;
                    continue;
                }
                '}' => {}
                _ => continue,
            }
            end = at + j + 1;
            break;
        }
        out.replace_range(at..end, "");
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers that start the paths of a `use` group's body `{a::b, C, d::{e, f}}`.
fn group_heads(body: &str) -> Vec<String> {
    let (mut parts, mut depth) = (vec![String::new()], 0);
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => parts.push(String::new()),
            c if depth == 0 => parts.last_mut().unwrap().push(c),
            _ => {}
        }
    }
    parts.iter().map(|part| part.trim().chars().take_while(|&c| is_ident(c)).collect()).collect()
}

/// The top-level modules `code` (of the module at `module_path`) names: through `crate::`
/// (`$crate::` too), and through `super::` chains that climb to the crate root. Names
/// re-exported by lib.rs resolve through `reexports` to the module they come from.
fn imports(code: &str, module_path: &[String], reexports: &[(String, String)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let ident_at = |s: &str| s.chars().take_while(|&c| is_ident(c)).collect::<String>();
    let path_at = |s: &str| s.chars().take_while(|&c| is_ident(c) || c == ':').collect::<String>();
    let resolve = |name: String| match reexports.iter().find(|(item, _)| *item == name) {
        Some((_, module)) => module.clone(),
        None => name,
    };
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(body) = rest.strip_prefix('{') {
            let body = &body[..body.find("};").unwrap_or(body.len())];
            found.extend(group_heads(body).into_iter().map(|head| (resolve(head.clone()), format!("crate::{head}"))));
        } else {
            found.push((resolve(ident_at(rest)), format!("crate::{}", path_at(rest))));
        }
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            climbs += 1;
        }
        if climbs == module_path.len() {
            found.push((resolve(ident_at(rest)), format!("{}{}", "super::".repeat(climbs), path_at(rest))));
        }
    }
    found.retain(|(m, _)| !m.is_empty() && m != "self" && m != "*");
    found
}

/// Every `.rs` file under `dir`, with its module path (`file/lock/mod.rs` is `[file, lock]`).
fn sources(dir: &std::path::Path, module_path: Vec<String>, out: &mut Vec<(std::path::PathBuf, Vec<String>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let mut inner = module_path.clone();
        if path.is_dir() {
            inner.push(name);
            sources(&path, inner, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            match name.as_str() {
                "mod" => {}
                "lib" if inner.is_empty() => {}
                "private" if inner.is_empty() => inner.push("__private".into()),
                _ => inner.push(name),
            }
            out.push((path, inner));
        }
    }
}

/// The floor check sees the paths code names, and only those: through `crate::` (plain, in a
/// group, or a name lib.rs re-exports) and through `super::` from a folder's root, but not in
/// comments, strings or `#[cfg(test)]` items.
#[test]
fn the_floor_check_reads_paths_from_code_only() {
    let source = r#"
        //! Links to [`crate::store`] and prose about crate::entry are not imports.
        use crate::file::state::StoreInner;
        use crate::{error::Error, Store};
        const WORDS: &str = "crate::temp";
        fn f() -> char { let _ = super::view::resolve; '"' }
        #[cfg(test)]
        mod tests {
            use crate::object::Shared;
        }
        /* crate::untyped */
        use crate::format::{self, v2::header};
    "#;
    let reexports = [("Store".to_owned(), "store".to_owned())];
    let found = |module_path: &[&str]| {
        let module_path: Vec<String> = module_path.iter().map(|m| m.to_string()).collect();
        let mut modules: Vec<String> =
            imports(&code_only(source), &module_path, &reexports).into_iter().map(|(m, _)| m).collect();
        modules.sort();
        modules
    };
    assert_eq!(found(&["file", "map"]), ["error", "file", "format", "store"]);
    assert_eq!(found(&["entry"]), ["error", "file", "format", "store", "view"], "super:: from entry/mod.rs");
}

/// Imports run one way, down the floors of [`FLOORS`]: the facade and handles use the entry
/// machinery, which uses the file's state, which uses the format and platform code. A lower
/// floor that names a higher one fails here, naming the file and the import.
#[test]
fn imports_run_down_the_floors() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = code_only(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    // `pub use module::...::{A, B};` in lib.rs: which module each re-exported name comes from.
    let mut reexports = Vec::new();
    for line in lib.lines().filter_map(|l| l.trim().strip_prefix("pub use ")) {
        let module = line.split("::").next().unwrap().to_owned();
        let items = line.rsplit("::").next().unwrap().trim_matches(|c| "{};".contains(c));
        for item in items.split(',') {
            let item = item.split(" as ").last().unwrap().trim().to_owned();
            reexports.push((item, module.clone()));
        }
    }
    let mut files = Vec::new();
    sources(&src, Vec::new(), &mut files);
    files.sort();
    assert!(files.len() > 40, "found only {} source files under {}", files.len(), src.display());
    let mut wrong = Vec::new();
    for (path, module_path) in &files {
        let module = module_path.first().map_or("lib", String::as_str);
        let floor = floor_of(module).unwrap_or_else(|| panic!("module `{module}` has no floor in FLOORS"));
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        let file = path.strip_prefix(&src).unwrap().display();
        for (import, named) in imports(&code, module_path, &reexports) {
            let Some(to) = floor_of(&import) else {
                wrong.push(format!("{file}: `{named}` names `{import}`, which has no floor in FLOORS"));
                continue;
            };
            if to > floor {
                wrong.push(format!(
                    "{file}: `{named}`: `{module}` ({}) must not import `{import}` ({}), a floor above it",
                    FLOORS[floor].0, FLOORS[to].0,
                ));
            }
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "imports that climb:\n{}", wrong.join("\n"));
}
