//! The history of a failover test and the rules it must satisfy.
//!
//! Every block a worker writes is self-describing ([`encode_block`]): a magic, the writer,
//! the writer's operation id, the LBA and a CRC32C of the whole block, so a read shows
//! exactly which write a block holds, or that it holds nothing anyone wrote (torn, foreign,
//! or another LBA's data). Each operation is recorded with its invoke and completion times
//! (nanoseconds from one epoch, taken by the client) and its outcome.
//!
//! The rules, per block (a register), in real time:
//! - **valid data**: a block reads as never written (zeros) or as a write of this history
//!   that covers its LBA, with a good CRC — or, for a read that overlapped a write of that
//!   block, a mix of bytes (SBC makes no promise of atomicity between the two);
//! - **no read from the future**: a read never returns a write invoked after the read
//!   completed;
//! - **no stale read**: once a write W' is acknowledged, a read invoked later returns W' or a
//!   write that may be newer: one not acknowledged before W' was invoked. Returning zeros, or
//!   a write acknowledged before W' started, means W' was lost or the read was served by a
//!   node that did not have it (a non-primary, or a deposed primary);
//! - **no lost write**: the final contents (read after the test) obey the same rule with the
//!   read invoked at the end of time.
//!
//! A write that failed (CHECK CONDITION) or whose outcome is unknown (the connection died)
//! may or may not have taken effect, at any time after its invocation: a failed replicated
//! write may have reached the old primary's disk before the peer refused it. Such writes are
//! never required to be visible and never make another value stale. This keeps the checker
//! free of false alarms; it is weaker than full linearizability (it does not order two
//! concurrent writes against two reads), which is what the lost-write and stale-read cases
//! need.

use std::collections::HashMap;
use std::path::Path;

/// Bytes of one block the workload writes and checks.
pub const BLOCK_BYTES: usize = 4096;
/// First bytes of every block the workload writes.
pub const MAGIC: [u8; 8] = *b"ESOSHA01";
/// Layout of the block header (the rest is seeded filler).
const OFF_WRITER: usize = 8;
const OFF_OP: usize = 12;
const OFF_LBA: usize = 20;
const OFF_CRC: usize = 28;
const HEADER_BYTES: usize = 32;
/// Most violations kept in a report (all are counted).
pub const MAX_VIOLATIONS_KEPT: usize = 50;

/// Which write produced a block: the worker and its operation counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId {
    pub writer: u32,
    pub op: u64,
}

impl std::fmt::Display for WriteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}#{}", self.writer, self.op)
    }
}

/// What a block read back holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// All zeros: never written.
    Initial,
    Written(WriteId),
    /// A workload block for another LBA.
    Misplaced {
        id: WriteId,
        lba: u64,
    },
    /// Neither zeros nor an intact workload block.
    Torn,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Initial => f.write_str("zeros"),
            Content::Written(id) => write!(f, "{id}"),
            Content::Misplaced { id, lba } => write!(f, "{id} of lba {lba}"),
            Content::Torn => f.write_str("torn/foreign bytes"),
        }
    }
}

fn filler(id: WriteId, lba: u64, seed: u64) -> crate::data::SplitMix64 {
    crate::data::SplitMix64::new(
        seed ^ (u64::from(id.writer) << 48) ^ id.op.rotate_left(17) ^ lba.rotate_left(40),
    )
}

