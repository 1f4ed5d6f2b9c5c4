use super::*;
use crate::dtls::test_util::hex;
use crate::dtls::v13::key_schedule::{LabelPrefix, Secret};
use proptest::prelude::*;

fn keys(seed: u8) -> TrafficKeys {
    TrafficKeys::derive(LabelPrefix::Dtls13, &Secret::from_bytes([seed; 32]))
}

/// RFC 8448 §3: the client's Finished, sealed as a TLS 1.3 record with the
/// client handshake key and IV, sequence 0, AAD = the TLS record header.
/// DTLS 1.3 uses the same AEAD, nonce and inner plaintext; only the AAD
/// (its own header) and record number encryption differ.
#[test]
fn rfc8448_client_finished_record() {
    let key: [u8; 16] = hex("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01")
        .try_into()
        .unwrap();
    let iv: [u8; 12] = hex("5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f")
        .try_into()
        .unwrap();
    let p = RecordProtection::from_parts(&key, &iv, &[0; 16]).unwrap();
    let finished = hex(
        "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94
         fa c6 e9 85 27 b6 42 f2 ed d5 ce 61",
    );
    let record = hex(
        "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0
         51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c
         ae ac ab 68 67 d7 26 c4 05 46",
    );
    let mut out = Vec::new();
    p.seal_inner(
        0,
        &record[..5],
        ContentType::Handshake,
        &finished,
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, record[5..]);

    let mut body = record[5..].to_vec();
    let (ct, content) = p.open_inner(0, &record[..5], &mut body).unwrap();
    assert_eq!(ct, ContentType::Handshake);
    assert_eq!(content, &finished[..]);
    // The wrong sequence number (nonce) or AAD fails.
    let mut body = record[5..].to_vec();
    assert_eq!(
        p.open_inner(1, &record[..5], &mut body),
        Err(Error::BadRecordMac)
    );
}

/// ring's AES-128 "header protection" mask is AES-ECB of the sample, as
/// RFC 9147 §4.2.3 needs: checked against the `aes` crate's block cipher.
#[test]
fn mask_is_aes_ecb_of_the_first_16_bytes() {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let k = keys(3);
    let p = RecordProtection::new(&k).unwrap();
    let ciphertext: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37)).collect();
    let cipher = aes::Aes128Enc::new(&k.sn_key.into());
    let mut block = aes::Block::default();
    block.copy_from_slice(&ciphertext[..16]);
    cipher.encrypt_block(&mut block);
    assert_eq!(p.mask(&ciphertext).unwrap(), [block[0], block[1]]);
    // Only the first 16 bytes count.
    let mut longer = ciphertext.clone();
    longer[20] ^= 0xff;
    assert_eq!(p.mask(&longer).unwrap(), p.mask(&ciphertext).unwrap());
    assert_eq!(p.mask(&ciphertext[..15]), Err(Error::BadRecordMac));
}

#[test]
fn nonce_xors_the_sequence_number() {
    let iv = [0x10; 12];
    let n = nonce(&iv, 0x0102_0304_0506_0708);
    assert_eq!(
        n,
        [
            0x10, 0x10, 0x10, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18
        ]
    );
}

#[test]
fn inner_plaintext_padding() {
    assert_eq!(
        split_inner_plaintext(&[1, 2, 23, 0, 0, 0]).unwrap(),
        (ContentType::ApplicationData, &[1u8, 2][..])
    );
    assert_eq!(
        split_inner_plaintext(&[22]).unwrap(),
        (ContentType::Handshake, &[][..])
    );
    assert!(split_inner_plaintext(&[0, 0, 0]).is_err());
    assert!(split_inner_plaintext(&[]).is_err());
}

#[test]
fn reconstruct_picks_the_closest() {
    // 8 bits, expecting 0x1ff: 0x00 is 0x200 (one ahead), 0xfe is 0x1fe.
    assert_eq!(reconstruct(0x1ff, 0x00, 8), 0x200);
    assert_eq!(reconstruct(0x1ff, 0xfe, 8), 0x1fe);
    assert_eq!(reconstruct(0x1ff, 0x7f, 8), 0x17f);
    // Never below zero.
    assert_eq!(reconstruct(0, 0xff, 8), 0xff);
    assert_eq!(reconstruct(1, 0xf0, 8), 0xf0);
    // 16 bits.
    assert_eq!(reconstruct(0x1_0000, 0xffff, 16), 0xffff);
    assert_eq!(reconstruct(0x2_8000, 0x0001, 16), 0x2_0001);
    assert_eq!(reconstruct(0x2_8002, 0x0001, 16), 0x3_0001);
}

