//! `esos replica ...`: the `/replicas` API from the command line. `status --json` prints
//! `{"replicas":[...]}` (also for one device), the form the OCF agent parses.

use hyper::Method;
use serde_json::{Value, json};

use super::Outcome;
use super::print::table;
use crate::cli::ReplicaCommand;
use crate::client::{Client, ClientError, segment};

pub(super) async fn run(
    c: Client,
    json: bool,
    cmd: ReplicaCommand,
) -> Result<Outcome, ClientError> {
    let (device, verb, body) = match cmd {
        ReplicaCommand::Status { device } => return status(c, json, device).await,
        ReplicaCommand::Promote { device, force } => {
            (device, "promote", Some(json!({ "force": force })))
        }
        ReplicaCommand::Demote { device } => (device, "demote", None),
        ReplicaCommand::Up { device } => (device, "up", None),
        ReplicaCommand::Down { device } => (device, "down", None),
        ReplicaCommand::Verify { device } => (device, "verify", None),
        ReplicaCommand::Resolve { device, keep } => {
            (device, "resolve", Some(json!({ "keep": keep })))
        }
    };
    let path = format!("/api/v1/replicas/{}/{verb}", segment(&device));
    let a = c
        .send_json(Method::POST, &path, &body.unwrap_or_else(|| json!({})))
        .await?;
    if !a.is_success() {
        return Ok(Outcome::Refused(a.error_message()));
    }
    let v = a.json().unwrap_or(Value::Null);
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{device}: {verb} done; role {}, data {}",
            text(&v["role"]),
            text(&v["data"])
        );
    }
    Ok(Outcome::Ok)
}

async fn status(c: Client, json: bool, device: Option<String>) -> Result<Outcome, ClientError> {
    let a = match &device {
        Some(d) => c.get(&format!("/api/v1/replicas/{}", segment(d))).await?,
        None => c.get("/api/v1/replicas").await?,
    };
    if !a.is_success() {
        return Ok(Outcome::Refused(a.error_message()));
    }
    let Some(v) = a.json() else {
        return Ok(Outcome::Refused(format!("unexpected answer: {}", a.text())));
    };
    let list = match device {
        Some(_) => json!({ "replicas": [v] }),
        None => v,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        print!("{}", replicas(&list));
    }
    Ok(Outcome::Ok)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `replicas` of a `{"replicas":[...]}` answer: one line per device and peer, then the
/// split-brain reports.
pub fn replicas(v: &Value) -> String {
    if v["replicas"].as_array().is_none_or(Vec::is_empty) {
        return "no replicated devices (the config has no [cluster] or no type = \"replicated\" device)\n"
            .into();
    }
    let mut rows = Vec::new();
    let mut reports = String::new();
    for r in v["replicas"].as_array().into_iter().flatten() {
        let mut role = text(&r["role"]);
        if r["down"].as_bool() == Some(true) {
            role.push_str(" (down)");
        }
        let quorum = match (r["quorate"].as_bool(), r["lease_valid"].as_bool()) {
            (Some(true), Some(true)) => "yes, lease",
            (Some(true), _) => "yes",
            _ => "NO",
        };
        let peers: Vec<&Value> = r["peers"].as_array().into_iter().flatten().collect();
        let first = peers.first();
        let peer_cells = |p: Option<&&Value>| -> [String; 4] {
            let Some(p) = p else {
                return ["-".into(), "-".into(), "-".into(), "-".into()];
            };
            let total = p["sync_total_bytes"].as_u64().unwrap_or(0);
            let done = p["sync_done_bytes"].as_u64().unwrap_or(0);
            let progress = done
                .saturating_mul(100)
                .checked_div(total)
                .map_or("-".into(), |pct| format!("{pct}%"));
            [
                format!(
                    "{} ({}/{})",
                    text(&p["name"]),
                    text(&p["role"]),
                    text(&p["data"])
                ),
                text(&p["link"]),
                bytes(p["out_of_sync_bytes"].as_u64().unwrap_or(0)),
                progress,
            ]
        };
        let [peer, link, oos, sync] = peer_cells(first);
        rows.push(vec![
            text(&r["device"]),
            role,
            text(&r["data"]),
            text(&r["primary"]),
            quorum.into(),
            text(&r["generation"]),
            peer,
            link,
            oos,
            sync,
        ]);
        for p in peers.iter().skip(1) {
            let [peer, link, oos, sync] = peer_cells(Some(p));
            let mut row = vec![String::new(); 6];
            row.extend([peer, link, oos, sync]);
            rows.push(row);
        }
        if let Some(rep) = r["report"].as_str() {
            reports.push_str(&format!("{}: {rep}\n", text(&r["device"])));
        }
    }
    let mut out = table(
        &[
            "DEVICE",
            "ROLE",
            "DATA",
            "PRIMARY",
            "QUORUM",
            "GENERATION",
            "PEER",
            "LINK",
            "OUT OF SYNC",
            "SYNC",
        ],
        &rows,
    );
    out.push_str(&reports);
    out
}

/// Bytes in the largest binary unit that keeps a whole number above 1.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_roles_peers_and_reports() {
        let v = json!({"replicas": [{
            "device": "db", "me": "n1", "role": "primary", "data": "up-to-date",
            "generation": "00000000000000ab", "quorate": true, "lease_valid": true,
            "primary": "n1", "down": false, "report": "split brain with n2",
            "peers": [
                {"name": "n2", "link": "sync-source", "role": "secondary", "data": "inconsistent",
                 "out_of_sync_bytes": 3 << 20, "sync_done_bytes": 1, "sync_total_bytes": 4,
                 "sync_rate_bytes_per_sec": 0, "verify_mismatched_chunks": 0, "in_flight": 0},
                {"name": "n3", "link": "connecting", "role": null, "data": null,
                 "out_of_sync_bytes": 0, "sync_done_bytes": 0, "sync_total_bytes": 0,
                 "sync_rate_bytes_per_sec": 0, "verify_mismatched_chunks": 0, "in_flight": 0}
            ]
        }]});
        let t = replicas(&v);
        assert!(t.starts_with("DEVICE"), "{t}");
        assert!(t.contains("db"), "{t}");
        assert!(t.contains("yes, lease"), "{t}");
        assert!(t.contains("n2 (secondary/inconsistent)"), "{t}");
        assert!(t.contains("3.0 MiB"), "{t}");
        assert!(t.contains("25%"), "{t}");
        assert!(t.contains("n3 (-/-)"), "{t}");
        assert!(t.contains("db: split brain with n2"), "{t}");
        assert_eq!(bytes(512), "512 B");
        assert!(replicas(&json!({"replicas": []})).starts_with("no replicated devices"));
    }
}
