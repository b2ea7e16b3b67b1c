//! LUN maps and command admission: the top layer of the crate, above the logical unit
//! (`unit.rs`) and the handlers (`disk/`, `mmc/`), which never call back into it.
//!
//! What happens to a command: [`LunMap::submit`] finds the unit (or answers for an unmapped
//! LUN), checks the task attribute, the unit attentions (`state/ua.rs`), the ALUA access
//! state (`alua.rs`), the CDB (`cdb/decode.rs`, or `mmc/cdb.rs` for a CD-ROM) and a
//! running sanitize (`disk/dispatch.rs`), and enters the task set (`state/task_set.rs`),
//! all synchronously in command order. The future it returns waits for the task's turn,
//! passes the reservation check (`disk/pr.rs`) and runs the handler of the unit's kind:
//! the disk handler (`disk/dispatch.rs`) or the CD-ROM handler (`mmc/dispatch.rs`).
//! Task management (aborts, resets) acts on the unit (`unit.rs`).

use std::future::Future;
use std::sync::Arc;

use esos_lu::stats::IoKind;

use crate::alua::Spc as _;

use crate::cdb::{self, Cdb};
use crate::disk::{self, Done, Fail, Outcome, inquiry};
use crate::lun;
use crate::mmc;
use crate::sense::{Asc, Sense, SenseKey};
use crate::state::task_set::{Order, Ticket};
use crate::state::ua::UaVerdict;
use crate::unit::{AbortMark, LogicalUnit, Luns};
use crate::{Command, IoBuf, LuKind, Nexus, Residual, Response, SenseBytes, Status, TaskAttr};

/// The LUNs one initiator group sees: LUN number → logical unit.
#[derive(Debug, Clone, Default)]
pub struct LunMap {
    /// Ascending by LUN number, no duplicates, every LUN ≤ [`lun::MAX_LUN`].
    luns: Arc<Luns>,
}

impl LunMap {
    /// LUN numbers above [`lun::MAX_LUN`] cannot be addressed and are left out (with an
    /// error log); of duplicate numbers the first wins. The config layer rejects both.
    pub fn new(mut luns: Vec<(u64, Arc<LogicalUnit>)>) -> LunMap {
        luns.retain(|(n, _)| {
            let ok = *n <= lun::MAX_LUN;
            if !ok {
                tracing::error!(
                    lun = n,
                    "LUN number above {} cannot be addressed; left out",
                    lun::MAX_LUN
                );
            }
            ok
        });
        luns.sort_by_key(|(n, _)| *n);
        luns.dedup_by_key(|(n, _)| *n);
        LunMap { luns: luns.into() }
    }

    /// Mapped LUN numbers and units, ascending.
    pub fn luns(&self) -> impl Iterator<Item = (u64, &Arc<LogicalUnit>)> {
        self.luns.iter().map(|(n, lu)| (*n, lu))
    }

    fn find(&self, wire_lun: u64) -> Option<&Arc<LogicalUnit>> {
        let n = lun::decode(wire_lun)?;
        let i = self.luns.binary_search_by_key(&n, |(l, _)| *l).ok()?;
        Some(&self.luns[i].1)
    }

    /// For a command the transport accepted for `wire_lun` but submits only later (a WRITE
    /// still receiving its data): see [`AbortMark`]. `None` for an unmapped LUN.
    pub fn abort_mark(&self, wire_lun: u64) -> Option<AbortMark> {
        self.find(wire_lun).map(LogicalUnit::abort_mark)
    }

    /// Posts REPORTED LUNS DATA HAS CHANGED to every unit of this map.
    pub fn luns_changed(&self) {
        for (_, lu) in self.luns() {
            lu.luns_changed();
        }
    }

