//! The bus on a Redis server (any Redis ≥ 6.2, or Valkey): one multiplexed
//! connection for commands, one for pub/sub, both re-opened when Redis goes
//! away and comes back.
//!
//! Commands that find the connection dead fail with
//! [`Error::Unavailable`], and the next command opens a new one. The
//! pub/sub connection is kept by a task: when it drops, the task reconnects
//! with back-off (100 ms doubling to 1 s), subscribes again to every
//! channel this node had subscribed to, and reports
//! [`Event::Reconnected`]; the node then puts back what Redis may have
//! lost (see [`super::Bus::restore`]).
//!
//! The atomic steps are Lua scripts (`EVALSHA`, loaded on first use), each
//! run by Redis as one command: no other client's command runs in between.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::mpsc;

use super::{BoxFuture, Bus, Error, Event};

/// Events queued for the node, at most; past it the pub/sub task waits,
/// and Redis buffers (and, past its `client-output-buffer-limit pubsub`,
/// drops the connection, which is then re-opened).
const QUEUE: usize = 16 * 1024;
/// How long a command may take before the connection is deemed dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `KEYS[1]` the list; `ARGV`: member, cap, ttl ms, channel. Appends the
/// member if there is room and announces it (`join MEMBER BEFORE…`);
/// returns `{"ok", before…}` or `{"full"}`.
const JOIN: &str = r#"
local before = redis.call('LRANGE', KEYS[1], 0, -1)
for _, m in ipairs(before) do
  if m == ARGV[1] then return {'full'} end
end
if #before >= tonumber(ARGV[2]) then return {'full'} end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local text = 'join ' .. ARGV[1]
if #before > 0 then text = text .. ' ' .. table.concat(before, ' ') end
redis.call('PUBLISH', ARGV[4], text)
table.insert(before, 1, 'ok')
return before
"#;

/// `KEYS[1]` the list; `ARGV`: member, channel. An emptied list is deleted
/// by Redis itself.
const LEAVE: &str = r#"
local n = redis.call('LREM', KEYS[1], 0, ARGV[1])
if n > 0 then redis.call('PUBLISH', ARGV[2], 'leave ' .. ARGV[1]) end
return n
"#;

/// `KEYS[1]` the list; `ARGV`: member, ttl ms.
const RESTORE: &str = r#"
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// `KEYS[1]`; `ARGV`: value, ttl ms.
const REFRESH: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// `KEYS[1]`; `ARGV`: value.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

struct Scripts {
    join: Script,
    leave: Script,
    restore: Script,
    refresh: Script,
    release: Script,
}

/// A node's connection to a Redis server.
pub struct RedisBus {
    client: Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Subscribe and unsubscribe requests to the pub/sub task.
    control: mpsc::UnboundedSender<Control>,
    events: Mutex<Option<mpsc::Receiver<Event>>>,
    scripts: Scripts,
    task: tokio::task::JoinHandle<()>,
}

enum Control {
    Subscribe(String, tokio::sync::oneshot::Sender<Result<(), Error>>),
    Unsubscribe(String, tokio::sync::oneshot::Sender<Result<(), Error>>),
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unavailable(e: RedisError) -> Error {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        Error::Unavailable(e.to_string())
    } else {
        Error::Protocol(e.to_string())
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

/// `prefix` with Redis's glob characters escaped, then `*`.
fn pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('*');
    p
}

impl RedisBus {
    /// A bus on the Redis at `url` (`redis://HOST:PORT[/DB]`). Needs a
    /// tokio runtime; connects lazily and keeps reconnecting, so Redis
    /// need not be up yet.
    pub fn open(url: &str) -> Result<RedisBus, Error> {
        let client = Client::open(url).map_err(|e| Error::BadUrl(e.to_string()))?;
        let channels = Arc::new(Mutex::new(BTreeSet::new()));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(pubsub_task(client.clone(), channels, tx, control_rx));
        Ok(RedisBus {
            client,
            conn: tokio::sync::Mutex::new(None),
            control,
            events: Mutex::new(Some(rx)),
            scripts: Scripts {
                join: Script::new(JOIN),
                leave: Script::new(LEAVE),
                restore: Script::new(RESTORE),
                refresh: Script::new(REFRESH),
                release: Script::new(RELEASE),
            },
            task,
        })
    }

