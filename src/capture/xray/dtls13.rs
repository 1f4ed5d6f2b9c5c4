//! DTLS 1.3 records in the x-ray (RFC 9147 §4): the plaintext ones (the
//! hellos, ACKs, alerts of epoch 0) named, the protected ones (unified
//! header) opened with the capture's key log when it holds the session's
//! 1.3 secrets (`CLIENT_HANDSHAKE_TRAFFIC_SECRET`, …, `SERVER_TRAFFIC_SECRET_0`
//! for the ClientHello's random, NSS key log format). The record number is
//! unmasked with the epoch's sn_key (§4.2.3) and reconstructed from its low
//! bits (§4.2.2); epoch 2 is the handshake's keys, 3 the first application
//! traffic keys, and epochs after a KeyUpdate follow by "traffic upd"
//! (RFC 8446 §7.2).

use std::collections::HashMap;

use super::{Decoder, Direction, Layer, Session, handshake_name};
use crate::dtls::record::ContentType;
use crate::dtls::v13::key_schedule::{self as ks, LabelPrefix, Secret, TrafficKeys};
use crate::dtls::v13::record::{self as r13, CONTENT_TYPE_ACK, RecordProtection, UnifiedHeader};

/// Key log labels (RFC 8446 §7.1's secrets, NSS's names).
const LABELS: [&str; 4] = [
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
];

/// A session's 1.3 secrets by label index (see [`LABELS`]).
pub(super) type Secrets13 = HashMap<[u8; 32], [Option<[u8; 32]>; 4]>;

