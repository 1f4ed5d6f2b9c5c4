//! Known-answer tests (RFC 3711 Appendix B, RFC 6188 §7, RFC 7714 §16–§17,
//! libsrtp's AES_CM_128_HMAC_SHA1_80 packet) and property tests.

use proptest::prelude::*;

use super::crypto::{Aes, Transform, cm_iv, ctr_xor, gcm_rtcp_nonce, gcm_rtp_nonce, kdf, label};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(s.len() % 2 == 0, "odd hex length");
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// RFC 3711 Appendix B
// ---------------------------------------------------------------------------

/// B.2: the AES-CM keystream for session key 2B7E…, session salt F0F1…FCFD,
/// SSRC 0, index 0 (so the IV is the salt shifted by 16 bits), including the
/// blocks on either side of the 16-bit counter's carry.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = Aes::new(&hex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let iv = cm_iv(&salt, 0, 0);
    assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
    let mut keystream = vec![0u8; 0xff02 * 16];
    ctr_xor(&aes, iv, &mut keystream);
    let block = |i: usize| keystream[i * 16..i * 16 + 16].to_vec();
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

/// B.3: key derivation with the AES-CM PRF.
#[test]
fn rfc3711_b3_key_derivation() {
    let master = Aes::new(&hex("E1F97A0D3E018BE0D64FA32C06DE4139")).unwrap();
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut key = [0u8; 16];
    kdf(&master, &salt, label::RTP_ENCRYPTION, &mut key);
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0u8; 14];
    kdf(&master, &salt, label::RTP_SALT, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    // The appendix prints 94 bytes of the auth-key keystream; SRTP uses 20.
    let mut auth = [0u8; 94];
    kdf(&master, &salt, label::RTP_AUTH, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
        )
    );
}

/// RFC 6188 §7.2: the AES-256 PRF (used here for AEAD_AES_256_GCM keys).
#[test]
fn rfc6188_aes256_key_derivation() {
    let master = Aes::new(&hex(
        "F0F04914B513F2763A1B1FA130F10E2998F6F6E43E4309D1E622A0E332B9F1B6",
    ))
    .unwrap();
    let salt = hex("3B04803DE51EE7C96423AB5B78D2");
    let mut key = [0u8; 32];
    kdf(&master, &salt, label::RTP_ENCRYPTION, &mut key);
    assert_eq!(
        key.to_vec(),
        hex("5BA1064E30EC51613CAD926C5A28EF731EC7FB397F70A960653CAF06554CD8C4")
    );
    let mut session_salt = [0u8; 14];
    kdf(&master, &salt, label::RTP_SALT, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("FA31791685CA444A9E07C6C64E93"));
}

/// RFC 7714 §11: the 96-bit GCM master salt, zero-padded on the right, goes
/// through the same PRF. Values agree with libsrtp (see the `libsrtp`
/// cross-check test, which derives from master keys end to end).
#[test]
fn rfc7714_gcm_key_derivation() {
    let salt = hex("a0a1a2a3a4a5a6a7a8a9aaab");
    let m128 = Aes::new(&hex("000102030405060708090a0b0c0d0e0f")).unwrap();
    let mut out = [0u8; 32];
    kdf(&m128, &salt, label::RTP_ENCRYPTION, &mut out[..16]);
    assert_eq!(out[..16].to_vec(), hex("077c6143cb221bc355ff23d5f984a16e"));
    kdf(&m128, &salt, label::RTP_SALT, &mut out[..12]);
    assert_eq!(out[..12].to_vec(), hex("9af3e95364ebac9c99c5a7c4"));
    kdf(&m128, &salt, label::RTCP_ENCRYPTION, &mut out[..16]);
    assert_eq!(out[..16].to_vec(), hex("615dcd9042600666f6fd4d9e4fe4519f"));
    kdf(&m128, &salt, label::RTCP_SALT, &mut out[..12]);
    assert_eq!(out[..12].to_vec(), hex("fcca937b9112a500dac72269"));
    let m256 = Aes::new(&hex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ))
    .unwrap();
    kdf(&m256, &salt, label::RTP_ENCRYPTION, &mut out);
    assert_eq!(
        out.to_vec(),
        hex("b7a435ce454463b760dc82c838468a115c699625af4b93a0f8220a2a6119c5d0")
    );
    kdf(&m256, &salt, label::RTP_SALT, &mut out[..12]);
    assert_eq!(out[..12].to_vec(), hex("944bd21c268a962cd09c674a"));
}

