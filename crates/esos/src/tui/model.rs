//! What the TUI knows about the daemon: its answers to the read endpoints, decoded
//! leniently (missing fields default) so a newer daemon with more fields still shows, and
//! the I/O rates derived from two samples of the cumulative counters.

use std::time::Duration;

use serde::Deserialize;

/// One device (`GET /devices`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Device {
    pub name: String,
    pub kind: String,
    pub path: Option<String>,
    pub size_bytes: u64,
    pub block_size: u32,
    pub read_only: bool,
    pub thin: bool,
    pub write_cache: bool,
    pub serial: String,
    pub naa: String,
    /// "target/lun" or "target/group/lun".
    pub exports: Vec<String>,
}

/// One target (`GET /targets`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Target {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: bool,
    pub portals: Vec<String>,
    pub chap: bool,
    pub groups: Vec<Group>,
    /// `None`: initiators in no group are refused.
    pub default_luns: Option<Vec<Lun>>,
    pub sessions: u32,
}

impl Target {
    /// LUNs of every map (default and groups).
    pub fn lun_count(&self) -> usize {
        self.default_luns.as_ref().map_or(0, Vec::len)
            + self.groups.iter().map(|g| g.luns.len()).sum::<usize>()
    }

    /// The LUN map `group` names (`None`: `default_luns`), if it exists.
    pub fn map(&self, group: Option<&str>) -> Option<&[Lun]> {
        match group {
            None => self.default_luns.as_deref(),
            Some(g) => self
                .groups
                .iter()
                .find(|x| x.name == g)
                .map(|x| x.luns.as_slice()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Group {
    pub name: String,
    pub initiators: Vec<String>,
    pub luns: Vec<Lun>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Lun {
    pub lun: u64,
    pub device: String,
}

/// One logged-in session (`GET /sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Session {
    pub id: u64,
    pub initiator: String,
    pub isid: String,
    /// `None` for discovery sessions.
    pub target: Option<String>,
    pub peer: String,
    pub header_digest: bool,
    pub data_digest: bool,
    pub commands: u64,
}

/// Cumulative counters of one device (`GET /stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub name: String,
    pub read_commands: u64,
    pub write_commands: u64,
    pub other_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub errors: u64,
    pub in_flight: u64,
}

/// One ALUA target port group as the daemon runs it (`GET /port-groups`): the live state,
/// which SET TARGET PORT GROUPS or `PUT /port-groups/{id}` may have changed since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PortGroup {
    pub id: u16,
    pub state: String,
    /// Portal group tags in the group.
    pub portal_groups: Vec<u16>,
    /// implicit | explicit | both.
    pub mode: String,
}

/// One replicated device (`GET /replicas`): what the Port groups tab shows under the
/// groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Replica {
    pub device: String,
    pub role: String,
    pub data: String,
    pub primary: Option<String>,
    pub quorate: bool,
    pub down: bool,
    pub peers: Vec<ReplicaPeer>,
    pub report: Option<String>,
}

/// One peer of a [`Replica`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReplicaPeer {
    pub name: String,
    pub link: String,
    pub out_of_sync_bytes: u64,
    pub sync_done_bytes: u64,
    pub sync_total_bytes: u64,
    pub sync_rate_bytes_per_sec: u64,
}

/// `GET /replicas`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Replicas {
    pub replicas: Vec<Replica>,
}

/// The daemon itself (`GET /system`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    pub version: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    pub uptime_s: u64,
    pub config_file: Option<String>,
    pub data_dir: String,
    pub log_level: String,
}

/// One event of the daemon's recent log (`GET /system/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LogEvent {
    /// RFC 3339, UTC.
    pub time: String,
    pub level: String,
    pub target: String,
    pub message: String,
}

impl LogEvent {
    /// `HH:MM:SS` of the RFC 3339 time, or the time as it came when it has another shape.
    pub fn clock(&self) -> &str {
        self.time.get(11..19).unwrap_or(&self.time)
    }
}

