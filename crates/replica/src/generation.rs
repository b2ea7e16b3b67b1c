//! What two copies of a device have to do when a link comes up, from their generations.
//!
//! Each node holds a *current* generation (the line of writes its data belongs to), a
//! *bitmap* generation per peer (what the peer had when this node went on without it, so
//! the peer's copy = that generation + the chunks set in the bitmap), and a short
//! *history* of earlier current generations. Comparing them (the scheme DRBD calls
//! generation identifiers, written anew here):
//! - same current generation: in sync, unless one side stopped while primary (its
//!   activity log may hold writes the other never saw: it syncs those to the other);
//! - my bitmap generation is the peer's current one: the peer is where I left it: partial
//!   sync of my bitmap from me;
//! - the peer's current generation is older in my history: full sync from me;
//! - both went on from the same bitmap generation: split brain, the two bitmaps tell what
//!   each wrote;
//! - some older generation in common: split brain, only a full sync can resolve it;
//! - nothing in common: unrelated data.
//!
//! [`decide`] is pure and symmetric: the two ends compute mirrored answers.

use crate::arbiter::NodeName;
use crate::status::DataState;
use crate::wire::HISTORY_LEN;

/// One side's view of its copy, as its link hello says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub name: NodeName,
    pub data: DataState,
    pub current: u64,
    /// Bitmap generation towards the other side (0: none).
    pub bitmap: u64,
    pub history: [u64; HISTORY_LEN],
    /// Stopped while primary and not resynced since.
    pub crashed_primary: bool,
}

/// What the link does next, from the local node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Same data: replicate from now on.
    InSync,
    /// Copy to the peer: the chunks set in either bitmap, or everything when `full`.
    SyncFromMe { full: bool },
    /// Receive from the peer (mirror of [`Decision::SyncFromMe`]).
    SyncFromPeer { full: bool },
    /// Both copies took writes the other never saw since `mine`/`theirs` parted (current
    /// generations given); `bitmaps_usable` when both went on from the same bitmap
    /// generation, so a union of the two bitmaps covers every difference.
    SplitBrain {
        mine: u64,
        theirs: u64,
        bitmaps_usable: bool,
    },
    /// No generation in common: different data; the administrator decides.
    Unrelated,
    /// Neither side has ever been primary: waits for a forced promotion.
    BothFresh,
    /// The side that would be the source has no consistent data.
    NoUsableSource,
}

impl Decision {
    /// The same decision seen from the peer.
    pub fn mirror(self) -> Decision {
        match self {
            Decision::SyncFromMe { full } => Decision::SyncFromPeer { full },
            Decision::SyncFromPeer { full } => Decision::SyncFromMe { full },
            Decision::SplitBrain {
                mine,
                theirs,
                bitmaps_usable,
            } => Decision::SplitBrain {
                mine: theirs,
                theirs: mine,
                bitmaps_usable,
            },
            d => d,
        }
    }
}

fn usable(d: DataState) -> bool {
    matches!(d, DataState::UpToDate | DataState::Outdated)
}

/// The decision of `me` facing `peer`.
pub fn decide(me: &Side, peer: &Side) -> Decision {
    let d = raw(me, peer);
    match d {
        Decision::SyncFromMe { .. } if !usable(me.data) => Decision::NoUsableSource,
        Decision::SyncFromPeer { .. } if !usable(peer.data) => Decision::NoUsableSource,
        d => d,
    }
}

