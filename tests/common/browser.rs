//! Headless browsers for the interop tests, started as DESIGN §5 says: a
//! fresh profile each time, fake camera and microphone, nothing reaching
//! outside 127.0.0.1. A missing browser is a loud skip (a failure under
//! `RTCLAB_REQUIRE_INTEROP=1`); the browser's output is printed when a test
//! fails (it is a [`Peer`]).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{Peer, require_binary};

/// The two independent browser stacks the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserKind {
    /// Debian's `chromium` (libwebrtc, BoringSSL DTLS, dcsctp).
    Chromium,
    /// Debian's `firefox-esr` (nICEr, NSS DTLS, usrsctp).
    Firefox,
}

impl BrowserKind {
    /// Both, for tests that run once per browser.
    pub const ALL: [BrowserKind; 2] = [BrowserKind::Chromium, BrowserKind::Firefox];

    /// The binary on PATH.
    pub fn binary(self) -> &'static str {
        match self {
            BrowserKind::Chromium => "chromium",
            BrowserKind::Firefox => "firefox-esr",
        }
    }

    /// A short lowercase name for paths and messages.
    pub fn name(self) -> &'static str {
        match self {
            BrowserKind::Chromium => "chromium",
            BrowserKind::Firefox => "firefox",
        }
    }
}

/// A running headless browser with its own profile directory; both are
/// gone when it is dropped.
pub struct Browser {
    /// The process (killed on drop; its output printed if the test panics).
    pub process: Peer,
    profile: PathBuf,
}

impl Browser {
    /// The first of its page's reports (JSON bodies the server hands over
    /// on `reported`) for which `done` holds. Fails, saying `what` was
    /// awaited and the last report, when the browser exits or `limit`
    /// passes first.
    pub async fn report(
        &mut self,
        reported: &mut mpsc::Receiver<String>,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = Value::Null;
        loop {
            match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
                Ok(Some(body)) => {
                    last = serde_json::from_str(&body).expect("a JSON report");
                    if done(&last) {
                        return last;
                    }
                }
                _ => {
                    let exited = self.process.wait_exit(Duration::ZERO);
                    assert!(
                        exited.is_none() && tokio::time::Instant::now() < deadline,
                        "no {what} from the page within {limit:?} (exited: {exited:?}); last report:\n{last:#}"
                    );
                }
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Peer's own drop runs after this body: stop the browser first so
        // its profile can be removed.
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// DESIGN §5's Chromium flags.
pub fn chromium_args(profile: &std::path::Path, url: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        // The page's console on stderr (kept in the browser's log, printed
        // when a test fails).
        "--enable-logging=stderr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(url.to_string());
    args
}

/// DESIGN §5's Firefox prefs, written as the fresh profile's `user.js`.
pub const FIREFOX_USER_JS: &str = r#"
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.peerconnection.ice.loopback", true);
user_pref("media.autoplay.default", 0);
user_pref("permissions.default.camera", 1);
user_pref("permissions.default.microphone", 1);
user_pref("dom.allow_scripts_to_close_windows", true);
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.aboutwelcome.enabled", false);
"#;

/// Starts `kind` headless on `url` with a fresh profile, or `None` after a
/// loud skip when the browser is not installed.
pub fn launch(kind: BrowserKind, url: &str) -> Option<Browser> {
    let package = kind.binary();
    let program = require_binary(kind.binary(), package)?;
    let profile = std::env::temp_dir().join(format!(
        "rtclab-{}-{}-{}",
        kind.name(),
        std::process::id(),
        super::rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).expect("profile dir");
    let args = match kind {
        BrowserKind::Chromium => chromium_args(&profile, url),
        BrowserKind::Firefox => {
            std::fs::write(profile.join("user.js"), FIREFOX_USER_JS).expect("user.js");
            vec![
                "--headless".to_string(),
                "--no-remote".to_string(),
                "--profile".to_string(),
                profile.display().to_string(),
                url.to_string(),
            ]
        }
    };
    let process = Peer::start(kind.name(), &program, &args);
    Some(Browser { process, profile })
}
