//! Stable logical-unit identity: vendor, product, revision, unit serial number and NAA
//! designator. Serial and NAA are generated once per device and stored in
//! `<data_dir>/identity.toml`, so multipath and clusters recognise the LU across restarts.
//! Values given in the config override what is stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use esos_scsi::Identity;
use serde::{Deserialize, Serialize};

use crate::config::{DevicePlan, DeviceType, format_naa, parse_naa};

/// T10 vendor identification of every esos LU unless overridden.
pub const VENDOR: &str = "ESOS";

/// The 24-bit company id in generated NAA designators. Its second hex digit is A (the
/// IEEE "locally administered" CID form), so it cannot collide with an assigned OUI.
pub const COMPANY_ID: u32 = 0x2A_E5_05;

/// Name of the identity file inside the data directory.
pub const IDENTITY_FILE: &str = "identity.toml";

/// The identity file is small; anything larger is not ours.
pub const MAX_IDENTITY_BYTES: u64 = 16 * 1024 * 1024;

/// Length of a generated unit serial number (hex digits of random bytes).
pub const SERIAL_LEN: usize = 20;

/// Lock file that keeps two esos processes off one data directory.
pub const LOCK_FILE: &str = "esos.lock";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: another esos process uses this data directory")]
    Locked { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// Takes an exclusive lock on `data_dir` (created when missing) for as long as the returned
/// file lives: two daemons sharing identities would export the same LU twice with
/// unrelated state.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, IdentityError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(IdentityError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// SCSI product identification derived from the backend type (at most 16 characters).
pub fn product_for(kind: DeviceType) -> &'static str {
    match kind {
        DeviceType::File => "FILEIO",
        DeviceType::Blockdev => "BLOCKIO",
        DeviceType::Ram => "RAMDISK",
        DeviceType::Null => "NULLIO",
        DeviceType::Cdrom => "VCDROM",
    }
}

/// Product revision level (at most 4 characters): "major.minor" of this crate.
pub fn revision() -> String {
    revision_of(env!("CARGO_PKG_VERSION"))
}

fn revision_of(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    let mut r = format!("{major}.{minor}");
    if r.len() > 4 {
        r = r.replace('.', "");
        r.truncate(4);
    }
    r
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    device: BTreeMap<String, StoredIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredIdentity {
    serial: String,
    naa: String,
}

/// The generated identities, keyed by device identity key.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    path: PathBuf,
    entries: BTreeMap<String, (String, [u8; 16])>,
    dirty: bool,
}