#[test]
fn header_refusals() {
    // C bit: no connection id was negotiated (RFC 9147 §9).
    assert!(matches!(
        UnifiedHeader::parse(&[0x30 | 0x0c, 0, 0, 0, 0]),
        Err(Error::InvalidValue { .. })
    ));
    // Not 001 at the top.
    assert!(UnifiedHeader::parse(&[0x40, 0]).is_err());
    assert!(UnifiedHeader::parse(&[]).is_err());
    // Length beyond the datagram.
    assert!(matches!(
        UnifiedHeader::parse(&[0x2c, 0, 0, 0, 20, 1, 2]),
        Err(Error::Truncated { .. })
    ));
    // Truncated header.
    assert!(UnifiedHeader::parse(&[0x2c, 0]).is_err());
    // Length-less: the rest.
    let (h, n) = UnifiedHeader::parse(&[0x21, 7, 9, 9, 9]).unwrap();
    assert_eq!(n, 2);
    assert_eq!(h.length, 3);
    assert_eq!(h.epoch_bits, 1);
    assert_eq!(h.sequence_bits, 7);
    // A record starting with 23 (DTLS 1.2 application data) is not 1.3.
    let mut it = records(&[23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

/// A sending and a receiving layer in epoch 2 (handshake keys).
fn pair() -> (RecordLayer, RecordLayer) {
    let mut a = RecordLayer::new();
    let mut b = RecordLayer::new();
    a.install_write(2, &keys(2)).unwrap();
    b.install_read(2, &keys(2)).unwrap();
    (a, b)
}

#[test]
fn several_records_per_datagram_and_replay() {
    let mut a = RecordLayer::new();
    let mut b = RecordLayer::new();
    let mut dgram = Vec::new();
    // Epoch 0: a plaintext handshake record; then epoch 2, two records, the
    // last without a length.
    let n0 = a
        .seal(ContentType::Handshake, b"hello", 0, &mut dgram)
        .unwrap();
    assert_eq!(
        n0,
        RecordNumber {
            epoch: 0,
            sequence: 0
        }
    );
    a.install_write(2, &keys(2)).unwrap();
    b.install_read(2, &keys(2)).unwrap();
    let n1 = a
        .seal(ContentType::Handshake, b"encrypted ext", 0, &mut dgram)
        .unwrap();
    a.form = HeaderForm {
        seq_len: SeqLen::Eight,
        with_length: false,
    };
    let n2 = a
        .seal(ContentType::Other(CONTENT_TYPE_ACK), b"ack", 5, &mut dgram)
        .unwrap();
    assert_eq!(
        n2,
        RecordNumber {
            epoch: 2,
            sequence: 1
        }
    );

    let mut got = Vec::new();
    b.receive(&dgram, &mut got);
    assert_eq!(b.dropped(), 0);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].number, n0);
    assert_eq!(got[0].fragment, b"hello");
    assert_eq!(got[1].number, n1);
    assert_eq!(got[1].content_type, ContentType::Handshake);
    assert_eq!(got[1].fragment, b"encrypted ext");
    assert_eq!(got[2].content_type, ContentType::Other(CONTENT_TYPE_ACK));
    assert_eq!(got[2].fragment, b"ack");

    // The same datagram again: every record is a replay.
    got.clear();
    b.receive(&dgram, &mut got);
    assert!(got.is_empty());
    assert_eq!(b.dropped(), 3);

    // Once plaintext is closed, epoch 0 records are dropped.
    b.close_plaintext();
    let mut plain = Vec::new();
    RecordLayer::new()
        .seal(ContentType::Alert, &[2, 40], 0, &mut plain)
        .unwrap();
    b.receive(&plain, &mut got);
    assert!(got.is_empty());
}

#[test]
fn reordering_and_the_window() {
    let (mut a, mut b) = pair();
    a.form = HeaderForm {
        seq_len: SeqLen::Eight,
        with_length: true,
    };
    let dgrams: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let mut d = Vec::new();
            a.seal(ContentType::ApplicationData, &i.to_be_bytes(), 0, &mut d)
                .unwrap();
            d
        })
        .collect();
    let mut got = Vec::new();
    // In order up to 200, then 210, then the late 205 (inside the window
    // and the 8-bit reconstruction range), then 150 (too old for the
    // 64-record window: dropped).
    for d in &dgrams[..200] {
        b.receive(d, &mut got);
    }
    b.receive(&dgrams[210], &mut got);
    b.receive(&dgrams[205], &mut got);
    b.receive(&dgrams[150], &mut got);
    let seqs: Vec<u64> = got.iter().map(|r| r.number.sequence).collect();
    assert_eq!(seqs.len(), 202);
    assert_eq!(&seqs[198..], &[198, 199, 210, 205]);
    assert_eq!(b.dropped(), 1);
    for r in &got {
        assert_eq!(r.fragment, (r.number.sequence as u32).to_be_bytes());
    }
}

