//! The acceptor: one CASPaxos register per replicated device, and the leases it grants.
//!
//! [`Acceptor`] is the pure state machine (no I/O, the clock passed in); [`Store`] keeps each
//! device's promised ballot, accepted ballot and record in its own small file; [`Voter`]
//! joins them so that a reply leaves only once the state it depends on is on disk.
//!
//! Rules (Rystsov, "CASPaxos: Replicated State Machines without logs", 2018), per device:
//! - Prepare(b): granted when b is above both the promised and the accepted ballot; the
//!   acceptor promises b and answers with its accepted ballot and record. Otherwise
//!   Conflict with the highest ballot it has seen.
//! - Accept(b, r): stored when b is at least the promised ballot and above the accepted one;
//!   b becomes promised and accepted. Otherwise Conflict.
//! - Renew(b) from node N: granted when the accepted record names N primary and nothing
//!   above what N holds has been promised since (promised ≤ max(b, accepted)); the grant
//!   (N, now + lease) lives in memory only. A prepare of a higher ballot therefore stops
//!   renewals until that proposal is accepted (or overtaken by one that keeps N primary).
//! - Every promise reports the time left on the lease granted to a node other than the
//!   proposer, and the acceptor's uptime: an acceptor that restarted may have forgotten a
//!   grant, so the proposer treats an uptime under one lease as a full lease left.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use esos_common::fs::{Replace, replace};
use esos_common::sync::LockExt as _;

use super::wire::{self, Ballot, Request, Response};
use crate::arbiter::{NodeName, Record};
use crate::frame::{Reader, Writer};

/// Most devices one acceptor keeps a register for; a peer cannot make it hold more.
pub const MAX_DEVICES: usize = 1024;

/// The durable state of one register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    pub promised: Option<Ballot>,
    pub accepted: Option<Ballot>,
    pub record: Record,
}

impl Slot {
    /// The highest ballot this slot has seen (promised is never below accepted).
    fn highest(&self) -> Option<&Ballot> {
        debug_assert!(self.promised >= self.accepted);
        self.promised.as_ref()
    }
}

#[derive(Debug, Clone)]
struct Grant {
    holder: NodeName,
    expiry: Instant,
}

/// The acceptor's state machine over every device it votes on.
#[derive(Debug)]
pub struct Acceptor {
    slots: HashMap<String, Slot>,
    grants: HashMap<String, Grant>,
    started: Instant,
}

/// What [`Acceptor::handle`] decided: the reply, and the device whose slot changed (to be
/// made durable before the reply leaves).
#[derive(Debug)]
pub struct Decision {
    pub reply: Response,
    pub changed: Option<String>,
}

fn ms_ceil(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000).min(u128::from(u64::MAX)) as u64
}

impl Acceptor {
    /// An acceptor holding `slots` (loaded from its store), started at `now`.
    pub fn new(slots: HashMap<String, Slot>, now: Instant) -> Acceptor {
        Acceptor {
            slots,
            grants: HashMap::new(),
            started: now,
        }
    }

    pub fn slot(&self, device: &str) -> Option<&Slot> {
        self.slots.get(device)
    }

    /// The highest ballot this acceptor has seen for any device.
    pub fn highest_counter(&self) -> u64 {
        self.slots
            .values()
            .filter_map(|s| s.highest().map(|b| b.counter))
            .max()
            .unwrap_or(0)
    }

    /// Puts back a slot whose new state could not be stored.
    pub fn restore(&mut self, device: &str, old: Option<Slot>) {
        match old {
            Some(s) => self.slots.insert(device.to_owned(), s),
            None => self.slots.remove(device),
        };
    }

    fn slot_mut(&mut self, device: &str) -> Result<&mut Slot, Response> {
        if !self.slots.contains_key(device) && self.slots.len() >= MAX_DEVICES {
            return Err(Response::Failed(format!(
                "this voter already holds {MAX_DEVICES} devices"
            )));
        }
        Ok(self.slots.entry(device.to_owned()).or_default())
    }

