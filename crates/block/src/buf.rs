//! Buffers a stacked layer can split and share without copying.
//!
//! The front-ends pass [`IoBuf`] (`Vec<u8>`) in and get it back; that stays. A layer that
//! needs more converts at its boundary, without copying:
//! - [`SplitBuf`] (reads): one request buffer cut into disjoint, independently owned,
//!   writable sub-ranges (a thin volume reading one request from several clusters), each
//!   handed to a lower device, then joined back into the original allocation.
//! - [`SharedBuf`] (writes): one immutable payload referenced by several owners (a replica
//!   writing the same data locally and to a peer), and sliced into sub-ranges.
//!
//! Why `bytes`: `BytesMut::split_to`/`unsplit` and `Bytes::clone`/`slice` are exactly these
//! two operations over one reference-counted allocation, already a workspace dependency, and
//! long proven in tokio's stack; a type of our own would re-implement the same unsafe
//! bookkeeping.
//!
//! Ownership rule (as in `uring.rs`): a buffer, or any piece of it, handed to a device stays
//! owned by that request until the device hands it back. The allocation lives until its last
//! piece is dropped, so a cancelled request that leaves a piece with the kernel cannot free
//! memory the kernel still writes; and a piece is only ever writable through its one owner
//! ([`SplitBuf`] pieces are disjoint; [`SharedBuf`] is read-only), so no two writers race.

use std::ops::RangeBounds;

use bytes::{Bytes, BytesMut};

use crate::IoBuf;

/// A writable buffer that splits into disjoint owned pieces and joins back, for reads.
#[derive(Debug, Default)]
pub struct SplitBuf(BytesMut);

impl SplitBuf {
    /// Takes over `buf`'s allocation (no copy).
    pub fn from_vec(buf: IoBuf) -> Self {
        match Bytes::from(buf).try_into_mut() {
            Ok(b) => SplitBuf(b),
            // A fresh `Bytes` from a `Vec` has one owner: the conversion cannot fail.
            Err(_) => unreachable!("a Bytes made from a Vec is unique"),
        }
    }

    /// Cuts off and returns `[0, at)`; `self` keeps `[at, len)`. Both stay writable and
    /// share the allocation.
    ///
    /// # Panics
    /// When `at > len()`.
    pub fn split_to(&mut self, at: usize) -> SplitBuf {
        SplitBuf(self.0.split_to(at))
    }

    /// Appends `next`, which must be the piece that directly follows `self` in the same
    /// allocation (as split off); otherwise its bytes are copied. Returns whether the join
    /// was free.
    pub fn join(&mut self, next: SplitBuf) -> bool {
        match self.0.try_unsplit(next.0) {
            Ok(()) => true,
            Err(next) => {
                self.0.extend_from_slice(&next);
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Back to a `Vec`: free when this is the only piece of its allocation (all pieces
    /// joined back); otherwise the bytes are copied.
    pub fn into_vec(self) -> IoBuf {
        self.0.into()
    }

    /// Freezes the bytes into a shareable payload (no copy).
    pub fn freeze(self) -> SharedBuf {
        SharedBuf(self.0.freeze())
    }
}

/// A read-only payload with any number of owners, sliceable, for writes.
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(Bytes);

impl SharedBuf {
    /// Takes over `buf`'s allocation (no copy).
    pub fn from_vec(buf: IoBuf) -> Self {
        SharedBuf(Bytes::from(buf))
    }

    /// The sub-range `range` of this payload, sharing its allocation.
    ///
    /// # Panics
    /// When the range is out of bounds.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> SharedBuf {
        SharedBuf(self.0.slice(range))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// True when no other owner references the allocation.
    pub fn is_unique(&self) -> bool {
        self.0.is_unique()
    }

    /// Back to a `Vec` once every other owner has dropped its reference: no copy when the
    /// payload is the whole allocation. `Err(self)` while it is still shared, so a caller
    /// never gets a private copy by accident.
    pub fn try_into_vec(self) -> Result<IoBuf, SharedBuf> {
        if !self.0.is_unique() {
            return Err(self);
        }
        Ok(self.0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pieces_share_the_allocation_and_join_back_free() {
        let v: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let base = v.as_ptr();
        let mut rest = SplitBuf::from_vec(v);
        assert_eq!(
            rest.as_slice().as_ptr(),
            base,
            "from_vec takes the allocation"
        );
        // A read split across three clusters: three disjoint writable pieces.
        let mut a = rest.split_to(1024);
        let mut b = rest.split_to(2048);
        let mut c = rest;
        assert_eq!(a.as_slice().as_ptr(), base);
        assert_eq!(b.as_slice().as_ptr(), base.wrapping_add(1024));
        assert_eq!(c.as_slice().as_ptr(), base.wrapping_add(3072));
        a.as_mut_slice().fill(1);
        b.as_mut_slice().fill(2);
        c.as_mut_slice().fill(3);
        assert!(
            a.join(b) && a.join(c),
            "adjacent pieces join without a copy"
        );
        let v = a.into_vec();
        assert_eq!(v.as_ptr(), base, "the request gets its own allocation back");
        assert_eq!(v.len(), 4096);
        assert!(v[..1024].iter().all(|&x| x == 1));
        assert!(v[1024..3072].iter().all(|&x| x == 2));
        assert!(v[3072..].iter().all(|&x| x == 3));
    }

    #[test]
    fn non_adjacent_join_copies_and_says_so() {
        let mut x = SplitBuf::from_vec(vec![1; 512]);
        let y = SplitBuf::from_vec(vec![2; 512]);
        assert!(!x.join(y));
        assert_eq!(x.len(), 1024);
        assert_eq!(x.as_slice()[511..513], [1, 2]);
    }

    #[test]
    fn one_payload_shared_by_two_writers_and_sliced() {
        let v = vec![7u8; 8192];
        let base = v.as_ptr();
        let local = SharedBuf::from_vec(v);
        let peer = local.clone();
        assert_eq!(local.as_slice().as_ptr(), base);
        assert_eq!(
            peer.as_slice().as_ptr(),
            base,
            "both owners see one allocation"
        );
        let tail = peer.slice(4096..);
        assert_eq!(tail.as_slice().as_ptr(), base.wrapping_add(4096));
        assert_eq!(tail.len(), 4096);
        // Still shared: no silent copy back into a Vec.
        let local = local.try_into_vec().unwrap_err();
        drop((peer, tail));
        assert!(local.is_unique());
        let v = local.try_into_vec().unwrap();
        assert_eq!(v.as_ptr(), base, "the last owner gets the allocation back");
        assert_eq!(v.len(), 8192);
    }

    #[test]
    fn freeze_keeps_the_allocation() {
        let v = vec![3u8; 1024];
        let base = v.as_ptr();
        let s = SplitBuf::from_vec(v).freeze();
        assert_eq!(s.as_slice().as_ptr(), base);
    }
}
