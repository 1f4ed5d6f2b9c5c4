//! The in-process bus: what [`super::RedisBus`] does, in one process's
//! memory. The default when no bus is named (one node needs nothing), and
//! the bus of tests that run several nodes in one process.
//!
//! A [`MemoryHub`] plays the Redis server; each [`MemoryBus`] from
//! [`MemoryHub::node`] is one node's connection to it. One mutex guards the
//! hub, so every operation is atomic, and a message is handed to every
//! subscriber's queue before the lock is released: all nodes see one order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Announce, BoxFuture, Bus, Error, Event};

/// Events queued for one node, at most; past it, messages are dropped
/// (and counted), as Redis drops a subscriber that reads too slowly.
pub const QUEUE: usize = 16 * 1024;

enum Value {
    Str(String),
    List(Vec<String>),
}

struct Entry {
    value: Value,
    expires: Option<Instant>,
}

#[derive(Default)]
struct State {
    keys: BTreeMap<String, Entry>,
    /// Channel → the nodes subscribed to it.
    subs: BTreeMap<String, BTreeSet<usize>>,
    nodes: BTreeMap<usize, mpsc::Sender<Event>>,
    next_node: usize,
    dropped: u64,
}

impl State {
    /// Forgets keys whose time ran out (checked on every access, as
    /// Redis's lazy expiry does).
    fn expire(&mut self, now: Instant) {
        self.keys.retain(|_, e| e.expires.is_none_or(|t| t > now));
    }

    fn publish(&mut self, channel: &str, payload: &str) {
        let Some(subs) = self.subs.get(channel) else {
            return;
        };
        for n in subs {
            if let Some(tx) = self.nodes.get(n) {
                let e = Event::Message {
                    channel: channel.to_string(),
                    payload: payload.to_string(),
                };
                if tx.try_send(e).is_err() {
                    self.dropped += 1;
                }
            }
        }
    }
}

/// The shared state of an in-process bus (the "server").
#[derive(Clone, Default)]
pub struct MemoryHub {
    state: Arc<Mutex<State>>,
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    /// A new node's connection to the hub.
    pub fn node(&self) -> MemoryBus {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut s = lock(&self.state);
        let id = s.next_node;
        s.next_node += 1;
        s.nodes.insert(id, tx);
        MemoryBus {
            hub: self.clone(),
            id,
            events: Mutex::new(Some(rx)),
        }
    }

    /// Messages dropped because a node's queue was full.
    pub fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every step leaves the maps consistent: keep going after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One node's connection to a [`MemoryHub`]. Dropping it unsubscribes it
/// from everything.
pub struct MemoryBus {
    hub: MemoryHub,
    id: usize,
    events: Mutex<Option<mpsc::Receiver<Event>>>,
}

impl Drop for MemoryBus {
    fn drop(&mut self) {
        let mut s = lock(&self.hub.state);
        s.nodes.remove(&self.id);
        for subs in s.subs.values_mut() {
            subs.remove(&self.id);
        }
        s.subs.retain(|_, v| !v.is_empty());
    }
}

impl MemoryBus {
    /// Runs `f` on the hub's state (expired keys gone) as one atomic step.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> T,
    ) -> BoxFuture<'_, Result<T, Error>> {
        let mut s = lock(&self.hub.state);
        s.expire(Instant::now());
        let r = f(&mut s);
        Box::pin(std::future::ready(Ok(r)))
    }
}

