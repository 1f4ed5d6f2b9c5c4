//! Room placement across SFU nodes (`rtclab sfu --bus redis://… --node
//! NAME --public-ip IP`): every room lives on one node, chosen by load when
//! the room opens; a participant who reaches another node is sent to it.
//!
//! On the bus (see [`crate::bus`] for the TTLs):
//!
//! - `rtclab:sfu:node:NAME` = `{"url":"http://IP:PORT","load":N}`, put
//!   every [`HEARTBEAT`] with [`NODE_TTL`]: the node is alive and carries
//!   `N` participants;
//! - `rtclab:sfu:owner:ROOM` = `NAME`, claimed with `SET NX PX` by the node
//!   that opens the room, refreshed while the room has participants there,
//!   deleted when its last one leaves.
//!
//! A participant arriving for a room ([`Placement::place`]):
//!
//! 1. the room has an owner: this node → serve it here; another live node
//!    → redirect there (the page's WebSocket hears `{"type":"redirect",
//!    "url":…}`, a WHIP/WHEP `POST` gets `307` with `Location`, as RFC
//!    9725 §4.5 allows); an owner whose node key is gone (it died, and its
//!    claim runs out within [`NODE_TTL`]) → "retry" (`503`, Retry-After);
//! 2. no owner: the live node with the fewest participants (ties: the
//!    smallest name, so that every node picks the same one) is chosen; if
//!    that is this node, it claims the room (if another node claimed it
//!    first, step 1 again); else the participant is redirected there, and
//!    that node claims it when the participant arrives.
//!
//! A node killed with `kill -9` stops refreshing: its node key and its
//! rooms' claims expire within [`NODE_TTL`], and the next participant to
//! arrive anywhere gets a live node. After Redis restarts (empty), each node
//! puts its key back and re-claims its rooms on the next heartbeat.
//!
//! When the owner is full ([`Config::capacity`]), the room spans nodes by
//! cascading ([`super::cascade`]):
//!
//! - a participant reaching another node (not full itself) is served
//!   there, and that node links the room to the owner ([`Cascade`], the
//!   server's [`super::server::Handle`], which reuses the link for the
//!   room's next newcomers there);
//! - a participant reaching the full owner is sent to the least loaded
//!   node that is not full (the same choice on every node), which does
//!   the above; if that node cannot link to the owner, the participant
//!   hears "retry" (`503`) rather than being sent back and forth.
//!
//! Every cascaded node links to the owner: the room's links form a star
//! around it (see [`super::cascade`] for why a star). A cascaded node's
//! seats keep the room's claim from lapsing: if the owner dies or its own
//! participants all leave, a cascaded node takes the room over at its
//! next heartbeat. Nothing of a cascade is on the bus: the links are
//! between the nodes' HTTP endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bus::{self, BoxFuture, Bus, HEARTBEAT, NODE_TTL};

/// The bus key of an SFU node.
pub fn node_key(node: &str) -> String {
    format!("rtclab:sfu:node:{node}")
}

/// The bus key of a room's owner.
pub fn owner_key(room: &str) -> String {
    format!("rtclab:sfu:owner:{room}")
}

/// What a node says of itself on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where its pages, WebSocket and WHIP/WHEP are: `http://IP:PORT`.
    pub url: String,
    /// Participants on it now.
    pub load: usize,
    /// Participants it takes at most.
    #[serde(default)]
    pub capacity: usize,
}

/// Where a participant for a room should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Here: this node owns the room (now).
    Here,
    /// To the owner, at this base URL (`http://IP:PORT`).
    Redirect(String),
    /// The owner died and its claim has not run out yet, or the bus is
    /// unreachable: try again in about this long.
    Retry(Duration),
}

/// The hook for a room that outgrows its owner: make this node a cascade
/// of the room owned at `owner_url`, so that a participant can be served
/// here. [`super::server::Handle`] is one ([`super::server::Server::with_placement`]
/// sets it).
pub trait Cascade: Send + Sync {
    /// Opens (or reuses) this node's cascade of `room` from the owner.
    fn cascade(&self, room: &str, owner_url: &str) -> BoxFuture<'_, Result<(), String>>;

    /// The nodes (base URLs) this node's links of `room` go to.
    fn linked(&self, _room: &str) -> Vec<String> {
        Vec::new()
    }