#[test]
fn epochs_by_their_low_bits() {
    let mut a = RecordLayer::new();
    let mut b = RecordLayer::new();
    // Epochs 2, 3 (application), 4, 5, 6, 7 (key updates): 7 shares its
    // bits with 3; once 3 is gone, a bits-3 record is epoch 7's.
    let mut old = Vec::new();
    for epoch in 2..=7u64 {
        a.install_write(epoch, &keys(epoch as u8)).unwrap();
        b.install_read(epoch, &keys(epoch as u8)).unwrap();
        let mut d = Vec::new();
        a.seal(ContentType::ApplicationData, &[epoch as u8], 0, &mut d)
            .unwrap();
        old.push(d);
    }
    let mut got = Vec::new();
    // The epoch 4..7 records are readable (4 epochs kept); 2 and 3 are not.
    for d in &old {
        b.receive(d, &mut got);
    }
    let epochs: Vec<u64> = got.iter().map(|r| r.number.epoch).collect();
    assert_eq!(epochs, [4, 5, 6, 7]);
    assert_eq!(b.dropped(), 2);
    assert!(got.iter().all(|r| r.fragment == [r.number.epoch as u8]));
    // Misuse: epochs only move forward.
    assert!(b.install_read(6, &keys(6)).is_err());
    assert!(a.install_write(7, &keys(7)).is_err());
}

#[test]
fn short_and_garbage_records_are_dropped() {
    let (_, mut b) = pair();
    let mut got = Vec::new();
    // A protected record of 15 bytes cannot be unmasked.
    let mut d = vec![0x2e, 0, 0, 0, 15];
    d.extend_from_slice(&[0xaa; 15]);
    b.receive(&d, &mut got);
    // Random bytes under a valid header.
    let mut d = vec![0x2e, 0, 0, 0, 40];
    d.extend_from_slice(&[0x55; 40]);
    b.receive(&d, &mut got);
    // An unknown epoch's bits.
    let mut d = vec![0x2d, 0, 0, 0, 40];
    d.extend_from_slice(&[0x55; 40]);
    b.receive(&d, &mut got);
    assert!(got.is_empty());
    assert_eq!(b.dropped(), 3);
}

fn form() -> impl Strategy<Value = HeaderForm> {
    (any::<bool>(), any::<bool>()).prop_map(|(s, l)| HeaderForm {
        seq_len: if s { SeqLen::Sixteen } else { SeqLen::Eight },
        with_length: l,
    })
}

