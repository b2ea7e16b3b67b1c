//! Logical units, LUN maps and command dispatch. (Interface; the implementation fills it in.)

use std::future::Future;
use std::sync::Arc;

use esos_block::Device;

use crate::{Command, IoBuf, LuSettings, Nexus, Response};

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

/// One logical unit: a device, its identity, mode pages, unit-attention queues and task set.
/// Shared by every path (LUN map, target, portal) that exports it.
#[derive(Debug)]
pub struct LogicalUnit {
    _private: (),
}

impl LogicalUnit {
    pub fn new(device: Device, settings: LuSettings) -> Arc<LogicalUnit> {
        let _ = (device, settings);
        unimplemented!()
    }

    pub fn settings(&self) -> &LuSettings {
        unimplemented!()
    }

    /// Makes every write so far durable (used on graceful shutdown).
    pub fn flush(&self) -> impl Future<Output = Result<(), esos_block::BlockError>> + Send + '_ {
        async { unimplemented!() }
    }

    /// Applies a reset: aborts nothing itself (the transport drains its tasks first) but
    /// establishes the unit attentions and clears the state that SAM-5 says the reset clears.
    pub fn reset(&self, kind: ResetKind) {
        let _ = kind;
        unimplemented!()
    }
}

/// The LUNs one initiator group sees: LUN number → logical unit.
#[derive(Debug, Clone, Default)]
pub struct LunMap {
    _private: (),
}

impl LunMap {
    pub fn new(luns: Vec<(u64, Arc<LogicalUnit>)>) -> LunMap {
        let _ = luns;
        unimplemented!()
    }

    /// Mapped LUN numbers and units, ascending.
    pub fn luns(&self) -> impl Iterator<Item = (u64, &Arc<LogicalUnit>)> {
        std::iter::empty()
    }

    /// Admits one command. Transports call this synchronously in command order (iSCSI
    /// CmdSN order); the returned futures may then be polled concurrently and in any order,
    /// and the engine still honours SIMPLE / ORDERED / HEAD OF QUEUE semantics.
    /// `buf` carries the data-out bytes for writes and comes back holding data-in.
    pub fn submit(
        &self,
        cmd: Command,
        buf: IoBuf,
    ) -> impl Future<Output = (Response, IoBuf)> + Send + 'static + use<> {
        let _ = (cmd, buf);
        async { unimplemented!() }
    }

    /// Drops every per-nexus state of `nexus` in all mapped units (session ended).
    pub fn nexus_gone(&self, nexus: &Nexus) {
        let _ = nexus;
        unimplemented!()
    }
}
