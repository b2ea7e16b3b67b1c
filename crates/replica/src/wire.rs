//! The messages of a replication link (frame kinds `0x0100..=0x01ff`), as pure codecs.
//!
//! Every message is one frame ([`crate::frame`]): its fixed fields, then, for the messages
//! that carry data (writes, resync data, side state), the data as the rest of the payload.
//! [`Msg::encode`] returns the fields and the data apart so a write is sent without copying
//! its payload; [`Msg::decode`] takes the received payload by value and hands the data back
//! as a [`SharedBuf`] over the same allocation.
//!
//! Bounds: data is at most [`MAX_DATA_BYTES`], a side-state blob at most
//! [`MAX_STATE_BLOB_BYTES`], a bitmap piece at most [`MAX_BITMAP_PIECE_BYTES`], strings
//! at most [`crate::frame::MAX_STRING_BYTES`]; decode checks each and never panics.

use esos_block::{BlockErrorKind, SharedBuf};

use crate::arbiter::NodeName;
use crate::frame::{FrameError, Reader, Writer};
use crate::status::{DataState, Role};

/// Largest write, resync or verify unit a peer may send: the largest transfer esos accepts.
pub const MAX_DATA_BYTES: usize = esos_common::limits::MAX_TRANSFER_BYTES as usize;
/// Largest side-state blob (persistent reservations of one unit).
pub const MAX_STATE_BLOB_BYTES: usize = 1 << 20;
/// Largest piece of a bitmap sent at once.
pub const MAX_BITMAP_PIECE_BYTES: usize = 64 << 10;
/// Generations kept in the history besides the current one.
pub const HISTORY_LEN: usize = 4;

pub const KIND_LINK_HELLO: u16 = 0x0101;
pub const KIND_WRITE: u16 = 0x0102;
pub const KIND_DISCARD: u16 = 0x0103;
pub const KIND_WRITE_ZEROES: u16 = 0x0104;
pub const KIND_FLUSH: u16 = 0x0105;
pub const KIND_ACK: u16 = 0x0106;
pub const KIND_PING: u16 = 0x0107;
pub const KIND_PONG: u16 = 0x0108;
pub const KIND_RESYNC_REQUEST: u16 = 0x0109;
pub const KIND_RESYNC_DATA: u16 = 0x010a;
pub const KIND_RESYNC_DISCARD: u16 = 0x010b;
pub const KIND_RESYNC_DONE: u16 = 0x010c;
pub const KIND_VERIFY_REQUEST: u16 = 0x010d;
pub const KIND_VERIFY_DIGEST: u16 = 0x010e;
pub const KIND_STATE_BLOB: u16 = 0x010f;
pub const KIND_ROLE_CHANGE: u16 = 0x0110;
pub const KIND_BITMAP: u16 = 0x0111;

/// Hello flag: this node stopped (crashed) while primary, so its activity log counts as
/// dirty towards every peer.
pub const HELLO_CRASHED_PRIMARY: u32 = 1 << 0;
/// Write flag: forced unit access: durable on the peer before it acknowledges.
pub const WRITE_FUA: u8 = 1 << 0;

/// What a node says about its copy when a link comes up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkHello {
    pub node: NodeName,
    pub size_bytes: u64,
    pub block_size: u32,
    pub chunk_bytes: u32,
    pub role: Role,
    pub data: DataState,
    /// Generation of the data this node holds now (0: none yet).
    pub current: u64,
    /// The generation the receiver's copy had when this node went on without it (0: none).
    pub bitmap: u64,
    /// Earlier generations of this node, newest first (0: unused).
    pub history: [u64; HISTORY_LEN],
    pub flags: u32,
    /// Bytes set in this node's bitmap towards the receiver.
    pub out_of_sync_bytes: u64,
}

/// How a peer ended an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckStatus {
    Ok,
    Failed {
        kind: BlockErrorKind,
        message: String,
    },
}

