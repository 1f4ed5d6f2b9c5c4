//! Cross-check of `rtclab::srtp` against libsrtp, an independent
//! implementation (Debian's `libsrtp2-dev`). Run with
//! `cargo test --features libsrtp --test srtp_libsrtp`.
//!
//! For every profile, rtclab and libsrtp are given the same master key and
//! salt; each protects the same packets, the outputs must be byte-identical,
//! and each must unprotect what the other protected. The RTP run crosses the
//! 65535 → 0 sequence wrap (ROC 0 → 1) and SRTCP is checked the same way.

#![cfg(feature = "libsrtp")]

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use rtclab::srtp::{Config, ProtectionProfile, SrtpContext};

// The parts of <srtp2/srtp.h> used here (libsrtp 2.x).

#[repr(C)]
#[derive(Clone, Copy)]
struct SrtpSsrc {
    kind: c_int, // srtp_ssrc_type_t
    value: c_uint,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SrtpCryptoPolicy {
    cipher_type: u32,
    cipher_key_len: c_int,
    auth_type: u32,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

#[repr(C)]
struct SrtpPolicy {
    ssrc: SrtpSsrc,
    rtp: SrtpCryptoPolicy,
    rtcp: SrtpCryptoPolicy,
    key: *mut u8,
    keys: *mut *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut SrtpPolicy,
}

type SrtpT = *mut c_void;

const SSRC_ANY_INBOUND: c_int = 2;
const SSRC_ANY_OUTBOUND: c_int = 3;

unsafe extern "C" {
    fn srtp_init() -> c_int;
    fn srtp_create(session: *mut SrtpT, policy: *const SrtpPolicy) -> c_int;
    fn srtp_dealloc(session: SrtpT) -> c_int;
    fn srtp_protect(ctx: SrtpT, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect(ctx: SrtpT, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_protect_rtcp(ctx: SrtpT, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect_rtcp(ctx: SrtpT, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_crypto_policy_set_from_profile_for_rtp(
        p: *mut SrtpCryptoPolicy,
        profile: c_int,
    ) -> c_int;
    fn srtp_crypto_policy_set_from_profile_for_rtcp(
        p: *mut SrtpCryptoPolicy,
        profile: c_int,
    ) -> c_int;
}

/// `srtp_init` once per process (it fails when called again).
fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    static STATUS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
    INIT.call_once(|| {
        // SAFETY: called once, before any other libsrtp function.
        let status = unsafe { srtp_init() };
        STATUS.store(status, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(
        STATUS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "srtp_init"
    );
}

/// A libsrtp session for one direction, freed on drop.
struct Libsrtp {
    session: SrtpT,
    /// libsrtp keeps a pointer to the key only during `srtp_create`, but keep
    /// it alive with the session anyway.
    _key: Vec<u8>,
}

impl Libsrtp {
    fn new(profile: ProtectionProfile, key: &[u8], salt: &[u8], outbound: bool) -> Libsrtp {
        let mut material = key.to_vec();
        material.extend_from_slice(salt);
        let zero = SrtpCryptoPolicy {
            cipher_type: 0,
            cipher_key_len: 0,
            auth_type: 0,
            auth_key_len: 0,
            auth_tag_len: 0,
            sec_serv: 0,
        };
        let mut policy = SrtpPolicy {
            ssrc: SrtpSsrc {
                kind: if outbound {
                    SSRC_ANY_OUTBOUND
                } else {
                    SSRC_ANY_INBOUND
                },
                value: 0,
            },
            rtp: zero,
            rtcp: zero,
            key: material.as_mut_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: 128,
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        init();
        let id = c_int::from(profile.id() as u8);
        let mut session: SrtpT = std::ptr::null_mut();
        // SAFETY: the policy and key outlive the calls; libsrtp copies what it
        // keeps. The policy struct mirrors libsrtp 2.x's srtp_policy_t.
        unsafe {
            assert_eq!(
                srtp_crypto_policy_set_from_profile_for_rtp(&mut policy.rtp, id),
                0
            );
            assert_eq!(
                srtp_crypto_policy_set_from_profile_for_rtcp(&mut policy.rtcp, id),
                0
            );
            assert_eq!(
                srtp_create(&mut session, &policy),
                0,
                "srtp_create {profile}"
            );
        }
        Libsrtp {
            session,
            _key: material,
        }
    }

    /// Runs one libsrtp packet function on a copy of `packet` with the spare
    /// room libsrtp requires after it.
    fn call(
        &mut self,
        f: unsafe extern "C" fn(SrtpT, *mut c_void, *mut c_int) -> c_int,
        packet: &[u8],
    ) -> Result<Vec<u8>, c_int> {
        let mut buf = vec![0u8; packet.len() + 512];
        buf[..packet.len()].copy_from_slice(packet);
        let mut len = packet.len() as c_int;
        // SAFETY: `buf` has the SRTP_MAX_TRAILER_LEN + 4 spare bytes libsrtp
        // may write after the packet.
        let status = unsafe { f(self.session, buf.as_mut_ptr().cast(), &mut len) };
        if status != 0 {
            return Err(status);
        }
        buf.truncate(len as usize);
        Ok(buf)
    }
}

impl Drop for Libsrtp {
    fn drop(&mut self) {
        // SAFETY: the session came from srtp_create and is freed once.
        unsafe {
            srtp_dealloc(self.session);
        }
    }
}

fn rtp(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn rtcp(ssrc: u32, n: u8) -> Vec<u8> {
    // A receiver report with one report block, then an SDES-sized tail.
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..24).map(|i| i ^ n));
    p
}

fn keys(profile: ProtectionProfile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.master_key_len())
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    let salt = (0..profile.master_salt_len())
        .map(|i| (i * 13 + 5) as u8)
        .collect();
    (key, salt)
}

#[test]
fn rtp_agrees_with_libsrtp_across_the_rollover() {
    for profile in ProtectionProfile::ALL {
        let (key, salt) = keys(profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut ours_rx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut theirs_tx = Libsrtp::new(profile, &key, &salt, true);
        let mut theirs_rx = Libsrtp::new(profile, &key, &salt, false);
        let ssrc = 0x0bad_cafe;
        for (i, seq) in (65525..=65535).chain(0..10).enumerate() {
            let plain = rtp(ssrc, seq, 20 + i * 37);
            let mut ours = plain.clone();
            ours_tx.protect_rtp(&mut ours).unwrap();
            let theirs = theirs_tx
                .call(srtp_protect, &plain)
                .unwrap_or_else(|e| panic!("{profile}: libsrtp protect seq {seq}: {e}"));
            assert_eq!(ours, theirs, "{profile}: protected seq {seq} differs");

            let back = theirs_rx
                .call(srtp_unprotect, &ours)
                .unwrap_or_else(|e| panic!("{profile}: libsrtp unprotect seq {seq}: {e}"));
            assert_eq!(back, plain, "{profile}: libsrtp unprotect seq {seq}");
            let mut back = theirs;
            ours_rx
                .unprotect_rtp(&mut back)
                .unwrap_or_else(|e| panic!("{profile}: unprotect seq {seq}: {e}"));
            assert_eq!(back, plain, "{profile}: unprotect seq {seq}");
        }
        assert_eq!(ours_tx.sent_roc(ssrc), Some(1), "{profile}");
        assert_eq!(ours_rx.received_roc(ssrc), Some(1), "{profile}");
    }
}

#[test]
fn rtcp_agrees_with_libsrtp() {
    for profile in ProtectionProfile::ALL {
        let (key, salt) = keys(profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut ours_rx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut theirs_tx = Libsrtp::new(profile, &key, &salt, true);
        let mut theirs_rx = Libsrtp::new(profile, &key, &salt, false);
        let ssrc = 0x1357_9bdf;
        // rtclab numbers SRTCP packets from 0 (RFC 3711 §3.4), libsrtp from 1:
        // send one packet first so that the indices line up.
        let mut first = rtcp(ssrc, 0);
        ours_tx.protect_rtcp(&mut first).unwrap();
        let back = theirs_rx.call(srtp_unprotect_rtcp, &first).unwrap();
        assert_eq!(
            back,
            rtcp(ssrc, 0),
            "{profile}: libsrtp unprotect SRTCP index 0"
        );
        for n in 1..8u8 {
            let plain = rtcp(ssrc, n);
            let mut ours = plain.clone();
            ours_tx.protect_rtcp(&mut ours).unwrap();
            let theirs = theirs_tx.call(srtp_protect_rtcp, &plain).unwrap();
            assert_eq!(ours, theirs, "{profile}: SRTCP packet {n} differs");
            let back = theirs_rx
                .call(srtp_unprotect_rtcp, &ours)
                .unwrap_or_else(|e| panic!("{profile}: libsrtp unprotect SRTCP {n}: {e}"));
            assert_eq!(back, plain);
            let mut back = theirs;
            ours_rx.unprotect_rtcp(&mut back).unwrap();
            assert_eq!(back, plain);
        }
    }
}

#[test]
fn libsrtp_refuses_what_we_refuse() {
    let profile = ProtectionProfile::Aes128CmHmacSha1_80;
    let (key, salt) = keys(profile);
    let mut ours_tx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
    let mut theirs_rx = Libsrtp::new(profile, &key, &salt, false);
    let mut p = rtp(5, 1, 40);
    ours_tx.protect_rtp(&mut p).unwrap();
    theirs_rx.call(srtp_unprotect, &p).unwrap();
    // A replay and a flipped bit fail in libsrtp too.
    assert!(theirs_rx.call(srtp_unprotect, &p).is_err());
    let mut q = rtp(5, 2, 40);
    ours_tx.protect_rtp(&mut q).unwrap();
    q[20] ^= 4;
    assert!(theirs_rx.call(srtp_unprotect, &q).is_err());
}
