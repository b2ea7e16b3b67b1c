//! Devices: add, remove, resize; a device still mapped is not removed.

use toml_edit::{DocumentMut, Table, Value};

use super::*;

// --- devices ------------------------------------------------------------------------

/// Adds a `[[device]]`.
pub fn add_device(text: &str, spec: &DeviceSpec) -> Result<String> {
    if spec.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if spec.kind.is_empty() {
        return Err(invalid("type", "must not be empty"));
    }
    edit(text, |doc| {
        let mut list = List::of_or_new(doc.as_table_mut(), "device", "device", true)?;
        if list
            .position(|t| str_of(t, "name") == Some(&spec.name))
            .is_some()
        {
            return Err(EditError::exists("device", &spec.name));
        }
        let mut t = Table::new();
        t.insert("name", toml_edit::value(&spec.name));
        t.insert("type", toml_edit::value(&spec.kind));
        let strings = [
            ("path", &spec.path),
            ("size", &spec.size),
            ("cache", &spec.cache),
            ("vendor", &spec.vendor),
            ("product", &spec.product),
            ("serial", &spec.serial),
            ("backing", &spec.backing),
            ("resync_rate", &spec.resync_rate),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                t.insert(k, toml_edit::value(v.as_str()));
            }
        }
        if let Some(b) = spec.block_size {
            t.insert("block_size", toml_edit::value(i64::from(b)));
        }
        for (k, v) in [
            ("read_only", spec.read_only),
            ("thin", spec.thin),
            ("rotational", spec.rotational),
        ] {
            if let Some(v) = v {
                t.insert(k, toml_edit::value(v));
            }
        }
        list.push(t);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes device `name`; refused while any LUN map still refers to it.
pub fn remove_device(text: &str, name: &str) -> Result<String> {
    edit(text, |doc| {
        let users = device_users(doc, name)?;
        if !users.is_empty() {
            return Err(EditError::InUse {
                object: format!("device {name:?}"),
                reason: format!("mapped at {}; unmap it first", users.join(", ")),
            });
        }
        let mut list = List::of(doc.as_table_mut(), "device", "device")?
            .ok_or_else(|| EditError::not_found("device", name))?;
        let i = list
            .position(|t| str_of(t, "name") == Some(name))
            .ok_or_else(|| EditError::not_found("device", name))?;
        list.remove(i);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Sets device `name`'s `size` (a running daemon grows the device live).
pub fn resize_device(text: &str, name: &str, size: &str) -> Result<String> {
    edit(text, |doc| {
        let mut list = List::of(doc.as_table_mut(), "device", "device")?
            .ok_or_else(|| EditError::not_found("device", name))?;
        let i = list
            .position(|t| str_of(t, "name") == Some(name))
            .ok_or_else(|| EditError::not_found("device", name))?;
        let t = list
            .get_mut(i)
            .ok_or_else(|| EditError::not_found("device", name))?;
        set_value(t, "size", Value::from(size));
        Ok(())
    })
    .map(|(s, ())| s)
}

pub(super) fn device_exists(doc: &mut DocumentMut, name: &str) -> Result<bool> {
    Ok(List::of(doc.as_table_mut(), "device", "device")?
        .is_some_and(|l| l.position(|t| str_of(t, "name") == Some(name)).is_some()))
}

/// Every place `device` is mapped, as "target/lun N" or "target/group/lun N".
fn device_users(doc: &mut DocumentMut, device: &str) -> Result<Vec<String>> {
    let mut users = Vec::new();
    let Some(mut targets) = List::of(doc.as_table_mut(), "target", "target")? else {
        return Ok(users);
    };
    for ti in 0..targets.len() {
        let Some(t) = targets.get_mut(ti) else {
            continue;
        };
        let tname = str_of(t, "name").unwrap_or("?").to_owned();
        let key = format!("target[{ti}]");
        for (lun, d) in luns_of(t, "default_luns", &format!("{key}.default_luns"))? {
            if d == device {
                users.push(format!("{tname}/lun {lun}"));
            }
        }
        if let Some(mut groups) = List::of(t, "group", &format!("{key}.group"))? {
            for gi in 0..groups.len() {
                let Some(g) = groups.get_mut(gi) else {
                    continue;
                };
                let gname = str_of(g, "name").unwrap_or("?").to_owned();
                for (lun, d) in luns_of(g, "luns", &format!("{key}.group[{gi}].luns"))? {
                    if d == device {
                        users.push(format!("{tname}/{gname}/lun {lun}"));
                    }
                }
            }
        }
    }
    Ok(users)
}
