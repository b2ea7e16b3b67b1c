//! Portals: the `[[server.portal]]` addresses the target listens on.

use super::*;

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