impl Bus for MemoryBus {
    fn publish(&self, channel: &str, payload: &str) -> BoxFuture<'_, Result<(), Error>> {
        self.with(|s| s.publish(channel, payload))
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        let id = self.id;
        self.with(|s| {
            s.subs.entry(channel.to_string()).or_default().insert(id);
        })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        let id = self.id;
        self.with(|s| {
            if let Some(subs) = s.subs.get_mut(channel) {
                subs.remove(&id);
                if subs.is_empty() {
                    s.subs.remove(channel);
                }
            }
        })
    }

    fn take_events(&self) -> Option<mpsc::Receiver<Event>> {
        self.events.lock().ok()?.take()
    }

    fn claim(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        self.with(|s| {
            if s.keys.contains_key(key) {
                return false;
            }
            let entry = Entry {
                value: Value::Str(value.to_string()),
                expires: Some(Instant::now() + ttl),
            };
            s.keys.insert(key.to_string(), entry);
            true
        })
    }

    fn refresh(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        self.with(|s| match s.keys.get_mut(key) {
            Some(e) if matches!(&e.value, Value::Str(v) if v == value) => {
                e.expires = Some(Instant::now() + ttl);
                true
            }
            _ => false,
        })
    }

    fn release(&self, key: &str, value: &str) -> BoxFuture<'_, Result<bool, Error>> {
        self.with(|s| {
            let holds =
                matches!(s.keys.get(key), Some(Entry { value: Value::Str(v), .. }) if v == value);
            if holds {
                s.keys.remove(key);
            }
            holds
        })
    }

    fn put(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>> {
        self.with(|s| {
            let entry = Entry {
                value: Value::Str(value.to_string()),
                expires: Some(Instant::now() + ttl),
            };
            s.keys.insert(key.to_string(), entry);
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, Error>> {
        self.with(|s| match s.keys.get(key) {
            Some(Entry {
                value: Value::Str(v),
                ..
            }) => Some(v.clone()),
            _ => None,
        })
    }

    fn scan(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        self.with(|s| {
            s.keys
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter_map(|(k, e)| match &e.value {
                    Value::Str(v) => Some((k.clone(), v.clone())),
                    Value::List(_) => None,
                })
                .collect()
        })
    }

    fn keys(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        self.with(|s| {
            s.keys
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
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
        self.with(|s| {
            let entry = s.keys.entry(key.to_string()).or_insert(Entry {
                value: Value::List(Vec::new()),
                expires: None,
            });
            if !matches!(entry.value, Value::List(_)) {
                entry.value = Value::List(Vec::new());
            }
            let Value::List(list) = &mut entry.value else {
                return None;
            };
            if list.len() >= cap || list.iter().any(|m| m == member) {
                let empty = list.is_empty();
                if empty {
                    s.keys.remove(key);
                }
                return None;
            }
            let before = list.clone();
            list.push(member.to_string());
            entry.expires = Some(Instant::now() + ttl);
            let text = Announce::Join {
                member: member.to_string(),
                before: before.clone(),
            }
            .to_text();
            s.publish(channel, &text);
            Some(before)
        })
    }

    fn leave(&self, key: &str, member: &str, channel: &str) -> BoxFuture<'_, Result<bool, Error>> {
        self.with(|s| {
            let Some(Entry {
                value: Value::List(list),
                ..
            }) = s.keys.get_mut(key)
            else {
                return false;
            };
            let was = list.len();
            list.retain(|m| m != member);
            let removed = list.len() < was;
            if list.is_empty() {
                s.keys.remove(key);
            }
            if removed {
                let text = Announce::Leave {
                    member: member.to_string(),
                }
                .to_text();
                s.publish(channel, &text);
            }
            removed
        })
    }

    fn restore(&self, key: &str, member: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>> {
        self.with(|s| {
            let entry = s.keys.entry(key.to_string()).or_insert(Entry {
                value: Value::List(Vec::new()),
                expires: None,
            });
            if let Value::List(list) = &mut entry.value
                && !list.iter().any(|m| m == member)
            {
                list.push(member.to_string());
            }
            entry.expires = Some(Instant::now() + ttl);
        })
    }

    fn touch(&self, key: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>> {
        self.with(|s| match s.keys.get_mut(key) {
            Some(e) => {
                e.expires = Some(Instant::now() + ttl);
                true
            }
            None => false,
        })
    }

    fn members(&self, key: &str) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        self.with(|s| match s.keys.get(key) {
            Some(Entry {
                value: Value::List(l),
                ..
            }) => l.clone(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_bus_keeps_the_contract() {
        let hub = MemoryHub::new();
        crate::bus::contract::check(&hub.node(), &hub.node(), "t:").await;
    }
}
