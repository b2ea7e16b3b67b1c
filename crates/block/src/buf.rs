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
//! Devices take them through [`crate::BlockDevice::read_split`] and
//! [`crate::BlockDevice::write_shared`]; the file device's engines hold them (as `Mem`)
//! exactly as they hold an `IoBuf`, so the kernel reads and writes them in place.
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

use crate::{BlockError, IoBuf};

/// The outcome of a read into a [`SplitBuf`], and the buffer, always returned.
pub type SplitResult = (Result<(), BlockError>, SplitBuf);

/// The outcome of a write of a [`SharedBuf`], and the payload, always returned.
pub type SharedResult = (Result<(), BlockError>, SharedBuf);

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

    /// Back to a `Vec`: free when this is the only piece of its allocation (every other
    /// piece joined back or dropped, an empty remainder included); otherwise the bytes are
    /// copied.
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

/// What an engine (`uring.rs`, `sync.rs`) holds for one request: any of the three buffer
/// kinds, whose bytes stay at one heap address for as long as the value is held (moving a
/// `Vec`, `BytesMut` or `Bytes` moves its handle, not its bytes).
#[derive(Debug)]
pub(crate) enum Mem {
    Vec(IoBuf),
    Split(BytesMut),
    /// Read-only: only ever the source of a write.
    Shared(Bytes),
}

impl Mem {
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Mem::Vec(v) => v,
            Mem::Split(b) => b,
            Mem::Shared(b) => b,
        }
    }

    /// Writable bytes; `None` for a shared payload, which nothing may write.
    pub(crate) fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match self {
            Mem::Vec(v) => Some(v),
            Mem::Split(b) => Some(b),
            Mem::Shared(_) => None,
        }
    }

    /// Back to the `Vec` it was made from (free). An engine returns the `Mem` it was given,
    /// so the other arms are unreachable; they convert rather than panic all the same.
    pub(crate) fn into_vec(self) -> IoBuf {
        match self {
            Mem::Vec(v) => v,
            Mem::Split(b) => b.into(),
            Mem::Shared(b) => b.into(),
        }
    }

    pub(crate) fn into_split(self) -> SplitBuf {
        match self {
            Mem::Split(b) => SplitBuf(b),
            Mem::Vec(v) => SplitBuf::from_vec(v),
            Mem::Shared(b) => SplitBuf(BytesMut::from(&b[..])),
        }
    }

    pub(crate) fn into_shared(self) -> SharedBuf {
        match self {
            Mem::Shared(b) => SharedBuf(b),
            Mem::Vec(v) => SharedBuf::from_vec(v),
            Mem::Split(b) => SharedBuf(b.freeze()),
        }
    }
}

impl From<SplitBuf> for Mem {
    fn from(b: SplitBuf) -> Mem {
        Mem::Split(b.0)
    }
}

impl From<SharedBuf> for Mem {
    fn from(b: SharedBuf) -> Mem {
        Mem::Shared(b.0)
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

    mod through_devices {
        use std::sync::Arc;

        use crate::engine::EngineChoice;
        use crate::file::tests::{ENGINES, pattern, spec};
        use crate::{Backend, BlockDevice, Device, DeviceSpec, FileDevice, PassThrough};

        use super::*;

        const LEN: usize = 16 << 10;

        fn ram() -> Device {
            Device::open(&DeviceSpec {
                backend: Backend::Ram {
                    size_bytes: 1 << 20,
                },
                block_size: 512,
                read_only: false,
                rotational: None,
            })
            .unwrap()
        }

        fn file(dir: &std::path::Path, engine: EngineChoice) -> Device {
            let path = dir.join(format!("f-{engine:?}"));
            let s = spec(&path, Some(1 << 20), 512, false);
            Device::File(FileDevice::open_file_with(&path, Some(1 << 20), &s, engine).unwrap())
        }

        /// A layer reading one request from three devices fills the request's own
        /// allocation: each piece is read in place and the pieces join back for free.
        #[tokio::test]
        async fn a_split_read_lands_in_one_allocation() {
            let dir = tempfile::tempdir().unwrap();
            let [sync, uring] = ENGINES.map(|e| file(dir.path(), e));
            let devices = [
                ram(),
                sync,
                Device::Stacked(Arc::new(PassThrough::new(uring))),
            ];
            for (i, d) in devices.iter().enumerate() {
                let (r, _) = d.write(0, pattern(i as u64, LEN), false).await;
                r.unwrap();
            }
            let request = vec![0u8; 3 * LEN];
            let base = request.as_ptr();
            let mut rest = SplitBuf::from_vec(request);
            let mut pieces = Vec::new();
            for d in &devices {
                let piece = rest.split_to(LEN);
                let (r, piece) = d.read_split(0, piece).await;
                r.unwrap();
                pieces.push(piece);
            }
            // The empty remainder still references the allocation: drop it, or `into_vec`
            // would have to copy.
            assert!(rest.is_empty());
            drop(rest);
            let mut pieces = pieces.into_iter();
            let mut whole = pieces.next().unwrap();
            for p in pieces {
                assert!(whole.join(p), "the pieces come back where they were cut");
            }
            let v = whole.into_vec();
            assert_eq!(
                v.as_ptr(),
                base,
                "no copy: the request's allocation holds the data"
            );
            for i in 0..3 {
                assert!(v[i * LEN..][..LEN] == pattern(i as u64, LEN), "piece {i}");
            }
        }

        /// A replica-like layer writes one payload to a file (each engine) and RAM at once:
        /// every device gets the same bytes, and the payload comes back uncopied.
        #[tokio::test]
        async fn a_shared_write_reaches_two_devices_without_a_copy() {
            let dir = tempfile::tempdir().unwrap();
            for engine in ENGINES {
                let local = file(dir.path(), engine);
                let peer = Device::Stacked(Arc::new(PassThrough::new(ram())));
                let data = pattern(9, LEN);
                let payload = SharedBuf::from_vec(data.clone());
                let base = payload.as_slice().as_ptr();
                let (a, b) = tokio::join!(
                    local.write_shared(4096, payload.clone(), true),
                    peer.write_shared(4096, payload.slice(..), false),
                );
                let ((ra, a), (rb, b)) = (a, b);
                ra.unwrap();
                rb.unwrap();
                assert_eq!(a.as_slice().as_ptr(), base, "{engine:?}");
                assert_eq!(b.as_slice().as_ptr(), base);
                drop((a, b));
                let v = payload.try_into_vec().unwrap();
                assert_eq!(v.as_ptr(), base);
                for d in [&local, &peer] {
                    let (r, got) = d.read(4096, vec![0; LEN]).await;
                    r.unwrap();
                    assert!(got == data);
                }
            }
        }

        #[tokio::test]
        async fn pieces_keep_range_checks() {
            let d = Device::Stacked(Arc::new(PassThrough::new(ram())));
            let (r, back) = d
                .read_split(1 << 20, SplitBuf::from_vec(vec![0; 512]))
                .await;
            assert!(r.is_err());
            assert_eq!(back.len(), 512);
            let (r, _) = d
                .write_shared(100, SharedBuf::from_vec(vec![0; 512]), false)
                .await;
            assert!(r.is_err());
        }
    }
}
