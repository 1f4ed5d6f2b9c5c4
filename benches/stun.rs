//! Criterion micro-benchmarks for the STUN codec, to catch regressions between
//! commits (`cargo bench --bench stun -- --save-baseline before`, then
//! `--baseline before`). The figures the issues ask for come from
//! `rtclab speed stun`, which prints them beside their ceilings.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rtclab::stun::{IntegrityKey, Message, TransactionId};

fn stun(c: &mut Criterion) {
    let key = IntegrityKey::short_term("y8hWcoDrEX5R7u7ex0n/BGDR");
    let mut buf = Vec::with_capacity(128);
    rtclab::speed::ice_binding_request(&mut buf, TransactionId([0x5a; 12]), &key);
    let msg = buf.clone();

    c.bench_function("stun/encode_ice_binding_request", |b| {
        b.iter(|| {
            buf.clear();
            rtclab::speed::ice_binding_request(&mut buf, black_box(TransactionId([1; 12])), &key);
        })
    });
    c.bench_function("stun/decode", |b| {
        b.iter(|| black_box(Message::parse(black_box(&msg)).is_ok()))
    });
    c.bench_function("stun/decode_verify", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(&msg)).expect("decodes");
            black_box(m.verify_integrity(&key).is_ok() && m.verify_fingerprint() == Ok(true))
        })
    });
}

criterion_group!(benches, stun);
criterion_main!(benches);