/// One replication message.
#[derive(Debug, Clone)]
pub enum Msg {
    Hello(LinkHello),
    Write {
        seq: u64,
        offset: u64,
        flags: u8,
        data: SharedBuf,
    },
    Discard {
        seq: u64,
        offset: u64,
        len: u64,
    },
    WriteZeroes {
        seq: u64,
        offset: u64,
        len: u64,
    },
    Flush {
        seq: u64,
    },
    Ack {
        seq: u64,
        status: AckStatus,
    },
    Ping,
    Pong,
    /// The administrator resolved a split brain (or unrelated data) on the sender: it keeps
    /// its data and the receiver becomes its sync target (`sender_keeps`), or the reverse.
    ResyncRequest {
        sender_keeps: bool,
    },
    ResyncData {
        seq: u64,
        offset: u64,
        data: SharedBuf,
    },
    ResyncDiscard {
        seq: u64,
        offset: u64,
        len: u64,
    },
    /// Every chunk was sent: the target now holds `generation`.
    ResyncDone {
        generation: u64,
    },
    /// The sender's digest of `[offset, offset + len)`; the receiver answers with its own.
    VerifyRequest {
        seq: u64,
        offset: u64,
        len: u32,
        digest: u32,
    },
    VerifyDigest {
        seq: u64,
        offset: u64,
        len: u32,
        digest: u32,
    },
    /// Opaque side state (persistent reservations), in order with the writes.
    StateBlob {
        blob: Vec<u8>,
    },
    /// The sender's role, data state or generation changed.
    RoleChange {
        role: Role,
        data: DataState,
        generation: u64,
    },
    /// A piece of the sender's bitmap towards the receiver, from chunk `first_chunk`; `last`
    /// ends the bitmap.
    Bitmap {
        first_chunk: u64,
        last: bool,
        bits: Vec<u8>,
    },
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Primary => 1,
        Role::Secondary => 2,
    }
}

fn role_from(c: u8) -> Result<Role, FrameError> {
    match c {
        1 => Ok(Role::Primary),
        2 => Ok(Role::Secondary),
        _ => Err(invalid("role", format!("unknown role {c}"))),
    }
}

/// Data-state codes on the wire (and in the metadata file).
pub fn data_code(d: DataState) -> u8 {
    match d {
        DataState::UpToDate => 1,
        DataState::Outdated => 2,
        DataState::Inconsistent => 3,
        DataState::Failed => 4,
    }
}

pub fn data_from(c: u8) -> Option<DataState> {
    Some(match c {
        1 => DataState::UpToDate,
        2 => DataState::Outdated,
        3 => DataState::Inconsistent,
        4 => DataState::Failed,
        _ => return None,
    })
}

const ERROR_KINDS: [BlockErrorKind; 9] = [
    BlockErrorKind::Io,
    BlockErrorKind::NoSpace,
    BlockErrorKind::Retryable,
    BlockErrorKind::OutOfRange,
    BlockErrorKind::Misaligned,
    BlockErrorKind::ReadOnly,
    BlockErrorKind::InvalidConfig,
    BlockErrorKind::Unsupported,
    BlockErrorKind::Unavailable,
];

fn kind_code(k: BlockErrorKind) -> u8 {
    // Kinds added later travel as Io: the peer's medium failed in some way.
    ERROR_KINDS.iter().position(|x| *x == k).unwrap_or(0) as u8 + 1
}

fn kind_from(c: u8) -> Result<BlockErrorKind, FrameError> {
    ERROR_KINDS
        .get(usize::from(c).wrapping_sub(1))
        .copied()
        .ok_or_else(|| invalid("ack.kind", format!("unknown error kind {c}")))
}

fn flag(v: u8, field: &'static str) -> Result<bool, FrameError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        c => Err(invalid(field, format!("{c} is not a flag"))),
    }
}

fn invalid(field: &'static str, reason: String) -> FrameError {
    FrameError::Invalid { field, reason }
}