    /// Admits one command. Transports call this synchronously in command order (iSCSI
    /// CmdSN order); the returned futures may then be polled concurrently and in any order,
    /// and the engine still honours SIMPLE / ORDERED / HEAD OF QUEUE semantics.
    /// `buf` carries the data-out bytes for writes and comes back holding data-in. For a
    /// command without data-out its content is ignored, but its initialised bytes are kept
    /// as scratch space for READ: a pooled buffer then needs no zero fill before the device
    /// overwrites it, which is a memset of the whole transfer saved per read.
    pub fn submit(
        &self,
        cmd: Command,
        buf: IoBuf,
    ) -> impl Future<Output = (Response, IoBuf)> + Send + 'static + use<> {
        let fut = self.submit_ref(cmd, buf, 0);
        async move {
            let (resp, buf, _) = fut.await;
            (resp, buf)
        }
    }

    /// [`Self::submit`] for a transport that can send Data-In from a file itself: a READ of
    /// at least `ref_min_bytes` (0: never) from a device whose data is resident in memory
    /// answers with a [`DataInRef`] instead of a copy in the buffer, and the command's
    /// `data_in_len` bytes are then those of the reference, not of the buffer.
    pub fn submit_ref(
        &self,
        cmd: Command,
        buf: IoBuf,
        ref_min_bytes: u32,
    ) -> impl Future<Output = (Response, IoBuf, Option<DataInRef>)> + Send + 'static + use<> {
        let job = self.admit(cmd, buf);
        async move {
            match job {
                Job::Ready(resp, buf) => (resp, buf, None),
                Job::Run {
                    lu,
                    ticket,
                    cmd,
                    cdb,
                    buf,
                    copy_map,
                } => {
                    let start = std::time::Instant::now();
                    let kind = io_kind(&cdb);
                    let edtl = cmd.expected_len;
                    let in_flight = lu.stats.start();
                    let (resp, buf, data_ref) = async {
                        if ticket.ready().await.is_err() {
                            return (Response::ABORTED, buf, None);
                        }
                        let mut slice = None;
                        let (outcome, buf) = match disk::pr::intercept(&lu, &cmd, &cdb, buf) {
                            // EXTENDED COPY finds its copy targets in the issuing nexus's map,
                            // which `admit` hands over for it alone (disk/xcopy.rs).
                            disk::pr::Intercept::Dispatch(buf) if copy_map.is_some() => {
                                let map = copy_map.as_deref();
                                match disk::xcopy::execute(&lu, map, &cmd, &cdb, buf).await {
                                    Ok(done) => done,
                                    Err(buf) => {
                                        return (disk::pr::conflict_response(), buf, None);
                                    }
                                }
                            }
                            disk::pr::Intercept::Dispatch(buf) => match lu.settings.kind {
                                LuKind::Disk => {
                                    let by_ref =
                                        (ref_min_bytes > 0).then_some((ref_min_bytes, &mut slice));
                                    disk::dispatch::execute(&lu, &cmd, cdb, buf, by_ref).await
                                }
                                LuKind::Cdrom => mmc::dispatch::execute(&lu, &cmd, cdb, buf).await,
                            },
                            disk::pr::Intercept::Done(outcome, buf) => (outcome, buf),
                            // PREEMPT AND ABORT answers once the preempted tasks that
                            // started have ended: no write of theirs lands after its
                            // GOOD (SPC-4 5.9.11.5).
                            disk::pr::Intercept::DoneAfter {
                                outcome,
                                buf,
                                started,
                            } => {
                                lu.tasks.drained(&started).await;
                                (outcome, buf)
                            }
                            disk::pr::Intercept::Conflict(buf) => {
                                return (disk::pr::conflict_response(), buf, None);
                            }
                        };
                        let resp = respond(&cmd, outcome, |s| lu.check(s));
                        if ticket.settle().is_err() {
                            // Aborted while it ran: whatever it did, it reports nothing.
                            return (Response::ABORTED, buf, None);
                        }
                        match slice {
                            Some(mut slice) if resp.data_in_len > 0 => {
                                slice.len = u64::from(resp.data_in_len);
                                // The task ends when the transport has sent the data.
                                let data_ref = DataInRef {
                                    slice,
                                    _task: ticket,
                                };
                                (resp, buf, Some(data_ref))
                            }
                            _ => {
                                drop(ticket);
                                (resp, buf, None)
                            }
                        }
                    }
                    .await;
                    let bytes = match kind {
                        IoKind::Read => u64::from(resp.data_in_len),
                        IoKind::Write if resp.status == Status::Good => u64::from(edtl),
                        _ => 0,
                    };
                    let error = resp.status == Status::CheckCondition;
                    lu.stats.finished(kind, bytes, start.elapsed(), error);
                    drop(in_flight);
                    (resp, buf, data_ref)
                }
            }
        }
    }

    /// The synchronous part of [`Self::submit`]: everything that depends on command order.
    fn admit(&self, cmd: Command, mut buf: IoBuf) -> Job {
        let cdb_len = usize::from(cmd.cdb_len).min(crate::MAX_CDB_LEN);
        let opcode = cmd.cdb[0];
        if !cmd.data_out && !cdb::is_read(opcode) {
            // Handlers that build data-in start from an empty buffer.
            buf.clear();
        }
        let fixed = |s: Sense| s.encode(false);

        // REPORT LUNS works on any LUN, mapped or not (SPC-4 6.33).
        let Some(lu) = self.find(cmd.lun).cloned() else {
            let outcome = self.unmapped(&cmd, &mut buf);
            return Job::Ready(respond(&cmd, outcome, fixed), buf);
        };
        let ready =
            |outcome: Outcome, buf: IoBuf| Job::Ready(respond(&cmd, outcome, |s| lu.check(s)), buf);
        if cmd.attr == TaskAttr::Aca {
            // We report NormACA 0, so no ACA condition exists for an ACA task to run in;
            // answered as SAM-5 prescribes for an ACA task without ACA (INVALID MESSAGE ERROR).
            return ready(Err(Sense::illegal(Asc::INVALID_MESSAGE_ERROR).into()), buf);
        }
        if let UaVerdict::Report(asc) = lu.ua.admit(cmd.nexus.id, opcode) {
            return ready(Err(Sense::new(SenseKey::UnitAttention, asc).into()), buf);
        }
        // ALUA access state of the nexus's port group (SPC-4 5.16.2.4).
        if let Some(s) = lu.settings.alua.check(&cmd.nexus, &cmd.cdb[..cdb_len]) {
            return ready(Err(s.into()), buf);
        }
        let decoded = match lu.settings.kind {
            LuKind::Disk => cdb::decode(&cmd.cdb[..cdb_len]),
            LuKind::Cdrom => mmc::decode(&cmd.cdb[..cdb_len]),
        };
        let cdb = match decoded {
            Ok(c) => c,
            Err(s) => return ready(Err(s.into()), buf),
        };
        if let Cdb::ReportLuns { select, alloc_len } = cdb {
            let outcome = self.report_luns(select, alloc_len, &mut buf);
            return ready(outcome, buf);
        }
        if let Some(outcome) = disk::dispatch::sanitize_gate(&lu, &cmd, &cdb, &mut buf) {
            return ready(outcome, buf);
        }
        let order = match cmd.attr {
            // SANITIZE starts after every earlier command has ended (SBC-4 4.11.1), and
            // later ones meet the running sanitize in `disk::dispatch::sanitize_gate`.
            _ if matches!(cdb, Cdb::Sanitize(_)) => Order::Ordered,
            TaskAttr::Ordered => Order::Ordered,
            TaskAttr::HeadOfQueue => Order::HeadOfQueue,
            _ => Order::Simple,
        };
        let Ok(ticket) = lu.tasks.admit(order, &cmd.nexus, cmd.tag) else {
            let resp = Response {
                status: Status::TaskSetFull,
                sense: SenseBytes::EMPTY,
                data_in_len: 0,
                residual: Residual::None,
            };
            return Job::Ready(resp, buf);
        };
        let copy_map = matches!(cdb, Cdb::ExtendedCopy { .. }).then(|| Arc::clone(&self.luns));
        Job::Run {
            lu,
            ticket,
            cmd,
            cdb,
            buf,
            copy_map,
        }
    }

    fn report_luns(&self, select: u8, alloc_len: u32, buf: &mut IoBuf) -> Outcome {
        lun::report_luns(self.luns().map(|(n, _)| n), select, buf)?;
        Ok(Done::data(buf.len(), alloc_len))
    }

    /// Commands to a LUN with no unit behind it (SPC-4 6.6.2, 6.29, 6.33; SAM-5 5.8.4).
    fn unmapped(&self, cmd: &Command, buf: &mut IoBuf) -> Outcome {
        let cdb_len = usize::from(cmd.cdb_len).min(crate::MAX_CDB_LEN);
        let not_supported = Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED);
        match cdb::decode(&cmd.cdb[..cdb_len]) {
            Ok(Cdb::ReportLuns { select, alloc_len }) => self.report_luns(select, alloc_len, buf),
            Ok(Cdb::Inquiry {
                evpd: false,
                alloc_len,
                ..
            }) => {
                inquiry::standard(None, buf);
                Ok(Done::data(buf.len(), alloc_len))
            }
            Ok(Cdb::RequestSense { desc, alloc_len }) => {
                buf.clear();
                buf.extend_from_slice(not_supported.encode(desc).as_slice());
                Ok(Done::data(buf.len(), alloc_len))
            }
            _ => Err(not_supported.into()),
        }
    }

    /// True when both maps show the same LUN numbers for the same units.
    pub fn same_as(&self, other: &LunMap) -> bool {
        Arc::ptr_eq(&self.luns, &other.luns)
            || (self.luns.len() == other.luns.len()
                && self
                    .luns
                    .iter()
                    .zip(other.luns.iter())
                    .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y)))
    }

    /// `nexus` moves from map `old` to this one (the configuration changed while its
    /// session lives): when the inventory differs, every unit it now sees reports
    /// REPORTED LUNS DATA HAS CHANGED to it (SPC-4 6.33, SAM-5 6.2), and units it no longer
    /// sees forget it.
    pub fn remapped_from(&self, old: &LunMap, nexus: &Nexus) {
        if self.same_as(old) {
            return;
        }
        for (_, lu) in self.luns() {
            lu.ua.post(nexus.id, Asc::REPORTED_LUNS_DATA_CHANGED);
        }
        for (_, lu) in old.luns() {
            if !self.luns().any(|(_, l)| Arc::ptr_eq(l, lu)) {
                lu.ua.forget(nexus.id);
                disk::pr::nexus_gone(lu, nexus.id);
                lu.xcopy.nexus_gone(nexus.id);
            }
        }
    }

    /// Drops every per-nexus state of `nexus` in all mapped units (session ended).
    pub fn nexus_gone(&self, nexus: &Nexus) {
        for (_, lu) in self.luns() {
            lu.ua.forget(nexus.id);
            disk::pr::nexus_gone(lu, nexus.id);
            lu.medium.nexus_gone(nexus.id);
            lu.xcopy.nexus_gone(nexus.id);
        }
    }
}

