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
//!   error or a warning, and every internal link and `#anchor` of the
//!   rendered HTML resolves (a loud skip without mdBook, a failure under
//!   `RTCLAB_REQUIRE_INTEROP=1`; `scripts/test` installs it).

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

/// The codelab step of a chapter file name: `ch08b-…` is step 8.
fn codelab_step(file: &str) -> Option<u32> {
    let digits = file.strip_prefix("ch")?.get(..2)?;
    let rest = &file[4..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
    if !rest.starts_with('-') {
        return None;
    }
    digits.parse().ok()
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
    // One or more chapters per codelab step, the ten steps in order: a
    // chapter file is `chNN-…` or `chNNx-…` (8a and 8b are both step 8).
    let steps: Vec<(u32, &str)> = link_targets(&summary)
        .into_iter()
        .filter(|t| t.starts_with("ch"))
        .map(|t| (codelab_step(t).unwrap_or(0), t))
        .collect();
    let mut want = 1;
    for (step, t) in &steps {
        if *step == want {
            want += 1;
        } else if *step + 1 != want {
            problems.push(format!("{t} is out of order: expected step {want}"));
        }
    }
    if want != 11 {
        problems.push(format!(
            "SUMMARY.md's chapters cover the codelab's steps 1 to {}, not 10: {steps:?}",
            want - 1
        ));
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
    assert_eq!(codelab_step("ch08-browser.md"), Some(8));
    assert_eq!(codelab_step("ch08b-browser.md"), Some(8));
    assert_eq!(codelab_step("ch10-sfu.md"), Some(10));
    assert_eq!(codelab_step("chapter.md"), None);
    assert_eq!(codelab_step("appendix-glossary.md"), None);
}

/// With mdBook installed (`mdbook` on the PATH, or its path in
/// `RTCLAB_MDBOOK`), the book must build without an error or a warning,
/// and every link of the rendered HTML to a page of the book, and every
/// `#anchor`, must resolve. Without mdBook, a loud skip (the checks above
/// still hold); with `RTCLAB_REQUIRE_INTEROP=1` (CI, whose `scripts/test`
/// installs it), a failure.
#[test]
fn mdbook_builds_the_book_and_its_links_resolve() {
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
            assert!(
                std::env::var("RTCLAB_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "cannot run {mdbook} ({e}) and RTCLAB_REQUIRE_INTEROP=1: scripts/test installs it"
            );
            eprintln!(
                "\n*** SKIPPED: cannot run {mdbook} ({e}); `cargo install mdbook --no-default-features` to build the book ***\n"
            );
            return;
        }
    };
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let broken = if out.status.success() {
        broken_links(&dest)
    } else {
        Vec::new()
    };
    let _ = std::fs::remove_dir_all(&dest);
    assert!(out.status.success(), "mdbook build failed:\n{log}");
    for bad in ["WARN", "ERROR"] {
        assert!(!log.contains(bad), "mdbook build printed {bad}:\n{log}");
    }
    assert!(
        broken.is_empty(),
        "{} broken links in the rendered book:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Every `.html` file under `dir`.
fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            html_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "html") {
            out.push(p);
        }
    }
}

/// The values of `attr="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// The ids an HTML page defines (`id="…"`, and `name="…"` of old anchors).
fn ids(html: &str) -> BTreeSet<String> {
    attribute_values(html, "id")
        .into_iter()
        .chain(attribute_values(html, "name"))
        .map(unescape)
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Links between the book's pages (and to its files) that point nowhere,
/// as `page: target (why)`. Links that leave the book (`http:`, `https:`,
/// `mailto:`) are not followed.
fn broken_links(book: &Path) -> Vec<String> {
    let mut pages = Vec::new();
    html_files(book, &mut pages);
    pages.sort();
    let mut id_cache: std::collections::BTreeMap<PathBuf, BTreeSet<String>> = Default::default();
    let mut broken = Vec::new();
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap_or_default();
        let rel = page
            .strip_prefix(book)
            .unwrap_or(page)
            .display()
            .to_string();
        for link in attribute_values(&html, "href")
            .into_iter()
            .chain(attribute_values(&html, "src"))
        {
            let link = unescape(link);
            if link.is_empty()
                || link.contains("://")
                || link.starts_with("//")
                || link.starts_with("mailto:")
                || link.starts_with("javascript:")
                || link.starts_with("data:")
                || link.contains("{{")
            {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let path = path.split('?').next().unwrap_or("");
            let target = if path.is_empty() {
                page.clone()
            } else {
                // `/…` is the book's root (the 404 page's `<base href="/">`).
                let t = match path.strip_prefix('/') {
                    Some(p) => book.join(p),
                    None => page.parent().unwrap_or(book).join(path),
                };
                if path.ends_with('/') {
                    t.join("index.html")
                } else {
                    t
                }
            };
            if !target.is_file() {
                broken.push(format!("{rel}: {link} (no such file)"));
                continue;
            }
            let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
                continue;
            };
            if target.extension().is_none_or(|x| x != "html") {
                continue;
            }
            let known = id_cache
                .entry(target.clone())
                .or_insert_with(|| ids(&std::fs::read_to_string(&target).unwrap_or_default()));
            if !known.contains(fragment) {
                broken.push(format!("{rel}: {link} (no id \"{fragment}\" there)"));
            }
        }
    }
    broken
}

#[test]
fn the_link_checker_finds_a_broken_file_and_a_broken_anchor() {
    let dir = std::env::temp_dir().join(format!("rtclab-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::write(dir.join("img/a.svg"), "<svg/>").unwrap();
    std::fs::write(
        dir.join("a.html"),
        r##"<h2 id="here">x</h2><a href="b.html#there">ok</a> <a href="#here">ok</a>
<img src="img/a.svg"> <a href="https://example.org/x">out</a>
<a href="b.html#nowhere">bad anchor</a> <a href="c.html">bad file</a>"##,
    )
    .unwrap();
    std::fs::write(dir.join("b.html"), r#"<p id="there">y</p>"#).unwrap();
    let broken = broken_links(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("b.html#nowhere"), "{broken:?}");
    assert!(broken[1].contains("c.html (no such file)"), "{broken:?}");
}
