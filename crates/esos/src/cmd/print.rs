//! Human output of the management verbs: aligned tables and change summaries, built from
//! the API's JSON (so the CLI needs nothing but the documented answers).

use serde_json::Value;

/// Columns aligned on the widest cell; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let n = cells.len();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default()
}

/// Bytes in the largest binary unit that divides them, like the config's sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    let mut unit = "";
    let mut n = bytes;
    for u in UNITS {
        if n == 0 || n & 1023 != 0 {
            break;
        }
        n /= 1024;
        unit = u;
    }
    format!("{n}{unit}")
}

pub fn devices(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let mut flags = Vec::new();
            if d["thin"].as_bool() == Some(true) {
                flags.push("thin");
            }
            if d["read_only"].as_bool() == Some(true) {
                flags.push("ro");
            }
            flags.push(if d["write_cache"].as_bool() == Some(false) {
                "wt"
            } else {
                "wb"
            });
            vec![
                s(&d["name"]),
                s(&d["kind"]),
                d["size_bytes"].as_u64().map_or("-".into(), size),
                s(&d["block_size"]),
                flags.join(","),
                s(&d["path"]),
                strings(&d["exports"]).join(" "),
            ]
        })
        .collect();
    table(
        &["NAME", "TYPE", "SIZE", "BLOCK", "FLAGS", "PATH", "EXPORTS"],
        &rows,
    )
}

pub fn device(d: &Value) -> String {
    let mut out = String::new();
    for k in [
        "name",
        "kind",
        "path",
        "size_bytes",
        "block_size",
        "read_only",
        "thin",
        "write_cache",
        "serial",
        "naa",
    ] {
        out.push_str(&format!("{k:<12} {}\n", s(&d[k])));
        if k == "path" && d["backing"].is_string() {
            out.push_str(&format!("{:<12} {}\n", "backing", s(&d["backing"])));
        }
    }
    out.push_str(&format!(
        "{:<12} {}\n",
        "exports",
        strings(&d["exports"]).join(" ")
    ));
    out
}

fn luns(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| format!("{}={}", s(&l["lun"]), s(&l["device"])))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "-".into())
}

pub fn targets(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let groups: Vec<String> = t["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| s(&g["name"]))
                .collect();
            vec![
                s(&t["name"]),
                yes(&t["enabled"]).into(),
                yes(&t["chap"]).into(),
                s(&t["sessions"]),
                if groups.is_empty() {
                    "-".into()
                } else {
                    groups.join(",")
                },
                luns(&t["default_luns"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ENABLED",
            "CHAP",
            "SESSIONS",
            "GROUPS",
            "DEFAULT LUNS",
        ],
        &rows,
    )
}

pub fn target(t: &Value) -> String {
    let mut out = format!(
        "name      {}\nalias     {}\nenabled   {}\nchap      {}\nportals   {}\nsessions  {}\n\
         default   {}\n",
        s(&t["name"]),
        s(&t["alias"]),
        yes(&t["enabled"]),
        yes(&t["chap"]),
        strings(&t["portals"]).join(" "),
        s(&t["sessions"]),
        luns(&t["default_luns"]),
    );
    for g in t["groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "group     {}: initiators {}; luns {}\n",
            s(&g["name"]),
            strings(&g["initiators"]).join(" "),
            luns(&g["luns"])
        ));
    }
    out
}

pub fn port_groups(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let ports: Vec<String> = x["portal_groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            vec![s(&x["id"]), s(&x["state"]), ports.join(","), s(&x["mode"])]
        })
        .collect();
    table(&["ID", "STATE", "PORTAL GROUPS", "MODE"], &rows)
}

pub fn sessions(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let digests = match (x["header_digest"].as_bool(), x["data_digest"].as_bool()) {
                (Some(true), Some(true)) => "hdr,data",
                (Some(true), _) => "hdr",
                (_, Some(true)) => "data",
                _ => "-",
            };
            vec![
                s(&x["id"]),
                s(&x["initiator"]),
                x["target"]
                    .as_str()
                    .map_or("(discovery)".into(), str::to_owned),
                s(&x["peer"]),
                digests.into(),
                s(&x["commands"]),
            ]
        })
        .collect();
    table(
        &["ID", "INITIATOR", "TARGET", "PEER", "DIGESTS", "COMMANDS"],
        &rows,
    )
}