fn raw(me: &Side, peer: &Side) -> Decision {
    if me.current == 0 && peer.current == 0 {
        return Decision::BothFresh;
    }
    if me.current == 0 {
        return Decision::SyncFromPeer { full: true };
    }
    if peer.current == 0 {
        return Decision::SyncFromMe { full: true };
    }
    if me.current == peer.current {
        let consistent = (usable(me.data), usable(peer.data));
        return match (me.crashed_primary, peer.crashed_primary, consistent) {
            (_, _, (true, false)) => Decision::SyncFromMe { full: false },
            (_, _, (false, true)) => Decision::SyncFromPeer { full: false },
            (true, false, _) => Decision::SyncFromMe { full: false },
            (false, true, _) => Decision::SyncFromPeer { full: false },
            (true, true, _) if me.name < peer.name => Decision::SyncFromMe { full: false },
            (true, true, _) => Decision::SyncFromPeer { full: false },
            (false, false, _) => Decision::InSync,
        };
    }
    if me.bitmap != 0 && me.bitmap == peer.current {
        return Decision::SyncFromMe { full: false };
    }
    if peer.bitmap != 0 && peer.bitmap == me.current {
        return Decision::SyncFromPeer { full: false };
    }
    if me.history.contains(&peer.current) {
        return Decision::SyncFromMe { full: true };
    }
    if peer.history.contains(&me.current) {
        return Decision::SyncFromPeer { full: true };
    }
    let split = |bitmaps_usable| Decision::SplitBrain {
        mine: me.current,
        theirs: peer.current,
        bitmaps_usable,
    };
    if me.bitmap != 0 && me.bitmap == peer.bitmap {
        return split(true);
    }
    let older = |s: &Side| {
        let mut v = s.history.to_vec();
        v.push(s.bitmap);
        v.retain(|g| *g != 0);
        v
    };
    let (a, b) = (older(me), older(peer));
    if a.iter().any(|g| b.contains(g)) {
        return split(false);
    }
    Decision::Unrelated
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataState::*;
    use Decision::*;

    fn side(name: &str, data: DataState, current: u64, bitmap: u64, history: &[u64]) -> Side {
        let mut h = [0; HISTORY_LEN];
        h[..history.len()].copy_from_slice(history);
        Side {
            name: NodeName::new(name).unwrap(),
            data,
            current,
            bitmap,
            history: h,
            crashed_primary: false,
        }
    }

    fn crashed(mut s: Side) -> Side {
        s.crashed_primary = true;
        s
    }

    #[test]
    fn the_table() {
        let sb = |mine, theirs, bitmaps_usable| SplitBrain {
            mine,
            theirs,
            bitmaps_usable,
        };
        let cases = [
            // (what, me, peer, decision)
            (
                "both fresh",
                side("a", Inconsistent, 0, 0, &[]),
                side("b", Inconsistent, 0, 0, &[]),
                BothFresh,
            ),
            (
                "fresh peer",
                side("a", UpToDate, 5, 0, &[]),
                side("b", Inconsistent, 0, 0, &[]),
                SyncFromMe { full: true },
            ),
            (
                "fresh me",
                side("a", Inconsistent, 0, 0, &[]),
                side("b", UpToDate, 5, 0, &[]),
                SyncFromPeer { full: true },
            ),
            (
                "in sync",
                side("a", UpToDate, 5, 0, &[4]),
                side("b", UpToDate, 5, 0, &[4]),
                InSync,
            ),
            (
                "in sync, I crashed as primary",
                crashed(side("a", UpToDate, 5, 0, &[])),
                side("b", UpToDate, 5, 0, &[]),
                SyncFromMe { full: false },
            ),
            (
                "in sync, peer crashed as primary",
                side("a", UpToDate, 5, 0, &[]),
                crashed(side("b", UpToDate, 5, 0, &[])),
                SyncFromPeer { full: false },
            ),
            (
                "both crashed as primary: the smaller name is the source",
                crashed(side("a", UpToDate, 5, 0, &[])),
                crashed(side("b", UpToDate, 5, 0, &[])),
                SyncFromMe { full: false },
            ),
            (
                "same generation, peer's resync was cut",
                side("a", UpToDate, 5, 0, &[]),
                side("b", Inconsistent, 5, 0, &[]),
                SyncFromMe { full: false },
            ),
            (
                "I went on without the peer",
                side("a", UpToDate, 6, 5, &[5]),
                side("b", Outdated, 5, 0, &[4]),
                SyncFromMe { full: false },
            ),
            (
                "the peer went on without me",
                side("a", UpToDate, 5, 0, &[4]),
                side("b", UpToDate, 6, 5, &[5]),
                SyncFromPeer { full: false },
            ),
            (
                "the peer is further behind than my bitmap",
                side("a", UpToDate, 8, 7, &[7, 6, 5]),
                side("b", Outdated, 6, 0, &[5]),
                SyncFromMe { full: true },
            ),
            (
                "I am further behind",
                side("a", Outdated, 6, 0, &[5]),
                side("b", UpToDate, 8, 7, &[7, 6, 5]),
                SyncFromPeer { full: true },
            ),
            (
                "split brain from one base",
                side("a", UpToDate, 6, 5, &[5]),
                side("b", UpToDate, 7, 5, &[5]),
                sb(6, 7, true),
            ),
            (
                "split brain from an older base",
                side("a", UpToDate, 9, 8, &[8, 5]),
                side("b", UpToDate, 7, 6, &[6, 5]),
                sb(9, 7, false),
            ),
            (
                "unrelated",
                side("a", UpToDate, 9, 8, &[8]),
                side("b", UpToDate, 7, 6, &[6]),
                Unrelated,
            ),
            (
                "the source would be inconsistent",
                side("a", Inconsistent, 6, 5, &[5]),
                side("b", Outdated, 5, 0, &[]),
                NoUsableSource,
            ),
        ];
        for (what, me, peer, want) in cases {
            assert_eq!(decide(&me, &peer), want, "{what}");
            assert_eq!(decide(&peer, &me), want.mirror(), "{what}, mirrored");
        }
    }
}
