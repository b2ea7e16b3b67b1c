//! Edits of the config TEXT, as the API and the CLI make them.
//!
//! Every management change is "take the running config text, change one thing, hand the
//! whole new text to [`crate::manager::Manager::apply`]". These functions are the "change one
//! thing" part: pure, over `toml_edit` documents, so the admin's comments, key order and
//! spacing survive every edit of an unrelated part. They check what they can see
//! structurally (the object exists, a name or LUN is free, a device is unused) and leave
//! value checks (sizes, iSCSI names, secrets) to the config validator, which `apply` runs
//! on the result: one set of rules, one set of messages.
//!
//! Both forms of a list are understood: `[[device]]` array-of-tables and the inline
//! `device = [{ ... }]`; new entries follow the form already in use.

use serde::{Deserialize, Serialize};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// Why an edit was refused. Messages name the object; secrets never appear in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The running text is not TOML (cannot happen for a text the daemon accepted).
    #[error("config does not parse: {0}")]
    Parse(String),
    /// The object to add exists already.
    #[error("{kind} {name:?} already exists")]
    Exists { kind: &'static str, name: String },
    /// The object to change or remove does not exist.
    #[error("no {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    /// The LUN number is taken in that map.
    #[error("lun {lun} is already mapped to {device:?} in {map}")]
    LunTaken {
        lun: u64,
        device: String,
        map: String,
    },
    /// Nothing at that LUN in that map.
    #[error("lun {lun} is not mapped in {map}")]
    LunNotMapped { lun: u64, map: String },
    /// Every LUN number of the map is in use.
    #[error("{map} has no free lun (0..={max})")]
    LunsFull { map: String, max: u64 },
    /// Removing something others still refer to.
    #[error("{object} is in use: {reason}")]
    InUse { object: String, reason: String },
    /// A request value that cannot be written as asked.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The file uses a form these edits do not understand at `key`.
    #[error("{key}: {reason}; edit the file and use `esos config apply`")]
    Layout { key: String, reason: String },
}

impl EditError {
    fn not_found(kind: &'static str, name: &str) -> Self {
        EditError::NotFound {
            kind,
            name: name.to_owned(),
        }
    }
    fn exists(kind: &'static str, name: &str) -> Self {
        EditError::Exists {
            kind,
            name: name.to_owned(),
        }
    }
}

pub type Result<T> = std::result::Result<T, EditError>;

/// A new `[[device]]`. Only the keys given are written, so defaults stay defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Unique device name (1–64 of `A-Z a-z 0-9 . _ -`).
    pub name: String,
    /// Backend: file, blockdev, ram, null.
    #[serde(rename = "type")]
    pub kind: String,
    /// File or block device path (file, blockdev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Size with an optional binary unit, e.g. "10G" (file: created/grown; ram, null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Logical block size, 512 or 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Thin provisioning (UNMAP releases storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin: Option<bool>,
    /// "write-back" or "write-through".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A new `[[target]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// iSCSI name (iqn., eui. or naa.).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Absent: enabled, unless the target has no LUN map yet (then it is written disabled,
    /// since an enabled target without one would refuse every login and is rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Subset of the server portals; absent = every portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portals: Option<Vec<String>>,
}

/// CHAP of a target. Debug never prints the secrets.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChapSpec {
    pub user: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_secret: Option<String>,
}

impl std::fmt::Debug for ChapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapSpec")
            .field("user", &self.user)
            .field("mutual_user", &self.mutual_user)
            .finish_non_exhaustive()
    }
}

/// A new `[[target.group]]` (initiator group, LUN masking).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// Initiator iSCSI names; at least one.
    pub initiators: Vec<String>,
}

/// Which LUN map of a target: its `default_luns`, or one group's `luns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LunMap<'a> {
    Default,
    Group(&'a str),
}

/// What [`map_lun`] wrote: the LUN number (chosen when not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub lun: u64,
}

// --- lists in either form -------------------------------------------------------------

