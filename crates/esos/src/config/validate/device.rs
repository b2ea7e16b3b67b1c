//! `[[device]]`: backends, sizes, block sizes and INQUIRY identity overrides.

use std::collections::HashMap;
use std::path::PathBuf;

use esos_block::{Backend, DeviceSpec, OPTICAL_BLOCK_SIZE, SUPPORTED_BLOCK_SIZES};

use super::{Source, Validator, size_value};
use crate::config::limits::{MAX_PHYSICAL_BLOCK_SIZE, MIN_SANITIZE_RATE};
use crate::config::names::validate_object_name;
use crate::config::plan::{DevicePlan, IdentityOverrides};
use crate::config::schema::{CacheMode, DeviceType, RawDevice};
use crate::config::size::HumanSize;

impl Validator {
    pub(super) fn devices(&mut self, raw: &[RawDevice], source: &Source) -> Vec<DevicePlan> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut paths: HashMap<PathBuf, usize> = HashMap::new();
        let mut serials: HashMap<&str, usize> = HashMap::new();
        let mut naas: HashMap<[u8; 16], usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, d) in raw.iter().enumerate() {
            let key = format!("device[{i}]");
            if let Err(reason) = validate_object_name(&d.name) {
                self.err(format!("{key}.name"), format!("{:?} {reason}", d.name));
            } else if let Some(first) = names.insert(&d.name, i) {
                self.err(
                    format!("{key}.name"),
                    format!("{:?} is already the name of device[{first}]", d.name),
                );
                names.insert(&d.name, first);
            }
            let Some(plan) = self.device(d, &key, source) else {
                continue;
            };
            if let Backend::File { path, .. } | Backend::BlockDev { path } = &plan.spec.backend
                && let Some(first) = paths.insert(path.clone(), i)
            {
                self.err(
                        format!("{key}.path"),
                        format!("{} is already used by device[{first}]; map one device in several places instead", path.display()),
                    );
            }
            if let Some(s) = &d.serial
                && let Some(first) = serials.insert(s, i)
            {
                self.err(
                    format!("{key}.serial"),
                    format!("{s:?} is already the serial of device[{first}]"),
                );
            }
            if let Some(n) = plan.overrides.naa
                && let Some(first) = naas.insert(n, i)
            {
                self.err(
                    format!("{key}.naa"),
                    format!("is already the NAA of device[{first}]"),
                );
            }
            out.push(plan);
        }
        out
    }

    pub(super) fn device(
        &mut self,
        d: &RawDevice,
        key: &str,
        source: &Source,
    ) -> Option<DevicePlan> {
        let before = self.errors.len();
        let cdrom = d.kind == DeviceType::Cdrom;
        let block_size = d
            .block_size
            .unwrap_or(if cdrom { OPTICAL_BLOCK_SIZE } else { 512 });
        if !cdrom && !SUPPORTED_BLOCK_SIZES.contains(&block_size) {
            self.err(
                format!("{key}.block_size"),
                format!("{block_size} is not 512 or 4096"),
            );
        }
        if d.kind == DeviceType::Replicated && d.block_size.is_some() {
            self.err(
                format!("{key}.block_size"),
                "is not allowed for type \"replicated\"; the backing device's is used",
            );
        }
        let lbppb_exponent = self.physical_block_size(d, key, block_size);
        let sanitize_rate = match &d.sanitize_rate {
            None => 0,
            Some(raw) => {
                match size_value(raw) {
                    Ok(n) if n >= MIN_SANITIZE_RATE => n,
                    Ok(n) => {
                        self.err(
                        format!("{key}.sanitize_rate"),
                        format!("{n} bytes per second is below the minimum of {MIN_SANITIZE_RATE} (1M)"),
                    );
                        0
                    }
                    Err(e) => {
                        self.err(format!("{key}.sanitize_rate"), e);
                        0
                    }
                }
            }
        };
        let ty = d.kind.as_str();
        let size = match &d.size {
            None => None,
            Some(raw) => match size_value(raw) {
                Err(e) => {
                    self.err(format!("{key}.size"), e);
                    None
                }
                Ok(0) => {
                    self.err(format!("{key}.size"), "is zero");
                    None
                }
                Ok(n) if !n.is_multiple_of(u64::from(block_size)) => {
                    self.err(
                        format!("{key}.size"),
                        format!("{n} bytes is not a multiple of the block size {block_size}"),
                    );
                    None
                }
                Ok(n) => Some(n),
            },
        };
        let path = match (&d.path, d.kind) {
            (Some(p), DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom)
                if p.is_empty() =>
            {
                self.err(format!("{key}.path"), "is empty");
                None
            }
            (Some(p), DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom) => {
                Some(source.base_dir.join(p))
            }
            (None, DeviceType::File | DeviceType::Blockdev | DeviceType::Cdrom) => {
                self.err(
                    format!("{key}.path"),
                    format!("is required for type \"{ty}\""),
                );
                None
            }
            (Some(_), _) => {
                self.err(
                    format!("{key}.path"),
                    format!("is not allowed for type \"{ty}\""),
                );
                None
            }
            (None, _) => None,
        };
        match (d.kind, &d.size) {
            (DeviceType::Blockdev, Some(_)) => self.err(
                format!("{key}.size"),
                "is not allowed for type \"blockdev\"; the device's size is used",
            ),
            (DeviceType::Cdrom, Some(_)) => self.err(
                format!("{key}.size"),
                "is not allowed for type \"cdrom\"; the image's size is used",
            ),
            (DeviceType::Replicated, Some(_)) => self.err(
                format!("{key}.size"),
                "is not allowed for type \"replicated\"; the backing device's size is used",
            ),
            (DeviceType::Ram | DeviceType::Null, None) => self.err(
                format!("{key}.size"),
                format!("is required for type \"{ty}\""),
            ),
            _ => {}
        }
        if cdrom {
            self.cdrom(d, key, block_size);
        }
        let overrides = self.overrides(d, key);
        if self.errors.len() != before {
            return None;
        }
        let backend = match d.kind {
            DeviceType::File => Backend::File {
                path: path?,
                size_bytes: size,
            },
            DeviceType::Blockdev => Backend::BlockDev { path: path? },
            DeviceType::Ram => Backend::Ram { size_bytes: size? },
            DeviceType::Null => Backend::Null { size_bytes: size? },
            // Opened read-only, never created; `graph` sizes it from the file.
            DeviceType::Cdrom => Backend::File {
                path: path?,
                size_bytes: None,
            },
            // Replaced by the backing device's spec once every device is known
            // (`cluster::replicated`).
            DeviceType::Replicated => Backend::Null { size_bytes: 0 },
        };
        Some(DevicePlan {
            name: d.name.clone(),
            identity_key: d.name.clone(),
            kind: d.kind,
            spec: DeviceSpec {
                backend,
                block_size,
                read_only: cdrom || d.read_only.unwrap_or(false),
                rotational: d.rotational,
            },
            write_cache: d.cache.unwrap_or(CacheMode::WriteBack) == CacheMode::WriteBack,
            thin: d.thin.unwrap_or(false),
            removable: cdrom || d.removable.unwrap_or(false),
            lbppb_exponent,
            sanitize_rate,
            overrides,
            replica: None,
        })
    }

    /// `physical_block_size`: a power of two from the logical block size up to
    /// [`MAX_PHYSICAL_BLOCK_SIZE`]; returns log2(physical / logical) (SBC-3 5.16.2 LBPPBE).
    pub(super) fn physical_block_size(&mut self, d: &RawDevice, key: &str, block_size: u32) -> u8 {
        let Some(pbs) = d.physical_block_size else {
            return 0;
        };
        let reason = if !pbs.is_power_of_two() {
            format!("{pbs} is not a power of two")
        } else if pbs < block_size {
            format!("{pbs} is smaller than the block size {block_size}")
        } else if pbs > MAX_PHYSICAL_BLOCK_SIZE {
            format!("{pbs} is larger than {MAX_PHYSICAL_BLOCK_SIZE}")
        } else {
            return (pbs / block_size.max(1)).trailing_zeros() as u8;
        };
        self.err(format!("{key}.physical_block_size"), reason);
        0
    }

    /// A CD-ROM is a read-only, removable disc image with 2048-byte blocks (MMC-6 4.2.3):
    /// settings that say otherwise are refused rather than silently ignored.
    pub(super) fn cdrom(&mut self, d: &RawDevice, key: &str, block_size: u32) {
        if block_size != OPTICAL_BLOCK_SIZE {
            self.err(
                format!("{key}.block_size"),
                format!("{block_size}: a \"cdrom\" has {OPTICAL_BLOCK_SIZE}-byte blocks"),
            );
        }
        for (name, refused) in [
            ("read_only", d.read_only == Some(false)),
            ("removable", d.removable == Some(false)),
            ("thin", d.thin == Some(true)),
            ("physical_block_size", d.physical_block_size.is_some()),
        ] {
            if refused {
                self.err(
                    format!("{key}.{name}"),
                    "cannot be set this way for type \"cdrom\" (a read-only, removable disc)",
                );
            }
        }
    }

    pub(super) fn overrides(&mut self, d: &RawDevice, key: &str) -> IdentityOverrides {
        for (name, value, max) in [
            ("vendor", &d.vendor, 8),
            ("product", &d.product, 16),
            ("revision", &d.revision, 4),
            ("serial", &d.serial, 32),
        ] {
            if let Some(v) = value
                && let Err(reason) = check_t10_ascii(v, max)
            {
                self.err(
                    format!("{key}.{name}"),
                    format!("{v:?} {reason} (SPC-4 6.6.2, 7.8.15)"),
                );
            }
        }
        let naa = d.naa.as_ref().and_then(|text| match parse_naa(text) {
            Ok(n) => Some(n),
            Err(reason) => {
                self.err(format!("{key}.naa"), format!("{text:?} {reason}"));
                None
            }
        });
        IdentityOverrides {
            vendor: d.vendor.clone(),
            product: d.product.clone(),
            revision: d.revision.clone(),
            serial: d.serial.clone(),
            naa,
        }
    }
}

