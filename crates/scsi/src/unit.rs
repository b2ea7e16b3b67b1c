//! One SCSI logical unit: the protocol-neutral [`Unit`] plus the state only SCSI keeps
//! (`state/`). Below the handlers (`disk/`, `mmc/`), which take a `&LogicalUnit`, and
//! below the engine (`engine.rs`), which admits commands to it.

use esos_common::sync::{LockExt as _, RwLockExt as _};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use esos_block::{BlockDevice, Device};
use esos_lu::Unit;
use esos_lu::events::{Audience, Event, Recipients, Subscriber, SubscriberId};
use esos_lu::reservations::Reservations;

use crate::sense::{Asc, Sense};
use crate::state::aborts::Aborts;
use crate::state::copy::CopyResults;
use crate::state::medium::MediumState;
use crate::state::mode::ModeState;
use crate::state::pr::PrUnit;
use crate::state::sanitize::SanitizeState;
use crate::state::task_set::{Marked, TaskSet};
use crate::state::ua::UnitAttentions;
use crate::{LuKind, LuSettings, Nexus, SenseBytes};

/// The units one nexus sees, ascending by LUN number: the content of its LUN map, which
/// EXTENDED COPY resolves its copy targets in.
pub(crate) type Luns = [(u64, Arc<LogicalUnit>)];

/// Which reset a task-management function asked for (SAM-5 7.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET: unit attention 29h/03h for every nexus.
    LogicalUnit,
    /// TARGET WARM RESET: unit attention 29h/02h (SCSI bus reset occurred) for every nexus.
    TargetWarm,
    /// TARGET COLD RESET: unit attention 29h/01h (power on occurred) for every nexus.
    TargetCold,
}

/// One SCSI logical unit: the protocol-neutral [`Unit`] (device, range locks, statistics)
/// plus what only SCSI has: mode pages, unit-attention queues, the task set. Shared by
/// every path (LUN map, target, portal) that exports it. Derefs to its [`Unit`], so
/// `lu.device` and `lu.ranges` read as before.
#[derive(Debug)]
pub struct LogicalUnit {
    unit: Arc<Unit>,
    /// This unit's subscription to the events of `unit`.
    subscriber: SubscriberId,
    pub(crate) settings: LuSettings,
    pub(crate) mode: ModeState,
    pub(crate) ua: UnitAttentions,
    /// The live nexuses the unit's reservations are delivered to (`disk/pr.rs`); the
    /// reservations themselves are the unit's (`Unit::reservations`).
    pub(crate) pr: PrUnit,
    /// Loaded or ejected, and who prevents removal (`state/medium.rs`).
    pub(crate) medium: MediumState,
    pub(crate) tasks: Arc<TaskSet>,
    /// MODE SELECT validates against the current values and then applies: serialised.
    mode_select: Mutex<()>,
    /// A running or failed SANITIZE (`state/sanitize.rs`, run by `disk/sanitize.rs`).
    pub(crate) sanitize: SanitizeState,
    /// EXTENDED COPY results by nexus and list identifier (`state/copy.rs`, kept by
    /// `disk/xcopy.rs`).
    pub(crate) xcopy: CopyResults,
    /// `settings.max_transfer_blocks` bounded by [`crate::MAX_TRANSFER_BYTES`] (0 = the bound).
    max_transfer_blocks: u32,
    /// Task-management aborts, for commands that only wait and can stop at once.
    pub(crate) aborts: Aborts,
    /// FUA writes issued, so tests can see that WCE 0 really means write-through.
    #[cfg(test)]
    pub(crate) fua_writes: std::sync::atomic::AtomicU64,
}

