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

mod device;
mod lun;
mod portal;
mod target;
#[cfg(test)]
mod tests;

pub use device::{add_device, remove_device, resize_device};
pub use lun::{map_lun, unmap_lun};
pub use portal::{add_portal, remove_portal};
pub use target::{
    add_group, add_initiators, add_target, clear_chap, remove_group, remove_initiators,
    remove_target, set_chap, set_target_enabled,
};

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
    /// Backend: file, blockdev, ram, null, cdrom, replicated.
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
    /// `replicated`: the local file or blockdev device holding this node's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing: Option<String>,
    /// `replicated`: most bytes per second a resync copies, e.g. "100M".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_rate: Option<String>,
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
