//! Full feature phase (RFC 7143 4, 11): the reader admits commands in CmdSN order and
//! gathers their data; the writer drives admitted commands and sends every response.
//!
//! Reader and writer are separate tasks joined by a bounded channel, so a slow socket
//! write never stops PDUs from being read, and the two halves can run on two cores. The
//! exception is a command alone on its connection (queue depth 1): the reader runs it and,
//! when the writer is idle, sends its response itself, sparing the round trip a hand-off.
//! Buffers circulate through a per-connection pool: after warm-up a command allocates nothing.
//!
//! Where a command goes: [`reader`] reads its PDU, [`command`] admits it (CmdSN window,
//! refusals, buffer budget, immediate data). A WRITE that needs more data waits in
//! [`write`](mod@write) (unsolicited Data-Out, R2Ts from [`tag`]) until it has all of it. The engine
//! runs the command in the [`writer`] task (or in the reader at queue depth 1), and
//! [`read`] sends its Data-In and SCSI Response. Beside them: [`tmf`] (task management),
//! [`nop`] (NOP-Out and the keep-alive), [`text`] (Text PDUs, answered by [`send_targets`]), and [`state`] and
//! [`buffers`], what reader and writer share.

mod buffers;
mod command;
mod nop;
mod read;
mod reader;
mod send_targets;
mod state;
mod tag;
mod text;
mod tmf;
mod write;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use esos_scsi::sense::{Asc, Sense, SenseKey};
use esos_scsi::{DataInRef, IoBuf, LunMap, Nexus, Residual, Response, Status};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use crate::config::PortalConfig;
use crate::login::SessionKind;
use crate::pdu::{self, BHS_LEN};
use crate::session::{SessionInfo, SessionSnapshot};
use crate::shared::Shared;

use super::login::LoggedIn;
use super::{ConnError, PduReader, PduWriter};

use buffers::MAX_BUFFERED_BYTES_PER_CONN;
pub(crate) use buffers::{BUDGET_UNIT_BYTES, MAX_BUFFERED_BYTES_TOTAL};
use command::exec;
use reader::Reader;
use state::ConnState;
use tag::TagAllocator;
use writer::Writer;

/// Messages queued from reader to writer before the reader waits.
const CHANNEL_DEPTH: usize = 256;
/// READs of at least this many bytes from a memory-resident file (tmpfs) send their data
/// from the page cache with `sendfile` when no data digest is negotiated: the copy into a
/// buffer and the copy from it into the socket both go. Smaller reads are cheaper copied:
/// their responses then leave together in one write.
const SPLICE_MIN_BYTES: u32 = 64 * 1024;

/// Sense for commands the transport ends itself, before or instead of the SCSI engine:
/// ILLEGAL REQUEST / INVALID FIELD IN CDB (bidirectional, oversize transfers), ABORTED
/// COMMAND / DATA PHASE ERROR and DATA OFFSET ERROR (bad Data-Out sequences).
const SENSE_INVALID_FIELD_IN_CDB: Sense =
    Sense::new(SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB);
const SENSE_DATA_PHASE_ERROR: Sense = Sense::new(SenseKey::AbortedCommand, Asc(0x4b, 0x00));
const SENSE_DATA_OFFSET_ERROR: Sense = Sense::new(SenseKey::AbortedCommand, Asc(0x4b, 0x05));

/// CHECK CONDITION with fixed-format sense and nothing transferred.
fn sense_response(sense: Sense, edtl: u32) -> Response {
    Response {
        status: Status::CheckCondition,
        sense: sense.encode(false),
        data_in_len: 0,
        residual: if edtl > 0 {
            Residual::Underflow(edtl)
        } else {
            Residual::None
        },
    }
}

/// What the writer needs to answer a command.
#[derive(Debug, Clone, Copy)]
struct TaskMeta {
    itt: u32,
    lun: u64,
    /// Counted in the CmdSN window (not an immediate command).
    counted: bool,
    /// Buffer budget units held until the response is sent.
    units: u32,
}

struct Done {
    meta: TaskMeta,
    resp: Response,
    buf: IoBuf,
    /// Data-In to send from a file instead of `buf` (no data digest; see [`SPLICE_MIN_BYTES`]).
    data_ref: Option<DataInRef>,
}

