//! `OverDtls<M>`: runs any datagram machine (an SCTP `SimHost`, a data
//! channel peer) over our DTLS in the simulator, as RFC 8261 stacks SCTP on
//! DTLS: every datagram the inner machine sends becomes one DTLS record,
//! every application-data record received is handed to it as a datagram.
//! The inner machine is held back (nothing polled from it) until the DTLS
//! handshake completes. A test binary includes it with
//! `#[path = "common/over_dtls.rs"] mod over_dtls;`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::endpoint::{Config, Endpoint, Event as DtlsEvent};
use rtclab::machine::{Machine, Receive, Transmit};

/// An inner machine whose datagrams travel in DTLS records.
pub struct OverDtls<M> {
    /// The machine above DTLS.
    pub inner: M,
    /// The DTLS endpoint.
    pub dtls: Endpoint,
    local: SocketAddr,
    remote: SocketAddr,
    /// Records dropped because DTLS refused them (should stay 0).
    pub send_errors: u64,
}

fn config(seed: u64) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    let cert = Certificate::generate(&mut rng, SystemTime::now()).expect("certificate");
    let mut c = Config::new(cert);
    c.srtp_profiles.clear();
    c
}

impl<M: Machine> OverDtls<M> {
    /// The DTLS client side (its ClientHello goes out at once).
    pub fn client(
        inner: M,
        local: SocketAddr,
        remote: SocketAddr,
        seed: u64,
        now: Instant,
    ) -> Self {
        OverDtls {
            inner,
            dtls: Endpoint::client(config(seed), remote, StdRng::seed_from_u64(seed), now),
            local,
            remote,
            send_errors: 0,
        }
    }

    /// The DTLS server side.
    pub fn server(inner: M, local: SocketAddr, remote: SocketAddr, seed: u64) -> Self {
        OverDtls {
            inner,
            dtls: Endpoint::server(config(seed), StdRng::seed_from_u64(seed)),
            local,
            remote,
            send_errors: 0,
        }
    }

    fn drain_dtls(&mut self, now: Instant) {
        while let Some(e) = self.dtls.poll_event() {
            if let DtlsEvent::ApplicationData(d) = e {
                self.inner.handle_receive(
                    now,
                    Receive {
                        source: self.remote,
                        destination: self.local,
                        contents: &d,
                    },
                );
            }
        }
    }

    /// Seals everything the inner machine has to send.
    fn pull_inner(&mut self) {
        if !self.dtls.is_connected() {
            return;
        }
        while let Some(t) = self.inner.poll_transmit() {
            if self.dtls.send(&t.contents).is_err() {
                self.send_errors += 1;
            }
        }
    }
}

impl<M: Machine> Machine for OverDtls<M> {
    type Event = M::Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.dtls.handle_receive(now, d);
        self.drain_dtls(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
            self.drain_dtls(now);
        }
        if self.dtls.is_connected() && self.inner.poll_timeout().is_some_and(|t| t <= now) {
            self.inner.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.pull_inner();
        self.dtls.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<M::Event> {
        self.inner.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let inner = if self.dtls.is_connected() {
            self.inner.poll_timeout()
        } else {
            None
        };
        [self.dtls.poll_timeout(), inner]
            .into_iter()
            .flatten()
            .min()
    }
}