// ---------------------------------------------------------------------------
// A whole AES_CM_128_HMAC_SHA1_80 packet (libsrtp's srtp_driver validation
// packet): master key in, so KDF + AES-CM + HMAC-SHA1 are checked together.
// ---------------------------------------------------------------------------

const CM_MASTER_KEY: &str = "e1f97a0d3e018be0d64fa32c06de4139";
const CM_MASTER_SALT: &str = "0ec675ad498afeebb6960b3aabe6";
const CM_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
const CM_PROTECTED: &str = "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402
                            b78d6acc99ea179b8dbb";

fn cm_context(profile: ProtectionProfile) -> SrtpContext {
    SrtpContext::new(
        profile,
        &hex(CM_MASTER_KEY),
        &hex(CM_MASTER_SALT),
        Config::default(),
    )
    .unwrap()
}

#[test]
fn libsrtp_aes_cm_hmac_sha1_80_packet() {
    let mut buf = hex(CM_PLAIN);
    cm_context(ProtectionProfile::Aes128CmHmacSha1_80)
        .protect_rtp(&mut buf)
        .unwrap();
    assert_eq!(buf, hex(CM_PROTECTED));
    let mut rx = cm_context(ProtectionProfile::Aes128CmHmacSha1_80);
    rx.unprotect_rtp(&mut buf).unwrap();
    assert_eq!(buf, hex(CM_PLAIN));
    // The _32 profile is the same packet with the tag cut to 4 bytes.
    let mut buf = hex(CM_PLAIN);
    cm_context(ProtectionProfile::Aes128CmHmacSha1_32)
        .protect_rtp(&mut buf)
        .unwrap();
    assert_eq!(buf, hex(CM_PROTECTED)[..12 + 16 + 4].to_vec());
}

// ---------------------------------------------------------------------------
// RFC 7714 §16 (SRTP) and §17 (SRTCP): session keys given directly.
// ---------------------------------------------------------------------------

const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// "Quid pro quo".
const GCM_SALT: &str = "517569642070726f2071756f";

const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
const RFC7714_SRTP_128: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                                be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                                6a9152cf 765ee439 0cce";
const RFC7714_SRTP_256: &str = "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
                                b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff
                                d6b0f9bb 7878d7a7 6c13";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC7714_SRTCP_128: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
                                 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458
                                 96cf4d2f c5abf872 45d9eade 800005d4";
const RFC7714_SRTCP_256: &str = "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d
                                 bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c
                                 4446839f 57ff6f6c b26ac3be 800005d4";
const RFC7714_SRTCP_128_AUTH_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                                 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
                                 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4";
const RFC7714_SRTCP_256_AUTH_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                                 0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef
                                 91db4afb feee5a97 8fab4393 ed2615fe 000005d4";
const RFC7714_SRTCP_INDEX: u32 = 0x5d4;

/// A context keyed with the RFC 7714 *session* key and salt for SRTP and SRTCP.
fn gcm_session_context(profile: ProtectionProfile) -> SrtpContext {
    let key = if profile == ProtectionProfile::AeadAes256Gcm {
        hex(GCM_KEY_256)
    } else {
        hex(GCM_KEY_128)
    };
    let salt: [u8; 12] = hex(GCM_SALT).try_into().unwrap();
    SrtpContext::from_transforms(
        profile,
        Config::default(),
        Transform::gcm(profile, &key, salt),
        Transform::gcm(profile, &key, salt),
    )
}

/// RFC 7714 §8.1 and §9.1 IVs, as printed in §16 and §17.
#[test]
fn rfc7714_ivs() {
    let salt: [u8; 12] = hex(GCM_SALT).try_into().unwrap();
    assert_eq!(
        gcm_rtp_nonce(&salt, 0x5501_a0b2, 0xf17b).to_vec(),
        hex("51753c6580c2726f20718414")
    );
    assert_eq!(
        gcm_rtcp_nonce(&salt, 0x4d61_7273, 0x5d4).to_vec(),
        hex("517524055203726f207170bb")
    );
}

