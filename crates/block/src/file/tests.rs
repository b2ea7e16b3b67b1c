//! Tests of the file and block-device backend (loop devices: `loopdev_tests.rs`).

use super::*;
use crate::{Backend, BlockErrorKind};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

pub(crate) const ENGINES: [EngineChoice; 2] = [EngineChoice::Sync, EngineChoice::Uring];

pub(crate) fn spec(path: &Path, size: Option<u64>, bs: u32, read_only: bool) -> DeviceSpec {
    DeviceSpec {
        backend: Backend::File {
            path: path.to_owned(),
            size_bytes: size,
        },
        block_size: bs,
        read_only,
        rotational: None,
    }
}

fn open(path: &Path, size: Option<u64>, bs: u32, engine: EngineChoice) -> FileDevice {
    FileDevice::open_file_with(path, size, &spec(path, size, bs, false), engine).unwrap()
}

pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Says once per process when io_uring could not be used, so a green run on a kernel
/// without it is not mistaken for a tested io_uring engine.
fn note_engine(dev: &FileDevice, engine: EngineChoice) {
    static NOTED: AtomicBool = AtomicBool::new(false);
    if engine == EngineChoice::Uring && !dev.uses_uring() && !NOTED.swap(true, Ordering::Relaxed) {
        eprintln!("NOTE: io_uring unavailable here; the uring tests ran the blocking engine");
    }
}

#[tokio::test]
async fn round_trip_at_various_offsets() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        for bs in [512u32, 4096] {
            let path = dir.path().join(format!("rt-{engine:?}-{bs}"));
            let size = 4 << 20;
            let dev = open(&path, Some(size), bs, engine);
            assert_eq!(dev.num_blocks(), size / u64::from(bs));
            let b = u64::from(bs);
            let cases = [
                (0, b),
                (b, 2 * b),
                (1 << 20, 300 << 10),
                (size - 8 * b, 8 * b),
            ];
            for (i, &(off, len)) in cases.iter().enumerate() {
                let data = pattern(i as u64 + 1, len as usize);
                let (r, back) = dev.write(off, data.clone(), i % 2 == 0).await;
                r.unwrap();
                assert_eq!(back, data, "write returns the buffer");
                let (r, got) = dev.read(off, vec![0xaa; len as usize]).await;
                r.unwrap();
                assert!(got == data, "{engine:?} bs {bs} offset {off}");
            }
            // Untouched space reads as zeros.
            let (r, got) = dev.read(2 << 20, vec![0xaa; 4096]).await;
            r.unwrap();
            assert!(got.iter().all(|&x| x == 0));
            dev.flush().await.unwrap();
            // Empty transfers are no-ops.
            let (r, _) = dev.read(size, Vec::new()).await;
            r.unwrap();
            let (r, _) = dev.write(0, Vec::new(), true).await;
            r.unwrap();
            note_engine(&dev, engine);
        }
    }
}

#[tokio::test]
async fn range_and_alignment_rejected_without_touching_data() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let path = dir.path().join(format!("range-{engine:?}"));
        let dev = open(&path, Some(64 << 10), 4096, engine);
        let (r, _) = dev.write(0, vec![5; 64 << 10], false).await;
        r.unwrap();
        let kind = |r: Result<(), BlockError>| r.unwrap_err().kind();
        let (r, _) = dev.write(60 << 10, vec![1; 8192], false).await;
        assert_eq!(kind(r), BlockErrorKind::OutOfRange);
        let (r, _) = dev.read(64 << 10, vec![0; 4096]).await;
        assert_eq!(kind(r), BlockErrorKind::OutOfRange);
        let (r, _) = dev.read(u64::MAX - 4095, vec![0; 8192]).await;
        assert_eq!(kind(r), BlockErrorKind::OutOfRange);
        let (r, _) = dev.write(512, vec![1; 4096], false).await;
        assert_eq!(kind(r), BlockErrorKind::Misaligned);
        let (r, _) = dev.write(0, vec![1; 4000], false).await;
        assert_eq!(kind(r), BlockErrorKind::Misaligned);
        let (r, got) = dev.read(0, vec![0; 64 << 10]).await;
        r.unwrap();
        assert!(got.iter().all(|&x| x == 5));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 10);
    }
}

#[tokio::test]
async fn read_only_rejects_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro");
    std::fs::write(&path, pattern(3, 8192)).unwrap();
    for engine in ENGINES {
        let s = spec(&path, None, 512, true);
        let dev = FileDevice::open_file_with(&path, None, &s, engine).unwrap();
        assert!(dev.read_only());
        let (r, _) = dev.write(0, vec![0; 512], false).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), BlockErrorKind::ReadOnly);
        assert!(e.message().contains("ro"), "{e}");
        let (r, got) = dev.read(0, vec![0; 8192]).await;
        r.unwrap();
        assert_eq!(got, pattern(3, 8192));
    }
    // A read-only device is not created.
    let missing = dir.path().join("missing");
    let s = spec(&missing, Some(4096), 512, true);
    assert!(FileDevice::open_file(&missing, Some(4096), &s).is_err());
    assert!(!missing.exists());
}