proptest! {
    #[test]
    fn unified_header_round_trip(
        form in form(),
        epoch_bits in 0u8..4,
        seq in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let sequence_bits = match form.seq_len {
            SeqLen::Eight => seq & 0xff,
            SeqLen::Sixteen => seq,
        };
        let h = UnifiedHeader { form, epoch_bits, sequence_bits, length: body.len() as u16 };
        let mut wire = Vec::new();
        h.emit(&mut wire);
        prop_assert_eq!(wire.len(), h.len());
        wire.extend_from_slice(&body);
        let (parsed, n) = UnifiedHeader::parse(&wire).unwrap();
        prop_assert_eq!(parsed, h);
        prop_assert_eq!(n, h.len());
    }

    /// Protect then unprotect, for any content, content type, epoch,
    /// sequence number, header form and padding; the receiver reconstructs
    /// the sequence number from an expectation anywhere within half the
    /// sequence field's range.
    #[test]
    fn protect_unprotect_round_trip(
        content in proptest::collection::vec(any::<u8>(), 0..400),
        content_type in 1u8..=255,
        epoch in 2u64..1_000_000,
        sequence in 0u64..MAX_SEQUENCE,
        form in form(),
        padding in 0usize..40,
        skew in -127i64..=127,
        key_seed in any::<u8>(),
    ) {
        let p = RecordProtection::new(&keys(key_seed)).unwrap();
        let number = RecordNumber { epoch, sequence };
        let ct = ContentType::from_u8(content_type);
        let mut wire = Vec::new();
        p.seal(number, form, ct, &content, padding, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), form.len() + content.len() + 1 + padding + TAG_LEN);

        let mut it = records(&wire);
        let Some(Ok(Record::Ciphertext(rec))) = it.next() else {
            return Err(TestCaseError::fail("not framed as DTLSCiphertext"));
        };
        prop_assert!(it.next().is_none());
        prop_assert_eq!(u64::from(rec.header.epoch_bits), epoch & 3);
        let low = p.unmask(&rec.header, rec.encrypted).unwrap();
        let expected = sequence.saturating_add_signed(skew);
        let full = reconstruct(expected, low.into(), rec.header.form.seq_len.bits());
        prop_assert_eq!(full, sequence);
        let mut scratch = Vec::new();
        let (got_ct, got) = p.open(&rec, full, &mut scratch).unwrap();
        prop_assert_eq!(got_ct, ct);
        prop_assert_eq!(got, &content[..]);
    }

    /// Record number encryption alone (RFC 9147 §4.2.3): on the wire the
    /// sequence bits are the plaintext bits XOR the leading bytes of
    /// AES-ECB(sn_key, ciphertext[0..16]) (computed here with the `aes`
    /// crate), and unmasking gives the plaintext bits back.
    #[test]
    fn record_number_encryption_round_trip(
        key_seed in any::<u8>(),
        form in form(),
        sequence in 0u64..MAX_SEQUENCE,
        content in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use aes::cipher::{BlockCipherEncrypt, KeyInit};
        let k = keys(key_seed);
        let p = RecordProtection::new(&k).unwrap();
        let mut wire = Vec::new();
        p.seal(RecordNumber { epoch: 3, sequence }, form, ContentType::ApplicationData, &content, 0, &mut wire).unwrap();
        let (header, n) = UnifiedHeader::parse(&wire).unwrap();
        let encrypted = &wire[n..];
        let mut block = aes::Block::default();
        block.copy_from_slice(&encrypted[..16]);
        aes::Aes128Enc::new(&k.sn_key.into()).encrypt_block(&mut block);
        let plain_bits = match form.seq_len {
            SeqLen::Eight => sequence & 0xff,
            SeqLen::Sixteen => sequence & 0xffff,
        } as u16;
        let mask = match form.seq_len {
            SeqLen::Eight => u16::from(block[0]),
            SeqLen::Sixteen => u16::from_be_bytes([block[0], block[1]]),
        };
        prop_assert_eq!(header.sequence_bits, plain_bits ^ mask);
        prop_assert_eq!(p.unmask(&header, encrypted).unwrap(), plain_bits);
    }

    /// Any single flipped bit makes the record undeliverable (framing,
    /// record number, or authentication fails).
    #[test]
    fn tampered_records_are_refused(
        content in proptest::collection::vec(any::<u8>(), 0..100),
        form in form(),
        bit in any::<proptest::sample::Index>(),
        records_before in 0usize..3,
    ) {
        let (mut a, mut b) = pair();
        a.form = form;
        // Move both sides forward a little so reconstruction matters.
        for _ in 0..records_before {
            let mut d = Vec::new();
            a.seal(ContentType::ApplicationData, b"x", 0, &mut d).unwrap();
            b.receive(&d, &mut Vec::new());
        }
        let mut d = Vec::new();
        a.seal(ContentType::ApplicationData, &content, 0, &mut d).unwrap();
        let i = bit.index(d.len() * 8);
        d[i / 8] ^= 1 << (i % 8);
        let mut got = Vec::new();
        b.receive(&d, &mut got);
        prop_assert!(got.is_empty());
    }

    /// Arbitrary bytes never panic the record layer.
    #[test]
    fn receive_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (_, mut b) = pair();
        let mut got = Vec::new();
        b.receive(&data, &mut got);
    }
}