/// Fills `buf` (one block) with the self-describing contents of write `id` at `lba`.
pub fn encode_block(buf: &mut [u8], id: WriteId, lba: u64, seed: u64) {
    assert_eq!(buf.len(), BLOCK_BYTES);
    buf[..8].copy_from_slice(&MAGIC);
    buf[OFF_WRITER..OFF_OP].copy_from_slice(&id.writer.to_be_bytes());
    buf[OFF_OP..OFF_LBA].copy_from_slice(&id.op.to_be_bytes());
    buf[OFF_LBA..OFF_CRC].copy_from_slice(&lba.to_be_bytes());
    buf[OFF_CRC..HEADER_BYTES].fill(0);
    filler(id, lba, seed).fill(&mut buf[HEADER_BYTES..]);
    let crc = crc32c::crc32c(buf);
    buf[OFF_CRC..HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
}

/// What the block `buf` read at `lba` holds.
pub fn decode_block(buf: &[u8], lba: u64) -> Content {
    if buf.len() != BLOCK_BYTES {
        return Content::Torn;
    }
    if buf.iter().all(|&b| b == 0) {
        return Content::Initial;
    }
    if buf[..8] != MAGIC {
        return Content::Torn;
    }
    let be32 = |o: usize| u32::from_be_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
    let be64 = |o: usize| u64::from_be_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    let stored_crc = be32(OFF_CRC);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..OFF_CRC]), &[0u8; 4]);
    let crc = crc32c::crc32c_append(crc, &buf[HEADER_BYTES..]);
    if crc != stored_crc {
        return Content::Torn;
    }
    let id = WriteId {
        writer: be32(OFF_WRITER),
        op: be64(OFF_OP),
    };
    let written_lba = be64(OFF_LBA);
    if written_lba != lba {
        return Content::Misplaced {
            id,
            lba: written_lba,
        };
    }
    Content::Written(id)
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// GOOD status: for a write with FUA, durable on every node that acknowledges.
    Ok,
    /// A definite error status (CHECK CONDITION, BUSY...): a write may still have landed.
    Failed,
    /// No answer: the connection died or timed out.
    Unknown,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A write of `blocks` blocks from `lba`, every block tagged with `id`.
    Write { id: WriteId, lba: u64, blocks: u32 },
    /// A read from `lba`; `contents` has one entry per block when it succeeded.
    Read { lba: u64, contents: Vec<Content> },
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub worker: u32,
    pub kind: OpKind,
    /// Nanoseconds from the history's epoch when the command was sent.
    pub invoke_ns: u64,
    /// When the answer came (`None` for [`Outcome::Unknown`]).
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    /// Index of the portal that answered (the node that served it).
    pub portal: usize,
}

/// A rule the history broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A read (or the final state, `read_at_ns == None`) found bytes no write of this LBA
    /// produced.
    BadData {
        lba: u64,
        got: Content,
        read_at_ns: Option<u64>,
    },
    /// A read returned a write invoked after the read completed.
    FutureRead {
        lba: u64,
        got: WriteId,
        read_at_ns: u64,
    },
    /// A read returned `got` although `newer` was acknowledged before the read started.
    StaleRead {
        lba: u64,
        got: Content,
        newer: WriteId,
        read_at_ns: u64,
        portal: usize,
    },
    /// The final contents lost the acknowledged write `lost`.
    LostWrite {
        lba: u64,
        lost: WriteId,
        found: Content,
    },
}

/// Counts of a history, and the longest pause in acknowledgements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub writes_unknown: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    /// Longest time between two consecutive successful operations (any worker): the
    /// window in which the LU served nothing, i.e. the failover time when there was one.
    pub max_gap_ns: u64,
    /// When that window started.
    pub max_gap_from_ns: u64,
}

/// The checker's verdict.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The first [`MAX_VIOLATIONS_KEPT`] violations.
    pub violations: Vec<Violation>,
    pub violation_count: u64,
    pub stats: Stats,
    pub blocks_checked: u64,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.violation_count == 0
    }

    fn push(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < MAX_VIOLATIONS_KEPT {
            self.violations.push(v);
        }
    }

    /// One line of figures, for logs and the soak's per-cycle line.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "writes ok {} failed {} unknown {}, reads ok {} failed {}, blocks checked {}, \
             longest pause {:.3} s at {:.3} s, violations {}",
            s.writes_ok,
            s.writes_failed,
            s.writes_unknown,
            s.reads_ok,
            s.reads_failed,
            self.blocks_checked,
            s.max_gap_ns as f64 / 1e9,
            s.max_gap_from_ns as f64 / 1e9,
            self.violation_count
        )
    }

    /// Panics with the summary and the violations unless the history is valid.
    pub fn assert_valid(&self, what: &str) {
        assert!(
            self.is_valid(),
            "{what}: the history breaks the rules\n{}\n{:#?}",
            self.summary(),
            self.violations
        );
    }
}

/// What the checker knows of one write.
#[derive(Clone, Copy, Debug)]
struct WriteInfo {
    lba: u64,
    blocks: u32,
    invoke_ns: u64,
    /// Completion time when it was acknowledged.
    ack_ns: Option<u64>,
}