#[tokio::test]
async fn tmpfs_files_are_served_inline_and_correctly() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || !on_tmpfs(&File::open(shm).unwrap()) {
        eprintln!("skipped: /dev/shm is not a tmpfs here");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let dev = open(
        &dir.path().join("t.img"),
        Some(1 << 20),
        512,
        EngineChoice::Uring,
    );
    assert!(dev.memory_backed);
    let data = pattern(7, 8192);
    let (r, _) = dev.write(4096, data.clone(), false).await;
    r.unwrap();
    let (r, back) = dev.read(4096, vec![0; 8192]).await;
    r.unwrap();
    assert_eq!(back, data);
    // A transport may send the range from the page cache itself: same file, same bytes.
    let s = dev
        .resident_slice(4096, 8192)
        .unwrap()
        .expect("tmpfs is resident");
    assert_eq!((s.offset, s.len), (4096, 8192));
    let mut sent = vec![0; 8192];
    std::os::unix::fs::FileExt::read_exact_at(&*s.file, &mut sent, s.offset).unwrap();
    assert!(sent == data, "the file holds what was written");
    // The same bounds as a read.
    assert!(dev.resident_slice(1 << 20, 512).is_err());
    assert!(dev.resident_slice(100, 512).is_err());
    // FUA still goes through the durable path.
    let (r, _) = dev.write(0, data.clone(), true).await;
    r.unwrap();
    // Regular files elsewhere and device nodes on devtmpfs are not memory-backed.
    let other = tempfile::tempdir().unwrap();
    if !on_tmpfs(&File::open(other.path()).unwrap()) {
        let dev = open(
            &other.path().join("d.img"),
            Some(1 << 20),
            512,
            EngineChoice::Uring,
        );
        assert!(!dev.memory_backed);
        assert!(dev.resident_slice(0, 512).unwrap().is_none());
    }
}

#[test]
fn created_sparse_in_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/sparse.img");
    let dev = open(&path, Some(1 << 30), 4096, EngineChoice::Sync);
    assert_eq!(dev.num_blocks(), (1 << 30) / 4096);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    // st_blocks counts 512-byte units; a sparse file has (almost) none.
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "allocated {} blocks",
        meta.blocks()
    );
}

#[test]
fn size_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("size");
    let err = |size: Option<u64>, bs: u32| {
        FileDevice::open_file(&path, size, &spec(&path, size, bs, false)).unwrap_err()
    };
    // Not a multiple of the block size, or zero: rejected, naming the path.
    let e = err(Some(4096 + 512), 4096);
    assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
    assert!(e.message().contains("size"), "{e}");
    assert!(e.message().contains(path.to_str().unwrap()), "{e}");
    assert_eq!(err(Some(0), 512).kind(), BlockErrorKind::InvalidConfig);
    // Missing file without a size: cannot be created.
    assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
    // Existing file of an odd size without a configured size.
    std::fs::write(&path, vec![1u8; 1000]).unwrap();
    assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
    // Empty existing file without a size.
    std::fs::write(&path, []).unwrap();
    assert_eq!(err(None, 512).kind(), BlockErrorKind::InvalidConfig);
    // The file's size is used when none is configured.
    std::fs::write(&path, vec![1u8; 8192]).unwrap();
    let dev = open(&path, None, 4096, EngineChoice::Sync);
    assert_eq!(dev.num_blocks(), 2);
    // A smaller file is extended, keeping its data.
    let dev = open(&path, Some(1 << 20), 512, EngineChoice::Sync);
    assert_eq!(dev.num_blocks(), 2048);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    assert_eq!(&std::fs::read(&path).unwrap()[..8192], &[1u8; 8192][..]);
    // A larger file exports only the configured size and is not truncated.
    let dev = open(&path, Some(8192), 512, EngineChoice::Sync);
    assert_eq!(dev.num_blocks(), 16);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    // A directory is not a regular file.
    let e = FileDevice::open_file(dir.path(), Some(4096), &spec(dir.path(), None, 512, false))
        .unwrap_err();
    assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
}

#[tokio::test]
async fn fua_write_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let path = dir.path().join(format!("fua-{engine:?}"));
        let data = pattern(11, 128 << 10);
        {
            let dev = open(&path, Some(1 << 20), 512, engine);
            let (r, _) = dev.write(4096, data.clone(), true).await;
            r.unwrap();
            let (r, _) = dev.write(512 << 10, data.clone(), false).await;
            r.unwrap();
            dev.flush().await.unwrap();
        }
        let dev = open(&path, None, 512, engine);
        assert_eq!(dev.num_blocks(), 2048);
        for off in [4096, 512 << 10] {
            let (r, got) = dev.read(off, vec![0; data.len()]).await;
            r.unwrap();
            assert!(got == data);
        }
    }
}