/// A list of tables in either TOML form.
enum List<'a> {
    Tables(&'a mut ArrayOfTables),
    Inline(&'a mut Array),
}

impl<'a> List<'a> {
    /// The list at `key` of `parent`; `None` when absent. `path` names it in errors.
    fn of(parent: &'a mut dyn TableLike, key: &str, path: &str) -> Result<Option<Self>> {
        match parent.get_mut(key) {
            None => Ok(None),
            Some(Item::ArrayOfTables(a)) => Ok(Some(List::Tables(a))),
            Some(Item::Value(Value::Array(a))) => {
                if a.iter().all(Value::is_inline_table) {
                    Ok(Some(List::Inline(a)))
                } else {
                    Err(layout(path, "is not a list of tables"))
                }
            }
            Some(_) => Err(layout(path, "is not a list of tables")),
        }
    }

    /// The list at `key`, created empty when absent: `[[key]]` tables in a standard table
    /// when `tables`, an inline array otherwise.
    fn of_or_new(
        parent: &'a mut dyn TableLike,
        key: &str,
        path: &str,
        tables: bool,
    ) -> Result<Self> {
        if parent.get(key).is_none() {
            let item = if tables {
                Item::ArrayOfTables(ArrayOfTables::new())
            } else {
                Item::Value(Value::Array(Array::new()))
            };
            parent.insert(key, item);
        }
        List::of(parent, key, path)?.ok_or_else(|| layout(path, "cannot be created"))
    }

    fn len(&self) -> usize {
        match self {
            List::Tables(a) => a.len(),
            List::Inline(a) => a.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&dyn TableLike> {
        match self {
            List::Tables(a) => a.get(i).map(|t| t as &dyn TableLike),
            List::Inline(a) => a
                .get(i)
                .and_then(Value::as_inline_table)
                .map(|t| t as &dyn TableLike),
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut dyn TableLike> {
        match self {
            List::Tables(a) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
            List::Inline(a) => a
                .get_mut(i)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
        }
    }

    fn into_mut(self, i: usize) -> Option<&'a mut dyn TableLike> {
        match self {
            List::Tables(a) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
            List::Inline(a) => a
                .get_mut(i)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
        }
    }

    fn position(&self, mut pred: impl FnMut(&dyn TableLike) -> bool) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i).is_some_and(&mut pred))
    }

    fn remove(&mut self, i: usize) {
        match self {
            List::Tables(a) => {
                a.remove(i);
            }
            List::Inline(a) => remove_value(a, i),
        }
    }

    /// Appends `entry` in the form of the list; an inline list keeps its line layout.
    fn push(&mut self, entry: Table) {
        match self {
            List::Tables(a) => a.push(entry),
            List::Inline(a) => {
                let mut t = entry.into_inline_table();
                t.fmt();
                push_value(a, Value::InlineTable(t));
            }
        }
    }
}

fn layout(key: &str, reason: &str) -> EditError {
    EditError::Layout {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Appends to an inline array. In a one-per-line array the new value gets its own line with
/// the same indentation, and a comment after the old last value stays on that value's line.
fn push_value(a: &mut Array, mut v: Value) {
    let indent = a
        .iter()
        .last()
        .and_then(|last| last.decor().prefix())
        .and_then(|p| p.as_str())
        .and_then(|p| p.rfind('\n').map(|nl| p[nl + 1..].to_owned()));
    if let Some(indent) = indent {
        let trailing = a.trailing().as_str().unwrap_or("").to_owned();
        let (comment, rest) = trailing
            .rfind('\n')
            .map_or(("", trailing.as_str()), |nl| trailing.split_at(nl));
        v.decor_mut().set_prefix(format!("{comment}\n{indent}"));
        v.decor_mut().set_suffix("");
        let rest = if rest.is_empty() { "\n" } else { rest };
        a.set_trailing(rest.to_owned());
    } else if !a.is_empty() {
        v.decor_mut().set_prefix(" ");
        v.decor_mut().set_suffix("");
    }
    a.push_formatted(v);
}

/// Removes from an inline array; the new first value takes the old first's spacing, so
/// `[a, b]` becomes `[b]`, not `[ b]`.
fn remove_value(a: &mut Array, i: usize) {
    let removed = a.remove(i);
    if i == 0
        && let Some(first) = a.get_mut(0)
    {
        let prefix = removed
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_owned();
        first.decor_mut().set_prefix(prefix);
    }
}

/// Sets `key = v`, keeping the decor (spacing, trailing comment) of a previous value.
fn set_value(t: &mut dyn TableLike, key: &str, mut v: Value) {
    if let Some(Item::Value(old)) = t.get(key) {
        let d = old.decor().clone();
        *v.decor_mut() = d;
    }
    t.insert(key, Item::Value(v));
}

fn str_of<'t>(t: &'t dyn TableLike, key: &str) -> Option<&'t str> {
    t.get(key).and_then(Item::as_str)
}

/// iSCSI names compare case-insensitively (RFC 7143 4.2.7.1 maps them to lower case).
fn same_iscsi_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn parse(text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::Parse(e.to_string()))
}