/// `done`, then the report's non-empty parts.
pub fn applied(v: &Value, done: &str) -> String {
    let mut out = String::new();
    if v["dry_run"].as_bool() == Some(true) {
        out.push_str(&format!("dry run, nothing changed: {done}\n"));
    } else {
        out.push_str(done);
        out.push('\n');
    }
    let r = &v["report"];
    for (key, label) in [
        ("devices_added", "devices added"),
        ("devices_removed", "devices removed"),
        ("devices_changed", "devices changed"),
        ("targets_added", "targets added"),
        ("targets_removed", "targets removed"),
        ("targets_changed", "targets changed"),
    ] {
        let names = strings(&r[key]);
        if !names.is_empty() {
            out.push_str(&format!("  {label}: {}\n", names.join(", ")));
        }
    }
    if let Some(n) = r["sessions_closed"].as_u64().filter(|&n| n > 0) {
        out.push_str(&format!("  sessions logged out: {n}\n"));
    }
    for w in strings(&r["warnings"]) {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out
}

/// `esos system info`: one `key  value` line per field.
pub fn system(v: &Value) -> String {
    let uptime = v["uptime_s"]
        .as_u64()
        .map_or_else(|| "-".into(), crate::system::human_duration);
    let rows = [
        ("version", s(&v["version"])),
        ("pid", s(&v["pid"])),
        ("started", s(&v["started"])),
        ("uptime", uptime),
        ("config", s(&v["config_file"])),
        ("data dir", s(&v["data_dir"])),
        ("log level", s(&v["log_level"])),
    ];
    rows.iter()
        .map(|(k, val)| format!("{k:<10} {val}\n"))
        .collect()
}

/// `esos system log`: one line per event, like the daemon's own log.
pub fn log(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {:>5} {}: {}\n",
                s(&e["time"]),
                s(&e["level"]).to_uppercase(),
                s(&e["target"]),
                s(&e["message"])
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn system_info_and_log_lines() {
        let v = json!({ "version": "0.1.0", "pid": 42, "started": "2026-11-25T00:00:00Z",
            "started_unix": 1, "uptime_s": 3725, "config_file": null,
            "data_dir": "/var/lib/esos", "log_level": "info" });
        let out = system(&v);
        assert!(out.contains("version    0.1.0\n"), "{out}");
        assert!(out.contains("uptime     1h 2m\n"), "{out}");
        assert!(out.contains("config     -\n"), "{out}");
        let l = json!([{ "time": "2026-11-25T00:00:00.000Z", "level": "warn",
            "target": "esos::manager", "message": "slow device=d1" }]);
        assert_eq!(
            log(&l),
            "2026-11-25T00:00:00.000Z  WARN esos::manager: slow device=d1\n"
        );
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A     BB\nlong  x\ns     y\n");
    }

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(size(10 << 30), "10G");
        assert_eq!(size(512 << 20), "512M");
        assert_eq!(size(1536), "1536");
        assert_eq!(size(1000), "1000");
        assert_eq!(size(0), "0");
    }

    #[test]
    fn device_rows() {
        let v = json!([{ "name": "d", "kind": "file", "path": "/x.img", "size_bytes": 1u64 << 30,
            "block_size": 512, "read_only": false, "thin": true, "write_cache": true,
            "serial": "s", "naa": "n", "exports": ["t/0"] }]);
        let out = devices(&v);
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with("d     file  1G    512    thin,wb"),
            "{out}"
        );
    }

    #[test]
    fn change_summaries() {
        let v = json!({"dry_run": true, "report": {"devices_added": ["a"], "warnings": ["w"],
            "sessions_closed": 2}});
        assert_eq!(
            applied(&v, "device a added"),
            "dry run, nothing changed: device a added\n  devices added: a\n  \
             sessions logged out: 2\n  warning: w\n"
        );
    }
}
