//! The one mapping from block-layer failures to SCSI sense data.
//!
//! Every command that touches the device turns a [`BlockError`] into sense here and nowhere
//! else; the block layer already classified the OS error into a [`BlockErrorKind`]
//! (`esos_block`'s `error.rs`), so nothing here looks at errnos.
//!
//! | kind | sense key, ASC/ASCQ | why |
//! | --- | --- | --- |
//! | `NoSpace` | DATA PROTECT, 27h/07h SPACE ALLOCATION FAILED WRITE PROTECT | SBC-3 4.7.3.7: a thin LU out of space; hypervisors pause the VM instead of retrying |
//! | `Io`, read | MEDIUM ERROR, 11h/00h UNRECOVERED READ ERROR | SBC-3 4.x medium errors |
//! | `Io`, write | MEDIUM ERROR, 0Ch/00h WRITE ERROR | |
//! | `ReadOnly` | DATA PROTECT, 27h/00h WRITE PROTECTED | the backing store refused the change |
//! | `Retryable` | NOT READY, 04h/07h LOGICAL UNIT NOT READY, OPERATION IN PROGRESS | see below |
//! | `Unavailable` | NOT READY, 04h/0Ah LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION | a replicated device that lost its primary role, quorum or lease mid-command: multipath retries, on another path once the states change (SPC-4 5.16.2.6) |
//! | `OutOfRange` | ILLEGAL REQUEST, 21h/00h LBA OUT OF RANGE | the device is smaller than the CDB assumed (a resize raced the command) |
//! | `Misaligned`, `Unsupported` | ILLEGAL REQUEST, 24h/00h INVALID FIELD IN CDB | the request does not fit what the device can do |
//! | anything else | HARDWARE ERROR, 44h/00h INTERNAL TARGET FAILURE | a target bug or a broken configuration, not the medium |
//!
//! Retryable: a transient failure (timeout, EAGAIN, EBUSY, no memory) must make the
//! initiator retry, not fail the I/O up to the filesystem. NOT READY 04h/07h does that:
//! SPC-4 describes it as a condition that ends by itself, Linux's `scsi_io_completion_action`
//! (scsi_lib.c) retries NOT READY with ASC 04h and ASCQ 01h, 04h-09h, 14h, 1Ah, 1Bh... after
//! a delay until the command's time budget is spent, and Windows' class driver retries it
//! too. BUSY status would also be retried, but it carries no sense (so no reason shows in the
//! initiator's log) and a command's outcome here is sense data.

use esos_block::{BlockError, BlockErrorKind};

use crate::sense::{Asc, Sense, SenseKey};