/// The 1.3 lines of a key log: client random → its secrets.
pub(super) fn secrets13(key_log: &str) -> Secrets13 {
    let mut out: Secrets13 = HashMap::new();
    for line in key_log.lines() {
        let mut f = line.split_whitespace();
        let (Some(label), Some(random), Some(secret)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some(i) = LABELS.iter().position(|l| *l == label) else {
            continue;
        };
        let (Some(random), Some(secret)) = (super::unhex::<32>(random), super::unhex::<32>(secret))
        else {
            continue;
        };
        out.entry(random).or_default()[i] = Some(secret);
    }
    out
}

/// Whether a datagram holds a protected 1.3 record (the server's first
/// flight starts with a plaintext ServerHello record, then protected ones).
pub(super) fn has_ciphertext(mut d: &[u8]) -> bool {
    while let Some(&first) = d.first() {
        if UnifiedHeader::is_ciphertext(first) {
            return true;
        }
        // DTLSPlaintext: 13-byte header, its length at 11..13.
        let Some(len) = d.get(11..13) else {
            return false;
        };
        let next = 13 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        d = d.get(next..).unwrap_or(&[]);
    }
    false
}

/// What one session learnt: keys per epoch and direction, the next
/// expected record number of each.
#[derive(Default)]
pub(super) struct State13 {
    /// epoch → (client's, server's) protection; epochs 2 and up.
    keys: HashMap<u64, [Option<RecordProtection>; 2]>,
    /// The traffic secrets of the highest application epoch derived, per
    /// direction (for KeyUpdate's next ones).
    app: Option<(u64, [Secret; 2])>,
    /// (epoch, direction) → the next sequence number expected.
    next: HashMap<(u64, usize), u64>,
    /// The highest epoch seen per direction (to place the epoch bits).
    epoch: [u64; 2],
}

/// At most this many epochs of KeyUpdate are followed.
const MAX_EPOCH: u64 = 64;

impl State13 {
    fn protection(
        &mut self,
        random: Option<[u8; 32]>,
        secrets: &Secrets13,
        epoch: u64,
        dir: usize,
    ) -> Option<&RecordProtection> {
        if !self.keys.contains_key(&epoch) {
            let s = secrets.get(&random?)?;
            let make = |x: &Secret| {
                RecordProtection::new(&TrafficKeys::derive(LabelPrefix::Dtls13, x)).ok()
            };
            let secret = |i: usize| s[i].map(Secret::from_bytes);
            let pair = match epoch {
                2 => [
                    secret(0).and_then(|x| make(&x)),
                    secret(1).and_then(|x| make(&x)),
                ],
                3.. if epoch <= MAX_EPOCH => {
                    let (mut at, mut cur) = match self.app.take() {
                        Some((e, c)) if e <= epoch => (e, c),
                        _ => (3, [secret(2)?, secret(3)?]),
                    };
                    while at < epoch {
                        cur = [
                            ks::next_traffic_secret(LabelPrefix::Dtls13, &cur[0]),
                            ks::next_traffic_secret(LabelPrefix::Dtls13, &cur[1]),
                        ];
                        at += 1;
                    }
                    let pair = [make(&cur[0]), make(&cur[1])];
                    self.app = Some((at, cur));
                    pair
                }
                _ => return None,
            };
            self.keys.insert(epoch, pair);
        }
        self.keys.get(&epoch)?[dir].as_ref()
    }
}

impl Decoder<'_> {
    /// A datagram of a DTLS 1.3 session that holds protected records.
    pub(super) fn dtls13(&mut self, b: &[u8], s: &mut Session) {
        let secrets = self.secrets13;
        let from_client = match (s.client_local, self.direction) {
            (Some(local), Some(d)) => local == (d == Direction::Outbound),
            _ => s.client == Some(self.source),
        };
        let dir = usize::from(!from_client);
        for r in r13::records(b) {
            let rec = match r {
                Ok(r13::Record::Plaintext(p)) => {
                    let h = p.header;
                    let head = format!("epoch 0 seq {}", h.sequence);
                    let text = match h.content_type {
                        ContentType::Handshake => {
                            format!("{head} Handshake: {}", self.hello(p.fragment, s))
                        }
                        ContentType::Other(CONTENT_TYPE_ACK) => format!("{head} ACK"),
                        other => format!("{head} {other:?}"),
                    };
                    self.push(Layer::Dtls, text);
                    continue;
                }
                Ok(r13::Record::Ciphertext(c)) => c,
                Err(e) => return self.push(Layer::Dtls, format!("malformed record: {e}")),
            };
            let h = rec.header;
            // The epoch: the one seen last in this direction whose two low
            // bits match (2 and 3 in the handshake, then KeyUpdates).
            let last = s.v13.epoch[dir].max(2);
            let epoch = (last.saturating_sub(1)..=last + 1)
                .find(|e| (e & 3) as u8 == h.epoch_bits)
                .unwrap_or(last);
            let form = format!(
                "unified header {}-bit seq{}",
                h.form.seq_len.bytes() * 8,
                if h.form.with_length { ", length" } else { "" }
            );
            let random = s.client_random;
            let next = s.v13.next.get(&(epoch, dir)).copied().unwrap_or(0);
            let opened = s.v13.protection(random, secrets, epoch, dir).and_then(|p| {
                let low = p.unmask(&h, rec.encrypted).ok()?;
                let bits = (h.form.seq_len.bytes() * 8) as u32;
                let seq = r13::reconstruct(next, u64::from(low), bits);
                let mut scratch = Vec::new();
                let (t, content) = p.open(&rec, seq, &mut scratch).ok()?;
                Some((seq, t, content.to_vec()))
            });
            let Some((seq, t, content)) = opened else {
                self.push(
                    Layer::Dtls,
                    format!(
                        "epoch bits {} ({form}) encrypted, {} bytes",
                        h.epoch_bits,
                        rec.encrypted.len()
                    ),
                );
                continue;
            };
            s.v13.epoch[dir] = s.v13.epoch[dir].max(epoch);
            let next = s.v13.next.entry((epoch, dir)).or_default();
            *next = (*next).max(seq + 1);
            let head = format!("epoch {epoch} seq {seq} ({form})");
            match t {
                ContentType::Handshake => {
                    let mut names = Vec::new();
                    let mut f = content.as_slice();
                    while f.len() >= 12 {
                        names.push(handshake_name(f[0]));
                        let len =
                            usize::from(f[10]) << 8 | usize::from(f[11]) | usize::from(f[9]) << 16;
                        f = f.get(12 + len..).unwrap_or(&[]);
                    }
                    self.push(
                        Layer::Dtls,
                        format!("{head} Handshake: {} (decrypted)", names.join(", ")),
                    );
                }
                ContentType::ApplicationData => {
                    self.push(
                        Layer::Dtls,
                        format!(
                            "{head} ApplicationData (decrypted, {} bytes)",
                            content.len()
                        ),
                    );
                    self.sctp(&content);
                }
                ContentType::Alert => {
                    let what = match content.get(1) {
                        Some(0) => "close_notify".to_string(),
                        d => format!("description {d:?}"),
                    };
                    self.push(Layer::Dtls, format!("{head} Alert {what} (decrypted)"));
                }
                ContentType::Other(CONTENT_TYPE_ACK) => {
                    // RFC 9147 §7: a length-prefixed list of record numbers
                    // (epoch, sequence: 8 bytes each).
                    let numbers: Vec<String> = content
                        .get(2..)
                        .unwrap_or(&[])
                        .chunks_exact(16)
                        .map(|n| {
                            let e = u64::from_be_bytes(n[..8].try_into().unwrap_or([0; 8]));
                            let q = u64::from_be_bytes(n[8..].try_into().unwrap_or([0; 8]));
                            format!("{e}/{q}")
                        })
                        .collect();
                    self.push(
                        Layer::Dtls,
                        format!("{head} ACK [{}] (decrypted)", numbers.join(" ")),
                    );
                }
                other => self.push(Layer::Dtls, format!("{head} {other:?} (decrypted)")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_log_lines_are_read() {
        let r = "11".repeat(32);
        let log = format!(
            "CLIENT_RANDOM {r} {}\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {}\n\
             SERVER_TRAFFIC_SECRET_0 {r} {}\nEXPORTER_SECRET {r} {}\n# x\n",
            "00".repeat(48),
            "aa".repeat(32),
            "bb".repeat(32),
            "cc".repeat(32),
        );
        let s = secrets13(&log);
        let got = s.get(&[0x11; 32]).expect("the random");
        assert_eq!(got[0], Some([0xaa; 32]));
        assert_eq!(got[3], Some([0xbb; 32]));
        assert_eq!(got[1], None);
        assert!(secrets13("CLIENT_TRAFFIC_SECRET_0 zz 00").is_empty());
    }

    #[test]
    fn ciphertext_found_after_plaintext_records() {
        // A plaintext handshake record of 2 bytes, then a unified header.
        let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 2];
        assert!(!has_ciphertext(&d));
        d.extend_from_slice(&[0x2c, 0, 1, 0, 0]);
        assert!(has_ciphertext(&d));
        assert!(!has_ciphertext(&[22, 0xfe]));
        assert!(!has_ciphertext(&[]));
    }
}