fn check_rtp_vector(profile: ProtectionProfile, protected: &str) {
    let mut buf = hex(RFC7714_RTP);
    gcm_session_context(profile).protect_rtp(&mut buf).unwrap();
    assert_eq!(buf, hex(protected), "{profile} encrypt");
    let mut rx = gcm_session_context(profile);
    rx.unprotect_rtp(&mut buf).unwrap();
    assert_eq!(buf, hex(RFC7714_RTP), "{profile} decrypt");
    // The same packet again is a replay.
    let mut again = hex(protected);
    assert_eq!(
        rx.unprotect_rtp(&mut again),
        Err(Error::Replayed {
            ssrc: 0x5501_a0b2,
            index: 0xf17b
        })
    );
}

#[test]
fn rfc7714_16_srtp_aes_128_gcm() {
    check_rtp_vector(ProtectionProfile::AeadAes128Gcm, RFC7714_SRTP_128);
}

#[test]
fn rfc7714_16_srtp_aes_256_gcm() {
    check_rtp_vector(ProtectionProfile::AeadAes256Gcm, RFC7714_SRTP_256);
}

fn check_rtcp_vector(profile: ProtectionProfile, protected: &str, encrypt: bool) {
    let mut tx = gcm_session_context(profile);
    tx.set_next_rtcp_index(0x4d61_7273, RFC7714_SRTCP_INDEX)
        .unwrap();
    let mut buf = hex(RFC7714_RTCP);
    tx.protect_rtcp_with(&mut buf, encrypt).unwrap();
    assert_eq!(buf, hex(protected), "{profile} protect, E={encrypt}");
    let mut rx = gcm_session_context(profile);
    rx.unprotect_rtcp(&mut buf).unwrap();
    assert_eq!(buf, hex(RFC7714_RTCP), "{profile} unprotect, E={encrypt}");
    let mut again = hex(protected);
    assert_eq!(
        rx.unprotect_rtcp(&mut again),
        Err(Error::Replayed {
            ssrc: 0x4d61_7273,
            index: 0x5d4
        })
    );
}

#[test]
fn rfc7714_17_srtcp_aes_128_gcm() {
    check_rtcp_vector(ProtectionProfile::AeadAes128Gcm, RFC7714_SRTCP_128, true);
}

#[test]
fn rfc7714_17_srtcp_aes_256_gcm() {
    check_rtcp_vector(ProtectionProfile::AeadAes256Gcm, RFC7714_SRTCP_256, true);
}

#[test]
fn rfc7714_17_srtcp_aes_128_gcm_authentication_only() {
    check_rtcp_vector(
        ProtectionProfile::AeadAes128Gcm,
        RFC7714_SRTCP_128_AUTH_ONLY,
        false,
    );
}

#[test]
fn rfc7714_17_srtcp_aes_256_gcm_authentication_only() {
    check_rtcp_vector(
        ProtectionProfile::AeadAes256Gcm,
        RFC7714_SRTCP_256_AUTH_ONLY,
        false,
    );
}

#[test]
fn gcm_auth_only_failure_restores_the_packet() {
    let mut rx = gcm_session_context(ProtectionProfile::AeadAes128Gcm);
    let mut buf = hex(RFC7714_SRTCP_128_AUTH_ONLY);
    buf[10] ^= 1;
    let before = buf.clone();
    assert!(matches!(
        rx.unprotect_rtcp(&mut buf),
        Err(Error::AuthenticationFailed { .. })
    ));
    assert_eq!(buf, before);
    assert_eq!(rx.stream_count(), 0);
}

// ---------------------------------------------------------------------------
// API and behaviour
// ---------------------------------------------------------------------------

