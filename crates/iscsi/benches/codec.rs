//! Micro-benchmarks of the per-command iSCSI work that is pure computation: parsing a SCSI
//! Command BHS, encoding the Data-In and SCSI Response headers a read or write answers with,
//! and CRC32C digests over a header and over 4 KiB / 256 KiB data segments.
//! Run with `cargo bench -p esos-iscsi`; `cargo test` only builds them.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use esos_iscsi::digest;
use esos_iscsi::pdu::{self, BHS_LEN, ScsiCommand, SeqNums};

/// A READ(16) of 8 blocks at a non-trivial LBA, as an initiator sends it.
fn read16_command() -> [u8; BHS_LEN] {
    let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
    cdb[0] = 0x88;
    cdb[2..10].copy_from_slice(&0x0123_4567u64.to_be_bytes());
    cdb[10..14].copy_from_slice(&8u32.to_be_bytes());
    let cmd = ScsiCommand {
        immediate: false,
        final_flag: true,
        read: true,
        write: false,
        attr: 1,
        lun: 0,
        itt: 0x1234,
        edtl: 4096,
        cmd_sn: 77,
        exp_stat_sn: 9,
        cdb,
        cdb_len: 16,
        bidi_read_len: None,
    };
    pdu::build::scsi_command(&cmd, 0)
}

fn pdu_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("pdu");
    let bhs = read16_command();
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_scsi_command", |b| {
        b.iter(|| pdu::parse_request(black_box(&bhs), black_box(&[])))
    });
    g.bench_function("common", |b| b.iter(|| pdu::common(black_box(&bhs))));
    let seq = SeqNums {
        stat_sn: 10,
        exp_cmd_sn: 78,
        max_cmd_sn: 205,
    };
    g.bench_function("encode_data_in_with_status", |b| {
        let mut h = [0u8; BHS_LEN];
        b.iter(|| {
            let head = pdu::DataIn {
                final_flag: true,
                status: Some(pdu::CollapsedStatus {
                    status: 0,
                    residual: esos_scsi::Residual::None,
                }),
                lun: black_box(0),
                itt: black_box(0x1234),
                seq,
                data_sn: 0,
                offset: 0,
                data_len: black_box(4096),
            };
            pdu::encode_data_in(&mut h, &head);
            black_box(&h);
        })
    });
    g.bench_function("encode_scsi_response", |b| {
        let mut h = [0u8; BHS_LEN];
        b.iter(|| {
            let head = pdu::ScsiResponse {
                itt: black_box(0x1234),
                status: 0,
                residual: esos_scsi::Residual::None,
                seq,
                exp_data_sn: 0,
                data_len: 0,
            };
            pdu::encode_scsi_response(&mut h, &head);
            black_box(&h);
        })
    });
    g.finish();
}

fn crc32c(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    let bhs = read16_command();
    g.throughput(Throughput::Bytes(BHS_LEN as u64));
    g.bench_function("header_48B", |b| {
        b.iter(|| digest::header(black_box(&bhs), &[]))
    });
    for size in [4096usize, 256 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("data_{}K", size / 1024), |b| {
            b.iter(|| digest::data(black_box(&data)))
        });
    }
    g.finish();
}

criterion_group!(benches, pdu_codec, crc32c);
criterion_main!(benches);
