//! LUN maps: a target's default LUNs and each group's own.

use super::device::device_exists;
use super::target::target_mut;
use esos_common::limits::MAX_LUN;

use super::*;

// --- LUN maps -----------------------------------------------------------------------

fn map_label(target: &str, map: LunMap<'_>) -> String {
    match map {
        LunMap::Default => format!("default_luns of {target:?}"),
        LunMap::Group(g) => format!("group {g:?} of {target:?}"),
    }
}

/// The table holding the LUN list (`target` or one of its groups) and the list's key.
fn map_owner<'t>(
    t: &'t mut dyn TableLike,
    map: LunMap<'_>,
) -> Result<(&'t mut dyn TableLike, &'static str)> {
    match map {
        LunMap::Default => Ok((t, "default_luns")),
        LunMap::Group(name) => {
            let list = List::of(t, "group", "group")?
                .ok_or_else(|| EditError::not_found("group", name))?;
            let i = list
                .position(|g| str_of(g, "name") == Some(name))
                .ok_or_else(|| EditError::not_found("group", name))?;
            let g = list
                .into_mut(i)
                .ok_or_else(|| EditError::not_found("group", name))?;
            Ok((g, "luns"))
        }
    }
}

/// Maps `device` at `lun` (the lowest free number when `None`) in one LUN map of `target`.
/// Mapping into `default_luns` of a target that has none creates it, which opens the target
/// to initiators in no group.
pub fn map_lun(
    text: &str,
    target: &str,
    map: LunMap<'_>,
    lun: Option<u64>,
    device: &str,
) -> Result<(String, Mapped)> {
    if let Some(l) = lun
        && l > MAX_LUN
    {
        return Err(invalid(
            "lun",
            &format!("{l} is out of range 0..={MAX_LUN}"),
        ));
    }
    edit(text, |doc| {
        if !device_exists(doc, device)? {
            return Err(EditError::not_found("device", device));
        }
        let label = map_label(target, map);
        let t = target_mut(doc, target)?;
        let (owner, key) = map_owner(t, map)?;
        let current = luns_of(owner, key, key)?;
        if let Some((l, _)) = current.iter().find(|(_, d)| d == device) {
            return Err(EditError::InUse {
                object: format!("device {device:?}"),
                reason: format!("already mapped at lun {l} in {label}"),
            });
        }
        let lun = match lun {
            Some(l) => {
                if let Some((_, d)) = current.iter().find(|(n, _)| *n == l) {
                    return Err(EditError::LunTaken {
                        lun: l,
                        device: d.clone(),
                        map: label,
                    });
                }
                l
            }
            None => (0..=MAX_LUN)
                .find(|n| current.iter().all(|(l, _)| l != n))
                .ok_or(EditError::LunsFull {
                    map: label,
                    max: MAX_LUN,
                })?,
        };
        let mut list = List::of_or_new(owner, key, key, false)?;
        let mut e = Table::new();
        e.insert(
            "lun",
            toml_edit::value(i64::try_from(lun).unwrap_or(i64::MAX)),
        );
        e.insert("device", toml_edit::value(device));
        list.push(e);
        Ok(Mapped { lun })
    })
}

/// Removes LUN `lun` from one LUN map of `target`.
pub fn unmap_lun(text: &str, target: &str, map: LunMap<'_>, lun: u64) -> Result<String> {
    edit(text, |doc| {
        let label = map_label(target, map);
        let t = target_mut(doc, target)?;
        let (owner, key) = map_owner(t, map)?;
        let not_mapped = || EditError::LunNotMapped {
            lun,
            map: label.clone(),
        };
        let mut list = List::of(owner, key, key)?.ok_or_else(not_mapped)?;
        let i = list
            .position(|e| {
                e.get("lun")
                    .and_then(Item::as_integer)
                    .is_some_and(|n| u64::try_from(n) == Ok(lun))
            })
            .ok_or_else(not_mapped)?;
        list.remove(i);
        Ok(())
    })
    .map(|(s, ())| s)
}