/// One poll of the read endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub devices: Vec<Device>,
    pub targets: Vec<Target>,
    pub sessions: Vec<Session>,
    pub stats: Vec<Stats>,
    /// `None` when the daemon did not answer `GET /port-groups` (the tab then shows the
    /// configured table, read-only).
    pub port_groups: Option<Vec<PortGroup>>,
    /// Replicated devices; empty without `[cluster]` or when the daemon does not list them.
    pub replicas: Vec<Replica>,
    /// The running config text; fetched only when a view needs it.
    pub config: Option<String>,
    /// The daemon's information; fetched only while the System tab is shown, `None` when
    /// not fetched or the daemon does not serve it.
    pub system: Option<SystemInfo>,
    /// The daemon's newest log events, oldest first; fetched like `system`.
    pub daemon_log: Option<Vec<LogEvent>>,
}

/// I/O rates of one device between two polls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// READ and WRITE commands per second.
    pub iops: f64,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
}

/// Rates from two samples `elapsed` apart, by device name. A device new in `cur` has no
/// rate yet; a counter that went backwards (the device was removed and added again) counts
/// as a restart from zero. `None` when no time passed.
pub fn rates(prev: &[Stats], cur: &[Stats], elapsed: Duration) -> Option<Vec<(String, Rate)>> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let delta = |now: u64, before: u64| {
        if now >= before {
            (now - before) as f64
        } else {
            now as f64
        }
    };
    Some(
        cur.iter()
            .filter_map(|c| {
                let p = prev.iter().find(|p| p.name == c.name)?;
                let cmds = delta(c.read_commands, p.read_commands)
                    + delta(c.write_commands, p.write_commands);
                Some((
                    c.name.clone(),
                    Rate {
                        iops: cmds / secs,
                        read_bytes_per_s: delta(c.read_bytes, p.read_bytes) / secs,
                        write_bytes_per_s: delta(c.write_bytes, p.write_bytes) / secs,
                    },
                ))
            })
            .collect(),
    )
}