impl WriteInfo {
    fn covers(&self, lba: u64) -> bool {
        lba >= self.lba && lba - self.lba < u64::from(self.blocks)
    }
}

/// Checks `ops` and, when given, the final contents (`final_state[i]` is LBA `i`).
pub fn check(ops: &[Op], final_state: Option<&[Content]>) -> Report {
    let mut report = Report {
        stats: stats(ops),
        ..Report::default()
    };
    let mut writes: HashMap<WriteId, WriteInfo> = HashMap::new();
    // Acknowledged writes per LBA.
    let mut acked: HashMap<u64, Vec<WriteId>> = HashMap::new();
    for op in ops {
        if let OpKind::Write { id, lba, blocks } = op.kind {
            let ack_ns = (op.outcome == Outcome::Ok)
                .then_some(op.complete_ns)
                .flatten();
            writes.insert(
                id,
                WriteInfo {
                    lba,
                    blocks,
                    invoke_ns: op.invoke_ns,
                    ack_ns,
                },
            );
            if ack_ns.is_some() {
                for b in lba..lba + u64::from(blocks) {
                    acked.entry(b).or_default().push(id);
                }
            }
        }
    }
    let acked: HashMap<u64, AckIndex> = acked
        .into_iter()
        .map(|(b, ids)| (b, AckIndex::new(&writes, ids)))
        .collect();
    let no_acks = AckIndex::default();
    for op in ops {
        let OpKind::Read { lba, contents } = &op.kind else {
            continue;
        };
        if op.outcome != Outcome::Ok {
            continue;
        }
        let Some(complete) = op.complete_ns else {
            continue;
        };
        for (i, got) in contents.iter().enumerate() {
            let b = lba + i as u64;
            report.blocks_checked += 1;
            let read = ReadAt {
                lba: b,
                invoke_ns: op.invoke_ns,
                complete_ns: complete,
                portal: op.portal,
            };
            check_value(
                &mut report,
                &writes,
                acked.get(&b).unwrap_or(&no_acks),
                read,
                *got,
            );
        }
    }
    if let Some(state) = final_state {
        for (b, got) in state.iter().enumerate() {
            let b = b as u64;
            report.blocks_checked += 1;
            check_final(
                &mut report,
                &writes,
                acked.get(&b).unwrap_or(&no_acks),
                b,
                *got,
            );
        }
    }
    report
}

#[derive(Clone, Copy)]
struct ReadAt {
    lba: u64,
    invoke_ns: u64,
    complete_ns: u64,
    portal: usize,
}

/// The acknowledged writes of one LBA, ordered by acknowledgement, with the latest-started
/// write among every prefix: "was any write acknowledged before time T started after time
/// S" is then one binary search, so a long history (the soak's) checks in O(n log n).
#[derive(Debug, Default)]
struct AckIndex {
    /// Acknowledgement times, ascending.
    ack_ns: Vec<u64>,
    /// `latest[i]`: the write with the largest invocation time among the first `i + 1`.
    latest: Vec<(u64, WriteId)>,
}

impl AckIndex {
    fn new(writes: &HashMap<WriteId, WriteInfo>, mut ids: Vec<WriteId>) -> Self {
        ids.sort_by_key(|id| writes[id].ack_ns);
        let mut idx = AckIndex::default();
        let mut best: Option<(u64, WriteId)> = None;
        for id in ids {
            let w = &writes[&id];
            let ack = w.ack_ns.expect("only acknowledged writes are indexed");
            if best.is_none_or(|(inv, _)| w.invoke_ns > inv) {
                best = Some((w.invoke_ns, id));
            }
            idx.ack_ns.push(ack);
            idx.latest.push(best.expect("set above"));
        }
        idx
    }

    /// The latest-started write acknowledged strictly before `t_ns`.
    fn latest_acked_before(&self, t_ns: u64) -> Option<(u64, WriteId)> {
        let n = self.ack_ns.partition_point(|&a| a < t_ns);
        n.checked_sub(1).map(|i| self.latest[i])
    }
}

