//! The layering of DESIGN §1, enforced: every `crate::` path in `src/**.rs`
//! (outside `#[cfg(test)]` items and comments) is an edge from the
//! top-level module of its file to the module it names, and each edge must
//! be one the map below allows. Edges that break the map today are listed
//! in `TO_FIX`: that list may only shrink (an entry no longer needed fails
//! the test too, so that it is struck off when fixed).
//!
//! A new top-level module fails the test until it is placed in a tier.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The tiers, lowest first. A module may import its own tier's modules
/// only where `SIDEWAYS` says so, and any module of a lower tier, except
/// that the protocol tier's modules are a tree (below).
///
/// - leaf vocabulary: types both sides of an edge share (the sans-IO
///   `Machine` contract; roles, fingerprints, MIDs, NAT behaviours as they
///   move out of the protocol modules);
/// - protocol: sans-IO, one module per layer of DESIGN §1's diagram;
/// - peer: the PeerConnection, gluing the protocols on one 5-tuple;
/// - app: what a user runs (demo, signaling, the SFU, captures, the bus);
/// - drivers: the runtime (the only I/O), the simulator, the benchmarks
///   of `rtclab speed` and the fuzz harnesses, which drive any machine.
const TIERS: &[(&str, &[&str])] = &[
    ("leaf", &["machine", "vocab"]),
    (
        "protocol",
        &[
            "stun",
            "turn",
            "ice",
            "dtls",
            "srtp",
            "rtp",
            "sctp",
            "datachannel",
            "sdp",
        ],
    ),
    ("peer", &["peer"]),
    ("app", &["demo", "signaling", "sfu", "whip", "bus"]),
    // `capture` writes and reads what crosses a socket (pcapng, the
    // simulator's captures, and `rtclab xray`'s decoding with every
    // protocol's parser), for the runtime, the simulator and the tools.
    (
        "drivers",
        &["runtime", "sim", "speed", "fuzzing", "capture"],
    ),
];

/// Edges within one tier that the map allows. Among the protocols, a
/// module imports only what sits under it in DESIGN §1's tree:
/// `datachannel → sctp`, `rtp → srtp`, `ice → stun` and `ice → turn`
/// (relayed candidates), `turn → stun`. The app tier's modules may use
/// one another (the demo serves the signaling server's rooms); the
/// drivers may use one another (the runtime hosts what the benchmarks
/// and the simulator measure).
const SIDEWAYS: &[(&str, &str)] = &[
    ("datachannel", "sctp"),
    ("rtp", "srtp"),
    ("ice", "stun"),
    ("ice", "turn"),
    ("turn", "stun"),
    ("demo", "signaling"),
    ("capture", "*"),
    // `signaling::Server` mounts the WHIP/WHEP routes when configured.
    ("signaling", "whip"),
    // `rtclab sfu`'s server (src/sfu/server.rs) runs the sans-IO `Sfu` on
    // the runtime's driver, as an application does; the machine itself
    // (src/sfu/mod.rs) imports no runtime.
    ("sfu", "runtime"),
    // …and gives that driver its capture sink (`rtclab sfu --pcap`,
    // `--xray`: the pages' downloads), as `runtime` does.
    ("sfu", "capture"),
    // `rtclab sfu` serves WHIP and WHEP with `whip`'s endpoint, its
    // participants as the backend.
    ("sfu", "whip"),
    // Signaling rooms and SFU room placement across nodes go through the
    // bus (src/bus: in-process, or Redis), which imports nothing of ours.
    ("signaling", "bus"),
    ("sfu", "bus"),
    // The SFU's rooms are the codelab's rooms: one rule for a room's name
    // (`signaling::validate_room_name`), on the page and in placement.
    ("sfu", "signaling"),
    // The demo's server, like `rtclab sfu`'s, runs its Rust peers on the
    // runtime (`runtime::LivePeer`, one per visitor) and records what
    // crosses their sockets when asked (`--pcap`, `capture`): an
    // application sits on the I/O it uses; the sans-IO machines below it
    // import neither.
    ("demo", "runtime"),
    ("demo", "capture"),
    ("runtime", "*"),
    ("sim", "*"),
    ("speed", "*"),
    ("fuzzing", "*"),
];

/// Edges the map does not allow that the code has today, each with what
/// fixes it (issue 22). This list may only shrink.
const TO_FIX: &[(&str, &str, &str)] = &[];

