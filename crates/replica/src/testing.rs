//! Test fixture: an in-memory quorum with the [`Arbiter`] preconditions, whose leases a test
//! can expire and whose reachability it can cut. Not the real quorum (`quorum/`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use esos_block::BoxFuture;
use esos_common::sync::LockExt as _;

use crate::arbiter::{Arbiter, NodeName, QuorumError, Record};

/// The shared record of one device and the leases granted.
#[derive(Debug, Default)]
pub struct MemQuorum {
    rec: Mutex<Record>,
    leases: Mutex<HashSet<NodeName>>,
    unreachable: AtomicBool,
}

impl MemQuorum {
    pub fn new() -> Arc<MemQuorum> {
        Arc::new(MemQuorum::default())
    }

    pub fn arbiter(self: &Arc<Self>, me: &NodeName) -> Arc<dyn Arbiter> {
        Arc::new(MemArbiter {
            me: me.clone(),
            q: self.clone(),
        })
    }

    pub fn record(&self) -> Record {
        self.rec.locked().clone()
    }

    /// Ends `node`'s lease (as if it were paused past its expiry).
    pub fn expire(&self, node: &NodeName) {
        self.leases.locked().remove(node);
    }

    /// Cuts (or restores) every node's access to the voters.
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::SeqCst);
    }

    fn reach(&self) -> Result<(), QuorumError> {
        if self.unreachable.load(Ordering::SeqCst) {
            Err(QuorumError::NoQuorum {
                reachable: 1,
                voters: 3,
                needed: 2,
            })
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
pub struct MemArbiter {
    me: NodeName,
    q: Arc<MemQuorum>,
}

impl Arbiter for MemArbiter {
    fn me(&self) -> &NodeName {
        &self.me
    }

    fn promote(&self, generation: u64, force: bool) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            self.q.reach()?;
            let mut rec = self.q.rec.locked();
            let mut leases = self.q.leases.locked();
            if let Some(p) = &rec.primary
                && *p != self.me
                && leases.contains(p)
                && !force
            {
                return Err(QuorumError::Refused(format!("{p} is primary")));
            }
            if rec.epoch == 0 && !force {
                return Err(QuorumError::Refused(
                    "new device: force the first promotion".into(),
                ));
            }
            if rec.epoch != 0
                && !force
                && (rec.generation != generation || !rec.is_up_to_date(&self.me))
            {
                return Err(QuorumError::Refused(format!(
                    "{} is not up to date at generation {generation:016x}",
                    self.me
                )));
            }
            if let Some(p) = rec.primary.take() {
                leases.remove(&p);
            }
            rec.epoch += 1;
            rec.primary = Some(self.me.clone());
            leases.insert(self.me.clone());
            Ok(rec.clone())
        })
    }

    fn set_up_to_date(
        &self,
        generation: u64,
        up_to_date: Vec<NodeName>,
    ) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            self.q.reach()?;
            let mut rec = self.q.rec.locked();
            if rec.primary.as_ref() != Some(&self.me) || !self.q.leases.locked().contains(&self.me)
            {
                return Err(QuorumError::LeaseLost);
            }
            rec.epoch += 1;
            rec.generation = generation;
            rec.up_to_date = up_to_date;
            Ok(rec.clone())
        })
    }

    fn demote(&self) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            self.q.reach()?;
            let mut rec = self.q.rec.locked();
            self.q.leases.locked().remove(&self.me);
            if rec.primary.as_ref() == Some(&self.me) {
                rec.primary = None;
                rec.epoch += 1;
            }
            Ok(rec.clone())
        })
    }

    fn record(&self) -> BoxFuture<'_, Result<Record, QuorumError>> {
        Box::pin(async move {
            self.q.reach()?;
            Ok(self.q.rec.locked().clone())
        })
    }

    fn lease_valid(&self) -> bool {
        self.q.leases.locked().contains(&self.me)
    }

    fn quorate(&self) -> bool {
        self.q.reach().is_ok()
    }
}