/// How the statistics count a command.
fn io_kind(cdb: &Cdb) -> IoKind {
    match cdb {
        Cdb::Read(_) => IoKind::Read,
        Cdb::Write(_)
        | Cdb::WriteVerify(_)
        | Cdb::OrWrite(_)
        | Cdb::CompareAndWrite(_)
        | Cdb::WriteAtomic(_) => IoKind::Write,
        _ => IoKind::Other,
    }
}

/// A command after admission.
enum Job {
    /// Answered without touching the task set.
    Ready(Response, IoBuf),
    Run {
        lu: Arc<LogicalUnit>,
        ticket: Ticket,
        cmd: Command,
        cdb: Cdb,
        buf: IoBuf,
        /// The issuing nexus's LUN map, for EXTENDED COPY only (an Arc clone).
        copy_map: Option<Arc<Luns>>,
    },
}

/// Data-In that the transport sends straight from a file ([`LunMap::submit_ref`]):
/// `slice.len` is the response's `data_in_len`.
#[derive(Debug)]
pub struct DataInRef {
    pub slice: esos_block::FileSlice,
    /// The task stays in the task set until the transport drops this, after sending: an
    /// ORDERED command behind the READ cannot change the data before it has left.
    _task: Ticket,
}

/// SAM residual of a transfer of `transfer` bytes against the initiator's EDTL.
fn residual(transfer: u64, expected: u32) -> Residual {
    let expected = u64::from(expected);
    let clip = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    if transfer < expected {
        Residual::Underflow(clip(expected - transfer))
    } else if transfer > expected {
        Residual::Overflow(clip(transfer - expected))
    } else {
        Residual::None
    }
}

/// Builds the response; data never exceeds the EDTL.
fn respond(cmd: &Command, outcome: Outcome, encode: impl Fn(Sense) -> SenseBytes) -> Response {
    match outcome {
        Ok(Done { data_in, transfer }) => Response {
            status: Status::Good,
            sense: SenseBytes::EMPTY,
            data_in_len: data_in.min(cmd.expected_len),
            residual: residual(transfer, cmd.expected_len),
        },
        Err(Fail { sense, residual }) => Response {
            status: Status::CheckCondition,
            sense: encode(sense),
            data_in_len: 0,
            residual,
        },
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cmds;
