//! Real initiators: the libiscsi command-line tools and qemu-img's iSCSI driver.

use std::path::Path;
use std::time::Duration;

use crate::cmd::{self, Output};

/// Longest a libiscsi tool (iscsi-ls, iscsi-inq, ...) may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one qemu-img convert of a test image may run.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(180);

/// Panics with an install hint when a program the test needs is missing: a missing tool
/// must not turn into a silently passing test.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed; run scripts/check (it installs every test dependency)"
    );
}

/// `iscsi-ls -s [-i INITIATOR] URL`
pub fn iscsi_ls(portal_url: &str, initiator: Option<&str>) -> Output {
    require("iscsi-ls");
    let mut a = vec!["-s".to_owned()];
    if let Some(i) = initiator {
        a.extend(["-i".into(), i.into()]);
    }
    a.push(portal_url.into());
    cmd::run("iscsi-ls", &a, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a libiscsi tool that takes `[-i INITIATOR] URL`.
pub fn libiscsi(tool: &str, url: &str, initiator: Option<&str>) -> Output {
    require(tool);
    let mut a = Vec::new();
    if let Some(i) = initiator {
        a.extend(["-i".to_owned(), i.to_owned()]);
    }
    a.push(url.to_owned());
    cmd::run(tool, &a, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// LUN numbers listed by `iscsi-ls -s` output ("Lun:N    Type:...").
pub fn luns_in_listing(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Lun:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Value of a `Key:value` line of iscsi-inq / iscsi-readcapacity16 output.
pub fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// How qemu-img reaches a LUN.
#[derive(Clone, Debug)]
pub struct QemuIscsi {
    pub portal: String,
    pub target: String,
    pub lun: u32,
    pub header_digest: bool,
    pub initiator: Option<String>,
    pub chap: Option<(String, String)>,
}

impl QemuIscsi {
    /// `--image-opts` string for the iscsi block driver (qemu's `BlockdevOptionsIscsi`).
    pub fn image_opts(&self) -> String {
        let mut s = format!(
            "driver=iscsi,transport=tcp,portal={},target={},lun={}",
            self.portal, self.target, self.lun
        );
        if self.header_digest {
            s.push_str(",header-digest=crc32c");
        }
        if let Some(i) = &self.initiator {
            s.push_str(&format!(",initiator-name={i}"));
        }
        if let Some((u, p)) = &self.chap {
            // The driver takes the CHAP password as a secret object; see `secret_object`.
            s.push_str(&format!(",user={u},password-secret=chapsec"));
            let _ = p;
        }
        s
    }

    /// `--object` argument holding the CHAP password, when CHAP is used.
    pub fn secret_object(&self) -> Option<String> {
        self.chap
            .as_ref()
            .map(|(_, p)| format!("secret,id=chapsec,data={p}"))
    }

    fn args(&self, pre: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
        if let Some(o) = self.secret_object() {
            a.extend(["--object".into(), o]);
        }
        a
    }

    /// Writes `image` (raw) onto the LUN from offset 0.
    pub fn upload(&self, image: &Path) -> Output {
        require("qemu-img");
        let mut a = self.args(&["convert", "-n", "-f", "raw"]);
        a.extend([
            "--target-image-opts".into(),
            image.to_string_lossy().into_owned(),
            self.image_opts(),
        ]);
        cmd::run("qemu-img", &a, QEMU_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads the whole LUN into `out` (raw).
    pub fn download(&self, out: &Path) -> Output {
        require("qemu-img");
        let mut a = self.args(&["convert", "-O", "raw", "--image-opts"]);
        a.extend([self.image_opts(), out.to_string_lossy().into_owned()]);
        cmd::run("qemu-img", &a, QEMU_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Upload `size_bytes` of random data through qemu-img, download it again, and compare
/// SHA-256s. The LUN must be exactly `size_bytes` long. Returns the SHA-256 of the data.
pub fn qemu_round_trip(q: &QemuIscsi, scratch: &Path, size_bytes: u64, seed: u64) -> String {
    let src = scratch.join("qemu-src.img");
    let back = scratch.join("qemu-back.img");
    crate::data::write_random_file(&src, size_bytes, seed);
    let up = q.upload(&src);
    assert!(
        up.success(),
        "qemu-img upload to {q:?} failed\n{}",
        up.describe()
    );
    let down = q.download(&back);
    assert!(
        down.success(),
        "qemu-img download from {q:?} failed\n{}",
        down.describe()
    );
    let (a, b) = (crate::data::sha256(&src), crate::data::sha256(&back));
    eprintln!(
        "esos-e2e: qemu-img round trip of {} MiB: up {:?}, down {:?}",
        size_bytes >> 20,
        up.elapsed,
        down.elapsed
    );
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&back);
    assert_eq!(
        a, b,
        "data read back through qemu-img differs from what was written ({q:?})"
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listing_and_fields() {
        let ls = "Target:iqn.x Portal:127.0.0.1:3270,1\nLun:0    Type:DIRECT_ACCESS (Size:63M)\nLun:7    Type:X\n";
        assert_eq!(luns_in_listing(ls), [0, 7]);
        let inq = "Vendor:IET     \nProduct:VIRTUAL-DISK    \nTotal size:67108864\n";
        assert_eq!(field(inq, "Vendor"), Some("IET"));
        assert_eq!(field(inq, "Total size"), Some("67108864"));
        assert_eq!(field(inq, "Missing"), None);
    }

    #[test]
    fn image_opts() {
        let q = QemuIscsi {
            portal: "127.0.0.1:1".into(),
            target: "iqn.t".into(),
            lun: 2,
            header_digest: true,
            initiator: Some("iqn.i".into()),
            chap: Some(("u".into(), "p".into())),
        };
        assert_eq!(
            q.image_opts(),
            "driver=iscsi,transport=tcp,portal=127.0.0.1:1,target=iqn.t,lun=2,header-digest=crc32c,\
             initiator-name=iqn.i,user=u,password-secret=chapsec"
        );
        assert_eq!(
            q.secret_object().as_deref(),
            Some("secret,id=chapsec,data=p")
        );
    }
}