enum Msg<F> {
    /// An admitted command; the future runs it.
    Exec(TaskMeta, F),
    /// An admitted command the reader already ran to completion (it did not have to wait).
    Done(Done),
    /// A response the transport made itself (the engine never saw the command).
    Immediate(TaskMeta, Response),
    R2t {
        lun: u64,
        itt: u32,
        ttt: u32,
        r2t_sn: u32,
        offset: u32,
        len: u32,
    },
    NopIn {
        itt: u32,
        lun: u64,
        data: Vec<u8>,
    },
    Text {
        itt: u32,
        ttt: u32,
        final_flag: bool,
        cont: bool,
        data: Vec<u8>,
    },
    Reject {
        reason: u8,
        bhs: [u8; BHS_LEN],
    },
    Tmf {
        req: pdu::TaskMgmt,
        found_in_reader: bool,
    },
    Logout {
        itt: u32,
        response: u8,
    },
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    logged_in: LoggedIn,
    rd: PduReader,
    wr: PduWriter,
    portal: PortalConfig,
    local: SocketAddr,
    peer: SocketAddr,
) {
    let LoggedIn {
        outcome,
        guard,
        stat_sn,
        exp_cmd_sn,
    } = logged_in;
    let params = outcome.params.clone();
    // Read before the configuration: a change racing with this login is seen at the
    // first command.
    let generation = shared.generation.load(Ordering::Acquire);
    let (target_name, luns) = match &outcome.kind {
        SessionKind::Discovery => (None, LunMap::default()),
        SessionKind::Normal { target_name } => {
            let live = shared.live();
            let Some(t) = live.target(target_name) else {
                return;
            };
            let Some(m) = crate::config::LiveConfig::lun_map(t, &outcome.initiator_name) else {
                return;
            };
            (Some(t.name.clone()), m.clone())
        }
    };
    let isid = outcome.isid;
    let nexus = Arc::new(Nexus {
        id: shared.registry.next_nexus_id(),
        initiator_port: format!(
            "{},i,0x{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            outcome.initiator_name, isid[0], isid[1], isid[2], isid[3], isid[4], isid[5]
        ),
        target_port: format!(
            "{},t,0x{:04x}",
            target_name.as_deref().unwrap_or(""),
            portal.group_tag
        ),
        relative_port: portal.group_tag,
        port_group: portal.group_tag,
    });
    let state = Arc::new(ConnState {
        exp_cmd_sn: AtomicU32::new(exp_cmd_sn),
        in_flight: AtomicU32::new(0),
        window: shared.config.limits.max_cmds_per_session.max(1),
        rx_count: AtomicU64::new(0),
        pool: Mutex::new(Vec::new()),
        budget: tokio::sync::Semaphore::new(MAX_BUFFERED_BYTES_PER_CONN / BUDGET_UNIT_BYTES),
        global_budget: shared.buffer_budget.clone(),
        luns: Mutex::new(luns.clone()),
    });
    let commands = Arc::new(AtomicU64::new(0));
    guard.list(SessionInfo {
        snapshot: SessionSnapshot {
            id: nexus.id,
            tsih: guard.tsih,
            initiator: outcome.initiator_name.clone(),
            isid,
            target: target_name.clone(),
            portal: local,
            peer,
            since: std::time::SystemTime::now(),
            params: params.clone(),
            commands: 0,
        },
        portal: portal.clone(),
        commands: commands.clone(),
    });
    let mut rd = rd;
    let mut wr = wr;
    rd.header_digest = params.header_digest;
    rd.data_digest = params.data_digest;
    wr.header_digest = params.header_digest;
    wr.data_digest = params.data_digest;

    let wr_data_digest = wr.data_digest;
    let conn_cancel = guard.cancel.child_token();
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = Writer {
        shared: shared.clone(),
        wr,
        state: state.clone(),
        params: params.clone(),
        stat_sn,
        target_name: target_name.clone(),
        nexus: nexus.clone(),
        inflight: HashMap::new(),
        pending_tmfs: Vec::new(),
        logout: None,
        cancel: conn_cancel.clone(),
        failed: false,
    };
    let writer = Arc::new(AsyncMutex::new(writer));
    let writer_task = tokio::spawn(Writer::run(writer.clone(), rx));
    let mut reader = Reader {
        shared: &shared,
        rd,
        state: state.clone(),
        params,
        luns: luns.clone(),
        generation,
        portal: portal.clone(),
        commands,
        nexus: nexus.clone(),
        tx,
        writer,
        make: exec,
        ref_min: if wr_data_digest || !shared.config.params.zero_copy_reads {
            0
        } else {
            SPLICE_MIN_BYTES
        },
        pending: HashMap::new(),
        tags: TagAllocator::new(),
        text_in: Vec::new(),
        text_out: None,
        asker_initiator: outcome.initiator_name.clone(),
        target_name,
        local,
        discovery: matches!(outcome.kind, SessionKind::Discovery),
    };
    let end = tokio::select! {
        _ = conn_cancel.cancelled() => Ok(()),
        r = reader.run() => r,
    };
    let closed = matches!(end, Err(ConnError::Closed));
    match end {
        Ok(()) => tracing::debug!("reader finished"),
        Err(ConnError::Closed) => tracing::info!("initiator closed the connection"),
        Err(e) => tracing::warn!(error = %e, "connection error"),
    }
    // Pending writes never reached the engine: give their window slots back.
    for (_, p) in reader.pending.drain() {
        state.finished(p.counted);
        state.release(p.units);
    }
    drop(reader);
    if closed {
        // The initiator dropped the connection: the nexus is gone now, not once the
        // commands still running finish (its reservations must not outlive it while the
        // initiator already talks on its other sessions).
        state.current_luns().nexus_gone(&nexus);
    }
    let _ = writer_task.await;
    state.current_luns().nexus_gone(&nexus);
    // Unlists the session and frees its TSIH: a reinstating login waits for this.
    drop(guard);
    tracing::info!(initiator = %outcome.initiator_name, "session ended");
}