    /// Closes this node's link of `room` to the node at `url`.
    fn unlink(&self, _room: &str, _url: &str) {}
}

/// How a node takes part in placement.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// This node's name (unique among the nodes).
    pub node: String,
    /// Its base URL as participants reach it: `http://PUBLIC_IP:PORT`.
    pub url: String,
    /// Participants it takes at most (its SFU's `max_participants`).
    pub capacity: usize,
    /// Where a full owner's rooms go on (none: refused when full).
    pub cascade: Option<Arc<dyn Cascade>>,
}

impl Config {
    /// A node `node` at `url` on `bus`, taking `capacity` participants.
    pub fn new(bus: Arc<dyn Bus>, node: &str, url: &str, capacity: usize) -> Config {
        Config {
            bus,
            node: node.to_string(),
            url: url.trim_end_matches('/').to_string(),
            capacity,
            cascade: None,
        }
    }
}

/// One SFU node's placement. Cheap to share (`Arc`).
pub struct Placement {
    config: Config,
    /// [`Config::cascade`], or the one the server set.
    cascade: std::sync::OnceLock<Arc<dyn Cascade>>,
    /// Participants here, per room.
    seats: Mutex<BTreeMap<String, usize>>,
}

/// A participant's place in a room on this node: the room stays claimed
/// while any seat lives.
pub struct Seat {
    placement: Arc<Placement>,
    room: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let emptied = {
            let mut seats = self.placement.seats();
            match seats.get_mut(&self.room) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    seats.remove(&self.room);
                    true
                }
                None => false,
            }
        };
        if emptied && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let p = self.placement.clone();
            let room = self.room.clone();
            rt.spawn(async move {
                // Still empty (no one came back meanwhile)?
                if !p.seats().contains_key(&room) {
                    let _ = p
                        .config
                        .bus
                        .release(&owner_key(&room), &p.config.node)
                        .await;
                }
            });
        }
    }
}

impl Placement {
    /// A node's placement; [`Placement::run`] keeps it on the bus.
    pub fn new(config: Config) -> Arc<Placement> {
        let cascade = std::sync::OnceLock::new();
        if let Some(c) = &config.cascade {
            let _ = cascade.set(c.clone());
        }
        Arc::new(Placement {
            config,
            cascade,
            seats: Mutex::new(BTreeMap::new()),
        })
    }

    /// Sets the [`Cascade`] hook if none is set yet (`false`: one was).
    pub fn set_cascade(&self, cascade: Arc<dyn Cascade>) -> bool {
        self.cascade.set(cascade).is_ok()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    fn seats(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.seats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Participants on this node.
    pub fn load(&self) -> usize {
        self.seats().values().sum()
    }

    /// Takes a seat in `room` (after [`Placement::place`] said
    /// [`Decision::Here`]); the room stays this node's while seats live.
    pub fn seat(self: &Arc<Placement>, room: &str) -> Seat {
        *self.seats().entry(room.to_string()).or_insert(0) += 1;
        Seat {
            placement: self.clone(),
            room: room.to_string(),
        }
    }

    /// The live nodes and what they say.
    pub async fn nodes(&self) -> Result<BTreeMap<String, NodeInfo>, bus::Error> {
        let prefix = node_key("");
        let found = self.config.bus.scan(&prefix).await?;
        Ok(found
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(&prefix)?.to_string();
                let info: NodeInfo = serde_json::from_str(&v).ok()?;
                Some((name, info))
            })
            .collect())
    }