fn tier_of(module: &str) -> Option<usize> {
    TIERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn allowed(from: &str, to: &str) -> Result<bool, String> {
    let f = tier_of(from).ok_or_else(|| unplaced(from))?;
    let t = tier_of(to).ok_or_else(|| unplaced(to))?;
    if from == to {
        return Ok(true);
    }
    let sideways = SIDEWAYS
        .iter()
        .any(|&(a, b)| a == from && (b == to || b == "*"));
    Ok(sideways || (t < f && TIERS[f].0 != "protocol") || (t < f && TIERS[t].0 == "leaf"))
}

fn unplaced(module: &str) -> String {
    format!(
        "module `{module}` is in no tier of tests/layering.rs: place it in TIERS (DESIGN §1: leaf vocabulary → protocol → peer → app → runtime)"
    )
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for the
/// crate root and the binaries).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    if first == "bin" || first == "lib.rs" || first == "main.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// The code of a file with comments, string and char literals blanked
/// (so that braces and `crate::` inside them count for nothing).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '{'), or a lifetime ('a): only
            // the former closes within a few bytes.
            let close = if b.get(i + 1) == Some(&b'\\') {
                (i + 3..(i + 12).min(b.len())).find(|&k| b[k] == b'\'')
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    out.push_str("' '");
                    i = k + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Multi-byte UTF-8 stays whole.
            let len = match c {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            out.push_str(&text[i..(i + len).min(text.len())]);
            i += len;
        }
    }
    out
}

/// Blanks every item under `#[cfg(test)]` (a test module, a test-only
/// function): test code may reach anything.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at the `;` or at the brace closing its first `{`.
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after.char_indices().skip("#[cfg(test)]".len()) {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The first segments of every `crate::` path in `code`, with their line
/// numbers, `crate::{a::X, b}` groups included.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(k) = code[from..].find("crate::") {
        let at = from + k;
        from = at + "crate::".len();
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_' || b[at - 1] == b'$') {
            continue; // `rtclab_crate::`, `$crate::`
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` or `,` at depth 0.
            let mut depth = 0usize;
            let mut expect_name = true;
            let mut name = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if expect_name && (c.is_alphanumeric() || c == '_') => name.push(c),
                    c if expect_name && !name.is_empty() => {
                        let _ = c;
                        found.push((line, std::mem::take(&mut name)));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.push((line, name));
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((line, name));
            }
        }
    }
    found
}

/// Every edge from a top-level module to another, with one place it occurs.
fn edges() -> BTreeMap<(String, String), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = BTreeMap::new();
    for f in files {
        let Some(from) = top_module(&src, &f) else {
            continue;
        };
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref() == Some("tests.rs") {
            continue; // a `#[cfg(test)] mod tests;` file
        }
        let text = std::fs::read_to_string(&f).expect("read a source file");
        let code = without_test_items(&strip(&text));
        for (line, to) in crate_paths(&code) {
            if to == from || to == "self" || to == "super" {
                continue;
            }
            let place = format!("{}:{line}", f.strip_prefix(root).unwrap_or(&f).display());
            edges.entry((from.clone(), to)).or_insert(place);
        }
    }
    edges
}

#[test]
fn every_import_follows_the_layer_map() {
    let edges = edges();
    assert!(
        edges.len() > 20,
        "found only {} edges: is the scan broken?",
        edges.len()
    );
    let to_fix: BTreeSet<(&str, &str)> = TO_FIX.iter().map(|&(a, b, _)| (a, b)).collect();
    let mut broken = Vec::new();
    for ((from, to), place) in &edges {
        match allowed(from, to) {
            Ok(true) => {}
            Ok(false) if to_fix.contains(&(from.as_str(), to.as_str())) => {}
            Ok(false) => broken.push(format!(
                "{place}: `{from}` imports `{to}`, which DESIGN §1's layer map does not allow"
            )),
            Err(e) => broken.push(format!("{place}: {e}")),
        }
    }
    for &(from, to, why) in TO_FIX {
        if !edges.contains_key(&(from.to_string(), to.to_string())) {
            broken.push(format!(
                "`{from}` → `{to}` is fixed ({why}): strike it off TO_FIX in tests/layering.rs"
            ));
        }
    }
    assert!(broken.is_empty(), "layering:\n{}", broken.join("\n"));
}