    /// The command connection, opened if there is none.
    async fn conn(&self) -> Result<MultiplexedConnection, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command (or script), dropping the connection if it died.
    async fn run<T: redis::FromRedisValue>(&self, cmd: Op<'_>) -> Result<T, Error> {
        let mut c = self.conn().await?;
        let r = match cmd {
            Op::Cmd(cmd) => cmd.query_async(&mut c).await,
            Op::Script(inv) => inv.invoke_async(&mut c).await,
        };
        r.map_err(|e| {
            let err = unavailable(e);
            if matches!(err, Error::Unavailable(_)) {
                // The next command reconnects.
                if let Ok(mut slot) = self.conn.try_lock() {
                    *slot = None;
                }
            }
            err
        })
    }

    async fn control(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), Error>>) -> Control,
    ) -> Result<(), Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control
            .send(make(tx))
            .map_err(|_| Error::Unavailable("the pub/sub task ended".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(Error::Unavailable("the pub/sub task ended".into())))
    }
}

enum Op<'a> {
    Cmd(redis::Cmd),
    Script(redis::ScriptInvocation<'a>),
}

/// Keeps the pub/sub connection: (re)connects, (re)subscribes, forwards
/// messages, and serves subscribe/unsubscribe requests.
async fn pubsub_task(
    client: Client,
    channels: Arc<Mutex<BTreeSet<String>>>,
    events: mpsc::Sender<Event>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            _ => {
                // Requests while Redis is away: remembered, done on reconnect.
                while let Ok(c) = control.try_recv() {
                    answer_offline(&channels, c);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let wanted: Vec<String> = channels
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        if !wanted.is_empty() && sink.subscribe(&wanted).await.is_err() {
            continue;
        }
        backoff = Duration::from_millis(100);
        if !first {
            tracing::info!("bus: reconnected to Redis");
            if events.send(Event::Reconnected).await.is_err() {
                return;
            }
        }
        first = false;
        loop {
            tokio::select! {
                m = stream.next() => {
                    let Some(m) = m else {
                        tracing::warn!("bus: lost the Redis pub/sub connection; reconnecting");
                        break;
                    };
                    let channel = m.get_channel_name().to_string();
                    let Ok(payload) = String::from_utf8(m.get_payload_bytes().to_vec()) else {
                        continue;
                    };
                    if events.send(Event::Message { channel, payload }).await.is_err() {
                        return;
                    }
                }
                c = control.recv() => {
                    let Some(c) = c else { return };
                    let (ch, reply, on) = match c {
                        Control::Subscribe(ch, r) => (ch, r, true),
                        Control::Unsubscribe(ch, r) => (ch, r, false),
                    };
                    if let Ok(mut set) = channels.lock() {
                        if on { set.insert(ch.clone()); } else { set.remove(&ch); }
                    }
                    let r = if on { sink.subscribe(&ch).await } else { sink.unsubscribe(&ch).await };
                    let failed = r.is_err();
                    let _ = reply.send(r.map_err(unavailable));
                    if failed {
                        break;
                    }
                }
            }
        }
    }
}

/// A request while disconnected: the wish is kept (renewed on reconnect),
/// the caller hears that Redis is away.
fn answer_offline(channels: &Mutex<BTreeSet<String>>, c: Control) {
    let (ch, reply, on) = match c {
        Control::Subscribe(ch, r) => (ch, r, true),
        Control::Unsubscribe(ch, r) => (ch, r, false),
    };
    if let Ok(mut set) = channels.lock() {
        if on {
            set.insert(ch);
        } else {
            set.remove(&ch);
        }
    }
    let _ = reply.send(Err(Error::Unavailable("reconnecting to Redis".into())));
}

impl Bus for RedisBus {
    fn publish(&self, channel: &str, payload: &str) -> BoxFuture<'_, Result<(), Error>> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        Box::pin(async move { self.run::<i64>(Op::Cmd(cmd)).await.map(|_| ()) })
    }

    fn publish_batch<'a>(
        &'a self,
        messages: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        let mut pipe = redis::pipe();
        for (channel, payload) in messages {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r: Result<(), RedisError> = pipe.query_async(&mut c).await;
            r.map_err(|e| {
                let err = unavailable(e);
                if matches!(err, Error::Unavailable(_))
                    && let Ok(mut slot) = self.conn.try_lock()
                {
                    *slot = None;
                }
                err
            })
        })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        let ch = channel.to_string();
        Box::pin(self.control(move |r| Control::Subscribe(ch, r)))
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        let ch = channel.to_string();
        Box::pin(self.control(move |r| Control::Unsubscribe(ch, r)))
    }

    fn take_events(&self) -> Option<mpsc::Receiver<Event>> {
        self.events.lock().ok()?.take()
    }

    fn claim(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl));
        Box::pin(async move {
            let r: Option<String> = self.run(Op::Cmd(cmd)).await?;
            Ok(r.is_some())
        })
    }

    fn refresh(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        let mut inv = self.scripts.refresh.key(key);
        inv.arg(value).arg(millis(ttl));
        Box::pin(async move { Ok(self.run::<i64>(Op::Script(inv)).await? == 1) })
    }

    fn release(&self, key: &str, value: &str) -> BoxFuture<'_, Result<bool, Error>> {
        let mut inv = self.scripts.release.key(key);
        inv.arg(value);
        Box::pin(async move { Ok(self.run::<i64>(Op::Script(inv)).await? == 1) })
    }

    fn put(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
        Box::pin(async move { self.run::<Option<String>>(Op::Cmd(cmd)).await.map(|_| ()) })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, Error>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        Box::pin(async move { self.run(Op::Cmd(cmd)).await })
    }

    fn scan(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        let prefix = prefix.to_string();
        Box::pin(async move {
            let keys = self.keys(&prefix).await?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys);
            // A list under the prefix reads as nil through MGET... and as
            // an error through GET; MGET gives nil for non-strings.
            let values: Vec<Option<String>> = self.run(Op::Cmd(cmd)).await?;
            Ok(keys
                .into_iter()
                .zip(values)
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        })
    }

    fn keys(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        let pattern = pattern(prefix);
        Box::pin(async move {
            // SCAN, not KEYS: never blocks Redis for long, however many keys.
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500);
                let (next, batch): (u64, Vec<String>) = self.run(Op::Cmd(cmd)).await?;
                out.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
    }

    fn join_capped(
        &self,
        key: &str,
        member: &str,
        cap: usize,
        ttl: Duration,
        channel: &str,
    ) -> BoxFuture<'_, Result<Option<Vec<String>>, Error>> {
        let mut inv = self.scripts.join.key(key);
        inv.arg(member).arg(cap).arg(millis(ttl)).arg(channel);
        Box::pin(async move {
            let mut r: Vec<String> = self.run(Op::Script(inv)).await?;
            match r.first().map(String::as_str) {
                Some("ok") => {
                    r.remove(0);
                    Ok(Some(r))
                }
                Some("full") => Ok(None),
                _ => Err(Error::Protocol(format!("join script answered {r:?}"))),
            }
        })
    }

    fn leave(&self, key: &str, member: &str, channel: &str) -> BoxFuture<'_, Result<bool, Error>> {
        let mut inv = self.scripts.leave.key(key);
        inv.arg(member).arg(channel);
        Box::pin(async move { Ok(self.run::<i64>(Op::Script(inv)).await? > 0) })
    }

    fn restore(&self, key: &str, member: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>> {
        let mut inv = self.scripts.restore.key(key);
        inv.arg(member).arg(millis(ttl));
        Box::pin(async move { self.run::<i64>(Op::Script(inv)).await.map(|_| ()) })
    }

    fn touch(&self, key: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(key).arg(millis(ttl));
        Box::pin(async move { Ok(self.run::<i64>(Op::Cmd(cmd)).await? == 1) })
    }

    fn members(&self, key: &str) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(key).arg(0).arg(-1);
        Box::pin(async move { self.run(Op::Cmd(cmd)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_escaped_for_scan() {
        assert_eq!(pattern("rtclab:node:"), "rtclab:node:*");
        assert_eq!(pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused() {
        assert!(matches!(RedisBus::open("nope://x"), Err(Error::BadUrl(_))));
        assert!(matches!(
            super::super::connect(Some("nats://x")),
            Err(Error::BadUrl(_))
        ));
    }
}