    /// Applies one request from node `from` at time `now`.
    pub fn handle(&mut self, from: &NodeName, req: Request, now: Instant) -> Decision {
        let unchanged = |reply| Decision {
            reply,
            changed: None,
        };
        match req {
            Request::Ping => unchanged(Response::Pong),
            Request::Prepare { device, ballot } => {
                let lease_left_ms = self
                    .grants
                    .get(&device)
                    .filter(|g| g.holder != ballot.node)
                    .map_or(0, |g| ms_ceil(g.expiry.saturating_duration_since(now)));
                let uptime_ms = ms_ceil(now.saturating_duration_since(self.started));
                let slot = match self.slot_mut(&device) {
                    Ok(s) => s,
                    Err(r) => return unchanged(r),
                };
                if slot.highest().is_some_and(|h| *h >= ballot) {
                    return unchanged(Response::Conflict {
                        highest: slot.highest().cloned().unwrap_or(ballot),
                    });
                }
                slot.promised = Some(ballot);
                Decision {
                    reply: Response::Promise {
                        accepted: slot.accepted.clone(),
                        record: slot.record.clone(),
                        lease_left_ms,
                        uptime_ms,
                    },
                    changed: Some(device),
                }
            }
            Request::Accept {
                device,
                ballot,
                record,
            } => {
                let slot = match self.slot_mut(&device) {
                    Ok(s) => s,
                    Err(r) => return unchanged(r),
                };
                let below_promise = slot.promised.as_ref().is_some_and(|p| *p > ballot);
                let not_above_accepted = slot.accepted.as_ref().is_some_and(|a| *a >= ballot);
                if below_promise || not_above_accepted {
                    return unchanged(Response::Conflict {
                        highest: slot.highest().cloned().unwrap_or(ballot),
                    });
                }
                slot.promised = Some(ballot.clone());
                slot.accepted = Some(ballot);
                slot.record = record;
                Decision {
                    reply: Response::Accepted,
                    changed: Some(device),
                }
            }
            Request::Renew {
                device,
                ballot,
                lease_ms,
            } => {
                let Some(slot) = self.slots.get(&device) else {
                    return unchanged(Response::Denied { primary: None });
                };
                if slot.record.primary.as_ref() != Some(from) {
                    return unchanged(Response::Denied {
                        primary: slot.record.primary.clone(),
                    });
                }
                let held = std::cmp::max(Some(&ballot), slot.accepted.as_ref());
                if slot.promised.as_ref() > held {
                    // A newer proposal is under way (perhaps a promotion waiting out this
                    // very lease): no extension until it is decided.
                    return unchanged(Response::Denied {
                        primary: Some(from.clone()),
                    });
                }
                let expiry = now + Duration::from_millis(lease_ms.min(wire::MAX_LEASE_MS));
                self.grants.insert(
                    device,
                    Grant {
                        holder: from.clone(),
                        expiry,
                    },
                );
                unchanged(Response::Granted)
            }
            Request::Release { device } => {
                if self.grants.get(&device).is_some_and(|g| g.holder == *from) {
                    self.grants.remove(&device);
                }
                unchanged(Response::Released)
            }
        }
    }
}

/// Why a voter's state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A damaged state file: starting without it could break a promise, so the voter does
    /// not start. Restore it or, if this voter's state is truly lost, remove it while a
    /// majority of the other voters are up.
    #[error("{path}: damaged voter state: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// "ESQV": esos quorum voter state, version 1.
const STATE_MAGIC: u32 = 0x4553_5156;
const STATE_PREFIX: &str = "dev-";
const STATE_SUFFIX: &str = ".vote";

/// One file per device under a directory, replaced crash-safely on every change.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

pub fn encode_slot(slot: &Slot) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(STATE_MAGIC);
    wire::put_opt_ballot(&mut w, slot.promised.as_ref());
    wire::put_opt_ballot(&mut w, slot.accepted.as_ref());
    wire::put_record(&mut w, &slot.record);
    let mut v = w.finish();
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

pub fn decode_slot(bytes: &[u8]) -> Result<Slot, String> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or("shorter than a checksum")?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    let magic = r.u32("magic").map_err(|e| e.to_string())?;
    if magic != STATE_MAGIC {
        return Err(format!("magic {magic:#010x}"));
    }
    let slot = (|| {
        let slot = Slot {
            promised: wire::get_opt_ballot(&mut r)?,
            accepted: wire::get_opt_ballot(&mut r)?,
            record: wire::get_record(&mut r)?,
        };
        r.end("state")?;
        Ok::<_, crate::frame::FrameError>(slot)
    })()
    .map_err(|e| e.to_string())?;
    if slot.promised < slot.accepted {
        return Err("promised ballot below the accepted one".into());
    }
    Ok(slot)
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, device: &str) -> PathBuf {
        debug_assert!(wire::valid_device_name(device));
        self.dir
            .join(format!("{STATE_PREFIX}{device}{STATE_SUFFIX}"))
    }

    /// Every device's slot found in the directory (created when missing).
    pub fn load(&self) -> Result<HashMap<String, Slot>, StoreError> {
        let io_err = |source| StoreError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io_err)?;
        let mut slots = HashMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(device) = name
                .to_str()
                .and_then(|n| n.strip_prefix(STATE_PREFIX))
                .and_then(|n| n.strip_suffix(STATE_SUFFIX))
                .filter(|d| wire::valid_device_name(d))
            else {
                continue;
            };
            let path = entry.path();
            let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            let slot =
                decode_slot(&bytes).map_err(|reason| StoreError::Corrupt { path, reason })?;
            slots.insert(device.to_owned(), slot);
        }
        Ok(slots)
    }

    pub fn save(&self, device: &str, slot: &Slot) -> io::Result<()> {
        replace(&self.path(device), &encode_slot(slot), Replace::default())
    }
}

