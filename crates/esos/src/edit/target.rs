//! Targets and what hangs off them: enablement, CHAP, initiator groups and their members.

use super::*;

// --- targets ------------------------------------------------------------------------

/// The target table named `name`.
pub(super) fn target_mut<'d>(
    doc: &'d mut DocumentMut,
    name: &str,
) -> Result<&'d mut dyn TableLike> {
    let list = List::of(doc.as_table_mut(), "target", "target")?
        .ok_or_else(|| EditError::not_found("target", name))?;
    let i = list
        .position(|t| str_of(t, "name").is_some_and(|n| same_iscsi_name(n, name)))
        .ok_or_else(|| EditError::not_found("target", name))?;
    list.into_mut(i)
        .ok_or_else(|| EditError::not_found("target", name))
}

/// Adds a `[[target]]`. See [`TargetSpec::enabled`] for the default.
pub fn add_target(text: &str, spec: &TargetSpec) -> Result<String> {
    if spec.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    edit(text, |doc| {
        let mut list = List::of_or_new(doc.as_table_mut(), "target", "target", true)?;
        if list
            .position(|t| str_of(t, "name").is_some_and(|n| same_iscsi_name(n, &spec.name)))
            .is_some()
        {
            return Err(EditError::exists("target", &spec.name));
        }
        let mut t = Table::new();
        t.insert("name", toml_edit::value(&spec.name));
        if let Some(a) = &spec.alias {
            t.insert("alias", toml_edit::value(a.as_str()));
        }
        // A new target has no LUN map: enabled it would refuse every login, which the
        // validator rejects. It starts disabled unless asked otherwise.
        t.insert("enabled", toml_edit::value(spec.enabled.unwrap_or(false)));
        if let Some(p) = &spec.portals {
            let a: Array = p.iter().map(String::as_str).collect();
            t.insert("portals", toml_edit::value(a));
        }
        list.push(t);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes target `name` with its groups and LUN maps (the devices stay).
pub fn remove_target(text: &str, name: &str) -> Result<String> {
    edit(text, |doc| {
        let mut list = List::of(doc.as_table_mut(), "target", "target")?
            .ok_or_else(|| EditError::not_found("target", name))?;
        let i = list
            .position(|t| str_of(t, "name").is_some_and(|n| same_iscsi_name(n, name)))
            .ok_or_else(|| EditError::not_found("target", name))?;
        list.remove(i);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Sets `enabled` of target `name`.
pub fn set_target_enabled(text: &str, name: &str, enabled: bool) -> Result<String> {
    edit(text, |doc| {
        let t = target_mut(doc, name)?;
        set_value(t, "enabled", Value::from(enabled));
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Sets (replaces) the CHAP of target `name`.
pub fn set_chap(text: &str, target: &str, chap: &ChapSpec) -> Result<String> {
    if chap.mutual_user.is_some() != chap.mutual_secret.is_some() {
        return Err(invalid(
            "mutual_user",
            "mutual CHAP needs both mutual_user and mutual_secret",
        ));
    }
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        let mut c = InlineTable::new();
        c.insert("user", chap.user.as_str().into());
        c.insert("secret", chap.secret.as_str().into());
        if let (Some(u), Some(s)) = (&chap.mutual_user, &chap.mutual_secret) {
            c.insert("mutual_user", u.as_str().into());
            c.insert("mutual_secret", s.as_str().into());
        }
        c.fmt();
        t.remove("chap");
        set_value(t, "chap", Value::InlineTable(c));
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes the CHAP of target `name`.
pub fn clear_chap(text: &str, target: &str) -> Result<String> {
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        if t.remove("chap").is_none() {
            return Err(EditError::NotFound {
                kind: "chap on target",
                name: target.to_owned(),
            });
        }
        Ok(())
    })
    .map(|(s, ())| s)
}

// --- groups and initiators ----------------------------------------------------------

/// The group of `target` that holds initiator `iqn`, if any.
fn group_of_initiator(t: &mut dyn TableLike, iqn: &str) -> Result<Option<String>> {
    let Some(groups) = List::of(t, "group", "group")? else {
        return Ok(None);
    };
    Ok((0..groups.len())
        .filter_map(|i| groups.get(i))
        .find(|g| {
            g.get("initiators")
                .and_then(Item::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|n| same_iscsi_name(n, iqn))
                })
        })
        .map(|g| str_of(g, "name").unwrap_or("?").to_owned()))
}

/// Adds an initiator group (without LUNs: map them with [`map_lun`]).
pub fn add_group(text: &str, target: &str, spec: &GroupSpec) -> Result<String> {
    if spec.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if spec.initiators.is_empty() {
        return Err(invalid(
            "initiators",
            "a group needs at least one initiator",
        ));
    }
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        if List::of(t, "group", "group")?.is_some_and(|l| {
            l.position(|g| str_of(g, "name") == Some(&spec.name))
                .is_some()
        }) {
            return Err(EditError::exists("group", &spec.name));
        }
        for (i, iqn) in spec.initiators.iter().enumerate() {
            if spec.initiators[..i].iter().any(|o| same_iscsi_name(o, iqn)) {
                return Err(invalid(
                    &format!("initiators[{i}]"),
                    &format!("{iqn:?} is listed twice"),
                ));
            }
            if let Some(g) = group_of_initiator(t, iqn)? {
                return Err(EditError::InUse {
                    object: format!("initiator {iqn:?}"),
                    reason: format!("already in group {g:?} of {target:?}"),
                });
            }
        }
        let mut list = List::of_or_new(t, "group", "group", true)?;
        let mut g = Table::new();
        g.insert("name", toml_edit::value(&spec.name));
        let a: Array = spec.initiators.iter().map(String::as_str).collect();
        g.insert("initiators", toml_edit::value(a));
        g.insert("luns", toml_edit::value(Array::new()));
        list.push(g);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes group `name` of `target` (its initiators lose their LUNs).
pub fn remove_group(text: &str, target: &str, name: &str) -> Result<String> {
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        let mut list =
            List::of(t, "group", "group")?.ok_or_else(|| EditError::not_found("group", name))?;
        let i = list
            .position(|g| str_of(g, "name") == Some(name))
            .ok_or_else(|| EditError::not_found("group", name))?;
        list.remove(i);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// The `initiators` array of group `group` of target `t`.
fn initiators_mut<'t>(t: &'t mut dyn TableLike, group: &str) -> Result<&'t mut Array> {
    let list =
        List::of(t, "group", "group")?.ok_or_else(|| EditError::not_found("group", group))?;
    let i = list
        .position(|g| str_of(g, "name") == Some(group))
        .ok_or_else(|| EditError::not_found("group", group))?;
    let g = list
        .into_mut(i)
        .ok_or_else(|| EditError::not_found("group", group))?;
    g.get_mut("initiators")
        .and_then(Item::as_array_mut)
        .ok_or_else(|| layout(&format!("group {group:?}.initiators"), "is not an array"))
}

/// Adds initiators to an existing group; each may be in only one group of the target.
pub fn add_initiators(text: &str, target: &str, group: &str, iqns: &[String]) -> Result<String> {
    if iqns.is_empty() {
        return Err(invalid("initiators", "name at least one initiator"));
    }
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        for iqn in iqns {
            if let Some(g) = group_of_initiator(t, iqn)? {
                return Err(EditError::InUse {
                    object: format!("initiator {iqn:?}"),
                    reason: format!("already in group {g:?} of {target:?}"),
                });
            }
        }
        let a = initiators_mut(t, group)?;
        for iqn in iqns {
            if a.iter()
                .filter_map(Value::as_str)
                .any(|n| same_iscsi_name(n, iqn))
            {
                return Err(invalid("initiators", &format!("{iqn:?} is listed twice")));
            }
            push_value(a, Value::from(iqn.as_str()));
        }
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes initiators from a group; the last one cannot go (remove the group instead).
pub fn remove_initiators(text: &str, target: &str, group: &str, iqns: &[String]) -> Result<String> {
    if iqns.is_empty() {
        return Err(invalid("initiators", "name at least one initiator"));
    }
    edit(text, |doc| {
        let t = target_mut(doc, target)?;
        let a = initiators_mut(t, group)?;
        for iqn in iqns {
            let i = a
                .iter()
                .position(|v| v.as_str().is_some_and(|n| same_iscsi_name(n, iqn)))
                .ok_or_else(|| EditError::not_found("initiator", iqn))?;
            remove_value(a, i);
        }
        if a.is_empty() {
            return Err(EditError::InUse {
                object: format!("group {group:?}"),
                reason: "it would have no initiator left; remove the group instead".into(),
            });
        }
        Ok(())
    })
    .map(|(s, ())| s)
}
