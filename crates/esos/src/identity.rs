//! Stable logical-unit identity: vendor, product, revision, unit serial number, UUID and
//! NAA designator (`esos_lu::identity`). Serial and UUID are generated once per device,
//! the NAA derived from the UUID, and all three stored in `<data_dir>/identity.toml`, so
//! multipath and clusters recognise the LU across restarts. An entry written before UUIDs
//! existed keeps its serial and NAA; its UUID is derived from the NAA on load and stored
//! at the next save (the daemon saves right after resolving). Values given in the config
//! override what is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use esos_common::fs::{Replace, replace};
use esos_lu::identity::{format_uuid, naa_from_uuid, new_uuid, parse_uuid, uuid_from_naa};
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
        DeviceType::Replicated => "REPLICATED",
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
    /// Absent in files written before UUIDs: derived from `naa` on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    naa: String,
}

/// One device's stored identity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    serial: String,
    uuid: [u8; 16],
    naa: [u8; 16],
}

/// The generated identities, keyed by device identity key.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
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
        let mut dirty = false;
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
            let uuid = match &s.uuid {
                Some(text) => parse_uuid(text).ok_or_else(|| bad(format!("uuid {text:?}")))?,
                None => {
                    dirty = true;
                    uuid_from_naa(&naa)
                }
            };
            let serial = s.serial;
            entries.insert(key, Entry { serial, uuid, naa });
        }
        Ok(IdentityStore {
            path,
            entries,
            dirty,
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
        let Entry { serial, uuid, naa } = match &device.replica {
            // Every node derives the same identity, so initiators see one LU on all paths.
            Some(r) => replicated_entry(&r.cluster, &device.name),
            None => self
                .entries
                .entry(device.identity_key.clone())
                .or_insert_with(|| {
                    self.dirty = true;
                    generate(fill_random)
                })
                .clone(),
        };
        let o = &device.overrides;
        Identity {
            vendor: o.vendor.clone().unwrap_or_else(|| VENDOR.to_owned()),
            product: o
                .product
                .clone()
                .unwrap_or_else(|| product_for(device.kind).to_owned()),
            revision: o.revision.clone().unwrap_or_else(revision),
            serial: o.serial.clone().unwrap_or(serial),
            uuid,
            naa: o.naa.unwrap_or(naa),
        }
    }

    /// True when [`Self::resolve`] generated, or [`Self::load`] derived, something not yet
    /// saved.
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
                .map(|(k, e)| {
                    (
                        k.clone(),
                        StoredIdentity {
                            serial: e.serial.clone(),
                            uuid: Some(format_uuid(&e.uuid)),
                            naa: format_naa(&e.naa),
                        },
                    )
                })
                .collect(),
        };
        let mut text = String::from(
            "# esos logical-unit identities, generated once per device. Do not edit: changing a\n\
             # serial, UUID or NAA makes initiators see a different disk. Written atomically\n\
             # by esos.\n\n",
        );
        text.push_str(&toml::to_string(&file).map_err(|e| IdentityError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?);
        let keep = Replace {
            keep_previous: true,
        };
        replace(&self.path, text.as_bytes(), keep).map_err(|source| IdentityError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }
}

/// A fresh serial (hex) and UUID, and the NAA 6 designator derived from the UUID.
fn generate(fill_random: &mut dyn FnMut(&mut [u8])) -> Entry {
    let mut bytes = [0u8; 16 + SERIAL_LEN / 2];
    fill_random(&mut bytes);
    let (uuid_rand, serial_rand) = bytes.split_at(16);
    let uuid = new_uuid(uuid_rand.try_into().expect("16 bytes"));
    let serial = serial_rand.iter().map(|b| format!("{b:02X}")).collect();
    Entry {
        serial,
        uuid,
        naa: naa_from_uuid(&uuid),
    }
}

/// The identity of replicated device `device` of cluster `cluster`: a version 8 UUID made
/// of a SHA-256 of both names (the same on every node, unrelated across clusters), its
/// NAA, and a serial of the UUID's first ten bytes in hex.
fn replicated_entry(cluster: &str, device: &str) -> Entry {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"esos replicated device\0");
    h.update(cluster.as_bytes());
    h.update(b"\0");
    h.update(device.as_bytes());
    let digest = h.finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0F) | 0x80;
    uuid[8] = (uuid[8] & 0x3F) | 0x80;
    let naa = naa_from_uuid(&uuid);
    let serial = uuid[..SERIAL_LEN / 2]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Entry { serial, uuid, naa }
}