#[test]
fn profiles_and_keying_material() {
    for p in ProtectionProfile::ALL {
        assert_eq!(ProtectionProfile::from_id(p.id()), Some(p));
    }
    assert_eq!(ProtectionProfile::from_id(0x0003), None);
    assert_eq!(
        ProtectionProfile::Aes128CmHmacSha1_80.keying_material_len(),
        60
    );
    assert_eq!(ProtectionProfile::AeadAes128Gcm.keying_material_len(), 56);
    assert_eq!(ProtectionProfile::AeadAes256Gcm.keying_material_len(), 88);
    let p = ProtectionProfile::AeadAes128Gcm;
    let material: Vec<u8> = (0..56).collect();
    let (client, server) = p.split_keying_material(&material).unwrap();
    assert_eq!(client.key(), &material[..16]);
    assert_eq!(server.key(), &material[16..32]);
    assert_eq!(client.salt(), &material[32..44]);
    assert_eq!(server.salt(), &material[44..56]);
    assert_eq!(
        p.split_keying_material(&material[..55]),
        Err(Error::BadKeyingMaterialLength {
            profile: p,
            expected: 56,
            got: 55
        })
    );
    assert!(matches!(
        SrtpContext::new(p, &[0; 15], &[0; 12], Config::default()),
        Err(Error::BadKeyLength { .. })
    ));
    assert!(matches!(
        SrtpContext::new(p, &[0; 16], &[0; 14], Config::default()),
        Err(Error::BadSaltLength { .. })
    ));
    assert!(matches!(
        SrtpContext::new(
            p,
            &[0; 16],
            &[0; 12],
            Config::default().with_replay_window(63)
        ),
        Err(Error::BadConfig(_))
    ));
    assert!(
        !format!("{client:?}").contains("00"),
        "keys are not printed"
    );
}

fn rtp_packet(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len() + 16);
    p.extend_from_slice(&[0x80, 96]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rtcp_packet(ssrc: u32, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 0];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn pair(profile: ProtectionProfile, config: Config) -> (SrtpContext, SrtpContext) {
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: Vec<u8> = (100..100 + profile.master_salt_len() as u8).collect();
    (
        SrtpContext::new(profile, &key, &salt, config).unwrap(),
        SrtpContext::new(profile, &key, &salt, config).unwrap(),
    )
}

#[test]
fn rollover_counter_advances_across_the_wrap() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, Config::default());
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        for (i, &seq) in seqs.iter().enumerate() {
            let plain = rtp_packet(7, seq, &[i as u8; 30]);
            let mut buf = plain.clone();
            tx.protect_rtp(&mut buf).unwrap();
            rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(buf, plain);
        }
        assert_eq!(tx.sent_roc(7), Some(1));
        assert_eq!(rx.received_roc(7), Some(1));
        // A late packet from ROC 0 still decrypts.
        let plain = rtp_packet(7, 65529, b"late");
        let mut late = plain.clone();
        tx.protect_rtp(&mut late).unwrap();
        rx.unprotect_rtp(&mut late).unwrap();
        assert_eq!(late, plain);
        assert_eq!(rx.received_roc(7), Some(1));
    }
}

/// The sending side keeps its first SSRCs inline and the rest in a map:
/// each keeps its own rollover counter either way, and the limit counts both.
#[test]
fn many_sending_ssrcs_keep_their_own_rollover_counters() {
    let (mut tx, mut rx) = pair(
        ProtectionProfile::AeadAes128Gcm,
        Config::default().with_max_streams(9),
    );
    let ssrcs: Vec<u32> = (1..=9).collect();
    // Odd SSRCs cross the wrap, even ones stay in ROC 0; interleaved.
    for step in 0..12u16 {
        for &ssrc in &ssrcs {
            let seq = if ssrc % 2 == 1 {
                65530u16.wrapping_add(step)
            } else {
                100 + step
            };
            let plain = rtp_packet(ssrc, seq, &[ssrc as u8; 20]);
            let mut buf = plain.clone();
            tx.protect_rtp(&mut buf).unwrap();
            rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(buf, plain, "ssrc {ssrc} step {step}");
        }
    }
    for &ssrc in &ssrcs {
        let roc = u32::from(ssrc % 2 == 1);
        assert_eq!(tx.sent_roc(ssrc), Some(roc), "ssrc {ssrc}");
        assert_eq!(rx.received_roc(ssrc), Some(roc), "ssrc {ssrc}");
    }
    let mut p = rtp_packet(10, 1, b"abc");
    assert_eq!(
        tx.protect_rtp(&mut p),
        Err(Error::TooManyStreams { limit: 9 })
    );
    assert_eq!(tx.sent_roc(10), None);
}

