//! Micro-benchmark of CDB decoding, which every command goes through before the engine
//! touches a device: the hot READ/WRITE forms and a few control commands.
//! Run with `cargo bench -p esos-scsi`; `cargo test` only builds it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use esos_scsi::cdb;

fn cdbs() -> Vec<(&'static str, Vec<u8>)> {
    let mut read10 = vec![0x28, 0, 0, 0x12, 0x34, 0x56, 0, 0, 8, 0];
    read10[1] = 0;
    let mut write16 = vec![0u8; 16];
    write16[0] = 0x8A;
    write16[1] = 0x08; // FUA
    write16[2..10].copy_from_slice(&0x0001_2345_6789u64.to_be_bytes());
    write16[10..14].copy_from_slice(&2048u32.to_be_bytes());
    let mut read16 = write16.clone();
    read16[0] = 0x88;
    read16[1] = 0;
    vec![
        ("read10", read10),
        ("read16", read16),
        ("write16_fua", write16),
        ("test_unit_ready", vec![0; 6]),
        ("inquiry", vec![0x12, 0, 0, 0x00, 0xFF, 0]),
        ("synchronize_cache10", vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("cdb_decode");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in cdbs() {
        // A bench of an error path would measure the wrong thing: check the input first.
        assert!(cdb::decode(&bytes).is_ok(), "{name} must decode");
        g.bench_function(name, |b| b.iter(|| cdb::decode(black_box(&bytes))));
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
