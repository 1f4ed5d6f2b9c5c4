//! Keeps the book in `chapters/` from rotting, with or without mdBook installed.
//!
//! - `SUMMARY.md` lists files that exist, and every chapter file is listed.
//! - Every `{{#include path}}` names an existing file, and every
//!   `{{#include path:anchor}}` an existing file holding both
//!   `ANCHOR: anchor` and `ANCHOR_END: anchor`, in that order, with something
//!   between. Line numbers (`path:10:20`) are refused: they rot silently.
//! - Every `cargo run --example NAME` a chapter tells the reader to type names
//!   a file in `examples/`.
//! - A `rust` code block holds only include directives: Rust shown in the
//!   book comes from files the compiler checks, never pasted by hand.
//! - Where mdBook is installed, `mdbook build chapters` succeeds without an
//!   error or a warning (a loud skip otherwise).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn book_src() -> PathBuf {
    root().join("chapters").join("src")
}

/// Every Markdown file in `chapters/src`, with its text.
fn markdown_files() -> Vec<(PathBuf, String)> {
    let mut files: Vec<_> = std::fs::read_dir(book_src())
        .expect("chapters/src exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// The targets of Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// One `{{#include …}}` (or `{{#rustdoc_include …}}`) directive.
#[derive(Debug)]
struct Include {
    chapter: PathBuf,
    line: usize,
    path: String,
    /// What follows the path after a `:`, if anything.
    selector: Option<String>,
}

/// Finds the include directives of a chapter, skipping escaped ones
/// (`\{{#include …}}`), which mdBook prints literally.
fn includes(chapter: &Path, text: &str) -> Vec<Include> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("{{#") {
            let escaped = rest[..i].ends_with('\\');
            let after = &rest[i + 3..];
            let Some(end) = after.find("}}") else {
                panic!(
                    "{}:{}: unterminated `{{{{#` directive",
                    chapter.display(),
                    n + 1
                );
            };
            let body = after[..end].trim();
            rest = &after[end + 2..];
            if escaped {
                continue;
            }
            let Some((kind, arg)) = body.split_once(char::is_whitespace) else {
                panic!(
                    "{}:{}: directive `{body}` has no argument",
                    chapter.display(),
                    n + 1
                );
            };
            if kind != "include" && kind != "rustdoc_include" {
                continue;
            }
            let arg = arg.trim();
            let (path, selector) = match arg.split_once(':') {
                Some((p, s)) => (p.to_string(), Some(s.to_string())),
                None => (arg.to_string(), None),
            };
            out.push(Include {
                chapter: chapter.to_path_buf(),
                line: n + 1,
                path,
                selector,
            });
        }
    }
    out
}

/// The anchor names of `ANCHOR:` (or `ANCHOR_END:`) markers on a line, as
/// mdBook reads them: the word characters and dashes after the colon.
fn anchor_on_line<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let i = line.find(marker)?;
    let after = line[i + marker.len()..].trim_start();
    let end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(after.len());
    (end > 0).then(|| &after[..end])
}

/// Checks that `anchor` opens and closes in `source`, in order, around at
/// least one line that is not a marker.
fn check_anchor(source: &str, anchor: &str) -> Result<(), String> {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines
        .iter()
        .position(|l| anchor_on_line(l, "ANCHOR:") == Some(anchor));
    let end = lines
        .iter()
        .position(|l| anchor_on_line(l, "ANCHOR_END:") == Some(anchor));
    match (start, end) {
        (None, _) => Err(format!("no `ANCHOR: {anchor}` line")),
        (_, None) => Err(format!("no `ANCHOR_END: {anchor}` line")),
        (Some(s), Some(e)) if e <= s => Err(format!(
            "`ANCHOR_END: {anchor}` comes before `ANCHOR: {anchor}`"
        )),
        (Some(s), Some(e)) => {
            let body = lines[s + 1..e]
                .iter()
                .filter(|l| !l.contains("ANCHOR:") && !l.contains("ANCHOR_END:"))
                .count();
            if body == 0 {
                Err(format!("anchor `{anchor}` includes nothing"))
            } else {
                Ok(())
            }
        }
    }
}