/// RFC 9147 §4.5.3: the record limits of one AES-GCM key.
#[test]
fn aead_limits() {
    let (mut a, _) = pair();
    assert!(!a.key_update_due());
    a.set_write_sequence(KEY_UPDATE_DUE);
    assert!(a.key_update_due());
    a.seal(ContentType::ApplicationData, b"x", 0, &mut Vec::new())
        .unwrap();
    a.set_write_sequence(CONFIDENTIALITY_LIMIT);
    assert!(matches!(
        a.seal(ContentType::ApplicationData, b"x", 0, &mut Vec::new()),
        Err(Error::Misuse(_))
    ));
    // A new key (KeyUpdate) starts again from 0.
    a.install_write(3, &keys(3)).unwrap();
    assert!(!a.key_update_due());
    a.seal(ContentType::ApplicationData, b"x", 0, &mut Vec::new())
        .unwrap();
    // Epoch 0 (no key) has no such limit.
    let mut plain = RecordLayer::new();
    plain.set_write_sequence(CONFIDENTIALITY_LIMIT);
    plain
        .seal(ContentType::Handshake, b"x", 0, &mut Vec::new())
        .unwrap();

    // Forgeries are counted per key.
    let (mut a, mut b) = pair();
    let mut d = Vec::new();
    a.seal(ContentType::ApplicationData, b"x", 0, &mut d)
        .unwrap();
    let mut forged = d.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut got = Vec::new();
    b.receive(&forged, &mut got);
    b.receive(&forged, &mut got);
    assert!(got.is_empty());
    assert_eq!(b.auth_failures(), 2);
    // The genuine record still opens (a forgery does not move the window).
    b.receive(&d, &mut got);
    assert_eq!(got.len(), 1);
    assert!(!b.integrity_limit_reached());
    b.set_auth_failures(INTEGRITY_LIMIT);
    assert!(b.integrity_limit_reached());
    b.install_read(3, &keys(3)).unwrap();
    assert_eq!(b.auth_failures(), 0);
    assert!(b.integrity_limit_reached(), "epoch 2 is still readable");
    b.drop_read_epochs_below(3);
    assert!(!b.integrity_limit_reached());
}

/// RFC 9147 §4.2.1: records of the next epoch that arrive before its keys
/// (the server's encrypted flight behind its ServerHello) are held, within
/// bounds, and opened once the keys are installed.
#[test]
fn next_epoch_records_wait_for_their_keys() {
    let mut server = RecordLayer::new();
    let mut client = RecordLayer::new();
    let mut d = Vec::new();
    server
        .seal(ContentType::Handshake, b"server hello", 0, &mut d)
        .unwrap();
    server.install_write(2, &keys(2)).unwrap();
    for i in 0..10u8 {
        server
            .seal(ContentType::Handshake, &[i; 100], 0, &mut d)
            .unwrap();
    }
    let mut got = Vec::new();
    client.receive(&d, &mut got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fragment, b"server hello");
    // Eight held, two over the bound dropped.
    assert_eq!(client.pending(), MAX_PENDING_RECORDS);
    assert_eq!(client.dropped(), 2);
    client.install_read(2, &keys(2)).unwrap();
    got.clear();
    client.take_unlocked(&mut got);
    assert_eq!(client.pending(), 0);
    let firsts: Vec<u8> = got.iter().map(|r| r.fragment[0]).collect();
    assert_eq!(firsts, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(got.iter().all(|r| r.number.epoch == 2));

    // After a KeyUpdate (epoch 3 on the wire before the reader moved), the
    // same; records whose bits belong to a readable epoch are never held.
    server.install_write(3, &keys(3)).unwrap();
    let mut d = Vec::new();
    server
        .seal(ContentType::ApplicationData, b"epoch 3", 0, &mut d)
        .unwrap();
    got.clear();
    client.receive(&d, &mut got);
    assert!(got.is_empty());
    assert_eq!(client.pending(), 1);
    // Installing another epoch than the held record's keeps it held.
    client.take_unlocked(&mut got);
    assert_eq!(client.pending(), 1);
    client.install_read(3, &keys(3)).unwrap();
    client.take_unlocked(&mut got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fragment, b"epoch 3");
    // Garbage with the next epoch's bits is held, then dropped when the
    // keys cannot open it.
    let mut junk = vec![0x2c, 0, 0, 0, 40];
    junk.extend_from_slice(&[0x55; 40]);
    client.receive(&junk, &mut got);
    assert_eq!(client.pending(), 1);
    let dropped = client.dropped();
    client.install_read(4, &keys(4)).unwrap();
    client.take_unlocked(&mut got);
    assert_eq!(client.pending(), 0);
    assert_eq!(client.dropped(), dropped + 1);
}