fn data_field(
    payload: &SharedBuf,
    at: usize,
    field: &'static str,
) -> Result<SharedBuf, FrameError> {
    let n = payload.len() - at;
    if n > MAX_DATA_BYTES {
        return Err(FrameError::TooLong(n));
    }
    if n == 0 {
        return Err(invalid(field, "no data".into()));
    }
    Ok(payload.slice(at..))
}

impl Msg {
    /// The frame kind of this message.
    pub fn kind(&self) -> u16 {
        match self {
            Msg::Hello(_) => KIND_LINK_HELLO,
            Msg::Write { .. } => KIND_WRITE,
            Msg::Discard { .. } => KIND_DISCARD,
            Msg::WriteZeroes { .. } => KIND_WRITE_ZEROES,
            Msg::Flush { .. } => KIND_FLUSH,
            Msg::Ack { .. } => KIND_ACK,
            Msg::Ping => KIND_PING,
            Msg::Pong => KIND_PONG,
            Msg::ResyncRequest { .. } => KIND_RESYNC_REQUEST,
            Msg::ResyncData { .. } => KIND_RESYNC_DATA,
            Msg::ResyncDiscard { .. } => KIND_RESYNC_DISCARD,
            Msg::ResyncDone { .. } => KIND_RESYNC_DONE,
            Msg::VerifyRequest { .. } => KIND_VERIFY_REQUEST,
            Msg::VerifyDigest { .. } => KIND_VERIFY_DIGEST,
            Msg::StateBlob { .. } => KIND_STATE_BLOB,
            Msg::RoleChange { .. } => KIND_ROLE_CHANGE,
            Msg::Bitmap { .. } => KIND_BITMAP,
        }
    }

    /// The fixed fields, and the data the frame carries after them (sent without a copy).
    pub fn encode(&self) -> (Vec<u8>, Option<SharedBuf>) {
        let mut w = Writer::new();
        let mut data = None;
        match self {
            Msg::Hello(h) => {
                w.str(h.node.as_str())
                    .u64(h.size_bytes)
                    .u32(h.block_size)
                    .u32(h.chunk_bytes)
                    .u8(role_code(h.role))
                    .u8(data_code(h.data))
                    .u64(h.current)
                    .u64(h.bitmap);
                for g in h.history {
                    w.u64(g);
                }
                w.u32(h.flags).u64(h.out_of_sync_bytes);
            }
            Msg::Write {
                seq,
                offset,
                flags,
                data: d,
            } => {
                w.u64(*seq).u64(*offset).u8(*flags);
                data = Some(d.clone());
            }
            Msg::Discard { seq, offset, len }
            | Msg::WriteZeroes { seq, offset, len }
            | Msg::ResyncDiscard { seq, offset, len } => {
                w.u64(*seq).u64(*offset).u64(*len);
            }
            Msg::Flush { seq } => {
                w.u64(*seq);
            }
            Msg::Ack { seq, status } => {
                w.u64(*seq);
                match status {
                    AckStatus::Ok => w.u8(0),
                    AckStatus::Failed { kind, message } => w.u8(kind_code(*kind)).str(message),
                };
            }
            Msg::Ping | Msg::Pong => {}
            Msg::ResyncRequest { sender_keeps } => {
                w.u8(u8::from(*sender_keeps));
            }
            Msg::ResyncData {
                seq,
                offset,
                data: d,
            } => {
                w.u64(*seq).u64(*offset);
                data = Some(d.clone());
            }
            Msg::ResyncDone { generation } => {
                w.u64(*generation);
            }
            Msg::VerifyRequest {
                seq,
                offset,
                len,
                digest,
            }
            | Msg::VerifyDigest {
                seq,
                offset,
                len,
                digest,
            } => {
                w.u64(*seq).u64(*offset).u32(*len).u32(*digest);
            }
            Msg::StateBlob { blob } => {
                w.bytes(blob);
            }
            Msg::RoleChange {
                role,
                data: d,
                generation,
            } => {
                w.u8(role_code(*role)).u8(data_code(*d)).u64(*generation);
            }
            Msg::Bitmap {
                first_chunk,
                last,
                bits,
            } => {
                w.u64(*first_chunk).u8(u8::from(*last)).bytes(bits);
            }
        }
        (w.finish(), data)
    }

