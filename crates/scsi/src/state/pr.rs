//! The SCSI side of one unit's persistent reservations: the live nexuses by id. The
//! reservations themselves are the unit's (`esos_lu::reservations`); the commands are
//! `disk/pr.rs`.

use esos_common::sync::RwLockExt as _;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::Nexus;

/// What SCSI adds to the unit's shared [`Reservations`]: the live nexuses by id, to
/// deliver unit attentions to registrations (which are by name) and to resolve REGISTER
/// AND MOVE's relative target port. Bounded by the transport's session limit; entries
/// leave with `disk::pr::nexus_gone`.
#[derive(Debug, Default)]
pub struct PrUnit {
    pub(crate) known: RwLock<HashMap<u64, Arc<Nexus>>>,
}

impl PrUnit {
    pub(crate) fn track(&self, nexus: &Arc<Nexus>) {
        let known = self.known.read_locked();
        if known.contains_key(&nexus.id) {
            return;
        }
        drop(known);
        self.known
            .write_locked()
            .insert(nexus.id, Arc::clone(nexus));
    }
}