/// Cryptographic randomness from the OS, so two nodes never pick the same designator.
pub fn os_random(buf: &mut [u8]) {
    rand::fill(buf);
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
            replica: None,
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
        let Entry { serial, uuid, naa } = generate(&mut fill);
        assert_eq!(naa, naa_from_uuid(&uuid), "UUID first, NAA derived");
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
        let (a, b) = (generate(&mut os_random), generate(&mut os_random));
        assert_ne!(a.serial, b.serial);
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.naa, b.naa);
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

    /// A file written before UUIDs: serial and NAA stay exactly, a UUID is derived from the
    /// NAA, stored at the next save and read back unchanged.
    #[test]
    fn entry_without_uuid_keeps_serial_and_naa_and_gains_a_stored_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let old_naa = "62ae505a1b2c3d4e5f60718293a4b5c6";
        std::fs::write(
            &path,
            format!("[device.disk-a]\nserial = \"0123456789ABCDEF0123\"\nnaa = \"{old_naa}\"\n"),
        )
        .unwrap();
        let a = dev("disk-a", DeviceType::File);
        let mut no_random = |_: &mut [u8]| panic!("a known device must not draw new randomness");
        let mut store = IdentityStore::load(dir.path()).unwrap();
        assert!(store.is_dirty(), "the derived UUID is to be stored");
        let ia = store.resolve(&a, &mut no_random);
        assert_eq!(ia.serial, "0123456789ABCDEF0123");
        assert_eq!(format_naa(&ia.naa), old_naa);
        assert_eq!(ia.uuid, uuid_from_naa(&ia.naa));
        store.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format_uuid(&ia.uuid)), "{text}");
        let mut again = IdentityStore::load(dir.path()).unwrap();
        assert!(!again.is_dirty());
        assert_eq!(again.resolve(&a, &mut no_random), ia);
        // A damaged UUID is refused, not replaced.
        std::fs::write(&path, text.replace(&format_uuid(&ia.uuid), "not-a-uuid")).unwrap();
        let e = IdentityStore::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("uuid"), "{e}");
    }

    #[test]
    fn replicated_identity_derives_from_cluster_and_device_names() {
        let dir = tempfile::tempdir().unwrap();
        let replicated = |cluster: &str, name: &str| {
            let mut d = dev(name, DeviceType::Replicated);
            d.replica = Some(crate::config::ReplicaPlan {
                cluster: cluster.into(),
                backing: Box::new(dev("disk", DeviceType::File)),
                resync_rate: 0,
            });
            d
        };
        let mut no_random = |_: &mut [u8]| panic!("a replicated device draws no randomness");
        // Two nodes with separate stores see the same LU.
        let mut n1 = IdentityStore::load(dir.path()).unwrap();
        let mut n2 = IdentityStore::load(&dir.path().join("other")).unwrap();
        let a = n1.resolve(&replicated("pair1", "db"), &mut no_random);
        assert_eq!(a, n2.resolve(&replicated("pair1", "db"), &mut no_random));
        assert!(!n1.is_dirty(), "nothing to store: derived on every start");
        assert_eq!(a.product, "REPLICATED");
        assert_eq!(a.serial.len(), SERIAL_LEN);
        assert_eq!(a.naa, naa_from_uuid(&a.uuid));
        assert_eq!(a.uuid[6] >> 4, 8, "version 8 UUID");
        for other in [replicated("pair2", "db"), replicated("pair1", "db2")] {
            let b = n1.resolve(&other, &mut no_random);
            assert_ne!((&a.serial, a.uuid, a.naa), (&b.serial, b.uuid, b.naa));
        }
        // Configured values still win.
        let mut d = replicated("pair1", "db");
        d.overrides.serial = Some("MINE".into());
        assert_eq!(n1.resolve(&d, &mut no_random).serial, "MINE");
    }
}