    /// Decodes the payload of a frame of `kind`. Never panics; every length is bounded.
    pub fn decode(kind: u16, payload: Vec<u8>) -> Result<Msg, FrameError> {
        let shared = SharedBuf::from_vec(payload);
        let mut r = Reader::new(shared.as_slice());
        let msg = match kind {
            KIND_LINK_HELLO => {
                let name = r.str("hello.node")?;
                let node = NodeName::new(&name)
                    .ok_or_else(|| invalid("hello.node", format!("{name:?} is not a node name")))?;
                let size_bytes = r.u64("hello.size")?;
                let block_size = r.u32("hello.block_size")?;
                let chunk_bytes = r.u32("hello.chunk_bytes")?;
                let role = role_from(r.u8("hello.role")?)?;
                let dc = r.u8("hello.data")?;
                let data = data_from(dc)
                    .ok_or_else(|| invalid("hello.data", format!("unknown data state {dc}")))?;
                let current = r.u64("hello.current")?;
                let bitmap = r.u64("hello.bitmap")?;
                let mut history = [0; HISTORY_LEN];
                for g in &mut history {
                    *g = r.u64("hello.history")?;
                }
                Msg::Hello(LinkHello {
                    node,
                    size_bytes,
                    block_size,
                    chunk_bytes,
                    role,
                    data,
                    current,
                    bitmap,
                    history,
                    flags: r.u32("hello.flags")?,
                    out_of_sync_bytes: r.u64("hello.out_of_sync")?,
                })
            }
            KIND_WRITE => {
                let seq = r.u64("write.seq")?;
                let offset = r.u64("write.offset")?;
                let flags = r.u8("write.flags")?;
                let at = shared.len() - r.rest().len();
                let data = data_field(&shared, at, "write.data")?;
                return Ok(Msg::Write {
                    seq,
                    offset,
                    flags,
                    data,
                });
            }
            KIND_RESYNC_DATA => {
                let seq = r.u64("resync.seq")?;
                let offset = r.u64("resync.offset")?;
                let at = shared.len() - r.rest().len();
                let data = data_field(&shared, at, "resync.data")?;
                return Ok(Msg::ResyncData { seq, offset, data });
            }
            KIND_DISCARD | KIND_WRITE_ZEROES | KIND_RESYNC_DISCARD => {
                let seq = r.u64("range.seq")?;
                let offset = r.u64("range.offset")?;
                let len = r.u64("range.len")?;
                match kind {
                    KIND_DISCARD => Msg::Discard { seq, offset, len },
                    KIND_WRITE_ZEROES => Msg::WriteZeroes { seq, offset, len },
                    _ => Msg::ResyncDiscard { seq, offset, len },
                }
            }
            KIND_FLUSH => Msg::Flush {
                seq: r.u64("flush.seq")?,
            },
            KIND_ACK => {
                let seq = r.u64("ack.seq")?;
                let status = match r.u8("ack.status")? {
                    0 => AckStatus::Ok,
                    c => AckStatus::Failed {
                        kind: kind_from(c)?,
                        message: r.str("ack.message")?,
                    },
                };
                Msg::Ack { seq, status }
            }
            KIND_PING => Msg::Ping,
            KIND_PONG => Msg::Pong,
            KIND_RESYNC_REQUEST => Msg::ResyncRequest {
                sender_keeps: flag(r.u8("resync_request.sender_keeps")?, "resync_request")?,
            },
            KIND_RESYNC_DONE => Msg::ResyncDone {
                generation: r.u64("resync_done.generation")?,
            },
            KIND_VERIFY_REQUEST | KIND_VERIFY_DIGEST => {
                let seq = r.u64("verify.seq")?;
                let offset = r.u64("verify.offset")?;
                let len = r.u32("verify.len")?;
                if len as usize > MAX_DATA_BYTES || len == 0 {
                    return Err(invalid("verify.len", format!("{len} bytes")));
                }
                let digest = r.u32("verify.digest")?;
                if kind == KIND_VERIFY_REQUEST {
                    Msg::VerifyRequest {
                        seq,
                        offset,
                        len,
                        digest,
                    }
                } else {
                    Msg::VerifyDigest {
                        seq,
                        offset,
                        len,
                        digest,
                    }
                }
            }
            KIND_STATE_BLOB => {
                let blob = r.bytes("state.blob")?;
                if blob.len() > MAX_STATE_BLOB_BYTES {
                    return Err(FrameError::TooLong(blob.len()));
                }
                Msg::StateBlob {
                    blob: blob.to_vec(),
                }
            }
            KIND_ROLE_CHANGE => {
                let role = role_from(r.u8("role_change.role")?)?;
                let dc = r.u8("role_change.data")?;
                let data = data_from(dc).ok_or_else(|| {
                    invalid("role_change.data", format!("unknown data state {dc}"))
                })?;
                Msg::RoleChange {
                    role,
                    data,
                    generation: r.u64("role_change.generation")?,
                }
            }
            KIND_BITMAP => {
                let first_chunk = r.u64("bitmap.first_chunk")?;
                let last = flag(r.u8("bitmap.last")?, "bitmap.last")?;
                let bits = r.bytes("bitmap.bits")?;
                if bits.len() > MAX_BITMAP_PIECE_BYTES {
                    return Err(FrameError::TooLong(bits.len()));
                }
                Msg::Bitmap {
                    first_chunk,
                    last,
                    bits: bits.to_vec(),
                }
            }
            k => return Err(FrameError::UnknownKind(k)),
        };
        r.end("message")?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_bytes(m: &Msg) -> Vec<u8> {
        let (mut f, d) = m.encode();
        if let Some(d) = d {
            f.extend_from_slice(d.as_slice());
        }
        f
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Primary), Just(Role::Secondary)]
    }
    fn data_state() -> impl Strategy<Value = DataState> {
        (1u8..=4).prop_map(|c| data_from(c).unwrap())
    }
    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..max)
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (
                "[a-z0-9]{1,20}",
                any::<[u64; 8]>(),
                any::<(u32, u32, u32)>(),
                role(),
                data_state()
            )
                .prop_map(|(n, g, (bs, cb, fl), role, data)| Msg::Hello(LinkHello {
                    node: NodeName::new(&n).unwrap(),
                    size_bytes: g[0],
                    block_size: bs,
                    chunk_bytes: cb,
                    role,
                    data,
                    current: g[1],
                    bitmap: g[2],
                    history: [g[3], g[4], g[5], g[6]],
                    flags: fl,
                    out_of_sync_bytes: g[7],
                })),
            (any::<(u64, u64, u8)>(), bytes(600)).prop_map(|((seq, offset, flags), d)| {
                Msg::Write {
                    seq,
                    offset,
                    flags,
                    data: SharedBuf::from_vec(d),
                }
            }),
            any::<(u64, u64, u64)>().prop_map(|(seq, offset, len)| Msg::Discard {
                seq,
                offset,
                len
            }),
            any::<(u64, u64, u64)>().prop_map(|(seq, offset, len)| Msg::WriteZeroes {
                seq,
                offset,
                len
            }),
            any::<(u64, u64, u64)>().prop_map(|(seq, offset, len)| Msg::ResyncDiscard {
                seq,
                offset,
                len
            }),
            any::<u64>().prop_map(|seq| Msg::Flush { seq }),
            any::<u64>().prop_map(|seq| Msg::Ack {
                seq,
                status: AckStatus::Ok
            }),
            (any::<u64>(), 0..ERROR_KINDS.len(), "[ -~]{0,40}").prop_map(|(seq, k, m)| {
                Msg::Ack {
                    seq,
                    status: AckStatus::Failed {
                        kind: ERROR_KINDS[k],
                        message: m,
                    },
                }
            }),
            Just(Msg::Ping),
            Just(Msg::Pong),
            any::<bool>().prop_map(|sender_keeps| Msg::ResyncRequest { sender_keeps }),
            (any::<(u64, u64)>(), bytes(600)).prop_map(|((seq, offset), d)| Msg::ResyncData {
                seq,
                offset,
                data: SharedBuf::from_vec(d),
            }),
            any::<u64>().prop_map(|generation| Msg::ResyncDone { generation }),
            (any::<(u64, u64, u32)>(), 1..MAX_DATA_BYTES as u32).prop_map(
                |((seq, offset, digest), len)| Msg::VerifyRequest {
                    seq,
                    offset,
                    len,
                    digest
                }
            ),
            (any::<(u64, u64, u32)>(), 1..MAX_DATA_BYTES as u32).prop_map(
                |((seq, offset, digest), len)| Msg::VerifyDigest {
                    seq,
                    offset,
                    len,
                    digest
                }
            ),
            bytes(300).prop_map(|blob| Msg::StateBlob { blob }),
            (role(), data_state(), any::<u64>()).prop_map(|(role, data, generation)| {
                Msg::RoleChange {
                    role,
                    data,
                    generation,
                }
            }),
            (any::<u64>(), any::<bool>(), bytes(300)).prop_map(|(first_chunk, last, bits)| {
                Msg::Bitmap {
                    first_chunk,
                    last,
                    bits,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in msg()) {
            let bytes = frame_bytes(&m);
            let back = Msg::decode(m.kind(), bytes.clone()).unwrap();
            prop_assert_eq!(back.kind(), m.kind());
            prop_assert_eq!(frame_bytes(&back), bytes);
        }

        #[test]
        fn decode_never_panics(kind in 0x0100u16..0x0114, p in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Msg::decode(kind, p);
        }

        #[test]
        fn truncation_is_an_error(m in msg(), cut in 1usize..40) {
            let bytes = frame_bytes(&m);
            if cut <= bytes.len() && !matches!(m, Msg::Write { .. } | Msg::ResyncData { .. }) {
                let short = bytes[..bytes.len() - cut].to_vec();
                prop_assert!(Msg::decode(m.kind(), short).is_err());
            }
        }
    }

    #[test]
    fn write_data_is_not_copied_on_decode() {
        let m = Msg::Write {
            seq: 1,
            offset: 4096,
            flags: WRITE_FUA,
            data: SharedBuf::from_vec(vec![7; 4096]),
        };
        let bytes = frame_bytes(&m);
        let base = bytes.as_ptr() as usize;
        match Msg::decode(KIND_WRITE, bytes).unwrap() {
            Msg::Write { data, flags, .. } => {
                assert_eq!(flags, WRITE_FUA);
                assert_eq!(data.as_slice().as_ptr() as usize, base + 17);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_and_unknown_values_are_refused() {
        assert!(Msg::decode(KIND_WRITE, vec![0; 17]).is_err(), "no data");
        let mut ack = frame_bytes(&Msg::Ack {
            seq: 1,
            status: AckStatus::Ok,
        });
        ack[8] = 99;
        assert!(Msg::decode(KIND_ACK, ack).is_err());
        assert!(matches!(
            Msg::decode(0x01ff, vec![]),
            Err(FrameError::UnknownKind(0x01ff))
        ));
        let big = Msg::Bitmap {
            first_chunk: 0,
            last: true,
            bits: vec![0; MAX_BITMAP_PIECE_BYTES + 1],
        };
        assert!(Msg::decode(KIND_BITMAP, frame_bytes(&big)).is_err());
    }
}