impl LogicalUnit {
    /// Like [`Self::try_new`], but an unreadable reservation state file is logged and
    /// APTPL is disabled for this unit (the file is left untouched for inspection).
    pub fn new(device: Device, settings: LuSettings) -> Arc<LogicalUnit> {
        let pr = Reservations::new(settings.pr_state.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "persistent reservations not restored; APTPL disabled");
            Reservations::without_file()
        });
        Self::build(device, settings, pr)
    }

    /// Creates the unit and restores the reservations saved with APTPL in
    /// `settings.pr_state` (SPC-4 5.9.4).
    pub fn try_new(
        device: Device,
        settings: LuSettings,
    ) -> Result<Arc<LogicalUnit>, crate::pr::StateFileError> {
        let pr = Reservations::new(settings.pr_state.clone())?;
        Ok(Self::build(device, settings, pr))
    }

    fn build(device: Device, settings: LuSettings, pr: Reservations) -> Arc<LogicalUnit> {
        let cap = (crate::MAX_TRANSFER_BYTES / device.block_size().max(1)).max(1);
        let max_transfer_blocks = match settings.max_transfer_blocks {
            0 => cap,
            n => n.min(cap),
        };
        let alua = Arc::clone(&settings.alua);
        let lu = Arc::new(LogicalUnit {
            mode: ModeState::new(settings.write_cache),
            medium: {
                let cdrom = settings.kind == LuKind::Cdrom;
                MediumState::new(settings.removable || cdrom, cdrom)
            },
            // The identity is fixed for the unit's life: the SCSI handlers read it in
            // `settings`, other front-ends in the unit.
            unit: Arc::new(Unit::new(
                device,
                settings.identity.clone(),
                Arc::clone(&alua),
                pr,
            )),
            subscriber: SubscriberId::new(),
            settings,
            ua: UnitAttentions::default(),
            pr: Default::default(),
            tasks: TaskSet::new(),
            mode_select: Mutex::new(()),
            sanitize: Default::default(),
            xcopy: Default::default(),
            max_transfer_blocks,
            aborts: Default::default(),
            #[cfg(test)]
            fua_writes: Default::default(),
        });
        alua.register(&lu.unit);
        let weak = Arc::downgrade(&lu) as std::sync::Weak<dyn Subscriber>;
        // A fresh unit has no other subscriber, so the bound cannot be reached.
        let subscribed = lu.unit.events.subscribe(lu.subscriber, weak);
        assert!(subscribed.is_ok(), "first subscriber of a new unit refused");
        lu
    }

    /// The subscription under which this unit's nexuses are addressed in events.
    pub(crate) fn subscriber(&self) -> SubscriberId {
        self.subscriber
    }

    /// The protocol-neutral unit, for other front-ends exporting the same device.
    pub fn unit(&self) -> &Arc<Unit> {
        &self.unit
    }

    pub fn settings(&self) -> &LuSettings {
        &self.settings
    }

    /// Task management aborted the tasks of `nexus` (every nexus when `None`) tagged `tag`
    /// (every tag when `None`). Tasks still waiting for their turn end at once without
    /// running, and tasks running lose their status ([`Response::ABORTED`]). The transport
    /// still waits for commands doing I/O (SAM-5: an aborted task must not touch the
    /// medium after its abort is answered); commands that only wait, a SANITIZE without
    /// IMMED whose operation continues regardless (SBC-4 4.11), stop waiting now.
    ///
    /// [`Response::ABORTED`]: crate::Response::ABORTED
    pub fn abort(&self, nexus: Option<u64>, tag: Option<u32>) {
        self.tasks
            .abort(|n, t| nexus.is_none_or(|x| x == n.id) && tag.is_none_or(|x| x == t));
        self.aborts.record(nexus, tag, false);
    }

    /// Aborts, on behalf of another nexus, every task of the nexuses `covers` selects
    /// (PREEMPT AND ABORT): as [`Self::abort`], and with TAS 0 each nexus that lost a task
    /// gets COMMANDS CLEARED BY ANOTHER INITIATOR (SAM-5 5.6). The caller waits for the
    /// returned started tasks to end before it reports the abort done.
    pub(crate) fn abort_for_other(&self, covers: impl Fn(&Nexus) -> bool) -> Marked {
        let marked = self.tasks.abort(|n, _| covers(n));
        for &n in &marked.nexuses {
            self.ua.post(n, Asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
        // Also the nexuses with no task here yet: a transport may hold a command of theirs
        // it has not submitted (`AbortMark`).
        let mut ids: Vec<u64> = {
            let known = self.pr.known.read_locked();
            known.values().filter(|n| covers(n)).map(|n| n.id).collect()
        };
        ids.extend_from_slice(&marked.nexuses);
        ids.sort_unstable();
        ids.dedup();
        for n in ids {
            self.aborts.record(Some(n), None, true);
        }
        marked
    }

    /// I/O statistics across every path and session.
    pub fn stats(&self) -> &esos_lu::stats::LuStats {
        &self.unit.stats
    }

    /// Current capacity in bytes (blocks × block size).
    pub fn capacity_bytes(&self) -> u64 {
        self.unit.capacity_bytes()
    }

    /// Makes every write so far durable (used on graceful shutdown).
    pub fn flush(&self) -> impl Future<Output = Result<(), esos_block::BlockError>> + Send + '_ {
        self.device.flush()
    }

    /// Applies a reset: aborts nothing itself (the transport drains its tasks first) but
    /// establishes the unit attentions and clears the state that SAM-5 says the reset clears
    /// (a hard reset restores mode parameters to their defaults, SAM-5 6.3.2).
    pub fn reset(&self, kind: ResetKind) {
        let asc = match kind {
            ResetKind::LogicalUnit => Asc::DEVICE_RESET_OCCURRED,
            ResetKind::TargetWarm => Asc::BUS_RESET_OCCURRED,
            ResetKind::TargetCold => Asc::POWER_ON_OCCURRED,
        };
        {
            let _serial = self.mode_select_lock();
            self.mode.reset();
        }
        self.ua.reset(asc);
        self.reservations.reset();
        self.abort(None, None);
        self.medium.reset();
    }

    /// Grows the backing device to `new_size` bytes while it serves, then tells every
    /// nexus CAPACITY DATA HAS CHANGED.
    pub fn grow(&self, new_size: u64) -> Result<(), esos_block::BlockError> {
        let before = self.device.num_blocks();
        self.device.resize(new_size)?;
        if self.device.num_blocks() != before {
            self.capacity_changed();
        }
        Ok(())
    }

    /// Tells every nexus that the capacity changed (after the backend was resized):
    /// CAPACITY DATA HAS CHANGED (SBC-3 4.6).
    pub fn capacity_changed(&self) {
        self.unit.events.post(Event::CapacityChanged, Audience::All);
    }

    /// Tells every nexus that the LUN inventory changed: REPORTED LUNS DATA HAS CHANGED
    /// (SPC-4 6.33). Call on each unit of a LUN map that gained or lost a LUN.
    pub fn luns_changed(&self) {
        self.unit.events.post(Event::LunsChanged, Audience::All);
    }

    pub(crate) fn max_transfer_blocks(&self) -> u32 {
        self.max_transfer_blocks
    }

    /// Write protection from configuration or the backend (not SWP, which has its own ASC).
    pub(crate) fn write_protected(&self) -> bool {
        self.settings.read_only || self.device.read_only()
    }

    pub(crate) fn mode_select_lock(&self) -> MutexGuard<'_, ()> {
        self.mode_select.locked()
    }

    pub(crate) fn check(&self, sense: Sense) -> SenseBytes {
        sense.encode(self.mode.d_sense())
    }

    /// A mark for [`AbortMark::aborted`], taken when a transport accepts a command it
    /// submits only later.
    pub fn abort_mark(self: &Arc<Self>) -> AbortMark {
        AbortMark {
            lu: Arc::clone(self),
            since: self.aborts.mark(),
        }
    }
}