/// SPC-4 INQUIRY strings: printable ASCII, at most `max` bytes, no surrounding spaces
/// (the engine pads them).
fn check_t10_ascii(v: &str, max: usize) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if v.len() > max {
        return Err(format!("is {} bytes long; at most {max}", v.len()));
    }
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII".into());
    }
    if v.trim() != v {
        return Err("has leading or trailing spaces".into());
    }
    Ok(())
}

/// Parses an NAA IEEE Registered Extended designator: 32 hex digits, first digit 6
/// (SPC-4 7.8.6.6.5).
pub fn parse_naa(text: &str) -> Result<[u8; 16], String> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 32 hex digits".into());
    }
    if !hex.starts_with('6') {
        return Err("must start with 6 (NAA IEEE Registered Extended, SPC-4 7.8.6.6.5)".into());
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Formats an NAA designator as 32 lower-case hex digits.
pub fn format_naa(naa: &[u8; 16]) -> String {
    naa.iter().map(|b| format!("{b:02x}")).collect()
}

/// Human form of a device's size for logs.
pub fn describe_size(spec: &DeviceSpec) -> String {
    match &spec.backend {
        Backend::File {
            size_bytes: Some(n),
            ..
        }
        | Backend::Ram { size_bytes: n }
        | Backend::Null { size_bytes: n } => HumanSize(*n).to_string(),
        _ => "device size".into(),
    }
}
