//! Real filesystems and a real block device, through loop devices. Needs root, losetup,
//! mount and the mkfs tools; skips with a note otherwise. Everything it creates is undone by
//! [`Cleanup`], also when an assertion fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::FileDevice;
use crate::engine::EngineChoice;
use crate::file::tests::{ENGINES, pattern, spec};
use crate::{BlockDevice, BlockErrorKind};

/// Size of each loop device's backing file (xfs needs at least 300 MiB).
const BACKING_BYTES: u64 = 320 << 20;

/// Undoes, in reverse order of dependency: unmount, detach loops, remove temp files.
struct Cleanup {
    mounts: Vec<PathBuf>,
    loops: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        for l in self.loops.iter().rev() {
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
        // `dir` is removed when the field drops, after this.
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Cleanup {
    fn new() -> Self {
        Cleanup {
            mounts: Vec::new(),
            loops: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Attaches a new sparse backing file to a free loop device.
    fn loop_device(&mut self, name: &str, sector_size: u32) -> String {
        let backing = self.dir.path().join(format!("{name}.backing"));
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(BACKING_BYTES)
            .unwrap();
        let dev = run(
            "losetup",
            &[
                "--find",
                "--show",
                "--sector-size",
                &sector_size.to_string(),
                backing.to_str().unwrap(),
            ],
        )
        .unwrap();
        self.loops.push(dev.clone());
        dev
    }

    fn mount(&mut self, dev: &str, fstype: &str, name: &str) -> PathBuf {
        let mnt = self.dir.path().join(format!("{name}.mnt"));
        std::fs::create_dir(&mnt).unwrap();
        run("mount", &["-t", fstype, dev, mnt.to_str().unwrap()]).unwrap();
        self.mounts.push(mnt.clone());
        mnt
    }
}

fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    tools
        .iter()
        .find(|t| !have(t))
        .map(|t| format!("{t} missing"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The file backend on the filesystem mounted at `dir`, with both engines.
async fn exercise_file_backend(dir: &Path, fs: &str) {
    for engine in ENGINES {
        let path = dir.join(format!("luns/{engine:?}.img"));
        let size = 1u64 << 30; // bigger than the filesystem: must be sparse
        let dev = FileDevice::open_file_with(
            &path,
            Some(size),
            &spec(&path, Some(size), 4096, false),
            engine,
        )
        .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), size, "{fs}");
        assert!(
            meta.blocks() * 512 < 4 << 20,
            "{fs}: not sparse, {} blocks",
            meta.blocks()
        );
        let dev = Arc::new(dev);
        let mut tasks = Vec::new();
        for i in 0..256u64 {
            let dev = Arc::clone(&dev);
            tasks.push(tokio::spawn(async move {
                let off = i * (size / 256);
                let (r, _) = dev.write(off, pattern(i, 64 << 10), i % 3 == 0).await;
                r.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        dev.flush().await.unwrap();
        drop(dev);
        let dev = FileDevice::open_file_with(&path, None, &spec(&path, None, 512, false), engine)
            .unwrap();
        assert_eq!(dev.num_blocks(), size / 512);
        for i in (0..256u64).step_by(17) {
            let (r, got) = dev.read(i * (size / 256), vec![0; 64 << 10]).await;
            r.unwrap();
            assert!(got == pattern(i, 64 << 10), "{fs} {engine:?} chunk {i}");
        }
        let (r, got) = dev.read(size - 4096, vec![1; 4096]).await;
        r.unwrap();
        assert!(got.iter().all(|&b| b == 0));
    }
}

#[test]
fn file_backend_on_xfs_ext4_btrfs_tmpfs() {
    if let Some(why) = skip_reason(&[
        "losetup",
        "mount",
        "umount",
        "mkfs.xfs",
        "mkfs.ext4",
        "mkfs.btrfs",
    ]) {
        eprintln!("NOTE: skipping filesystem test: {why}");
        return;
    }
    let mut c = Cleanup::new();
    let rt = runtime();
    let mkfs: [(&str, &str, &[&str]); 3] = [
        ("xfs", "mkfs.xfs", &["-q", "-f"]),
        ("ext4", "mkfs.ext4", &["-q", "-F"]),
        ("btrfs", "mkfs.btrfs", &["-q", "-f"]),
    ];
    for (fs, tool, args) in mkfs {
        let dev = c.loop_device(fs, 512);
        let mut a = args.to_vec();
        a.push(&dev);
        run(tool, &a).unwrap();
        let mnt = c.mount(&dev, fs, fs);
        rt.block_on(exercise_file_backend(&mnt, fs));
        rt.block_on(exercise_thin_all(&mnt));
    }
    let mnt = c.dir.path().join("tmpfs.mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "esos-test",
            mnt.to_str().unwrap(),
        ],
    )
    .unwrap();
    c.mounts.push(mnt.clone());
    rt.block_on(exercise_file_backend(&mnt, "tmpfs"));
    rt.block_on(exercise_thin_all(&mnt));
}

/// Discard, zeroing and allocation queries on the filesystem at `dir`, both engines.
async fn exercise_thin_all(dir: &Path) {
    for engine in ENGINES {
        crate::file::tests::exercise_thin(dir, engine).await;
    }
}

#[test]
fn blockdev_backend_on_a_loop_device() {
    if let Some(why) = skip_reason(&["losetup"]) {
        eprintln!("NOTE: skipping block device test: {why}");
        return;
    }
    let mut c = Cleanup::new();
    let rt = runtime();
    let dev512 = c.loop_device("raw512", 512);
    let dev4k = c.loop_device("raw4k", 4096);
    let path512 = PathBuf::from(&dev512);
    let path4k = PathBuf::from(&dev4k);
    let bdev = |path: &Path, bs: u32, ro: bool, engine: EngineChoice| {
        let mut s = spec(path, None, bs, ro);
        s.backend = crate::Backend::BlockDev {
            path: path.to_owned(),
        };
        FileDevice::open_blockdev_with(path, &s, engine)
    };

    // A 4096-byte-sector device cannot present 512-byte blocks.
    let e = bdev(&path4k, 512, false, EngineChoice::Sync).unwrap_err();
    assert_eq!(e.kind(), BlockErrorKind::InvalidConfig);
    assert!(e.message().contains(&dev4k), "{e}");
    // A regular file is not a block device.
    let not_dev = c.dir.path().join("raw512.backing");
    assert!(bdev(&not_dev, 512, false, EngineChoice::Sync).is_err());

    rt.block_on(async {
        for (path, bs) in [(&path512, 512u32), (&path512, 4096), (&path4k, 4096)] {
            for engine in ENGINES {
                let dev = bdev(path, bs, false, engine).unwrap();
                assert_eq!(dev.num_blocks() * u64::from(bs), BACKING_BYTES);
                // Writable opens are exclusive: a second one is refused.
                assert!(bdev(path, bs, false, engine).is_err());
                let seed = u64::from(bs) + engine as u64;
                let size = BACKING_BYTES;
                for off in [0, (1 << 20) + u64::from(bs), size / 2, size - (128 << 10)] {
                    let (r, _) = dev.write(off, pattern(seed ^ off, 128 << 10), true).await;
                    r.unwrap();
                }
                dev.flush().await.unwrap();
                let (r, _) = dev.read(size, vec![0; bs as usize]).await;
                assert_eq!(r.unwrap_err().kind(), BlockErrorKind::OutOfRange);
                drop(dev);
                let ro = bdev(path, bs, true, engine).unwrap();
                for off in [0, (1 << 20) + u64::from(bs), size / 2, size - (128 << 10)] {
                    let (r, got) = ro.read(off, vec![0; 128 << 10]).await;
                    r.unwrap();
                    assert!(
                        got == pattern(seed ^ off, 128 << 10),
                        "{path:?} bs {bs} {engine:?} at {off}"
                    );
                }
                let (r, _) = ro.write(0, vec![0; bs as usize], false).await;
                assert_eq!(r.unwrap_err().kind(), BlockErrorKind::ReadOnly);
                assert_eq!(
                    ro.discard(0, u64::from(bs)).await.unwrap_err().kind(),
                    BlockErrorKind::ReadOnly
                );
                drop(ro);
                // Discard and zeroing on a device: the range reads as zeros, neighbours
                // keep their data, and the device reports everything mapped.
                let dev = bdev(path, bs, false, engine).unwrap();
                let b = u64::from(bs);
                dev.discard(b, 4 * b).await.unwrap();
                dev.write_zeroes(size / 2, 8 * b).await.unwrap();
                let (r, got) = dev.read(0, vec![0xaa; 6 * bs as usize]).await;
                r.unwrap();
                let want = pattern(seed, 128 << 10);
                assert!(got[..bs as usize] == want[..bs as usize]);
                assert!(got[bs as usize..5 * bs as usize].iter().all(|&x| x == 0));
                assert!(got[5 * bs as usize..] == want[5 * bs as usize..6 * bs as usize]);
                let (r, got) = dev.read(size / 2, vec![0xaa; 9 * bs as usize]).await;
                r.unwrap();
                assert!(got[..8 * bs as usize].iter().all(|&x| x == 0));
                let want = pattern(seed ^ (size / 2), 128 << 10);
                assert!(got[8 * bs as usize..] == want[8 * bs as usize..9 * bs as usize]);
                let ext = dev.allocation(0, size).await.unwrap();
                assert!(ext.len() == 1 && ext[0].mapped && ext[0].len == size);
            }
        }
    });
    // Rotational: the configured value wins; otherwise sysfs answers without error.
    let mut s = spec(&path512, None, 512, true);
    s.rotational = Some(true);
    assert!(
        FileDevice::open_blockdev_with(&path512, &s, EngineChoice::Sync)
            .unwrap()
            .rotational()
    );
    s.rotational = Some(false);
    assert!(
        !FileDevice::open_blockdev_with(&path512, &s, EngineChoice::Sync)
            .unwrap()
            .rotational()
    );
    let name = dev512.trim_start_matches("/dev/");
    let sysfs = std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational")).unwrap();
    s.rotational = None;
    let dev = FileDevice::open_blockdev_with(&path512, &s, EngineChoice::Sync).unwrap();
    assert_eq!(dev.rotational(), sysfs.trim() == "1");
}