/// Whether the failed operation read the medium or changed it (writes, flushes, discards,
/// zeroing). Allocation queries count as reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// The sense data for a block-layer failure of an operation in `dir`.
pub fn block_sense(e: &BlockError, dir: Direction) -> Sense {
    let (key, asc) = match e.kind() {
        BlockErrorKind::NoSpace => (
            SenseKey::DataProtect,
            Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        ),
        BlockErrorKind::Io => match dir {
            Direction::Read => (SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR),
            Direction::Write => (SenseKey::MediumError, Asc::WRITE_ERROR),
        },
        BlockErrorKind::ReadOnly => (SenseKey::DataProtect, Asc::WRITE_PROTECTED),
        BlockErrorKind::Retryable => (SenseKey::NotReady, Asc::NOT_READY_OPERATION_IN_PROGRESS),
        BlockErrorKind::OutOfRange => (SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE),
        BlockErrorKind::Unavailable => (SenseKey::NotReady, crate::alua::NOT_ACCESSIBLE_TRANSITION),
        BlockErrorKind::Misaligned | BlockErrorKind::Unsupported => {
            (SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB)
        }
        _ => (SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE),
    };
    Sense::new(key, asc)
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn os(errno: i32) -> BlockError {
        BlockError::io("op", io::Error::from_raw_os_error(errno))
    }

    fn kcq(e: &BlockError, dir: Direction) -> (SenseKey, u8, u8) {
        let s = block_sense(e, dir);
        (s.key, s.asc.0, s.asc.1)
    }

    #[test]
    fn os_errors_map_to_the_sense_an_initiator_acts_on() {
        use Direction::{Read, Write};
        use SenseKey::*;
        for (errno, dir, want) in [
            (libc::ENOSPC, Write, (DataProtect, 0x27, 0x07)),
            (libc::EDQUOT, Write, (DataProtect, 0x27, 0x07)),
            (libc::ENOSPC, Read, (DataProtect, 0x27, 0x07)),
            (libc::EIO, Read, (MediumError, 0x11, 0x00)),
            (libc::EIO, Write, (MediumError, 0x0C, 0x00)),
            (libc::ENXIO, Write, (MediumError, 0x0C, 0x00)),
            (libc::EROFS, Write, (DataProtect, 0x27, 0x00)),
            (libc::ETIMEDOUT, Read, (NotReady, 0x04, 0x07)),
            (libc::EAGAIN, Write, (NotReady, 0x04, 0x07)),
            (libc::EBUSY, Write, (NotReady, 0x04, 0x07)),
            (libc::EOPNOTSUPP, Write, (IllegalRequest, 0x24, 0x00)),
        ] {
            assert_eq!(kcq(&os(errno), dir), want, "errno {errno} {dir:?}");
        }
    }

    #[test]
    fn block_layer_kinds_map_without_an_os_error() {
        use SenseKey::*;
        let e = |kind| BlockError::new(kind, "x");
        let w = Direction::Write;
        assert_eq!(
            kcq(&e(BlockErrorKind::ReadOnly), w),
            (DataProtect, 0x27, 0x00)
        );
        assert_eq!(
            kcq(&e(BlockErrorKind::OutOfRange), w),
            (IllegalRequest, 0x21, 0x00)
        );
        assert_eq!(
            kcq(&e(BlockErrorKind::Misaligned), w),
            (IllegalRequest, 0x24, 0x00)
        );
        assert_eq!(
            kcq(&e(BlockErrorKind::InvalidConfig), w),
            (HardwareError, 0x44, 0x00)
        );
    }

    /// A stacked fault layer: writes fail as a full filesystem fails them (ENOSPC from the
    /// OS), everything else reaches the file below.
    #[derive(Debug)]
    struct FullFilesystem(esos_block::Device);

    impl esos_block::BlockDevice for FullFilesystem {
        fn block_size(&self) -> u32 {
            self.0.block_size()
        }
        fn num_blocks(&self) -> u64 {
            self.0.num_blocks()
        }
        fn read_only(&self) -> bool {
            self.0.read_only()
        }
        fn rotational(&self) -> bool {
            self.0.rotational()
        }
        async fn read(&self, offset: u64, buf: crate::IoBuf) -> esos_block::BufResult {
            self.0.read(offset, buf).await
        }
        async fn write(&self, offset: u64, buf: crate::IoBuf, _fua: bool) -> esos_block::BufResult {
            let e = io::Error::from_raw_os_error(libc::ENOSPC);
            (Err(BlockError::io(format!("write at {offset}"), e)), buf)
        }
        async fn flush(&self) -> Result<(), BlockError> {
            self.0.flush().await
        }
        fn supports_discard(&self) -> bool {
            self.0.supports_discard()
        }
        fn discard_zeroes(&self) -> bool {
            self.0.discard_zeroes()
        }
        async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
            self.0.discard(offset, len).await
        }
        async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
            self.0.write_zeroes(offset, len).await
        }
        async fn allocation(
            &self,
            offset: u64,
            len: u64,
        ) -> Result<Vec<esos_block::Extent>, BlockError> {
            self.0.allocation(offset, len).await
        }
    }

    /// A thin file LU on a full filesystem answers a WRITE with DATA PROTECT, SPACE
    /// ALLOCATION FAILED WRITE PROTECT (SBC-3 4.7.3.7), not a medium error; reads go on.
    #[tokio::test]
    async fn enospc_is_space_allocation_failed() {
        use std::sync::Arc;

        use esos_block::{Backend, Device, DeviceSpec};

        use crate::cdb::{encode, op};
        use crate::{
            Command, Identity, LogicalUnit, LuSettings, LunMap, MAX_CDB_LEN, Nexus, Status,
            TaskAttr,
        };

        let dir = tempfile::tempdir().unwrap();
        let file = Device::open(&DeviceSpec {
            backend: Backend::File {
                path: dir.path().join("thin.img"),
                size_bytes: Some(1 << 20),
            },
            block_size: 512,
            read_only: false,
            rotational: None,
        })
        .unwrap();
        let device = Device::Stacked(Arc::new(FullFilesystem(file)));
        let settings = LuSettings {
            thin: true,
            ..LuSettings::disk(Identity {
                vendor: "ESOS".into(),
                product: "thin".into(),
                revision: "0001".into(),
                serial: "SN-THIN".into(),
                uuid: [0; 16],
                naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            })
        };
        let map = LunMap::new(vec![(0, LogicalUnit::new(device, settings))]);
        let nexus = Arc::new(Nexus {
            id: 1,
            initiator_port: "iqn.init:1,i,0x1".into(),
            target_port: "iqn.2026-01.org.esos:t,t,0x0001".into(),
            relative_port: 1,
            port_group: 1,
        });
        let submit = |cdb: &[u8], expected_len: u32, data_out: bool, buf: Vec<u8>| {
            let mut c = [0u8; MAX_CDB_LEN];
            c[..cdb.len()].copy_from_slice(cdb);
            let cmd = Command {
                nexus: Arc::clone(&nexus),
                lun: crate::lun::encode(0),
                cdb: c,
                cdb_len: cdb.len() as u8,
                attr: TaskAttr::Simple,
                tag: 0,
                expected_len,
                data_out,
            };
            let fut = map.submit(cmd, buf);
            async move {
                tokio::time::timeout(std::time::Duration::from_secs(5), fut)
                    .await
                    .expect("command hung")
                    .0
            }
        };
        // The power-on unit attention first.
        let r = submit(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], 0, false, Vec::new()).await;
        assert_eq!(r.status, Status::CheckCondition);
        let fixed = |r: &crate::Response| {
            let b = r.sense.as_slice();
            assert_eq!(b[0] & 0x7F, 0x70, "fixed-format sense by default");
            (b[2] & 0x0F, b[12], b[13])
        };
        let cdb = encode::rw(true, 10, 8, 8, false, false);
        let r = submit(&cdb, 4096, true, vec![0x5a; 4096]).await;
        assert_eq!(r.status, Status::CheckCondition, "{r:?}");
        assert_eq!(fixed(&r), (0x7, 0x27, 0x07), "{r:?}");
        let cdb = encode::rw(false, 10, 8, 8, false, false);
        let r = submit(&cdb, 4096, false, Vec::new()).await;
        assert_eq!(r.status, Status::Good, "{r:?}");
    }
}
