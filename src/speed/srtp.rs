//! Speed figures for `rtclab speed srtp` (DESIGN §5, issue 5 §4).
//!
//! Each figure is the time of one operation on a packet of the given payload
//! size. Packets are prepared in batches outside the timed region (a receiver
//! needs fresh indices), then a whole batch is timed at once; the raw `ring`
//! AES-128-GCM seal and open are timed the same way on the same kind of
//! buffers, as the ceiling GCM protect and unprotect can reach.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ring::aead;

use crate::srtp::{Config, ProtectionProfile, SrtpContext};

/// Packets per timed batch.
const BATCH: usize = 64;
/// Time spent on each figure.
const BUDGET: Duration = Duration::from_millis(200);
/// RTP header used by every packet: V=2, PT 96, SSRC 0x11223344.
const HEADER: [u8; 12] = [0x80, 96, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
/// The profiles measured, with their names in the figures.
const PROFILES: [(&str, ProtectionProfile); 3] = [
    ("aead_aes_128_gcm", ProtectionProfile::AeadAes128Gcm),
    ("aead_aes_256_gcm", ProtectionProfile::AeadAes256Gcm),
    (
        "aes_cm_hmac_sha1_80",
        ProtectionProfile::Aes128CmHmacSha1_80,
    ),
];

/// The figures `srtp.<profile>.<protect|unprotect>_<1200|100>_ns`,
/// `ring.aes_128_gcm.<seal|open>_<1200|100>_ns`, and for AEAD_AES_128_GCM the
/// throughput ratios of SRTP protect to the raw seal and of unprotect to the
/// raw open (`srtp.aead_aes_128_gcm.<protect|unprotect>_<size>_vs_ring`,
/// 1.0 = as fast as ring). Each entry is `(name, value, unit)`.
///
/// Every figure is the median over batches of 64 packets of the mean time per
/// packet, the batches of all figures interleaved (about 0.2 s each), so that
/// a busy machine disturbs SRTP and its `ring` ceiling alike.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let mut out = Vec::new();
    for size in [1200usize, 100] {
        let m = measure(size);
        for (i, (name, profile)) in PROFILES.iter().enumerate() {
            let (protect, unprotect) = m.srtp[i];
            out.push((format!("srtp.{name}.protect_{size}_ns"), protect, "ns"));
            out.push((format!("srtp.{name}.unprotect_{size}_ns"), unprotect, "ns"));
            if *profile == ProtectionProfile::AeadAes128Gcm {
                out.push((
                    format!("srtp.{name}.protect_{size}_vs_ring"),
                    m.seal / protect,
                    "x",
                ));
                out.push((
                    format!("srtp.{name}.unprotect_{size}_vs_ring"),
                    m.open / unprotect,
                    "x",
                ));
            }
        }
        out.push((format!("ring.aes_128_gcm.seal_{size}_ns"), m.seal, "ns"));
        out.push((format!("ring.aes_128_gcm.open_{size}_ns"), m.open, "ns"));
    }
    out
}

/// Medians for one payload size.
struct Measured {
    /// (protect, unprotect) per entry of [`PROFILES`].
    srtp: Vec<(f64, f64)>,
    seal: f64,
    open: f64,
}

fn batch(size: usize) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut p = Vec::with_capacity(HEADER.len() + size + 32);
            p.extend_from_slice(&HEADER);
            p.extend((0..size).map(|j| (i + j) as u8));
            p
        })
        .collect()
}

fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Times `f` over one batch; returns ns per packet.
fn time_batch(f: impl FnOnce()) -> f64 {
    let start = cpu_time::ThreadTime::now();
    f();
    start.elapsed().as_nanos() as f64 / BATCH as f64
}

/// One sender and one receiver context per profile, and their packets.
struct Lane {
    tx: SrtpContext,
    rx: SrtpContext,
    packets: Vec<Vec<u8>>,
    protect: Vec<f64>,
    unprotect: Vec<f64>,
}

fn measure(size: usize) -> Measured {
    let plain_len = HEADER.len() + size;
    let mut lanes: Vec<Lane> = PROFILES
        .iter()
        .filter_map(|&(_, profile)| {
            let key = vec![0x42; profile.master_key_len()];
            let salt = vec![0x24; profile.master_salt_len()];
            // Valid key lengths: creating the contexts cannot fail.
            Some(Lane {
                tx: SrtpContext::new(profile, &key, &salt, Config::default()).ok()?,
                rx: SrtpContext::new(profile, &key, &salt, Config::default()).ok()?,
                packets: batch(size),
                protect: Vec::new(),
                unprotect: Vec::new(),
            })
        })
        .collect();
    let Ok(unbound) = aead::UnboundKey::new(&aead::AES_128_GCM, &[0x42; 16]) else {
        return Measured {
            srtp: Vec::new(),
            seal: f64::NAN,
            open: f64::NAN,
        };
    };
    let key = aead::LessSafeKey::new(unbound);
    let nonce = |n: u64| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        aead::Nonce::assume_unique_for_key(nonce)
    };
    let mut ring_packets = batch(size);
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    let mut counter: u64 = 0;
    let mut seq: u16 = 0;
    let figures = 2 + 2 * lanes.len() as u32;
    let start = Instant::now();
    while start.elapsed() < BUDGET * figures {
        // Raw ring: seal the payload with the header as AAD, then open it.
        for p in ring_packets.iter_mut() {
            p.truncate(plain_len);
        }
        let first = counter;
        seal.push(time_batch(|| {
            for p in ring_packets.iter_mut() {
                let (header, payload) = p.split_at_mut(HEADER.len());
                if let Ok(tag) = key.seal_in_place_separate_tag(
                    nonce(counter),
                    aead::Aad::from(&*header),
                    payload,
                ) {
                    p.extend_from_slice(tag.as_ref());
                }
                counter += 1;
                black_box(&p);
            }
        }));
        open.push(time_batch(|| {
            for (i, p) in ring_packets.iter_mut().enumerate() {
                let (header, rest) = p.split_at_mut(HEADER.len());
                let _ = black_box(key.open_in_place(
                    nonce(first + i as u64),
                    aead::Aad::from(&*header),
                    rest,
                ));
            }
        }));
        // SRTP: fresh sequence numbers each round (the receiver's replay
        // window would refuse old ones).
        for lane in lanes.iter_mut() {
            let mut s = seq;
            for p in lane.packets.iter_mut() {
                p.truncate(plain_len);
                p[2..4].copy_from_slice(&s.to_be_bytes());
                s = s.wrapping_add(1);
            }
            let Lane {
                tx, rx, packets, ..
            } = lane;
            lane.protect.push(time_batch(|| {
                for p in packets.iter_mut() {
                    let _ = black_box(tx.protect_rtp(black_box(p)));
                }
            }));
            lane.unprotect.push(time_batch(|| {
                for p in packets.iter_mut() {
                    let _ = black_box(rx.unprotect_rtp(black_box(p)));
                }
            }));
        }
        seq = seq.wrapping_add(BATCH as u16);
    }
    Measured {
        srtp: lanes
            .into_iter()
            .map(|l| (median(l.protect), median(l.unprotect)))
            .collect(),
        seal: median(seal),
        open: median(open),
    }
}

#[cfg(test)]
mod tests {
    /// `cargo test --release --lib speed::srtp -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test; run in release"]
    fn print_speed() {
        for (name, value, unit) in super::speed() {
            println!("{name} {value:.2} {unit}");
        }
    }
}