/// An acceptor with its store: what this node (or a witness) answers voters with.
#[derive(Debug)]
pub struct Voter {
    state: Mutex<Acceptor>,
    store: Store,
}

impl Voter {
    /// Loads the state under `dir`.
    pub fn open(dir: &Path) -> Result<Voter, StoreError> {
        let store = Store::new(dir);
        let slots = store.load()?;
        Ok(Voter {
            state: Mutex::new(Acceptor::new(slots, Instant::now())),
            store,
        })
    }

    pub fn highest_counter(&self) -> u64 {
        self.state.locked().highest_counter()
    }

    /// Handles one request; blocks on the disk when the state changes (call it off the
    /// async workers). The lock is held across the write so that two changes of one slot
    /// reach the disk in the order they were decided.
    pub fn handle(&self, from: &NodeName, req: Request) -> Response {
        let mut acc = self.state.locked();
        let device = match &req {
            Request::Prepare { device, .. } | Request::Accept { device, .. } => {
                Some(device.clone())
            }
            _ => None,
        };
        let old = device.as_deref().and_then(|d| acc.slot(d).cloned());
        let d = acc.handle(from, req, Instant::now());
        if let Some(dev) = d.changed {
            let slot = acc.slot(&dev).cloned().unwrap_or_default();
            if let Err(e) = self.store.save(&dev, &slot) {
                tracing::error!("voter state of {dev}: {e}");
                acc.restore(&dev, old);
                return Response::Failed(format!("voter storage: {e}"));
            }
        }
        d.reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }
    fn b(c: u64, node: &str) -> Ballot {
        Ballot {
            counter: c,
            node: n(node),
        }
    }
    fn rec(epoch: u64, primary: &str) -> Record {
        Record {
            epoch,
            primary: Some(n(primary)),
            generation: 9,
            up_to_date: vec![n(primary)],
        }
    }
    fn prep(d: &str, bal: Ballot) -> Request {
        Request::Prepare {
            device: d.into(),
            ballot: bal,
        }
    }
    fn acc(d: &str, bal: Ballot, r: Record) -> Request {
        Request::Accept {
            device: d.into(),
            ballot: bal,
            record: r,
        }
    }
    fn renew(bal: Ballot) -> Request {
        Request::Renew {
            device: "d".into(),
            ballot: bal,
            lease_ms: 1000,
        }
    }