/// An acknowledged write that makes `got` stale for a read invoked at `invoke_ns`, if any:
/// one acknowledged before the read started that replaced `got` (zeros, or a write
/// acknowledged before it started). A write never replaces itself: it started before its
/// own acknowledgement.
fn newer_than(
    writes: &HashMap<WriteId, WriteInfo>,
    acked: &AckIndex,
    got: Content,
    invoke_ns: u64,
) -> Option<WriteId> {
    let (newest_invoke, newer) = acked.latest_acked_before(invoke_ns)?;
    match got {
        Content::Initial => Some(newer),
        Content::Written(id) => {
            let got_ack = writes.get(&id).and_then(|w| w.ack_ns)?;
            (got_ack < newest_invoke).then_some(newer)
        }
        _ => None,
    }
}

/// A write of `read`'s LBA that may have been in flight while the read ran: invoked before
/// the read completed, and not acknowledged before it was invoked (a failed or unknown
/// write may take effect at any time after its invocation).
fn racing_write(writes: &HashMap<WriteId, WriteInfo>, read: &ReadAt) -> bool {
    writes.values().any(|w| {
        w.covers(read.lba)
            && w.invoke_ns <= read.complete_ns
            && w.ack_ns.is_none_or(|a| a >= read.invoke_ns)
    })
}

/// Valid data: zeros, or a write of this history covering `lba`.
fn is_valid_data(writes: &HashMap<WriteId, WriteInfo>, lba: u64, got: Content) -> bool {
    match got {
        Content::Initial => true,
        Content::Written(id) => writes.get(&id).is_some_and(|w| w.covers(lba)),
        Content::Misplaced { .. } | Content::Torn => false,
    }
}

fn check_value(
    report: &mut Report,
    writes: &HashMap<WriteId, WriteInfo>,
    acked: &AckIndex,
    read: ReadAt,
    got: Content,
) {
    if got == Content::Torn && racing_write(writes, &read) {
        // SBC promises no atomicity between a read and a write of the same blocks: a
        // read that overlaps a write in flight may see part of each.
        return;
    }
    if !is_valid_data(writes, read.lba, got) {
        report.push(Violation::BadData {
            lba: read.lba,
            got,
            read_at_ns: Some(read.invoke_ns),
        });
        return;
    }
    if let Content::Written(id) = got
        && writes[&id].invoke_ns > read.complete_ns
    {
        report.push(Violation::FutureRead {
            lba: read.lba,
            got: id,
            read_at_ns: read.invoke_ns,
        });
        return;
    }
    if let Some(newer) = newer_than(writes, acked, got, read.invoke_ns) {
        report.push(Violation::StaleRead {
            lba: read.lba,
            got,
            newer,
            read_at_ns: read.invoke_ns,
            portal: read.portal,
        });
    }
}

fn check_final(
    report: &mut Report,
    writes: &HashMap<WriteId, WriteInfo>,
    acked: &AckIndex,
    lba: u64,
    got: Content,
) {
    if !is_valid_data(writes, lba, got) {
        report.push(Violation::BadData {
            lba,
            got,
            read_at_ns: None,
        });
        return;
    }
    if let Some(lost) = newer_than(writes, acked, got, u64::MAX) {
        report.push(Violation::LostWrite {
            lba,
            lost,
            found: got,
        });
    }
}

fn stats(ops: &[Op]) -> Stats {
    let mut s = Stats::default();
    let mut oks: Vec<u64> = Vec::new();
    let mut first_invoke = u64::MAX;
    for op in ops {
        first_invoke = first_invoke.min(op.invoke_ns);
        let write = matches!(op.kind, OpKind::Write { .. });
        match (write, op.outcome) {
            (true, Outcome::Ok) => s.writes_ok += 1,
            (true, Outcome::Failed) => s.writes_failed += 1,
            (true, Outcome::Unknown) => s.writes_unknown += 1,
            (false, Outcome::Ok) => s.reads_ok += 1,
            (false, _) => s.reads_failed += 1,
        }
        if op.outcome == Outcome::Ok {
            oks.extend(op.complete_ns);
        }
    }
    oks.sort_unstable();
    if let Some(&first) = oks.first() {
        // The gap before the first success counts too (a test that starts on a failover).
        let start = first_invoke.min(first);
        s.max_gap_ns = first - start;
        s.max_gap_from_ns = start;
    }
    for w in oks.windows(2) {
        if w[1] - w[0] > s.max_gap_ns {
            s.max_gap_ns = w[1] - w[0];
            s.max_gap_from_ns = w[0];
        }
    }
    s
}