/// Runs `f` on the parsed text and prints the result.
fn edit<T>(text: &str, f: impl FnOnce(&mut DocumentMut) -> Result<T>) -> Result<(String, T)> {
    let mut doc = parse(text)?;
    let was_empty = doc.as_table().is_empty();
    let out = f(&mut doc)?;
    if was_empty && !doc.as_table().is_empty() {
        // A file of comments only keeps them all as the document's trailing text, which
        // is printed after the tables: keep them on top, where the admin wrote them.
        let head = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing("");
        return Ok((format!("{head}{doc}"), out));
    }
    Ok((doc.to_string(), out))
}

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

fn device_exists(doc: &mut DocumentMut, name: &str) -> Result<bool> {
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

/// (lun, device) pairs of the map at `key` of `t`; entries without both keys are skipped
/// (the validator reports them).
fn luns_of(t: &mut dyn TableLike, key: &str, path: &str) -> Result<Vec<(u64, String)>> {
    let Some(list) = List::of(t, key, path)? else {
        return Ok(Vec::new());
    };
    Ok((0..list.len())
        .filter_map(|i| list.get(i))
        .filter_map(|e| {
            let lun = e.get("lun").and_then(Item::as_integer)?;
            let dev = str_of(e, "device")?;
            Some((u64::try_from(lun).ok()?, dev.to_owned()))
        })
        .collect())
}

fn invalid(field: &str, reason: &str) -> EditError {
    EditError::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

// --- targets ------------------------------------------------------------------------

/// The target table named `name`.
fn target_mut<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut dyn TableLike> {
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

// --- LUN maps -----------------------------------------------------------------------

/// Largest LUN number written (the config's flat-addressing limit, SAM-5 4.7.7.2).
const MAX_LUN: u64 = crate::config::MAX_LUN;

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

// --- portals ------------------------------------------------------------------------

/// Adds a `[[server.portal]]`. When the config had none, the implicit default portal
/// (0.0.0.0:3260) is replaced by this one.
pub fn add_portal(text: &str, address: &str, group: Option<u32>) -> Result<String> {
    if address.is_empty() {
        return Err(invalid("address", "must not be empty"));
    }
    edit(text, |doc| {
        let root = doc.as_table_mut();
        if root.get("server").is_none() {
            let mut server = Table::new();
            server.set_implicit(true);
            root.insert("server", Item::Table(server));
        }
        let server = root
            .get_mut("server")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| layout("server", "is not a table"))?;
        let mut list = List::of_or_new(server, "portal", "server.portal", true)?;
        if list
            .position(|p| str_of(p, "address") == Some(address))
            .is_some()
        {
            return Err(EditError::exists("portal", address));
        }
        let mut p = Table::new();
        p.insert("address", toml_edit::value(address));
        if let Some(g) = group {
            p.insert("group", toml_edit::value(i64::from(g)));
        }
        list.push(p);
        Ok(())
    })
    .map(|(s, ())| s)
}

/// Removes the portal listening on `address`.
pub fn remove_portal(text: &str, address: &str) -> Result<String> {
    edit(text, |doc| {
        let server = doc
            .as_table_mut()
            .get_mut("server")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| EditError::not_found("portal", address))?;
        let mut list = List::of(server, "portal", "server.portal")?
            .ok_or_else(|| EditError::not_found("portal", address))?;
        let i = list
            .position(|p| str_of(p, "address") == Some(address))
            .ok_or_else(|| EditError::not_found("portal", address))?;
        list.remove(i);
        Ok(())
    })
    .map(|(s, ())| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const EXAMPLE: &str = include_str!("../../../examples/esos.toml");
    const VM: &str = "iqn.2026-11.org.example:storage.vm";
    const LAB: &str = "iqn.2026-11.org.example:lab";

    /// Parses and validates like the daemon does (without opening anything).
    fn valid(text: &str) -> config::Plan {
        let raw = config::parse(text, "edited").unwrap_or_else(|e| panic!("{e}\n{text}"));
        config::validate(&raw, &config::Source::file(std::path::Path::new("x.toml")))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn comments(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.find('#').map(|i| l[i..].trim_end()))
            .collect()
    }

    fn ram(name: &str) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            kind: "ram".into(),
            size: Some("1M".into()),
            ..Default::default()
        }
    }

    #[test]
    fn add_then_remove_device_restores_the_text_exactly() {
        let spec = DeviceSpec {
            thin: Some(true),
            block_size: Some(4096),
            cache: Some("write-through".into()),
            ..ram("extra")
        };
        let added = add_device(EXAMPLE, &spec).unwrap();
        let plan = valid(&added);
        let d = plan.devices.iter().find(|d| d.name == "extra").unwrap();
        assert_eq!(d.spec.block_size, 4096);
        assert!(d.thin);
        assert_eq!(comments(&added), comments(EXAMPLE));
        // New device sits after the last one, before the targets section.
        assert!(added.find("name = \"extra\"").unwrap() < added.find("# --- Targets").unwrap());
        assert_eq!(remove_device(&added, "extra").unwrap(), EXAMPLE);
    }

    #[test]
    fn resize_sets_only_the_size() {
        let added = add_device(EXAMPLE, &ram("extra")).unwrap();
        let grown = resize_device(&added, "extra", "8M").unwrap();
        let plan = valid(&grown);
        let d = plan.devices.iter().find(|d| d.name == "extra").unwrap();
        assert_eq!(
            d.spec.backend,
            esos_block::Backend::Ram {
                size_bytes: 8 << 20
            }
        );
        assert_eq!(comments(&grown), comments(EXAMPLE));
        assert_eq!(grown.replace("size = \"8M\"", "size = \"1M\""), added);
        assert!(matches!(
            resize_device(EXAMPLE, "ghost", "1G"),
            Err(EditError::NotFound { .. })
        ));
    }

    #[test]
    fn device_errors_are_precise() {
        assert_eq!(
            add_device(EXAMPLE, &ram("scratch"))
                .unwrap_err()
                .to_string(),
            r#"device "scratch" already exists"#
        );
        assert_eq!(
            remove_device(EXAMPLE, "nope").unwrap_err().to_string(),
            r#"no device "nope""#
        );
        let e = remove_device(EXAMPLE, "scratch").unwrap_err();
        assert!(matches!(e, EditError::InUse { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("{VM}/backup/lun 1")), "{msg}");
        assert!(msg.contains(&format!("{LAB}/lun 1")), "{msg}");
        assert!(matches!(
            add_device(EXAMPLE, &ram("")),
            Err(EditError::Invalid { ref field, .. }) if field == "name"
        ));
        assert!(matches!(
            add_device("this is not toml", &ram("a")),
            Err(EditError::Parse(_))
        ));
    }

    #[test]
    fn devices_in_an_inline_list() {
        let text = "device = [{ name = \"a\", type = \"null\", size = \"1G\" }]\n";
        let added = add_device(text, &ram("b")).unwrap();
        assert_eq!(
            added,
            "device = [{ name = \"a\", type = \"null\", size = \"1G\" }, \
             { name = \"b\", type = \"ram\", size = \"1M\" }]\n"
        );
        assert_eq!(
            remove_device(&added, "a").unwrap(),
            "device = [{ name = \"b\", type = \"ram\", size = \"1M\" }]\n"
        );
        assert_eq!(remove_device(&added, "b").unwrap(), text);
    }

    #[test]
    fn device_into_an_empty_config() {
        let added = add_device("# my san\n", &ram("a")).unwrap();
        assert!(added.starts_with("# my san\n"));
        assert_eq!(valid(&added).devices.len(), 1);
    }

    #[test]
    fn new_target_starts_disabled_and_round_trips() {
        let spec = TargetSpec {
            name: "iqn.2026-11.org.example:new".into(),
            alias: Some("New one".into()),
            portals: Some(vec!["127.0.0.1:3260".into()]),
            enabled: None,
        };
        let added = add_target(EXAMPLE, &spec).unwrap();
        let plan = valid(&added);
        let t = plan.targets.iter().find(|t| t.name == spec.name).unwrap();
        assert!(!t.enabled);
        assert_eq!(comments(&added), comments(EXAMPLE));
        assert_eq!(remove_target(&added, &spec.name).unwrap(), EXAMPLE);
        // Names compare case-insensitively, like the validator does.
        let upper = TargetSpec {
            name: LAB.to_uppercase(),
            ..spec
        };
        assert_eq!(
            add_target(EXAMPLE, &upper).unwrap_err(),
            EditError::exists("target", &upper.name)
        );
        assert_eq!(
            remove_target(EXAMPLE, "iqn.2026-11.org.example:none").unwrap_err(),
            EditError::not_found("target", "iqn.2026-11.org.example:none")
        );
    }

    #[test]
    fn enable_and_disable_keep_a_trailing_comment() {
        let text = format!("[[target]]\nname = \"{LAB}\"\nenabled = true   # on\n");
        let off = set_target_enabled(&text, LAB, false).unwrap();
        assert_eq!(off, text.replace("true", "false"));
        let added = set_target_enabled(EXAMPLE, LAB, false).unwrap();
        assert!(!valid(&added).targets[1].enabled);
        assert!(matches!(
            set_target_enabled(EXAMPLE, "iqn.2026-11.org.example:x", true),
            Err(EditError::NotFound { kind: "target", .. })
        ));
    }

    #[test]
    fn chap_set_replace_and_clear() {
        let chap = ChapSpec {
            user: "lab".into(),
            secret: "a-secret-of-16ch".into(),
            ..Default::default()
        };
        let set = set_chap(EXAMPLE, LAB, &chap).unwrap();
        let plan = valid(&set);
        assert_eq!(plan.targets[1].chap.as_ref().unwrap().user, "lab");
        assert_eq!(clear_chap(&set, LAB).unwrap(), EXAMPLE);
        // Replacing the storage.vm CHAP drops its mutual half.
        let replaced = set_chap(EXAMPLE, VM, &chap).unwrap();
        assert!(!replaced.contains("mutual"));
        assert!(valid(&replaced).targets[0].chap.is_some());
        assert_eq!(
            clear_chap(EXAMPLE, LAB).unwrap_err().to_string(),
            format!("no chap on target {LAB:?}")
        );
        let half = ChapSpec {
            mutual_user: Some("m".into()),
            ..chap
        };
        let e = set_chap(EXAMPLE, LAB, &half).unwrap_err();
        assert!(matches!(e, EditError::Invalid { ref field, .. } if field == "mutual_user"));
        assert!(!format!("{half:?}").contains("a-secret"));
    }

    #[test]
    fn groups_and_initiators() {
        let g = GroupSpec {
            name: "lab-hosts".into(),
            initiators: vec!["iqn.1993-08.org.debian:01:h1".into()],
        };
        let added = add_group(EXAMPLE, LAB, &g).unwrap();
        assert_eq!(valid(&added).targets[1].groups.len(), 1);
        assert_eq!(remove_group(&added, LAB, "lab-hosts").unwrap(), EXAMPLE);
        assert_eq!(
            add_group(&added, LAB, &g).unwrap_err(),
            EditError::exists("group", "lab-hosts")
        );
        // An initiator may be in one group of a target only.
        let esxi = GroupSpec {
            name: "other".into(),
            initiators: vec!["IQN.1998-01.com.vmware:esxi-01-5a3b1c2d".into()],
        };
        let e = add_group(EXAMPLE, VM, &esxi).unwrap_err();
        assert!(e.to_string().contains("already in group \"esxi\""), "{e}");
        let empty = GroupSpec {
            name: "x".into(),
            initiators: vec![],
        };
        assert!(matches!(
            add_group(EXAMPLE, VM, &empty),
            Err(EditError::Invalid { ref field, .. }) if field == "initiators"
        ));

        // Initiators of the multi-line esxi list: comments and layout kept.
        let h3 = vec!["iqn.1998-01.com.vmware:esxi-03-7c5d3e4f".to_string()];
        let more = add_initiators(EXAMPLE, VM, "esxi", &h3).unwrap();
        assert!(
            more.contains(
                "    \"iqn.1998-01.com.vmware:esxi-02-6b4c2d3e\",\n    \
             \"iqn.1998-01.com.vmware:esxi-03-7c5d3e4f\",\n]"
            ),
            "{more}"
        );
        assert_eq!(valid(&more).targets[0].groups[0].initiators.len(), 3);
        assert_eq!(remove_initiators(&more, VM, "esxi", &h3).unwrap(), EXAMPLE);
        assert!(matches!(
            remove_initiators(EXAMPLE, VM, "esxi", &h3),
            Err(EditError::NotFound {
                kind: "initiator",
                ..
            })
        ));
        let backup = vec!["iqn.1993-08.org.debian:01:backup01".to_string()];
        assert!(matches!(
            remove_initiators(EXAMPLE, VM, "backup", &backup),
            Err(EditError::InUse { .. })
        ));
        assert!(matches!(
            add_initiators(EXAMPLE, VM, "esxi", &backup),
            Err(EditError::InUse { .. })
        ));
        assert!(matches!(
            add_initiators(EXAMPLE, VM, "nope", &h3),
            Err(EditError::NotFound { kind: "group", .. })
        ));
    }

    #[test]
    fn lun_map_and_unmap_keep_line_comments() {
        // backup's luns: one per line, a comment after each.
        let (mapped, m) = map_lun(EXAMPLE, VM, LunMap::Group("backup"), None, "bench").unwrap();
        assert_eq!(m.lun, 2);
        assert!(
            mapped.contains(
                "    { lun = 1, device = \"scratch\" },\n    { lun = 2, device = \"bench\" },\n]"
            ),
            "{mapped}"
        );
        assert_eq!(comments(&mapped), comments(EXAMPLE));
        let plan = valid(&mapped);
        assert_eq!(plan.targets[0].groups[1].luns.len(), 3);
        assert_eq!(
            unmap_lun(&mapped, VM, LunMap::Group("backup"), 2).unwrap(),
            EXAMPLE
        );
        // A single-line list.
        let (one, m) = map_lun(EXAMPLE, VM, LunMap::Group("esxi"), Some(7), "bench").unwrap();
        assert_eq!(m.lun, 7);
        assert!(one.contains(
            "luns = [{ lun = 0, device = \"vm-store\" }, { lun = 7, device = \"bench\" }]"
        ));
        assert_eq!(
            unmap_lun(&one, VM, LunMap::Group("esxi"), 7).unwrap(),
            EXAMPLE
        );
    }

    #[test]
    fn unmapping_the_last_line_of_a_list_keeps_the_others_comments() {
        let (mapped, _) = map_lun(EXAMPLE, VM, LunMap::Group("backup"), None, "bench").unwrap();
        let back = unmap_lun(&mapped, VM, LunMap::Group("backup"), 2).unwrap();
        assert_eq!(back, EXAMPLE);
    }

    #[test]
    fn default_luns_are_created_when_absent() {
        let (mapped, m) = map_lun(EXAMPLE, VM, LunMap::Default, None, "bench").unwrap();
        assert_eq!(m.lun, 0);
        let plan = valid(&mapped);
        assert!(plan.targets[0].default_luns.is_some());
        let back = unmap_lun(&mapped, VM, LunMap::Default, 0).unwrap();
        // The now empty map stays: removing it would change who may log in.
        assert!(back.contains("default_luns = []"));
    }

    #[test]
    fn lun_errors_are_precise() {
        assert_eq!(
            map_lun(EXAMPLE, LAB, LunMap::Default, Some(1), "vm-store")
                .unwrap_err()
                .to_string(),
            format!("lun 1 is already mapped to \"scratch\" in default_luns of {LAB:?}")
        );
        assert_eq!(
            map_lun(EXAMPLE, LAB, LunMap::Default, None, "ghost").unwrap_err(),
            EditError::not_found("device", "ghost")
        );
        assert!(matches!(
            map_lun(EXAMPLE, LAB, LunMap::Default, None, "bench"),
            Err(EditError::InUse { .. })
        ));
        assert!(matches!(
            map_lun(EXAMPLE, LAB, LunMap::Default, Some(MAX_LUN + 1), "vm-store"),
            Err(EditError::Invalid { ref field, .. }) if field == "lun"
        ));
        assert!(matches!(
            map_lun(EXAMPLE, LAB, LunMap::Group("g"), None, "vm-store"),
            Err(EditError::NotFound { kind: "group", .. })
        ));
        assert_eq!(
            unmap_lun(EXAMPLE, LAB, LunMap::Default, 9)
                .unwrap_err()
                .to_string(),
            format!("lun 9 is not mapped in default_luns of {LAB:?}")
        );
        assert!(matches!(
            unmap_lun(EXAMPLE, VM, LunMap::Default, 0),
            Err(EditError::LunNotMapped { .. })
        ));
    }

    #[test]
    fn portals() {
        let added = add_portal(EXAMPLE, "127.0.0.2:3260", Some(3)).unwrap();
        assert_eq!(valid(&added).portals.len(), 3);
        assert_eq!(remove_portal(&added, "127.0.0.2:3260").unwrap(), EXAMPLE);
        assert_eq!(
            add_portal(EXAMPLE, "[::1]:3260", None).unwrap_err(),
            EditError::exists("portal", "[::1]:3260")
        );
        assert_eq!(
            remove_portal(EXAMPLE, "10.0.0.1:3260").unwrap_err(),
            EditError::not_found("portal", "10.0.0.1:3260")
        );
        let fresh = add_portal("", "127.0.0.1:3260", None).unwrap();
        assert_eq!(fresh, "[[server.portal]]\naddress = \"127.0.0.1:3260\"\n");
    }

    #[test]
    fn a_non_list_is_a_layout_error() {
        assert!(matches!(
            add_device("device = 3\n", &ram("a")),
            Err(EditError::Layout { .. })
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Mapping a sequence of devices into a group then unmapping them all in any
            /// order gives back the original text, byte for byte.
            #[test]
            fn map_unmap_round_trip(luns in proptest::collection::btree_set(0u64..64, 1..3),
                                    reverse in any::<bool>()) {
                let devices = ["bench", "scratch"];
                let mut text = EXAMPLE.to_owned();
                let luns: Vec<u64> = luns.into_iter().collect();
                for (l, d) in luns.iter().zip(devices) {
                    text = map_lun(&text, VM, LunMap::Group("esxi"), Some(*l + 1), d).unwrap().0;
                }
                valid(&text);
                let mut order = luns.clone();
                if reverse { order.reverse(); }
                for l in order {
                    text = unmap_lun(&text, VM, LunMap::Group("esxi"), l + 1).unwrap();
                }
                prop_assert_eq!(text, EXAMPLE);
            }
        }
    }
}
