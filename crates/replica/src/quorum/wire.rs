//! The quorum's messages (frame kinds `0x0200..=0x02ff`): one request, one reply, in order,
//! on a connection opened with [`crate::net::Purpose::Vote`]. Pure codecs: every decoder
//! bounds what a peer controls and never panics.

use crate::arbiter::{MAX_DATA_NODES, NodeName, Record};
use crate::frame::{FrameError, Reader, Writer};

pub const KIND_PREPARE: u16 = 0x0201;
pub const KIND_ACCEPT: u16 = 0x0202;
pub const KIND_RENEW: u16 = 0x0203;
pub const KIND_RELEASE: u16 = 0x0204;
pub const KIND_PING: u16 = 0x0205;
pub const KIND_PROMISE: u16 = 0x0281;
pub const KIND_ACCEPTED: u16 = 0x0282;
pub const KIND_CONFLICT: u16 = 0x0283;
pub const KIND_GRANTED: u16 = 0x0284;
pub const KIND_DENIED: u16 = 0x0285;
pub const KIND_RELEASED: u16 = 0x0286;
pub const KIND_PONG: u16 = 0x0287;
pub const KIND_FAILED: u16 = 0x0288;

/// Longest replicated device name (bytes); the same rule as the daemon's object names, so
/// a name is safe inside a file name.
pub const MAX_DEVICE_NAME_LEN: usize = 64;
/// Longest lease a primary may ask for (ms): a peer cannot make a voter hold a grant, and
/// a promotion wait, for longer.
pub const MAX_LEASE_MS: u64 = 60_000;

/// Highest ballot counter a voter or proposer takes from a peer: far above any counter
/// reached in practice (one per round), far enough below `u64::MAX` that bumping past it
/// never overflows.
pub const MAX_BALLOT_COUNTER: u64 = 1 << 62;

/// A proposal number: ordered by counter, then by the proposer's name, so two proposers
/// never use the same ballot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    pub counter: u64,
    pub node: NodeName,
}

/// What a proposer or a primary asks of one voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Prepare {
        device: String,
        ballot: Ballot,
    },
    Accept {
        device: String,
        ballot: Ballot,
        record: Record,
    },
    /// The sender, primary of `device` since `ballot`, asks for a lease of `lease_ms`.
    Renew {
        device: String,
        ballot: Ballot,
        lease_ms: u64,
    },
    /// The sender gives its lease on `device` back.
    Release {
        device: String,
    },
    Ping,
}

/// A voter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Prepare granted: the voter's accepted ballot and record, how long the lease it
    /// granted to another node still runs, and how long ago the voter started (a voter
    /// that restarted may have forgotten a grant).
    Promise {
        accepted: Option<Ballot>,
        record: Record,
        lease_left_ms: u64,
        uptime_ms: u64,
    },
    Accepted,
    /// The voter has seen a higher ballot.
    Conflict {
        highest: Ballot,
    },
    Granted,
    /// Lease refused: the voter's record names `primary`, or (when that is the sender) a
    /// newer proposal overtook the sender's.
    Denied {
        primary: Option<NodeName>,
    },
    Released,
    Pong,
    /// The voter could not do it (storage failure, a malformed request).
    Failed(String),
}

/// Checks a device name: `[A-Za-z0-9._-]`, 1 to [`MAX_DEVICE_NAME_LEN`] bytes.
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DEVICE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn node(r: &mut Reader<'_>, field: &'static str) -> Result<NodeName, FrameError> {
    let s = r.str(field)?;
    NodeName::new(&s).ok_or(FrameError::Invalid {
        field,
        reason: format!("{s:?} is not a node name"),
    })
}

fn device(r: &mut Reader<'_>) -> Result<String, FrameError> {
    let s = r.str("device")?;
    if !valid_device_name(&s) {
        return Err(FrameError::Invalid {
            field: "device",
            reason: format!("{s:?} is not a device name"),
        });
    }
    Ok(s)
}

pub(crate) fn put_ballot(w: &mut Writer, b: &Ballot) {
    w.u64(b.counter).str(b.node.as_str());
}

pub(crate) fn get_ballot(r: &mut Reader<'_>) -> Result<Ballot, FrameError> {
    let counter = r.u64("ballot.counter")?;
    if counter > MAX_BALLOT_COUNTER {
        return Err(FrameError::Invalid {
            field: "ballot.counter",
            reason: format!("{counter}; at most {MAX_BALLOT_COUNTER}"),
        });
    }
    Ok(Ballot {
        counter,
        node: node(r, "ballot.node")?,
    })
}

