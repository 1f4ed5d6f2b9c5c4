//! `rtclab demo` on loopback for the browser tests, handing its pages'
//! reports (`POST /report`) to the test.

use std::net::SocketAddr;
use std::time::Duration;

use rtclab::demo::{Config, Demo, Summary};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::browser::{Browser, BrowserKind, launch};

/// A running demo; it stops when dropped.
pub struct DemoServer {
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its pages' reports.
    pub reported: mpsc::Receiver<String>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<Summary>>,
}

impl DemoServer {
    /// Binds it with `config` (whose `reports` it sets) and runs it.
    pub async fn start(mut config: Config) -> DemoServer {
        let (reports, reported) = mpsc::channel(8);
        config.reports = Some(reports);
        let demo = Demo::bind(config).await.expect("bind");
        let addr = demo.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(demo.run_until(async {
            let _ = stopped.await;
        }));
        DemoServer {
            addr,
            reported,
            stop,
            task,
        }
    }

    /// The demo on a free loopback port.
    pub async fn on_loopback() -> DemoServer {
        Self::start(Config::new("127.0.0.1:0".parse().unwrap())).await
    }

    /// `kind` opens `/demo/?autotest=1&limit=40QUERY`: the browser (still
    /// on the page) and the page's result, which says `ok` (at most 60 s);
    /// `None` when the browser is missing (a loud skip).
    pub async fn autotest(&mut self, kind: BrowserKind, query: &str) -> Option<(Browser, Value)> {
        let url = format!("http://{}/demo/?autotest=1&limit=40{query}", self.addr);
        let mut browser = launch(kind, &url)?;
        let is_result = |v: &Value| v["type"] == "result";
        let what = format!("result of the {kind:?} page");
        let report = browser
            .report(
                &mut self.reported,
                Duration::from_secs(60),
                &what,
                is_result,
            )
            .await;
        eprintln!("{kind:?} page reported: {report}");
        assert_eq!(report["ok"], true, "{report:#}");
        Some((browser, report))
    }

    /// Stops it and waits until it has: what it did.
    pub async fn stop(self) -> Summary {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("run")
    }
}