#[test]
fn replay_window_and_too_old() {
    let (mut tx, mut rx) = pair(ProtectionProfile::Aes128CmHmacSha1_80, Config::default());
    let mut packets = Vec::new();
    for seq in 0..300u16 {
        let mut p = rtp_packet(1, seq, b"x");
        tx.protect_rtp(&mut p).unwrap();
        packets.push(p);
    }
    let mut first = packets[0].clone();
    rx.unprotect_rtp(&mut packets[299].clone()).unwrap();
    assert_eq!(
        rx.unprotect_rtp(&mut first),
        Err(Error::TooOld {
            ssrc: 1,
            index: 0,
            highest: 299
        })
    );
    rx.unprotect_rtp(&mut packets[200].clone()).unwrap();
    assert_eq!(
        rx.unprotect_rtp(&mut packets[200].clone()),
        Err(Error::Replayed {
            ssrc: 1,
            index: 200
        })
    );
}

#[test]
fn stream_limit_is_enforced_without_state_change() {
    let (mut tx, mut rx) = pair(
        ProtectionProfile::AeadAes128Gcm,
        Config::default().with_max_streams(2),
    );
    for ssrc in 1..=2 {
        let mut p = rtp_packet(ssrc, 1, b"abc");
        tx.protect_rtp(&mut p).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
    }
    let mut p = rtp_packet(3, 1, b"abc");
    assert_eq!(
        tx.protect_rtp(&mut p),
        Err(Error::TooManyStreams { limit: 2 })
    );
    assert_eq!(
        p,
        rtp_packet(3, 1, b"abc"),
        "a refused protect leaves the packet"
    );
    let mut unlimited = pair(ProtectionProfile::AeadAes128Gcm, Config::default()).0;
    unlimited.protect_rtp(&mut p).unwrap();
    assert_eq!(
        rx.unprotect_rtp(&mut p),
        Err(Error::TooManyStreams { limit: 2 })
    );
    assert_eq!(rx.stream_count(), 2);
}

#[test]
fn srtcp_aes_cm_round_trip_with_and_without_encryption() {
    for profile in [
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
    ] {
        let (mut tx, mut rx) = pair(profile, Config::default());
        for encrypt in [true, false] {
            let plain = rtcp_packet(9, &[1, 2, 3, 4, 5, 6, 7, 8]);
            let mut buf = plain.clone();
            tx.protect_rtcp_with(&mut buf, encrypt).unwrap();
            // RFC 5764 §4.1.2: SRTCP keeps an 80-bit tag even for _32.
            assert_eq!(buf.len(), plain.len() + 4 + 10);
            assert_eq!(buf[8..16] == plain[8..16], !encrypt);
            rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(buf, plain);
        }
    }
}

#[test]
fn short_and_malformed_packets_are_typed_errors() {
    let (mut tx, mut rx) = pair(ProtectionProfile::Aes128CmHmacSha1_80, Config::default());
    assert!(matches!(
        tx.protect_rtp(&mut vec![0x80; 11]),
        Err(Error::Truncated { .. })
    ));
    assert_eq!(
        tx.protect_rtp(&mut vec![0x40; 12]),
        Err(Error::BadVersion(1))
    );
    // CC = 15 needs 72 header bytes.
    assert!(matches!(
        tx.protect_rtp(&mut vec![0x8f; 40]),
        Err(Error::Truncated { needed: 72, .. })
    ));
    // X set and an extension longer than the packet.
    let mut p = rtp_packet(1, 1, &[0xbe, 0xde, 0xff, 0xff]);
    p[0] |= 0x10;
    assert!(matches!(
        tx.protect_rtp(&mut p),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        rx.unprotect_rtp(&mut vec![0x80; 21]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        rx.unprotect_rtcp(&mut vec![0x80; 21]),
        Err(Error::Truncated { .. })
    ));
    assert_eq!(rx.stream_count(), 0);
}

#[test]
fn header_extension_and_csrcs_stay_in_the_clear() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, Config::default());
        let mut plain = vec![0x92, 96, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2];
        plain.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 4]); // two CSRCs
        plain.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one-byte ext
        plain.extend_from_slice(b"payload");
        let mut buf = plain.clone();
        tx.protect_rtp(&mut buf).unwrap();
        assert_eq!(buf[..28], plain[..28]);
        assert_ne!(buf[28..35], plain[28..35]);
        rx.unprotect_rtp(&mut buf).unwrap();
        assert_eq!(buf, plain);
    }
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