pub(crate) fn put_opt_ballot(w: &mut Writer, b: Option<&Ballot>) {
    match b {
        None => w.u8(0),
        Some(b) => {
            w.u8(1);
            put_ballot(w, b);
            w
        }
    };
}

pub(crate) fn get_opt_ballot(r: &mut Reader<'_>) -> Result<Option<Ballot>, FrameError> {
    match r.u8("ballot.present")? {
        0 => Ok(None),
        1 => get_ballot(r).map(Some),
        v => Err(FrameError::Invalid {
            field: "ballot.present",
            reason: format!("{v}"),
        }),
    }
}

pub(crate) fn put_record(w: &mut Writer, rec: &Record) {
    debug_assert!(rec.up_to_date.len() <= MAX_DATA_NODES);
    w.u64(rec.epoch).u64(rec.generation);
    match &rec.primary {
        None => w.u8(0),
        Some(p) => w.u8(1).str(p.as_str()),
    };
    w.u8(rec.up_to_date.len() as u8);
    for n in &rec.up_to_date {
        w.str(n.as_str());
    }
}

pub(crate) fn get_record(r: &mut Reader<'_>) -> Result<Record, FrameError> {
    let epoch = r.u64("record.epoch")?;
    let generation = r.u64("record.generation")?;
    let primary = match r.u8("record.primary")? {
        0 => None,
        1 => Some(node(r, "record.primary")?),
        v => {
            return Err(FrameError::Invalid {
                field: "record.primary",
                reason: format!("flag {v}"),
            });
        }
    };
    let n = usize::from(r.u8("record.up_to_date")?);
    if n > MAX_DATA_NODES {
        return Err(FrameError::Invalid {
            field: "record.up_to_date",
            reason: format!("{n} nodes; at most {MAX_DATA_NODES}"),
        });
    }
    let mut up_to_date = Vec::with_capacity(n);
    for _ in 0..n {
        up_to_date.push(node(r, "record.up_to_date")?);
    }
    Ok(Record {
        epoch,
        primary,
        generation,
        up_to_date,
    })
}