impl IdentityStore {
    /// Loads `<data_dir>/identity.toml`; a missing file is an empty store.
    pub fn load(data_dir: &Path) -> Result<IdentityStore, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let text = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
            Ok(m) if m.len() > MAX_IDENTITY_BYTES => {
                return Err(IdentityError::Corrupt {
                    path,
                    message: format!("{} bytes is too large", m.len()),
                });
            }
            Ok(_) => std::fs::read_to_string(&path).map_err(io)?,
        };
        let file: StoreFile = toml::from_str(&text).map_err(|e| IdentityError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut entries = BTreeMap::new();
        for (key, s) in file.device {
            let bad = |what: String| IdentityError::Corrupt {
                path: path.clone(),
                message: format!("device.{key:?}: {what}"),
            };
            if s.serial.is_empty()
                || s.serial.len() > 32
                || !s.serial.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(bad(format!(
                    "serial {:?} is not 1..=32 printable ASCII characters",
                    s.serial
                )));
            }
            let naa = parse_naa(&s.naa).map_err(|e| bad(format!("naa {e}")))?;
            entries.insert(key, (s.serial, naa));
        }
        Ok(IdentityStore {
            path,
            entries,
            dirty: false,
        })
    }

    /// The identity of `device`: config overrides first, then the stored values; a device
    /// seen for the first time gets a fresh serial and NAA, remembered for [`Self::save`].
    /// `fill_random` supplies the random bytes (tests pass a deterministic one).
    pub fn resolve(
        &mut self,
        device: &DevicePlan,
        fill_random: &mut dyn FnMut(&mut [u8]),
    ) -> Identity {
        let (serial, naa) = self
            .entries
            .entry(device.identity_key.clone())
            .or_insert_with(|| {
                self.dirty = true;
                generate(fill_random)
            })
            .clone();
        let o = &device.overrides;
        Identity {
            vendor: o.vendor.clone().unwrap_or_else(|| VENDOR.to_owned()),
            product: o
                .product
                .clone()
                .unwrap_or_else(|| product_for(device.kind).to_owned()),
            revision: o.revision.clone().unwrap_or_else(revision),
            serial: o.serial.clone().unwrap_or(serial),
            naa: o.naa.unwrap_or(naa),
        }
    }

    /// True when [`Self::resolve`] generated something not yet saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the store if it changed: temp file, fsync, keep the previous version as
    /// `identity.toml.prev`, rename over, fsync the directory. A crash leaves either the
    /// old or the new file, never a torn one.
    pub fn save(&mut self) -> Result<(), IdentityError> {
        if !self.dirty {
            return Ok(());
        }
        let file = StoreFile {
            device: self
                .entries
                .iter()
                .map(|(k, (serial, naa))| {
                    (
                        k.clone(),
                        StoredIdentity {
                            serial: serial.clone(),
                            naa: format_naa(naa),
                        },
                    )
                })
                .collect(),
        };
        let mut text = String::from(
            "# esos logical-unit identities, generated once per device. Do not edit: changing a\n\
             # serial or NAA makes initiators see a different disk. Written atomically by esos.\n\n",
        );
        text.push_str(&toml::to_string(&file).map_err(|e| IdentityError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?);
        write_atomic(&self.path, text.as_bytes()).map_err(|source| IdentityError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }
}

/// A fresh serial (hex) and NAA 6 designator: 4-bit NAA, 24-bit company id, then 100
/// random vendor-specific bits (SPC-4 7.8.6.6.5).
fn generate(fill_random: &mut dyn FnMut(&mut [u8])) -> (String, [u8; 16]) {
    let mut bytes = [0u8; 16 + SERIAL_LEN / 2];
    fill_random(&mut bytes);
    let (naa_rand, serial_rand) = bytes.split_at(16);
    let random = u128::from_be_bytes(naa_rand.try_into().expect("16 bytes"));
    let vendor_mask = (1u128 << 100) - 1;
    let naa = (6u128 << 124) | (u128::from(COMPANY_ID) << 100) | (random & vendor_mask);
    let serial = serial_rand.iter().map(|b| format!("{b:02X}")).collect();
    (serial, naa.to_be_bytes())
}

/// Cryptographic randomness from the OS, so two nodes never pick the same designator.
pub fn os_random(buf: &mut [u8]) {
    rand::fill(buf);
}

/// Writes `data` to `path` atomically and durably, keeping the old file as `<path>.prev`.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // The file may hold CHAP secrets: a new one is private to the daemon's user, and a
    // rewrite keeps the mode the admin gave the old one (umask does not widen either).
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o600);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        let prev = dir.join(format!("{}.prev", name.to_string_lossy()));
        if path.exists() {
            // Hard link, not rename: `path` must exist at every instant.
            match std::fs::remove_file(&prev) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::hard_link(path, &prev)?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityOverrides;
    use esos_block::{Backend, DeviceSpec};

    fn dev(name: &str, kind: DeviceType) -> DevicePlan {
        DevicePlan {
            name: name.into(),
            identity_key: name.into(),
            kind,
            spec: DeviceSpec {
                backend: Backend::Null {
                    size_bytes: 1 << 20,
                },
                block_size: 512,
                read_only: false,
                rotational: None,
            },
            write_cache: true,
            thin: false,
            removable: false,
            lbppb_exponent: 0,
            sanitize_rate: 0,
            overrides: IdentityOverrides::default(),
        }
    }

    #[test]
    fn generated_naa_layout() {
        let mut counter = 0u8;
        let mut fill = |b: &mut [u8]| {
            for x in b {
                counter = counter.wrapping_add(37);
                *x = counter;
            }
        };
        let (serial, naa) = generate(&mut fill);
        assert_eq!(naa[0] >> 4, 6, "NAA 6");
        let cid = (u32::from(naa[0] & 0xF) << 20)
            | (u32::from(naa[1]) << 12)
            | (u32::from(naa[2]) << 4)
            | u32::from(naa[3] >> 4);
        assert_eq!(cid, COMPANY_ID);
        assert_eq!(serial.len(), SERIAL_LEN);
        assert!(serial.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(parse_naa(&format_naa(&naa)).is_ok());
    }

    #[test]
    fn random_identities_differ() {
        let (s1, n1) = generate(&mut os_random);
        let (s2, n2) = generate(&mut os_random);
        assert_ne!(s1, s2);
        assert_ne!(n1, n2);
    }

    #[test]
    fn stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev("disk-a", DeviceType::File);
        let b = dev("disk-b", DeviceType::Ram);
        let mut store = IdentityStore::load(dir.path()).unwrap();
        let ia = store.resolve(&a, &mut os_random);
        let ib = store.resolve(&b, &mut os_random);
        assert_ne!(ia.serial, ib.serial);
        assert_ne!(ia.naa, ib.naa);
        assert_eq!(ia.vendor, "ESOS");
        assert_eq!(ia.product, "FILEIO");
        assert_eq!(ib.product, "RAMDISK");
        assert!(store.is_dirty());
        store.save().unwrap();
        assert!(!store.is_dirty());

        // "Restart": a fresh store from disk, devices asked for in another order.
        let mut again = IdentityStore::load(dir.path()).unwrap();
        let mut no_random = |_: &mut [u8]| panic!("a known device must not draw new randomness");
        assert_eq!(again.resolve(&b, &mut no_random), ib);
        assert_eq!(again.resolve(&a, &mut no_random), ia);
        assert!(!again.is_dirty());

        // A new device is added; old ones keep theirs, and the previous file is kept.
        let c = dev("disk-c", DeviceType::Null);
        let ic = again.resolve(&c, &mut os_random);
        again.save().unwrap();
        assert!(dir.path().join("identity.toml.prev").exists());
        let mut third = IdentityStore::load(dir.path()).unwrap();
        assert_eq!(third.resolve(&a, &mut no_random), ia);
        assert_eq!(third.resolve(&c, &mut no_random), ic);
    }

    #[test]
    fn overrides_win_and_do_not_disturb_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dev("x", DeviceType::Blockdev);
        let mut store = IdentityStore::load(dir.path()).unwrap();
        let generated = store.resolve(&d, &mut os_random);
        d.overrides = IdentityOverrides {
            vendor: Some("ACME".into()),
            product: Some("SUPERDISK".into()),
            revision: Some("9".into()),
            serial: Some("SN123".into()),
            naa: Some([0x60; 16]),
        };
        let o = store.resolve(&d, &mut os_random);
        assert_eq!(
            (
                o.vendor.as_str(),
                o.product.as_str(),
                o.revision.as_str(),
                o.serial.as_str(),
                o.naa
            ),
            ("ACME", "SUPERDISK", "9", "SN123", [0x60; 16])
        );
        d.overrides = IdentityOverrides::default();
        assert_eq!(store.resolve(&d, &mut os_random), generated);
    }

    #[test]
    fn corrupt_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        std::fs::write(&path, "[device.a]\nserial = \"S\"\nnaa = \"1234\"\n").unwrap();
        let e = IdentityStore::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("identity.toml") && e.contains("naa"), "{e}");
        std::fs::write(
            &path,
            "[device.a]\nserial = \"S\"\nnaa = \"6aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nx = 1\n",
        )
        .unwrap();
        let e = IdentityStore::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn data_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(&dir.path().join("state")).unwrap();
        let e = lock_data_dir(&dir.path().join("state")).unwrap_err();
        assert!(matches!(e, IdentityError::Locked { .. }), "{e}");
        drop(held);
        lock_data_dir(&dir.path().join("state")).unwrap();
    }

    #[test]
    fn revision_fits() {
        assert_eq!(revision_of("0.1.0"), "0.1");
        assert_eq!(revision_of("12.34.5"), "1234");
        assert!(revision().len() <= 4);
        for k in [
            DeviceType::File,
            DeviceType::Blockdev,
            DeviceType::Ram,
            DeviceType::Null,
        ] {
            assert!(product_for(k).len() <= 16);
        }
    }

    #[test]
    fn atomic_write_is_private_when_new_and_keeps_an_existing_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let p = dir.path().join("esos.toml");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(mode(&p), 0o640);
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }

    #[test]
    fn atomic_write_replaces_and_keeps_prev() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.toml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read(dir.path().join("sub/f.toml.prev")).unwrap(),
            b"one"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }
}