/// Where a unit's aborts stood when a transport accepted a command it has not submitted
/// yet (a WRITE still receiving its data): an abort since then covers that command too,
/// which then ends without a response, as one in the task set would (SAM-5 5.6, TAS 0).
#[derive(Debug, Clone)]
pub struct AbortMark {
    lu: Arc<LogicalUnit>,
    since: u64,
}

impl AbortMark {
    /// True when another nexus's abort (PREEMPT AND ABORT) recorded since the mark covers
    /// task `tag` of `nexus`; it then also posts COMMANDS CLEARED BY ANOTHER INITIATOR to
    /// it. The transport ends such commands of its own task management itself, and after a
    /// reset the command meets the reset's unit attention. Of more than 64 aborts of the
    /// unit since the mark the oldest are missed: the command then meets the reservation
    /// check and unit attentions of the preemption instead.
    pub fn aborted(&self, nexus: u64, tag: u32) -> bool {
        let hit = self.lu.aborts.hit(self.since, nexus, tag, true);
        if hit {
            self.lu
                .ua
                .post(nexus, Asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
        hit
    }
}

/// Events of the unit become unit attentions of this unit's nexuses (SAM-5 5.14).
impl Subscriber for LogicalUnit {
    fn deliver(&self, event: Event, to: Audience<'_>) {
        let asc = match event {
            Event::CapacityChanged => Asc::CAPACITY_DATA_CHANGED,
            Event::LunsChanged => Asc::REPORTED_LUNS_DATA_CHANGED,
            Event::AccessStateChanged => crate::alua::ACCESS_STATE_CHANGED,
            Event::ReservationsPreempted => crate::pr::RESERVATIONS_PREEMPTED,
            Event::ReservationsReleased => crate::pr::RESERVATIONS_RELEASED,
            Event::RegistrationsPreempted => crate::pr::REGISTRATIONS_PREEMPTED,
        };
        match to.sessions_of(self.subscriber) {
            Recipients::All => self.ua.post_others(None, asc),
            Recipients::AllBut(n) => self.ua.post_others(Some(n), asc),
            Recipients::Only(list) => list.into_iter().for_each(|n| self.ua.post(n, asc)),
        }
    }
}

impl std::ops::Deref for LogicalUnit {
    type Target = Unit;
    fn deref(&self) -> &Unit {
        &self.unit
    }
}