impl Request {
    /// The frame kind and payload.
    pub fn encode(&self) -> (u16, Vec<u8>) {
        let mut w = Writer::new();
        let kind = match self {
            Request::Prepare { device, ballot } => {
                w.str(device);
                put_ballot(&mut w, ballot);
                KIND_PREPARE
            }
            Request::Accept {
                device,
                ballot,
                record,
            } => {
                w.str(device);
                put_ballot(&mut w, ballot);
                put_record(&mut w, record);
                KIND_ACCEPT
            }
            Request::Renew {
                device,
                ballot,
                lease_ms,
            } => {
                w.str(device);
                put_ballot(&mut w, ballot);
                w.u64(*lease_ms);
                KIND_RENEW
            }
            Request::Release { device } => {
                w.str(device);
                KIND_RELEASE
            }
            Request::Ping => KIND_PING,
        };
        (kind, w.finish())
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<Request, FrameError> {
        let mut r = Reader::new(payload);
        let req = match kind {
            KIND_PREPARE => Request::Prepare {
                device: device(&mut r)?,
                ballot: get_ballot(&mut r)?,
            },
            KIND_ACCEPT => Request::Accept {
                device: device(&mut r)?,
                ballot: get_ballot(&mut r)?,
                record: get_record(&mut r)?,
            },
            KIND_RENEW => {
                let device = device(&mut r)?;
                let ballot = get_ballot(&mut r)?;
                let lease_ms = r.u64("lease_ms")?;
                if lease_ms == 0 || lease_ms > MAX_LEASE_MS {
                    return Err(FrameError::Invalid {
                        field: "lease_ms",
                        reason: format!("{lease_ms}; 1 to {MAX_LEASE_MS}"),
                    });
                }
                Request::Renew {
                    device,
                    ballot,
                    lease_ms,
                }
            }
            KIND_RELEASE => Request::Release {
                device: device(&mut r)?,
            },
            KIND_PING => Request::Ping,
            k => return Err(FrameError::UnknownKind(k)),
        };
        r.end("request")?;
        Ok(req)
    }
}

impl Response {
    pub fn encode(&self) -> (u16, Vec<u8>) {
        let mut w = Writer::new();
        let kind = match self {
            Response::Promise {
                accepted,
                record,
                lease_left_ms,
                uptime_ms,
            } => {
                put_opt_ballot(&mut w, accepted.as_ref());
                put_record(&mut w, record);
                w.u64(*lease_left_ms).u64(*uptime_ms);
                KIND_PROMISE
            }
            Response::Accepted => KIND_ACCEPTED,
            Response::Conflict { highest } => {
                put_ballot(&mut w, highest);
                KIND_CONFLICT
            }
            Response::Granted => KIND_GRANTED,
            Response::Denied { primary } => {
                match primary {
                    None => w.u8(0),
                    Some(p) => w.u8(1).str(p.as_str()),
                };
                KIND_DENIED
            }
            Response::Released => KIND_RELEASED,
            Response::Pong => KIND_PONG,
            Response::Failed(reason) => {
                w.str(reason);
                KIND_FAILED
            }
        };
        (kind, w.finish())
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<Response, FrameError> {
        let mut r = Reader::new(payload);
        let resp = match kind {
            KIND_PROMISE => Response::Promise {
                accepted: get_opt_ballot(&mut r)?,
                record: get_record(&mut r)?,
                // A voter cannot make a proposer wait longer than the longest lease.
                lease_left_ms: r.u64("lease_left_ms")?.min(MAX_LEASE_MS),
                uptime_ms: r.u64("uptime_ms")?,
            },
            KIND_ACCEPTED => Response::Accepted,
            KIND_CONFLICT => Response::Conflict {
                highest: get_ballot(&mut r)?,
            },
            KIND_GRANTED => Response::Granted,
            KIND_DENIED => Response::Denied {
                primary: match r.u8("denied.primary")? {
                    0 => None,
                    _ => Some(node(&mut r, "denied.primary")?),
                },
            },
            KIND_RELEASED => Response::Released,
            KIND_PONG => Response::Pong,
            KIND_FAILED => Response::Failed(r.str("failed.reason")?),
            k => return Err(FrameError::UnknownKind(k)),
        };
        r.end("response")?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    #[test]
    fn every_message_round_trips() {
        let b = Ballot {
            counter: 7,
            node: n("n1"),
        };
        let rec = Record {
            epoch: 3,
            primary: Some(n("n2")),
            generation: 0xdead_beef,
            up_to_date: vec![n("n1"), n("n2")],
        };
        let reqs = [
            Request::Prepare {
                device: "db".into(),
                ballot: b.clone(),
            },
            Request::Accept {
                device: "db".into(),
                ballot: b.clone(),
                record: rec.clone(),
            },
            Request::Renew {
                device: "db".into(),
                ballot: b.clone(),
                lease_ms: 1500,
            },
            Request::Release {
                device: "db".into(),
            },
            Request::Ping,
        ];
        for q in reqs {
            let (k, p) = q.encode();
            assert_eq!(Request::decode(k, &p).unwrap(), q);
        }
        let resps = [
            Response::Promise {
                accepted: Some(b.clone()),
                record: rec.clone(),
                lease_left_ms: 12,
                uptime_ms: 99,
            },
            Response::Promise {
                accepted: None,
                record: Record::default(),
                lease_left_ms: 0,
                uptime_ms: 0,
            },
            Response::Accepted,
            Response::Conflict { highest: b },
            Response::Granted,
            Response::Denied { primary: None },
            Response::Denied {
                primary: Some(n("n1")),
            },
            Response::Released,
            Response::Pong,
            Response::Failed("disk full".into()),
        ];
        for s in resps {
            let (k, p) = s.encode();
            assert_eq!(Response::decode(k, &p).unwrap(), s);
        }
    }

    #[test]
    fn hostile_fields_are_refused() {
        let (k, mut p) = Request::Release {
            device: "db".into(),
        }
        .encode();
        p[2] = b'/';
        assert!(Request::decode(k, &p).is_err(), "a slash in a device name");
        let (k, p) = Request::Renew {
            device: "db".into(),
            ballot: Ballot {
                counter: 1,
                node: n("a"),
            },
            lease_ms: MAX_LEASE_MS + 1,
        }
        .encode();
        assert!(Request::decode(k, &p).is_err(), "an over-long lease");
        let mut w = Writer::new();
        w.u64(1).u64(2).u8(0).u8(MAX_DATA_NODES as u8 + 1);
        assert!(get_record(&mut Reader::new(&w.finish())).is_err());
        let mut w = Writer::new();
        w.u64(MAX_BALLOT_COUNTER + 1).str("n1");
        assert!(get_ballot(&mut Reader::new(&w.finish())).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(kind in 0x0200u16..0x0290,
                                bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Request::decode(kind, &bytes);
            let _ = Response::decode(kind, &bytes);
        }
    }
}