    #[test]
    fn prepare_and_accept_follow_the_ballot_order() {
        let t = Instant::now();
        let mut a = Acceptor::new(HashMap::new(), t);
        let from = n("x");
        // (request, expected reply kind)
        let table: Vec<(Request, &str)> = vec![
            (prep("d", b(2, "n1")), "promise"),
            (prep("d", b(2, "n1")), "conflict"), // not above the promise
            (prep("d", b(1, "n2")), "conflict"),
            (acc("d", b(1, "n2"), rec(1, "n2")), "conflict"), // below the promise
            (acc("d", b(2, "n1"), rec(1, "n1")), "accepted"),
            (acc("d", b(2, "n1"), rec(1, "n1")), "conflict"), // not above accepted
            (prep("d", b(2, "n2")), "promise"),               // same counter, higher name
            (acc("d", b(3, "n1"), rec(2, "n1")), "accepted"), // above the promise
            (prep("e", b(1, "n1")), "promise"),               // registers are independent
        ];
        for (i, (req, want)) in table.into_iter().enumerate() {
            let got = match a.handle(&from, req, t).reply {
                Response::Promise { .. } => "promise",
                Response::Conflict { .. } => "conflict",
                Response::Accepted => "accepted",
                other => panic!("step {i}: {other:?}"),
            };
            assert_eq!(got, want, "step {i}");
        }
        let s = a.slot("d").unwrap();
        assert_eq!(s.accepted, Some(b(3, "n1")));
        assert_eq!(s.record, rec(2, "n1"));
        match a.handle(&from, prep("d", b(3, "a")), t).reply {
            Response::Conflict { highest } => assert_eq!(highest, b(3, "n1")),
            other => panic!("{other:?}"),
        }
        match a.handle(&from, prep("d", b(4, "n2")), t).reply {
            Response::Promise {
                accepted, record, ..
            } => {
                assert_eq!(accepted, Some(b(3, "n1")));
                assert_eq!(record, rec(2, "n1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leases_follow_the_record_and_stop_at_a_higher_promise() {
        let t0 = Instant::now();
        let mut a = Acceptor::new(HashMap::new(), t0);
        let (n1, n2) = (n("n1"), n("n2"));
        assert_eq!(
            a.handle(&n1, renew(b(1, "n1")), t0).reply,
            Response::Denied { primary: None }
        );
        a.handle(&n1, prep("d", b(1, "n1")), t0);
        a.handle(&n1, acc("d", b(1, "n1"), rec(1, "n1")), t0);
        assert_eq!(
            a.handle(&n2, renew(b(1, "n2")), t0).reply,
            Response::Denied {
                primary: Some(n1.clone())
            }
        );
        assert_eq!(
            a.handle(&n1, renew(b(1, "n1")), t0).reply,
            Response::Granted
        );
        // A read by n2 (prepare + accept of the same record) keeps n1's lease renewable.
        a.handle(&n2, prep("d", b(2, "n2")), t0);
        a.handle(&n2, acc("d", b(2, "n2"), rec(1, "n1")), t0);
        assert_eq!(
            a.handle(&n1, renew(b(1, "n1")), t0).reply,
            Response::Granted
        );
        // A promotion's prepare reports the lease left and stops renewals.
        let t1 = t0 + Duration::from_millis(300);
        match a.handle(&n2, prep("d", b(3, "n2")), t1).reply {
            Response::Promise {
                lease_left_ms,
                uptime_ms,
                ..
            } => {
                assert_eq!(lease_left_ms, 700);
                assert_eq!(uptime_ms, 300);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.handle(&n1, renew(b(1, "n1")), t1).reply,
            Response::Denied {
                primary: Some(n1.clone())
            }
        );
        // The proposer's own lease is not reported to it.
        match a.handle(&n1, prep("d", b(4, "n1")), t1).reply {
            Response::Promise { lease_left_ms, .. } => assert_eq!(lease_left_ms, 0),
            other => panic!("{other:?}"),
        }
        // Release forgets the grant.
        a.handle(&n1, Request::Release { device: "d".into() }, t1);
        match a.handle(&n2, prep("d", b(5, "n2")), t1).reply {
            Response::Promise { lease_left_ms, .. } => assert_eq!(lease_left_ms, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_device_count_is_bounded() {
        let t = Instant::now();
        let mut a = Acceptor::new(HashMap::new(), t);
        for i in 0..MAX_DEVICES {
            let r = a.handle(&n("x"), prep(&format!("d{i}"), b(1, "x")), t);
            assert!(matches!(r.reply, Response::Promise { .. }));
        }
        let r = a.handle(&n("x"), prep("one-more", b(1, "x")), t);
        assert!(matches!(r.reply, Response::Failed(_)));
        assert!(r.changed.is_none());
    }

    #[test]
    fn state_survives_a_restart_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = Voter::open(dir.path()).unwrap();
        let x = n("n1");
        v.handle(&x, prep("db", b(5, "n1")));
        v.handle(&x, acc("db", b(5, "n1"), rec(1, "n1")));
        v.handle(&x, prep("db", b(6, "n1")));
        drop(v);
        let v = Voter::open(dir.path()).unwrap();
        assert_eq!(v.highest_counter(), 6);
        assert!(matches!(
            v.handle(&x, prep("db", b(6, "n1"))),
            Response::Conflict { .. }
        ));
        match v.handle(&x, prep("db", b(7, "n2"))) {
            Response::Promise {
                accepted, record, ..
            } => {
                assert_eq!(accepted, Some(b(5, "n1")));
                assert_eq!(record, rec(1, "n1"));
            }
            other => panic!("{other:?}"),
        }
        drop(v);
        let path = dir.path().join("dev-db.vote");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Voter::open(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_failed_write_leaves_the_state_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let v = Voter::open(&dir.path().join("state")).unwrap();
        let x = n("n1");
        v.handle(&x, prep("db", b(1, "n1")));
        // Make the directory unwritable by replacing it with a file.
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state"), b"").unwrap();
        assert!(matches!(
            v.handle(&x, prep("db", b(2, "n1"))),
            Response::Failed(_)
        ));
        assert_eq!(v.highest_counter(), 1);
    }
}