/// LBAs (of `BLOCK_BYTES` blocks) whose contents differ between two images (a missing tail
/// counts as zeros). Used to show that replicas are identical after a resync.
pub fn differing_blocks(a: &Path, b: &Path, limit_bytes: u64) -> std::io::Result<Vec<u64>> {
    use std::io::Read;
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let mut ba = vec![0u8; BLOCK_BYTES];
    let mut bb = vec![0u8; BLOCK_BYTES];
    let mut out = Vec::new();
    let blocks = limit_bytes / BLOCK_BYTES as u64;
    for lba in 0..blocks {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        ba[na..].fill(0);
        bb[nb..].fill(0);
        if ba != bb {
            out.push(lba);
        }
        if na == 0 && nb == 0 {
            break;
        }
    }
    return Ok(out);

    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 7;

    fn id(writer: u32, op: u64) -> WriteId {
        WriteId { writer, op }
    }

    fn write(w: WriteId, lba: u64, invoke: u64, complete: Option<u64>, outcome: Outcome) -> Op {
        Op {
            worker: w.writer,
            kind: OpKind::Write {
                id: w,
                lba,
                blocks: 1,
            },
            invoke_ns: invoke,
            complete_ns: complete,
            outcome,
            portal: 0,
        }
    }

    fn ok_write(w: WriteId, lba: u64, invoke: u64, complete: u64) -> Op {
        write(w, lba, invoke, Some(complete), Outcome::Ok)
    }

    fn read(lba: u64, got: Content, invoke: u64, complete: u64) -> Op {
        Op {
            worker: 9,
            kind: OpKind::Read {
                lba,
                contents: vec![got],
            },
            invoke_ns: invoke,
            complete_ns: Some(complete),
            outcome: Outcome::Ok,
            portal: 1,
        }
    }

    #[test]
    fn blocks_round_trip_and_damage_is_seen() {
        let mut b = vec![0u8; BLOCK_BYTES];
        assert_eq!(decode_block(&b, 3), Content::Initial);
        encode_block(&mut b, id(2, 99), 3, SEED);
        assert_eq!(decode_block(&b, 3), Content::Written(id(2, 99)));
        assert_eq!(
            decode_block(&b, 4),
            Content::Misplaced {
                id: id(2, 99),
                lba: 3
            }
        );
        // A torn block: the first half of one write, the second half of another.
        let mut other = vec![0u8; BLOCK_BYTES];
        encode_block(&mut other, id(2, 100), 3, SEED);
        let mut torn = b.clone();
        torn[BLOCK_BYTES / 2..].copy_from_slice(&other[BLOCK_BYTES / 2..]);
        assert_eq!(decode_block(&torn, 3), Content::Torn);
        // Half written over zeros, and a single flipped bit.
        let mut half = b.clone();
        half[2048..].fill(0);
        assert_eq!(decode_block(&half, 3), Content::Torn);
        let mut flip = b.clone();
        flip[4000] ^= 1;
        assert_eq!(decode_block(&flip, 3), Content::Torn);
        assert_eq!(decode_block(&[1u8; 512], 3), Content::Torn);
    }

    #[test]
    fn a_clean_history_passes() {
        let ops = vec![
            ok_write(id(0, 1), 5, 10, 20),
            read(5, Content::Written(id(0, 1)), 25, 30),
            ok_write(id(1, 1), 5, 40, 50),
            // Concurrent with the write: either value is fine.
            read(5, Content::Written(id(0, 1)), 45, 48),
            read(5, Content::Written(id(1, 1)), 41, 49),
            read(5, Content::Written(id(1, 1)), 60, 70),
            read(6, Content::Initial, 60, 70),
        ];
        let fin = vec![Content::Initial; 5]
            .into_iter()
            .chain([Content::Written(id(1, 1)), Content::Initial])
            .collect::<Vec<_>>();
        let r = check(&ops, Some(&fin));
        r.assert_valid("clean");
        assert_eq!(r.stats.writes_ok, 2);
        assert_eq!(r.stats.reads_ok, 5);
        assert_eq!(r.blocks_checked, 5 + 7);
    }

    #[test]
    fn a_lost_write_is_caught() {
        let ops = vec![ok_write(id(0, 1), 0, 10, 20), ok_write(id(0, 2), 0, 30, 40)];
        // The final state holds the older write: the newer acknowledged one is lost.
        let r = check(&ops, Some(&[Content::Written(id(0, 1))]));
        assert_eq!(
            r.violations,
            vec![Violation::LostWrite {
                lba: 0,
                lost: id(0, 2),
                found: Content::Written(id(0, 1))
            }]
        );
        // Zeros lose both.
        let r = check(&ops, Some(&[Content::Initial]));
        assert_eq!(r.violation_count, 1);
        assert!(matches!(r.violations[0], Violation::LostWrite { .. }));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let ops = vec![
            ok_write(id(0, 1), 7, 10, 20),
            ok_write(id(1, 1), 7, 30, 40),
            // Invoked after w1#1 was acknowledged, returns the value it replaced.
            read(7, Content::Written(id(0, 1)), 50, 60),
            // And a read of zeros after an acknowledged write.
            read(7, Content::Initial, 45, 46),
        ];
        let r = check(&ops, None);
        assert_eq!(r.violation_count, 2, "{:#?}", r.violations);
        assert!(matches!(
            r.violations[0],
            Violation::StaleRead { newer, portal: 1, .. } if newer == id(1, 1)
        ));
        assert!(matches!(
            r.violations[1],
            Violation::StaleRead {
                got: Content::Initial,
                ..
            }
        ));
    }

    #[test]
    fn a_torn_or_foreign_block_is_caught() {
        let ops = vec![
            ok_write(id(0, 1), 1, 10, 20),
            read(1, Content::Torn, 30, 40),
            // A write nobody issued.
            read(1, Content::Written(id(5, 5)), 30, 40),
            // A write of this history, but of another LBA.
            read(1, Content::Written(id(0, 2)), 30, 40),
            ok_write(id(0, 2), 2, 10, 20),
        ];
        let r = check(&ops, Some(&[Content::Initial, Content::Torn]));
        assert_eq!(r.violation_count, 4, "{:#?}", r.violations);
        assert!(
            r.violations[..3]
                .iter()
                .all(|v| matches!(v, Violation::BadData { lba: 1, .. }))
        );
        assert!(matches!(
            r.violations[3],
            Violation::BadData {
                lba: 1,
                read_at_ns: None,
                ..
            }
        ));
    }

    #[test]
    fn a_torn_read_is_allowed_only_while_a_write_of_the_block_runs() {
        let ops = vec![
            ok_write(id(0, 1), 1, 10, 20),
            // Overlaps w0#1: a mix of old and new bytes is what SBC allows.
            read(1, Content::Torn, 15, 25),
            // After it was acknowledged, with nothing else in flight: torn is a defect.
            read(1, Content::Torn, 30, 40),
        ];
        let r = check(&ops, None);
        assert_eq!(r.violation_count, 1, "{:#?}", r.violations);
        assert!(matches!(
            r.violations[0],
            Violation::BadData {
                lba: 1,
                read_at_ns: Some(30),
                ..
            }
        ));
    }

    #[test]
    fn a_read_from_the_future_is_caught() {
        let ops = vec![
            ok_write(id(0, 1), 0, 100, 110),
            read(0, Content::Written(id(0, 1)), 10, 20),
        ];
        let r = check(&ops, None);
        assert!(matches!(r.violations[..], [Violation::FutureRead { .. }]));
    }

    #[test]
    fn unacknowledged_writes_may_or_may_not_appear() {
        let ops = vec![
            ok_write(id(0, 1), 0, 10, 20),
            write(id(0, 2), 0, 30, None, Outcome::Unknown),
            write(id(1, 1), 0, 31, Some(35), Outcome::Failed),
            read(0, Content::Written(id(0, 2)), 40, 41),
            read(0, Content::Written(id(1, 1)), 42, 43),
            read(0, Content::Written(id(0, 1)), 44, 45),
        ];
        for fin in [id(0, 1), id(0, 2), id(1, 1)] {
            check(&ops, Some(&[Content::Written(fin)])).assert_valid("maybe-writes");
        }
        // But an acknowledged write is never replaced by zeros.
        assert!(!check(&ops, Some(&[Content::Initial])).is_valid());
        let s = check(&ops, None).stats;
        assert_eq!((s.writes_ok, s.writes_failed, s.writes_unknown), (1, 1, 1));
    }

    #[test]
    fn multi_block_writes_cover_their_range() {
        let ops = vec![
            Op {
                worker: 0,
                kind: OpKind::Write {
                    id: id(0, 1),
                    lba: 10,
                    blocks: 4,
                },
                invoke_ns: 0,
                complete_ns: Some(5),
                outcome: Outcome::Ok,
                portal: 0,
            },
            Op {
                worker: 1,
                kind: OpKind::Read {
                    lba: 9,
                    contents: vec![
                        Content::Initial,
                        Content::Written(id(0, 1)),
                        Content::Written(id(0, 1)),
                        Content::Written(id(0, 1)),
                        Content::Written(id(0, 1)),
                        Content::Written(id(0, 1)),
                    ],
                },
                invoke_ns: 6,
                complete_ns: Some(7),
                outcome: Outcome::Ok,
                portal: 0,
            },
        ];
        let r = check(&ops, None);
        // LBA 14 is outside the write.
        assert!(matches!(
            r.violations[..],
            [Violation::BadData { lba: 14, .. }]
        ));
    }

    #[test]
    fn the_longest_pause_is_the_failover_window() {
        let ops = vec![
            ok_write(id(0, 1), 0, 0, 10),
            ok_write(id(0, 2), 0, 10, 20),
            write(id(0, 3), 0, 20, None, Outcome::Unknown),
            ok_write(id(0, 4), 0, 900, 1000),
            ok_write(id(0, 5), 0, 1000, 1010),
        ];
        let s = check(&ops, None).stats;
        assert_eq!((s.max_gap_ns, s.max_gap_from_ns), (980, 20));
    }

    /// The indexed rule against its definition, on random single-register histories.
    #[test]
    fn indexed_staleness_matches_the_definition() {
        let mut rng = crate::data::SplitMix64::new(42);
        for _ in 0..300 {
            let mut writes = HashMap::new();
            let mut acked = Vec::new();
            for op in 0..(1 + rng.next_u64() % 12) {
                let invoke = rng.next_u64() % 100;
                let ack =
                    (!rng.next_u64().is_multiple_of(3)).then(|| invoke + 1 + rng.next_u64() % 30);
                let id = id(0, op);
                writes.insert(
                    id,
                    WriteInfo {
                        lba: 0,
                        blocks: 1,
                        invoke_ns: invoke,
                        ack_ns: ack,
                    },
                );
                if ack.is_some() {
                    acked.push(id);
                }
            }
            let index = AckIndex::new(&writes, acked.clone());
            let mut gots: Vec<Content> = writes.keys().map(|&i| Content::Written(i)).collect();
            gots.push(Content::Initial);
            for got in gots {
                for t in [0, 10, 40, 70, 100, 140, u64::MAX] {
                    // The rule as the module doc states it.
                    let got_ack = match got {
                        Content::Written(i) => writes[&i].ack_ns,
                        _ => None,
                    };
                    let stale = acked.iter().any(|w| {
                        let w = &writes[w];
                        w.ack_ns.is_some_and(|a| a < t)
                            && match got {
                                Content::Initial => true,
                                _ => got_ack.is_some_and(|g| g < w.invoke_ns),
                            }
                    });
                    assert_eq!(
                        newer_than(&writes, &index, got, t).is_some(),
                        stale,
                        "{got:?} read at {t}: {writes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn differing_blocks_of_two_images() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let mut da = vec![0u8; BLOCK_BYTES * 4];
        da[BLOCK_BYTES * 2 + 5] = 1;
        std::fs::write(&a, &da).unwrap();
        // Shorter, otherwise equal: the tail counts as zeros.
        std::fs::write(&b, vec![0u8; BLOCK_BYTES]).unwrap();
        assert_eq!(differing_blocks(&a, &b, 1 << 20).unwrap(), vec![2]);
        assert_eq!(
            differing_blocks(&a, &a, 1 << 20).unwrap(),
            Vec::<u64>::new()
        );
    }
}