#[tokio::test]
async fn reads_past_a_truncated_end_are_zeros() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let path = dir.path().join(format!("trunc-{engine:?}"));
        let dev = open(&path, Some(1 << 20), 512, engine);
        let (r, _) = dev.write(0, vec![7; 1 << 20], false).await;
        r.unwrap();
        // Someone else shrinks the file under the device.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let (r, got) = dev.read(0, vec![0xaa; 256 << 10]).await;
        r.unwrap();
        assert!(got[..4096].iter().all(|&x| x == 7));
        assert!(got[4096..].iter().all(|&x| x == 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_ops_are_all_correct() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let path = dir.path().join(format!("conc-{engine:?}"));
        const OPS: u64 = 512; // twice the queue depth: exercises waiting for a slot
        const LEN: u64 = 8192;
        let dev = Arc::new(open(&path, Some(OPS * LEN), 512, engine));
        let mut tasks = Vec::new();
        for i in 0..OPS {
            let dev = Arc::clone(&dev);
            tasks.push(tokio::spawn(async move {
                let (r, _) = dev
                    .write(i * LEN, pattern(i, LEN as usize), i % 7 == 0)
                    .await;
                r.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut tasks = Vec::new();
        for i in 0..OPS {
            let dev = Arc::clone(&dev);
            tasks.push(tokio::spawn(async move {
                let (r, got) = dev.read(i * LEN, vec![0; LEN as usize]).await;
                r.unwrap();
                assert!(got == pattern(i, LEN as usize), "block {i}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        if let Some(ring) = dev.engine.ring() {
            assert_eq!(ring.in_flight(), 0);
        }
        note_engine(&dev, engine);
    }
}

/// Polls `fut` once, then drops it: a request cancelled while the kernel may hold it.
async fn poll_once_then_drop<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_ops_leave_the_device_usable() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        let path = dir.path().join(format!("cancel-{engine:?}"));
        let size = 8 << 20;
        let dev = open(&path, Some(size), 4096, engine);
        let data = pattern(1, size as usize);
        let (r, _) = dev.write(0, data.clone(), false).await;
        r.unwrap();
        dev.flush().await.unwrap();
        for i in 0..64u64 {
            let off = (i % 8) << 20;
            if i % 8 == 0 {
                // Evict the file from the page cache so reads really go to the disk
                // and are still in the kernel when cancelled.
                // SAFETY: fadvise takes no pointers; the descriptor is open.
                unsafe {
                    libc::posix_fadvise(dev.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                };
            }
            let chunk = data[off as usize..][..1 << 20].to_vec();
            match i % 4 {
                0 | 1 => poll_once_then_drop(dev.read(off, vec![0; 1 << 20])).await,
                2 => poll_once_then_drop(dev.write(off, chunk, true)).await,
                _ => poll_once_then_drop(dev.flush()).await,
            }
        }
        let (r, got) = dev.read(0, vec![0; size as usize]).await;
        r.unwrap();
        assert!(got == data);
        if let Some(ring) = dev.engine.ring() {
            // Orphaned slots are reclaimed as their completions arrive.
            for _ in 0..500 {
                if ring.in_flight() == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(ring.in_flight(), 0);
            assert!(ring.orphaned() > 0, "no request was cancelled in flight");
        }
        // Dropping the device with cancelled requests outstanding waits for them.
        // SAFETY: fadvise takes no pointers; the descriptor is open.
        unsafe { libc::posix_fadvise(dev.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        for _ in 0..16 {
            poll_once_then_drop(dev.read(0, vec![0; 1 << 20])).await;
        }
        drop(dev);
    }
}

#[test]
fn device_outlives_its_first_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtimes");
    let dev = open(&path, Some(1 << 20), 512, EngineChoice::Uring);
    for round in 0..3u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (r, _) = dev.write(round * 4096, pattern(round, 4096), false).await;
            r.unwrap();
            let (r, got) = dev.read(round * 4096, vec![0; 4096]).await;
            r.unwrap();
            assert!(got == pattern(round, 4096));
        });
    }
}

#[test]
fn uring_engine_is_used_when_available() {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine");
    let dev = open(&path, Some(4096), 512, EngineChoice::Uring);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (r, _) = dev.read(0, vec![0; 512]).await;
        r.unwrap();
    });
    if disabled {
        eprintln!("NOTE: io_uring disabled by sysctl; fallback checked instead");
        assert!(!dev.uses_uring());
    } else {
        assert!(dev.uses_uring());
    }
    let dev = open(&path, Some(4096), 512, EngineChoice::Sync);
    assert!(!dev.uses_uring());
}

/// Discard, zeroing and allocation on the filesystem that holds `dir`.
pub(crate) async fn exercise_thin(dir: &Path, engine: EngineChoice) {
    let path = dir.join(format!("thin-{engine:?}"));
    let size: u64 = 8 << 20;
    let dev = open(&path, Some(size), 512, engine);
    assert!(dev.supports_discard() && dev.discard_zeroes());
    // A new sparse file is one unmapped extent.
    let ext = dev.allocation(0, size).await.unwrap();
    assert_eq!(
        ext,
        [Extent {
            offset: 0,
            len: size,
            mapped: false
        }]
    );
    let (r, _) = dev.write(0, pattern(1, 4 << 20), false).await;
    r.unwrap();
    dev.flush().await.unwrap();
    // Punch 1 MiB in the middle: reads zeros, reported as a hole.
    dev.discard(1 << 20, 1 << 20).await.unwrap();
    let (r, got) = dev.read(0, vec![0xaa; 4 << 20]).await;
    r.unwrap();
    let want = pattern(1, 4 << 20);
    assert!(got[..1 << 20] == want[..1 << 20]);
    assert!(got[1 << 20..2 << 20].iter().all(|&b| b == 0));
    assert!(got[2 << 20..] == want[2 << 20..]);
    let ext = dev.allocation(0, size).await.unwrap();
    let at = |off: u64| {
        ext.iter()
            .find(|e| e.offset <= off && off < e.offset + e.len)
    };
    assert!(at(0).unwrap().mapped, "{ext:?}");
    assert!(!at(1 << 20).unwrap().mapped, "{ext:?}");
    assert!(!at((2 << 20) - 512).unwrap().mapped, "{ext:?}");
    assert!(at(2 << 20).unwrap().mapped, "{ext:?}");
    assert!(!at(size - 512).unwrap().mapped, "{ext:?}");
    // Extents are adjacent, start at the query and cover it.
    assert_eq!(ext[0].offset, 0);
    assert!(
        ext.windows(2)
            .all(|w| w[0].offset + w[0].len == w[1].offset)
    );
    assert_eq!(ext.last().map(|e| e.offset + e.len), Some(size));
    // A query starting inside a mapped run starts there.
    let ext = dev.allocation(3 << 20, 512).await.unwrap();
    assert_eq!(
        ext,
        [Extent {
            offset: 3 << 20,
            len: 512,
            mapped: true
        }]
    );
    // A sub-filesystem-block discard still zeroes exactly its blocks.
    dev.discard(512, 1024).await.unwrap();
    let (r, got) = dev.read(0, vec![0xaa; 4096]).await;
    r.unwrap();
    assert!(got[..512] == want[..512]);
    assert!(got[512..1536].iter().all(|&b| b == 0));
    assert!(got[1536..] == want[1536..4096]);
    // Write zeroes: reads zeros, neighbours intact.
    dev.write_zeroes(3 << 20, 8192).await.unwrap();
    let (r, got) = dev.read((3 << 20) - 512, vec![0xaa; 9216]).await;
    r.unwrap();
    assert!(got[..512] == want[(3 << 20) - 512..3 << 20]);
    assert!(got[512..8704].iter().all(|&b| b == 0));
    assert!(got[8704..] == want[(3 << 20) + 8192..(3 << 20) + 8704]);
    // Range and alignment are checked; nothing is touched.
    let kind = |r: Result<(), BlockError>| r.unwrap_err().kind();
    assert_eq!(
        kind(dev.discard(size, 512).await),
        BlockErrorKind::OutOfRange
    );
    assert_eq!(
        kind(dev.discard(100, 512).await),
        BlockErrorKind::Misaligned
    );
    assert_eq!(
        kind(dev.write_zeroes(size - 512, 1024).await),
        BlockErrorKind::OutOfRange
    );
    assert!(dev.allocation(size, 512).await.is_err());
    dev.discard(0, 0).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    drop(dev);
    // Read-only devices refuse.
    let s = spec(&path, None, 512, true);
    let ro = FileDevice::open_file_with(&path, None, &s, engine).unwrap();
    assert_eq!(kind(ro.discard(0, 512).await), BlockErrorKind::ReadOnly);
    assert_eq!(
        kind(ro.write_zeroes(0, 512).await),
        BlockErrorKind::ReadOnly
    );
}

#[tokio::test]
async fn discard_zeroes_and_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for engine in ENGINES {
        exercise_thin(dir.path(), engine).await;
    }
    // tmpfs as well, when there is one.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        for engine in ENGINES {
            exercise_thin(dir.path(), engine).await;
        }
    }
}