    /// Where a participant of `room` goes. See the [module doc](self).
    pub async fn place(&self, room: &str) -> Decision {
        match self.try_place(room).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(%room, "sfu placement: {e}");
                Decision::Retry(Duration::from_secs(1))
            }
        }
    }

    async fn try_place(&self, room: &str) -> Result<Decision, bus::Error> {
        let bus = &self.config.bus;
        let key = owner_key(room);
        for _ in 0..3 {
            let nodes = self.nodes().await?;
            if let Some(owner) = bus.get(&key).await? {
                if owner == self.config.node {
                    // Full: to a node with room, which cascades.
                    let full = self.config.capacity > 0 && self.load() >= self.config.capacity;
                    let elsewhere = least_loaded(&nodes, Some(&self.config.node));
                    return Ok(match elsewhere {
                        Some((_, url)) if full && self.cascade.get().is_some() => {
                            Decision::Redirect(url)
                        }
                        _ => Decision::Here,
                    });
                }
                return Ok(match nodes.get(&owner) {
                    Some(info) => {
                        let full = info.capacity > 0 && info.load >= info.capacity;
                        match (self.cascade.get(), full) {
                            (Some(c), true) => match c.cascade(room, &info.url).await {
                                Ok(()) => Decision::Here,
                                // Not to the full owner, which would send
                                // the participant back here: later.
                                Err(e) => {
                                    tracing::warn!(%room, "sfu cascade: {e}");
                                    Decision::Retry(Duration::from_secs(1))
                                }
                            },
                            _ => Decision::Redirect(info.url.clone()),
                        }
                    }
                    // Dead: its claim expires within NODE_TTL.
                    None => Decision::Retry(Duration::from_secs(1)),
                });
            }
            match least_loaded(&nodes, None) {
                Some((name, url)) if name != self.config.node => {
                    return Ok(Decision::Redirect(url));
                }
                // This node: the least loaded, or not on the bus yet (its
                // first heartbeat has not run), or every node is full.
                _ => {
                    if bus.claim(&key, &self.config.node, NODE_TTL).await? {
                        return Ok(Decision::Here);
                    }
                }
            }
        }
        Ok(Decision::Retry(Duration::from_secs(1)))
    }

    /// Says this node is alive with its load, and keeps its rooms claimed
    /// (re-claiming any the bus lost, after a Redis restart).
    pub async fn heartbeat(&self) -> Result<(), bus::Error> {
        let bus = &self.config.bus;
        let info = NodeInfo {
            url: self.config.url.clone(),
            load: self.load(),
            capacity: self.config.capacity,
        };
        let text = serde_json::to_string(&info).unwrap_or_default();
        bus.put(&node_key(&self.config.node), &text, NODE_TTL)
            .await?;
        let rooms: Vec<String> = self.seats().keys().cloned().collect();
        for room in rooms {
            let key = owner_key(&room);
            let owned = bus.refresh(&key, &self.config.node, NODE_TTL).await?
                || bus.claim(&key, &self.config.node, NODE_TTL).await?;
            if !owned {
                // A room cascaded here from its owner (or a race lost).
                tracing::debug!(%room, "sfu placement: another node owns a room with participants here");
            }
            self.follow_owner(&room, owned).await?;
        }
        Ok(())
    }

    /// A room cascaded here keeps its link to the room's owner, and only
    /// to it: a link to a node that died (its key ran out) or that is no
    /// longer the owner closes at once, rather than when the link's ICE
    /// consent runs out (30 s, RFC 7675 §5.1), and the room links to the
    /// new owner; a node that took the room over keeps no link of its
    /// own to the old one. The links stay a star around the owner.
    async fn follow_owner(&self, room: &str, owned: bool) -> Result<(), bus::Error> {
        let Some(hook) = self.cascade.get() else {
            return Ok(());
        };
        let linked = hook.linked(room);
        if linked.is_empty() {
            return Ok(());
        }
        let owner_url = if owned {
            None
        } else {
            match self.config.bus.get(&owner_key(room)).await? {
                Some(owner) => self.nodes().await?.get(&owner).map(|i| i.url.clone()),
                None => None,
            }
        };
        let mut unlinked = false;
        for url in &linked {
            if Some(url) != owner_url.as_ref() {
                tracing::info!(%room, %url, "sfu placement: the room's link to a node that is no longer its owner closes");
                hook.unlink(room, url);
                unlinked = true;
            }
        }
        if let Some(url) = owner_url
            && unlinked
            && !linked.contains(&url)
        {
            let (hook, room) = (hook.clone(), room.to_string());
            tokio::spawn(async move {
                if let Err(e) = hook.cascade(&room, &url).await {
                    tracing::warn!(%room, %url, "sfu cascade to the new owner: {e}");
                }
            });
        }
        Ok(())
    }

    /// Keeps this node on the bus until `stop`, then releases its rooms
    /// and its node key.
    pub async fn run(self: Arc<Placement>, stop: impl std::future::Future<Output = ()>) {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = self.config.bus.take_events();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = beat.tick() => {
                    if let Err(e) = self.heartbeat().await {
                        tracing::debug!("sfu placement: heartbeat: {e}");
                    }
                }
                e = async { match events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match e {
                        // Put everything back at once rather than at the
                        // next tick.
                        Some(bus::Event::Reconnected) => { let _ = self.heartbeat().await; }
                        Some(_) => {}
                        None => events = None,
                    }
                }
            }
        }
        let rooms: Vec<String> = self.seats().keys().cloned().collect();
        for room in rooms {
            let _ = self
                .config
                .bus
                .release(&owner_key(&room), &self.config.node)
                .await;
        }
        let node = node_key(&self.config.node);
        if let Ok(Some(v)) = self.config.bus.get(&node).await {
            let _ = self.config.bus.release(&node, &v).await;
        }
    }
}