#[test]
fn book_toml_names_the_book_and_its_source() {
    let toml = std::fs::read_to_string(root().join("chapters/book.toml"))
        .expect("chapters/book.toml exists");
    assert!(
        toml.contains(r#"title = "rtclab: WebRTC from scratch, in Rust""#),
        "book.toml has no title:\n{toml}"
    );
    assert!(
        toml.contains(r#"src = "src""#),
        "book.toml src is not \"src\""
    );
}

#[test]
fn summary_lists_every_chapter_and_only_files_that_exist() {
    let summary = std::fs::read_to_string(book_src().join("SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<&str> = link_targets(&summary).into_iter().collect();
    let mut problems = Vec::new();
    for target in &listed {
        if !book_src().join(target).is_file() {
            problems.push(format!("SUMMARY.md lists {target}, which does not exist"));
        }
    }
    for (path, _) in markdown_files() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != "SUMMARY.md" && !listed.contains(name) {
            problems.push(format!("{name} is not listed in SUMMARY.md"));
        }
    }
    // DESIGN §6: ten chapters, one per codelab step, in order.
    let numbered: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|t| t.starts_with("ch"))
        .collect();
    if numbered.len() != 10 {
        problems.push(format!(
            "SUMMARY.md lists {} chapters, not 10: {numbered:?}",
            numbered.len()
        ));
    }
    for (i, t) in numbered.iter().enumerate() {
        if !t.starts_with(&format!("ch{:02}-", i + 1)) {
            problems.push(format!("chapter {} is {t}", i + 1));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_include_points_at_an_existing_file_and_anchor() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in markdown_files() {
        for inc in includes(&path, &text) {
            let at = format!("{}:{}", inc.chapter.display(), inc.line);
            let base = inc.chapter.parent().expect("a chapter has a directory");
            let file = base.join(&inc.path);
            let Ok(source) = std::fs::read_to_string(&file) else {
                problems.push(format!("{at}: included file {} does not exist", inc.path));
                continue;
            };
            if let Some(sel) = &inc.selector {
                if sel.is_empty() || sel.split(':').any(|p| p.parse::<usize>().is_ok()) {
                    problems.push(format!(
                        "{at}: `{}:{sel}` includes by line numbers; use a named ANCHOR",
                        inc.path
                    ));
                    continue;
                }
                if let Err(e) = check_anchor(&source, sel) {
                    problems.push(format!("{at}: {}: {e}", inc.path));
                    continue;
                }
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 0,
        "no include found at all: is the parser broken?"
    );
}

#[test]
fn every_example_a_chapter_names_exists() {
    let mut problems = Vec::new();
    for (path, text) in markdown_files() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("--example ") {
            rest = &rest[i + "--example ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // Stubs name their planned examples as `examples/NN_x.rs`, not
            // as a command; a command must work today.
            if !root().join("examples").join(format!("{name}.rs")).is_file() {
                problems.push(format!(
                    "{}: `cargo run --example {name}`, but examples/{name}.rs does not exist",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The lines of every fenced code block whose info string starts with
/// `rust`, with their line numbers.
fn rust_block_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut in_rust = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            in_rust = match in_rust {
                Some(_) => None,
                None => Some(info.trim().starts_with("rust")),
            };
            continue;
        }
        if in_rust == Some(true) {
            out.push((n + 1, line));
        }
    }
    out
}

#[test]
fn rust_blocks_only_include_compiled_code() {
    let mut problems = Vec::new();
    for (path, text) in markdown_files() {
        for (n, line) in rust_block_lines(&text) {
            let t = line.trim();
            let is_include = (t.starts_with("{{#include ") || t.starts_with("{{#rustdoc_include "))
                && t.ends_with("}}");
            if !t.is_empty() && !is_include {
                problems.push(format!(
                    "{}:{n}: Rust pasted by hand (include it by anchor instead): {t}",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_itself_catches_mistakes() {
    let src =
        "a\n// ANCHOR: good\nx\n// ANCHOR_END: good\n// ANCHOR: empty\n// ANCHOR_END: empty\n";
    assert!(check_anchor(src, "good").is_ok());
    assert!(check_anchor(src, "empty").is_err());
    assert!(check_anchor(src, "missing").is_err());
    // `good` must not match `goodness`.
    assert!(check_anchor("// ANCHOR: goodness\nx\n// ANCHOR_END: goodness\n", "good").is_err());
    let md =
        "```rust\n{{#include ../../src/a.rs:x}}\n```\n\\{{#include nope}}\n{{#include b.rs}}\n";
    let incs = includes(Path::new("c.md"), md);
    assert_eq!(incs.len(), 2);
    assert_eq!(incs[0].path, "../../src/a.rs");
    assert_eq!(incs[0].selector.as_deref(), Some("x"));
    assert_eq!(incs[1].selector, None);
    assert_eq!(
        link_targets("- [A](a.md)\n- [B](b.md)"),
        vec!["a.md", "b.md"]
    );
}

/// With mdBook installed (`mdbook` on the PATH, or its path in
/// `RTCLAB_MDBOOK`), the book must build without an error or a warning;
/// without it, a loud skip (the checks above still hold).
#[test]
fn mdbook_builds_the_book_when_installed() {
    let mdbook = std::env::var("RTCLAB_MDBOOK").unwrap_or_else(|_| "mdbook".to_string());
    let dest = std::env::temp_dir().join(format!("rtclab-book-{}", std::process::id()));
    let out = match std::process::Command::new(&mdbook)
        .arg("build")
        .arg(root().join("chapters"))
        .arg("--dest-dir")
        .arg(&dest)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIP: cannot run {mdbook} ({e}); `cargo install mdbook` to build the book");
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&dest);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mdbook build failed:\n{log}");
    for bad in ["WARN", "ERROR"] {
        assert!(!log.contains(bad), "mdbook build printed {bad}:\n{log}");
    }
}