fn any_profile() -> impl Strategy<Value = ProtectionProfile> {
    prop::sample::select(ProtectionProfile::ALL.to_vec())
}

/// A random RTP packet: CSRCs, maybe an extension, payload.
fn any_rtp(seq: u16) -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..4,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..3usize).prop_map(|w| w.len())),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<u32>(),
    )
        .prop_map(move |(cc, ext_words, payload, ts)| {
            let mut p = vec![0x80 | cc, 96];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            for c in 0..cc {
                p.extend_from_slice(&u32::from(c).to_be_bytes());
            }
            if let Some(words) = ext_words {
                p[0] |= 0x10;
                p.extend_from_slice(&[0xbe, 0xde, 0, words as u8]);
                p.extend(std::iter::repeat_n(0x55, 4 * words));
            }
            p.extend_from_slice(&payload);
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// protect → unprotect gives the packet back, for every profile, random
    /// keys, headers and payloads, over runs of sequence numbers that often
    /// cross 65535 → 0 (the ROC must advance on both sides).
    #[test]
    fn rtp_round_trip(
        profile in any_profile(),
        key in prop::collection::vec(any::<u8>(), 32),
        salt in prop::collection::vec(any::<u8>(), 14),
        start in prop_oneof![65500u16..=65535, any::<u16>()],
        packets in prop::collection::vec(any_rtp(0), 1..40),
    ) {
        let key = &key[..profile.master_key_len()];
        let salt = &salt[..profile.master_salt_len()];
        let mut tx = SrtpContext::new(profile, key, salt, Config::default()).unwrap();
        let mut rx = SrtpContext::new(profile, key, salt, Config::default()).unwrap();
        let mut wrapped = false;
        for (i, mut plain) in packets.into_iter().enumerate() {
            let seq = start.wrapping_add(i as u16);
            wrapped |= i > 0 && seq == 0;
            plain[2..4].copy_from_slice(&seq.to_be_bytes());
            let mut buf = plain.clone();
            tx.protect_rtp(&mut buf).unwrap();
            prop_assert_eq!(buf.len(), plain.len() + profile.rtp_tag_len());
            rx.unprotect_rtp(&mut buf).unwrap();
            prop_assert_eq!(&buf, &plain);
        }
        let roc = u32::from(wrapped);
        prop_assert_eq!(tx.sent_roc(0x1234_5678), Some(roc));
        prop_assert_eq!(rx.received_roc(0x1234_5678), Some(roc));
    }

    /// The same for SRTCP.
    #[test]
    fn rtcp_round_trip(
        profile in any_profile(),
        key in prop::collection::vec(any::<u8>(), 32),
        salt in prop::collection::vec(any::<u8>(), 14),
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..10),
        ssrc in any::<u32>(),
    ) {
        let key = &key[..profile.master_key_len()];
        let salt = &salt[..profile.master_salt_len()];
        let mut tx = SrtpContext::new(profile, key, salt, Config::default()).unwrap();
        let mut rx = SrtpContext::new(profile, key, salt, Config::default()).unwrap();
        for body in bodies {
            let plain = rtcp_packet(ssrc, &body);
            let mut buf = plain.clone();
            tx.protect_rtcp(&mut buf).unwrap();
            prop_assert_eq!(buf.len(), plain.len() + profile.rtcp_overhead());
            rx.unprotect_rtcp(&mut buf).unwrap();
            prop_assert_eq!(&buf, &plain);
        }
    }

    /// Arbitrary bytes never panic, and never create state.
    #[test]
    fn arbitrary_bytes_never_panic(
        profile in any_profile(),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        force_v2 in any::<bool>(),
    ) {
        let (_, mut rx) = pair(profile, Config::default());
        let mut bytes = bytes;
        if force_v2 && !bytes.is_empty() {
            bytes[0] = 0x80 | (bytes[0] & 0x3f);
        }
        let mut a = bytes.clone();
        let _ = rx.unprotect_rtp(&mut a);
        let mut b = bytes.clone();
        let _ = rx.unprotect_rtcp(&mut b);
        prop_assert_eq!(rx.stream_count(), 0);
        let (mut tx, _) = pair(profile, Config::default());
        let mut c = bytes.clone();
        let _ = tx.protect_rtp(&mut c);
        let mut d = bytes;
        let _ = tx.protect_rtcp(&mut d);
    }

    /// One flipped bit anywhere in an SRTP or SRTCP packet is refused, and the
    /// receiver's state (ROC, windows, streams) is exactly as before.
    #[test]
    fn flipped_bit_fails_and_changes_nothing(
        profile in any_profile(),
        packet in any_rtp(0),
        body in prop::collection::vec(any::<u8>(), 0..100),
        seq in any::<u16>(),
        bit in any::<prop::sample::Index>(),
        rtcp in any::<bool>(),
    ) {
        let (mut tx, mut rx) = pair(profile, Config::default());
        // Some history first, so that there is state to disturb.
        for k in 0..3u16 {
            let mut p = rtp_packet(0x1234_5678, seq.wrapping_add(k), b"warm-up");
            tx.protect_rtp(&mut p).unwrap();
            rx.unprotect_rtp(&mut p).unwrap();
            let mut c = rtcp_packet(0x1234_5678, b"warm");
            tx.protect_rtcp(&mut c).unwrap();
            rx.unprotect_rtcp(&mut c).unwrap();
        }
        let mut buf = if rtcp {
            rtcp_packet(0x1234_5678, &body)
        } else {
            let mut p = packet;
            p[2..4].copy_from_slice(&seq.wrapping_add(3).to_be_bytes());
            p
        };
        if rtcp { tx.protect_rtcp(&mut buf).unwrap() } else { tx.protect_rtp(&mut buf).unwrap() }
        let good = buf.clone();
        let i = bit.index(buf.len() * 8);
        buf[i / 8] ^= 1 << (i % 8);
        let before = rx.state_fingerprint();
        let result = if rtcp { rx.unprotect_rtcp(&mut buf) } else { rx.unprotect_rtp(&mut buf) };
        prop_assert!(result.is_err(), "flipped bit {} accepted", i);
        prop_assert_eq!(rx.state_fingerprint(), before);
        // The untouched packet still goes through afterwards…
        let mut ok = good.clone();
        if rtcp { rx.unprotect_rtcp(&mut ok).unwrap() } else { rx.unprotect_rtp(&mut ok).unwrap() }
        // …once.
        let mut again = good;
        let replay = if rtcp { rx.unprotect_rtcp(&mut again) } else { rx.unprotect_rtp(&mut again) };
        prop_assert!(matches!(replay, Err(Error::Replayed { .. })), "replay accepted");
    }
}