/// A byte count in binary units, as sizes are written in the config ("10G", "512M").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// ALUA target port groups from the running config's `[server.alua]`, and the server
/// portals (there is no endpoint listing them): the configured table, which the live
/// states of [`PortGroup`] override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alua {
    /// `None`: no `[server.alua]` (every portal group is its own active/optimized group).
    pub mode: Option<String>,
    pub groups: Vec<AluaGroup>,
    /// `[[server.portal]]`: address and portal group tag.
    pub portals: Vec<(String, u32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AluaGroup {
    pub id: u64,
    pub state: String,
    pub portal_groups: Vec<u64>,
}

/// Reads the ALUA table and the portals out of a config text. The daemon validated it, so
/// missing keys take the documented defaults; a text that does not parse is an error.
pub fn parse_alua(text: &str) -> Result<Alua, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("config: {e}"))?;
    let server = doc.get("server").and_then(|s| s.as_table());
    let mut out = Alua::default();
    if let Some(portals) = server
        .and_then(|s| s.get("portal"))
        .and_then(|p| p.as_array())
    {
        for p in portals {
            let addr = p.get("address").and_then(|a| a.as_str()).unwrap_or("?");
            let group = p
                .get("group")
                .and_then(|g| g.as_integer())
                .and_then(|g| u32::try_from(g).ok())
                .unwrap_or(1);
            out.portals.push((addr.to_owned(), group));
        }
    }
    let Some(alua) = server
        .and_then(|s| s.get("alua"))
        .and_then(|a| a.as_table())
    else {
        return Ok(out);
    };
    out.mode = Some(
        alua.get("mode")
            .and_then(|m| m.as_str())
            .unwrap_or("implicit")
            .to_owned(),
    );
    for g in alua
        .get("group")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
    {
        let int = |v: &toml::Value| v.as_integer().and_then(|i| u64::try_from(i).ok());
        out.groups.push(AluaGroup {
            id: g.get("id").and_then(int).unwrap_or(0),
            state: g
                .get("state")
                .and_then(|s| s.as_str())
                .unwrap_or("active-optimized")
                .to_owned(),
            portal_groups: g
                .get("portal_groups")
                .and_then(|p| p.as_array())
                .map(|a| a.iter().filter_map(int).collect())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, r: u64, w: u64, rb: u64, wb: u64) -> Stats {
        Stats {
            name: name.into(),
            read_commands: r,
            write_commands: w,
            read_bytes: rb,
            write_bytes: wb,
            ..Stats::default()
        }
    }

    #[test]
    fn rates_are_deltas_over_time() {
        let prev = [st("a", 10, 5, 1000, 0), st("gone", 1, 1, 1, 1)];
        let cur = [st("a", 30, 25, 3000, 4_000_000), st("new", 9, 9, 9, 9)];
        let r = rates(&prev, &cur, Duration::from_millis(2000)).unwrap();
        assert_eq!(r.len(), 1, "a device without a previous sample has no rate");
        let (name, a) = &r[0];
        assert_eq!(name, "a");
        assert_eq!(a.iops, 20.0);
        assert_eq!(a.read_bytes_per_s, 1000.0);
        assert_eq!(a.write_bytes_per_s, 2_000_000.0);
    }

    #[test]
    fn a_counter_that_went_back_restarts_from_zero() {
        let r = rates(
            &[st("a", 100, 0, 0, 0)],
            &[st("a", 4, 0, 0, 0)],
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(r[0].1.iops, 4.0);
        assert!(rates(&[], &[], Duration::ZERO).is_none());
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(human_bytes(512), "512");
        assert_eq!(human_bytes(8 << 20), "8M");
        assert_eq!(human_bytes(1536 << 20), "1.5G");
        assert_eq!(human_bytes(10 << 40), "10T");
    }

    #[test]
    fn answers_decode_leniently() {
        let d: Vec<Device> = serde_json::from_str(
            r#"[{"name":"d0","kind":"ram","size_bytes":8388608,"exports":["t/0"],"new":1}]"#,
        )
        .unwrap();
        assert_eq!(d[0].name, "d0");
        assert_eq!(d[0].exports, ["t/0"]);
        let t: Target = serde_json::from_str(
            r#"{"name":"t","enabled":true,"groups":[{"name":"g","initiators":["i"],
               "luns":[{"lun":3,"device":"d"}]}],"default_luns":[{"lun":0,"device":"d0"}]}"#,
        )
        .unwrap();
        assert_eq!(t.lun_count(), 2);
        assert_eq!(t.map(Some("g")).unwrap()[0].lun, 3);
        assert!(t.map(Some("nope")).is_none());
        let g: Vec<PortGroup> = serde_json::from_str(
            r#"[{"id":2,"state":"standby","portal_groups":[2,3],"mode":"both","x":0},{"id":7}]"#,
        )
        .unwrap();
        assert_eq!((g[0].id, g[0].state.as_str()), (2, "standby"));
        assert_eq!(g[0].portal_groups, [2, 3]);
        assert_eq!(g[1].state, "", "missing fields default");
        assert!(serde_json::from_str::<Vec<PortGroup>>(r#"[{"id":70000}]"#).is_err());
    }

    #[test]
    fn alua_from_config() {
        let a = parse_alua(
            r#"
[server]
[[server.portal]]
address = "192.0.2.10:3260"
group = 1
[[server.portal]]
address = "198.51.100.10:3260"
group = 2
[server.alua]
mode = "both"
[[server.alua.group]]
id = 1
portal_groups = [1]
[[server.alua.group]]
id = 2
state = "standby"
portal_groups = [2]
"#,
        )
        .unwrap();
        assert_eq!(a.mode.as_deref(), Some("both"));
        assert_eq!(a.portals[1], ("198.51.100.10:3260".to_owned(), 2));
        assert_eq!(a.groups[0].state, "active-optimized");
        assert_eq!(a.groups[1].portal_groups, [2]);
        let none = parse_alua("[server]\n").unwrap();
        assert!(none.mode.is_none() && none.groups.is_empty());
        assert!(parse_alua("[server").is_err());
    }
}