#[test]
fn the_scanner_reads_paths_and_skips_comments_strings_and_tests() {
    let code = strip(
        "use crate::stun::Message; // crate::peer\n\
         /* crate::sdp */ let s = \"crate::rtp\"; let c = '{';\n\
         use crate::{dtls::Fingerprint, ice::{Candidate, Agent}, sctp};\n\
         #[cfg(test)]\nmod tests { use crate::fuzzing; fn f() { let x = '}'; } }\n\
         fn g<'a>(x: &'a crate::turn::Client) {}\n",
    );
    let code = without_test_items(&code);
    let names: Vec<String> = crate_paths(&code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["stun", "dtls", "ice", "sctp", "turn"]);
}

#[test]
fn the_map_allows_down_and_refuses_up_and_sideways() {
    assert_eq!(allowed("peer", "sctp"), Ok(true));
    assert_eq!(allowed("datachannel", "sctp"), Ok(true));
    assert_eq!(allowed("sctp", "machine"), Ok(true));
    assert_eq!(allowed("sctp", "datachannel"), Ok(false));
    assert_eq!(allowed("sctp", "dtls"), Ok(false));
    assert_eq!(allowed("sctp", "runtime"), Ok(false));
    assert_eq!(allowed("sctp", "sim"), Ok(false));
    assert_eq!(allowed("peer", "demo"), Ok(false));
    assert_eq!(allowed("runtime", "peer"), Ok(true));
    assert!(allowed("nowhere", "sctp").is_err());
}

/// The code of every file of the leaf, protocol and peer tiers (the
/// sans-IO ones), as `(path, code)`: comments, strings and
/// `#[cfg(test)]` items blanked (`tests.rs` files skipped), whitespace
/// removed so that `Instant :: now ()` reads as `Instant::now()`.
fn sans_io_code() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let sans_io: BTreeSet<&str> = TIERS
        .iter()
        .filter(|(tier, _)| matches!(*tier, "leaf" | "protocol" | "peer"))
        .flat_map(|(_, modules)| modules.iter().copied())
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Some(module) = top_module(&src, &f) else {
            continue;
        };
        if !sans_io.contains(module.as_str()) {
            continue;
        }
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read a source file");
        let code = without_test_items(&strip(&text)).replace(char::is_whitespace, "");
        let place = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        out.push((place, code));
    }
    assert!(
        out.len() > 50,
        "scanned only {} files: is the scan broken?",
        out.len()
    );
    out
}

/// The places in the sans-IO tiers' code that name any of `needles`.
fn sans_io_uses(needles: &[&str], what: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (place, code) in sans_io_code() {
        for needle in needles {
            if code.contains(needle) {
                found.push(format!("{place}: {needle} ({what}) in a sans-IO module"));
            }
        }
    }
    found
}

/// DESIGN §2: a sans-IO machine is handed the time, it never reads a clock.
/// No `Instant::now()` or `SystemTime::now()` in the leaf, protocol and
/// peer tiers (outside `#[cfg(test)]` items): the runtime, the simulator
/// and the benchmarks pass `now` in.
#[test]
fn sans_io_modules_read_no_clock() {
    let found = sans_io_uses(&["Instant::now()", "SystemTime::now()"], "a clock");
    assert!(found.is_empty(), "clocks read:\n{}", found.join("\n"));
}

/// DESIGN §2 and the rule in `src/lib.rs`: randomness is passed in (an
/// `StdRng` by value to a machine, `&mut impl Rng` to a one-shot
/// function), so the sans-IO tiers never seed from the OS themselves: no
/// thread RNG, no `OsRng`, no `from_os_rng`/`from_entropy` outside
/// `#[cfg(test)]` items. (ring's `SystemRandom`, which ring's key
/// generation and signing accept alone, is outside this rule: those draws
/// are secrets no test needs to repeat, `src/dtls/cert.rs` says why.)
#[test]
fn sans_io_modules_make_no_os_randomness() {
    let found = sans_io_uses(
        &[
            "thread_rng",
            "rand::rng()",
            "rand::random",
            "OsRng",
            "from_os_rng",
            "from_entropy",
        ],
        "OS randomness",
    );
    assert!(
        found.is_empty(),
        "randomness not passed in:\n{}",
        found.join("\n")
    );
}