#[test]
fn srtcp_index_exhaustion_is_an_error() {
    let (mut tx, _) = pair(ProtectionProfile::AeadAes128Gcm, Config::default());
    tx.set_next_rtcp_index(9, 0x7fff_ffff).unwrap();
    let mut p = rtcp_packet(9, b"last");
    tx.protect_rtcp(&mut p).unwrap();
    let mut p = rtcp_packet(9, b"one too many");
    assert_eq!(
        tx.protect_rtcp(&mut p),
        Err(Error::IndexExhausted { ssrc: 9 })
    );
    assert_eq!(p, rtcp_packet(9, b"one too many"));
}

#[test]
fn a_larger_replay_window_reaches_further_back() {
    let config = Config::default().with_replay_window(1024);
    let (mut tx, mut rx) = pair(ProtectionProfile::Aes128CmHmacSha1_80, config);
    let mut packets = Vec::new();
    for seq in 0..1100u16 {
        let mut p = rtp_packet(1, seq, b"x");
        tx.protect_rtp(&mut p).unwrap();
        packets.push(p);
    }
    rx.unprotect_rtp(&mut packets[1099].clone()).unwrap();
    rx.unprotect_rtp(&mut packets[100].clone()).unwrap();
    assert!(matches!(
        rx.unprotect_rtp(&mut packets[75].clone()),
        Err(Error::TooOld { .. })
    ));
    // The default window (128) would have refused index 100.
    let (_, mut small) = pair(ProtectionProfile::Aes128CmHmacSha1_80, Config::default());
    small.unprotect_rtp(&mut packets[1099].clone()).unwrap();
    assert!(matches!(
        small.unprotect_rtp(&mut packets[100].clone()),
        Err(Error::TooOld { .. })
    ));
}