/// The live node with the fewest participants that is not full (ties:
/// the smallest name, so that every node picks the same), but `except`:
/// its name and URL.
fn least_loaded(
    nodes: &BTreeMap<String, NodeInfo>,
    except: Option<&str>,
) -> Option<(String, String)> {
    nodes
        .iter()
        .filter(|(n, i)| (i.capacity == 0 || i.load < i.capacity) && Some(n.as_str()) != except)
        .min_by(|x, y| (x.1.load, x.0).cmp(&(y.1.load, y.0)))
        .map(|(n, i)| (n.clone(), i.url.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::MemoryHub;

    fn node(hub: &MemoryHub, name: &str, port: u16) -> Arc<Placement> {
        let url = format!("http://127.0.0.1:{port}");
        Placement::new(Config::new(Arc::new(hub.node()), name, &url, 100))
    }

    #[tokio::test]
    async fn a_room_goes_to_the_least_loaded_node_and_stays_there() {
        let hub = MemoryHub::new();
        let a = node(&hub, "a", 1);
        let b = node(&hub, "b", 2);
        let _busy = a.seat("elsewhere");
        a.heartbeat().await.unwrap();
        b.heartbeat().await.unwrap();
        // a carries one participant, b none: b gets the room, wherever the
        // participant arrives.
        assert_eq!(
            a.place("r").await,
            Decision::Redirect("http://127.0.0.1:2".into())
        );
        assert_eq!(b.place("r").await, Decision::Here);
        let seat = b.seat("r");
        assert_eq!(
            a.place("r").await,
            Decision::Redirect("http://127.0.0.1:2".into())
        );
        b.heartbeat().await.unwrap();
        // b's load is now 1, a's too: still b's room.
        assert_eq!(b.place("r").await, Decision::Here);
        // The last one out releases it.
        drop(seat);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let probe = hub.node();
        assert_eq!(probe.get(&owner_key("r")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_dead_owner_means_retry_until_its_claim_runs_out() {
        let hub = MemoryHub::new();
        let a = node(&hub, "a", 1);
        let b = node(&hub, "b", 2);
        a.heartbeat().await.unwrap();
        assert_eq!(a.place("r").await, Decision::Here);
        let _seat = a.seat("r");
        // a's node key vanishes (as if it died and its key ran out first).
        let probe = hub.node();
        probe
            .put(&node_key("a"), "x", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.heartbeat().await.unwrap();
        assert!(matches!(b.place("r").await, Decision::Retry(_)));
        // Then the claim runs out too: b takes the room.
        probe
            .put(&owner_key("r"), "a", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(b.place("r").await, Decision::Here);
    }

    struct Always;
    impl Cascade for Always {
        fn cascade(&self, _room: &str, _owner: &str) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn a_full_owner_cascades_when_the_hook_is_set() {
        let hub = MemoryHub::new();
        let a = Placement::new(Config::new(Arc::new(hub.node()), "a", "http://a", 1));
        let mut cb = Config::new(Arc::new(hub.node()), "b", "http://b", 1);
        cb.cascade = Some(Arc::new(Always));
        let b = Placement::new(cb);
        a.heartbeat().await.unwrap();
        assert_eq!(a.place("r").await, Decision::Here);
        let _s = a.seat("r");
        a.heartbeat().await.unwrap();
        b.heartbeat().await.unwrap();
        assert_eq!(b.place("r").await, Decision::Here, "cascaded");
        // The full owner sends a newcomer to b (which cascades), once it
        // has a hook; without one it keeps it (and its SFU refuses it).
        assert_eq!(a.place("r").await, Decision::Here);
        a.set_cascade(Arc::new(Always));
        assert_eq!(a.place("r").await, Decision::Redirect("http://b".into()));
    }
}
