//! Speed figures for `rtclab speed srtp` (DESIGN §5, issue 5 §4).
//!
//! Each figure is the mean time of one operation on a packet of the given
//! payload size, measured over about 0.2 s. Packets are prepared in batches
//! outside the timed region (a fresh receiver needs fresh indices), then a
//! whole batch is timed at once; the raw `ring` AES-128-GCM seal is timed the
//! same way on the same buffers, as the ceiling GCM protect can reach.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ring::aead;

use super::{Config, ProtectionProfile, SrtpContext};

/// Packets per timed batch.
const BATCH: usize = 64;
/// Time spent on each figure (timed part only).
const BUDGET: Duration = Duration::from_millis(200);
/// RTP header used by every packet: V=2, PT 96, SSRC 0x11223344.
const HEADER: [u8; 12] = [0x80, 96, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];

/// The figures `srtp.<profile>.<protect|unprotect>_<1200|100>_ns`,
/// `ring.aes_128_gcm.seal_<1200|100>_ns`, and for AEAD_AES_128_GCM the
/// throughput ratio of SRTP protect to the raw seal
/// (`srtp.aead_aes_128_gcm.protect_<size>_vs_ring`, 1.0 = as fast as ring).
/// Each entry is `(name, value, unit)`.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let mut out = Vec::new();
    for size in [1200usize, 100] {
        let ring_ns = ring_seal_ns(size);
        for (name, profile) in [
            ("aead_aes_128_gcm", ProtectionProfile::AeadAes128Gcm),
            ("aead_aes_256_gcm", ProtectionProfile::AeadAes256Gcm),
            (
                "aes_cm_hmac_sha1_80",
                ProtectionProfile::Aes128CmHmacSha1_80,
            ),
        ] {
            let (protect, unprotect) = srtp_ns(profile, size);
            out.push((format!("srtp.{name}.protect_{size}_ns"), protect, "ns"));
            out.push((format!("srtp.{name}.unprotect_{size}_ns"), unprotect, "ns"));
            if profile == ProtectionProfile::AeadAes128Gcm {
                out.push((
                    format!("srtp.{name}.protect_{size}_vs_ring"),
                    ring_ns / protect,
                    "x",
                ));
            }
        }
        out.push((format!("ring.aes_128_gcm.seal_{size}_ns"), ring_ns, "ns"));
    }
    out
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

/// Mean protect and unprotect times in ns for one profile and payload size.
fn srtp_ns(profile: ProtectionProfile, size: usize) -> (f64, f64) {
    let key = vec![0x42; profile.master_key_len()];
    let salt = vec![0x24; profile.master_salt_len()];
    // Creating contexts with valid keys cannot fail.
    let new = || SrtpContext::new(profile, &key, &salt, Config::default()).ok();
    let (Some(mut tx), Some(mut rx)) = (new(), new()) else {
        return (f64::NAN, f64::NAN);
    };
    let mut packets = batch(size);
    let plain_len = HEADER.len() + size;
    let mut seq: u16 = 0;
    let (mut protect_time, mut protect_n) = (Duration::ZERO, 0u64);
    let (mut unprotect_time, mut unprotect_n) = (Duration::ZERO, 0u64);
    while protect_time < BUDGET || unprotect_time < BUDGET {
        for p in packets.iter_mut() {
            p.truncate(plain_len);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(1);
        }
        let start = Instant::now();
        for p in packets.iter_mut() {
            let _ = black_box(tx.protect_rtp(black_box(p)));
        }
        protect_time += start.elapsed();
        protect_n += BATCH as u64;

        let start = Instant::now();
        for p in packets.iter_mut() {
            let _ = black_box(rx.unprotect_rtp(black_box(p)));
        }
        unprotect_time += start.elapsed();
        unprotect_n += BATCH as u64;
    }
    (
        protect_time.as_nanos() as f64 / protect_n as f64,
        unprotect_time.as_nanos() as f64 / unprotect_n as f64,
    )
}

/// Mean time in ns of a raw `ring` AES-128-GCM seal of the payload with the
/// header as AAD: the work GCM protect cannot avoid.
fn ring_seal_ns(size: usize) -> f64 {
    let Ok(unbound) = aead::UnboundKey::new(&aead::AES_128_GCM, &[0x42; 16]) else {
        return f64::NAN;
    };
    let key = aead::LessSafeKey::new(unbound);
    let mut packets = batch(size);
    let plain_len = HEADER.len() + size;
    let mut counter: u64 = 0;
    let (mut time, mut n) = (Duration::ZERO, 0u64);
    while time < BUDGET {
        for p in packets.iter_mut() {
            p.truncate(plain_len);
        }
        let start = Instant::now();
        for p in packets.iter_mut() {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            counter += 1;
            let (header, payload) = p.split_at_mut(HEADER.len());
            if let Ok(tag) = key.seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&*header),
                payload,
            ) {
                p.extend_from_slice(tag.as_ref());
            }
            black_box(&p);
        }
        time += start.elapsed();
        n += BATCH as u64;
    }
    time.as_nanos() as f64 / n as f64
}

#[cfg(test)]
mod tests {
    /// `cargo test --release --lib srtp::bench -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test; run in release"]
    fn print_speed() {
        for (name, value, unit) in super::speed() {
            println!("{name} {value:.2} {unit}");
        }
    }
}
