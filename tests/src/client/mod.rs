//! A small blocking iSCSI initiator for tests that libiscsi cannot express: data digests,
//! FUA writes with their acknowledgement, and deliberately malformed PDUs.
//!
//! One command at a time per connection (no pipelining), error recovery level 0. Every read
//! has a socket timeout and every loop a named bound, so a misbehaving target fails the
//! test instead of hanging it.

pub mod pdu;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use pdu::{FINAL, IMMEDIATE, Pdu, op, parse_text, text_segment};

/// Socket read/write timeout for every client operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most login request/response rounds before the client gives up.
pub const MAX_LOGIN_ROUNDS: usize = 8;
/// Most PDUs the client reads for one command (R2Ts, Data-Ins, NOP-Ins, async messages).
pub const MAX_PDUS_PER_COMMAND: usize = 100_000;
/// Largest data segment the client accepts (the 24-bit field allows 16 MiB).
pub const MAX_DATA_SEGMENT: usize = 1 << 24;
/// Largest AHS the client accepts and skips (TotalAHSLength is one byte of 4-byte words).
pub const MAX_AHS: usize = 255 * 4;
/// Initiator name the client logs in with unless told otherwise.
pub const DEFAULT_INITIATOR: &str = "iqn.2026-11.org.esos:e2e-raw-client";
/// Reserved tag value (RFC 7143 11.2.1.8).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// SCSI status GOOD (SAM-5 5.3).
pub const GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The target closed the connection.
    Closed,
    /// Login answered with a non-zero status class (RFC 7143 11.13.5).
    LoginRefused {
        class: u8,
        detail: u8,
        keys: Vec<(String, String)>,
    },
    /// The target sent a Reject PDU (RFC 7143 11.17).
    Reject {
        reason: u8,
    },
    /// The target broke the protocol as the client understands it.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Closed => write!(f, "connection closed by the target"),
            ClientError::LoginRefused {
                class,
                detail,
                keys,
            } => {
                write!(
                    f,
                    "login refused: status class {class:#04x} detail {detail:#04x}; keys {keys:?}"
                )
            }
            ClientError::Reject { reason } => write!(f, "Reject PDU, reason {reason:#04x}"),
            ClientError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ClientError::Closed,
            _ => ClientError::Io(e),
        }
    }
}

impl ClientError {
    /// True when the connection ended (closed or reset) rather than timed out or erred.
    pub fn is_closed(&self) -> bool {
        matches!(self, ClientError::Closed)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// What the client offers at login.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator: String,
    /// `None` logs in a discovery session.
    pub target: Option<String>,
    pub header_digest: bool,
    pub data_digest: bool,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// Our MaxRecvDataSegmentLength.
    pub max_recv_dsl: u32,
    pub first_burst: u32,
    pub max_burst: u32,
    /// ISID to log in with; `None` draws a fresh one, so sessions never reinstate each other.
    pub isid: Option<[u8; 6]>,
    /// Authenticate with CHAP (RFC 7143 12.1.3) instead of AuthMethod=None.
    pub chap: Option<ChapLogin>,
}

/// CHAP credentials of the raw client.
#[derive(Clone, Debug)]
pub struct ChapLogin {
    pub user: String,
    pub secret: Vec<u8>,
    /// Mutual CHAP: the name and secret the target must prove it knows.
    pub mutual: Option<(String, Vec<u8>)>,
    /// Attack hook: send the target's own challenge back as our mutual challenge.
    pub reflect: bool,
}

impl ChapLogin {
    pub fn new(user: &str, secret: &str) -> Self {
        ChapLogin {
            user: user.into(),
            secret: secret.as_bytes().to_vec(),
            mutual: None,
            reflect: false,
        }
    }

    pub fn mutual(mut self, user: &str, secret: &str) -> Self {
        self.mutual = Some((user.into(), secret.as_bytes().to_vec()));
        self
    }
}

/// Length of the mutual challenge the client sends (RFC 7143 12.1.3 asks for >= 16).
const CHAP_CHALLENGE_BYTES: usize = 16;

/// MD5(identifier || secret || challenge) (RFC 1994 4.1).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(v: &str) -> Option<Vec<u8>> {
    let h = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"))?;
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

impl LoginOptions {
    pub fn normal(target: &str) -> Self {
        LoginOptions {
            initiator: DEFAULT_INITIATOR.into(),
            target: Some(target.into()),
            header_digest: false,
            data_digest: false,
            immediate_data: true,
            initial_r2t: true,
            max_recv_dsl: 262_144,
            first_burst: 65_536,
            max_burst: 262_144,
            isid: None,
            chap: None,
        }
    }

    /// A discovery session (SendTargets) as `initiator`.
    pub fn discovery(initiator: &str) -> Self {
        LoginOptions {
            initiator: initiator.into(),
            target: None,
            ..LoginOptions::normal("unused")
        }
    }

    pub fn with_chap(mut self, chap: ChapLogin) -> Self {
        self.chap = Some(chap);
        self
    }

    pub fn digests(mut self) -> Self {
        self.header_digest = true;
        self.data_digest = true;
        self
    }
}

/// Operational values in force after login.
#[derive(Clone, Debug, Default)]
pub struct Negotiated {
    pub header_digest: bool,
    pub data_digest: bool,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// The target's MaxRecvDataSegmentLength: the most we may send in one PDU.
    pub target_max_recv_dsl: u32,
    pub first_burst: u32,
    pub max_burst: u32,
    /// Every key the target sent, in order.
    pub keys: Vec<(String, String)>,
}

/// Result of one SCSI command.
#[derive(Clone, Debug, Default)]
pub struct ScsiResult {
    pub status: u8,
    /// Sense data without the 2-byte length prefix.
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
    /// Residual count when the target flagged an underflow or overflow.
    pub residual: u32,
}

impl ScsiResult {
    /// Sense key, ASC, ASCQ of fixed or descriptor-format sense data.
    pub fn sense_triple(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            0x72 | 0x73 if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }

    pub fn is_good(&self) -> bool {
        self.status == GOOD
    }
}

/// One logged-in connection (a single-connection session).
pub struct Conn {
    stream: TcpStream,
    pub neg: Negotiated,
    hd: bool,
    dd: bool,
    next_itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    pub tsih: u16,
}

impl Conn {
    /// Opens TCP to `addr` and logs in.
    pub fn login(addr: SocketAddr, opts: &LoginOptions) -> Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            neg: Negotiated::default(),
            hd: false,
            dd: false,
            next_itt: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            tsih: 0,
        };
        c.do_login(opts)?;
        Ok(c)
    }

    /// Changes the socket read timeout (e.g. short, to observe that nothing comes back).
    /// The raw socket, for tests that watch what the target does without answering it.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub fn set_read_timeout(&self, t: Duration) -> Result<()> {
        Ok(self.stream.set_read_timeout(Some(t))?)
    }

    fn itt(&mut self) -> u32 {
        let t = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1) % RESERVED_TAG;
        t
    }

    fn do_login(&mut self, o: &LoginOptions) -> Result<()> {
        let isid = o.isid.unwrap_or_else(random_isid);
        let itt = self.itt();
        let session_type = if o.target.is_some() {
            "Normal"
        } else {
            "Discovery"
        };
        let mut sec = vec![
            ("InitiatorName", o.initiator.as_str()),
            ("SessionType", session_type),
        ];
        if let Some(t) = &o.target {
            sec.push(("TargetName", t.as_str()));
        }
        let flags = match &o.chap {
            None => {
                sec.push(("AuthMethod", "None"));
                // Security stage, asking to go to operational negotiation (CSG 0, NSG 1).
                let (flags, keys) = self.login_round(&isid, itt, 0x80 | 1, text_segment(&sec))?;
                self.neg.keys.extend(keys);
                flags
            }
            Some(chap) => {
                sec.push(("AuthMethod", "CHAP"));
                self.chap_exchange(&isid, itt, &sec, chap)?
            }
        };
        if flags & 0x80 == 0 || (flags & 0x03) != 1 {
            return Err(ClientError::Protocol(format!(
                "target did not leave the security stage (flags {flags:#04x}); keys {:?}",
                self.neg.keys
            )));
        }
        let hd = if o.header_digest { "CRC32C" } else { "None" };
        let dd = if o.data_digest { "CRC32C" } else { "None" };
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let mrdsl = o.max_recv_dsl.to_string();
        let (fb, mb) = (o.first_burst.to_string(), o.max_burst.to_string());
        let mut opn = vec![
            ("HeaderDigest", hd),
            ("DataDigest", dd),
            ("MaxRecvDataSegmentLength", mrdsl.as_str()),
        ];
        if o.target.is_some() {
            opn.extend([
                ("ImmediateData", yn(o.immediate_data)),
                ("InitialR2T", yn(o.initial_r2t)),
                ("FirstBurstLength", fb.as_str()),
                ("MaxBurstLength", mb.as_str()),
                ("MaxConnections", "1"),
                ("MaxOutstandingR2T", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("ErrorRecoveryLevel", "0"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
            ]);
        }
        // Operational stage, asking for full feature phase (CSG 1, NSG 3).
        let mut data = text_segment(&opn);
        let mut done = false;
        for _ in 0..MAX_LOGIN_ROUNDS {
            let (flags, keys) = self.login_round(&isid, itt, 0x80 | (1 << 2) | 3, data)?;
            self.neg.keys.extend(keys);
            if flags & 0x80 != 0 && flags & 0x03 == 3 {
                done = true;
                break;
            }
            data = Vec::new();
        }
        if !done {
            return Err(ClientError::Protocol(format!(
                "no transit to full feature phase in {MAX_LOGIN_ROUNDS} rounds"
            )));
        }
        let key = |k: &str| {
            self.neg
                .keys
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let num = |k: &str, d: u32| key(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let neg = Negotiated {
            header_digest: key("HeaderDigest").as_deref() == Some("CRC32C"),
            data_digest: key("DataDigest").as_deref() == Some("CRC32C"),
            immediate_data: key("ImmediateData").map_or(o.immediate_data, |v| v == "Yes"),
            initial_r2t: key("InitialR2T").is_none_or(|v| v == "Yes"),
            target_max_recv_dsl: num("MaxRecvDataSegmentLength", 8192),
            first_burst: num("FirstBurstLength", 65_536.min(o.first_burst)),
            max_burst: num("MaxBurstLength", 262_144.min(o.max_burst)),
            keys: std::mem::take(&mut self.neg.keys),
        };
        self.hd = neg.header_digest;
        self.dd = neg.data_digest;
        self.neg = neg;
        Ok(())
    }

    /// The CHAP security stage (RFC 7143 12.1.3): AuthMethod, CHAP_A, then CHAP_N/CHAP_R
    /// (and our own challenge for mutual CHAP) with the transit to operational negotiation.
    /// Returns the flags of the last response.
    fn chap_exchange(
        &mut self,
        isid: &[u8; 6],
        itt: u32,
        first: &[(&str, &str)],
        chap: &ChapLogin,
    ) -> Result<u8> {
        let key = |keys: &[(String, String)], k: &str| {
            keys.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ClientError::Protocol(format!("target sent no {k}: {keys:?}")))
        };
        let (_, keys) = self.login_round(isid, itt, 0, text_segment(first))?;
        if key(&keys, "AuthMethod")? != "CHAP" {
            return Err(ClientError::Protocol(format!(
                "AuthMethod not CHAP: {keys:?}"
            )));
        }
        let (_, keys) = self.login_round(isid, itt, 0, text_segment(&[("CHAP_A", "5")]))?;
        let id: u8 = key(&keys, "CHAP_I")?
            .parse()
            .map_err(|_| ClientError::Protocol("bad CHAP_I".into()))?;
        let challenge = unhex(&key(&keys, "CHAP_C")?)
            .ok_or_else(|| ClientError::Protocol("bad CHAP_C".into()))?;
        let resp = hex(&chap_response(id, &chap.secret, &challenge));
        let my_id = id.wrapping_add(1);
        let my_challenge = if chap.reflect {
            challenge.clone()
        } else {
            crate::data::pattern(
                u64::from(std::process::id()) ^ u64::from(itt),
                CHAP_CHALLENGE_BYTES,
            )
        };
        let (my_id_s, my_c) = (my_id.to_string(), hex(&my_challenge));
        let mut pairs = vec![("CHAP_N", chap.user.as_str()), ("CHAP_R", resp.as_str())];
        if chap.mutual.is_some() || chap.reflect {
            pairs.extend([("CHAP_I", my_id_s.as_str()), ("CHAP_C", my_c.as_str())]);
        }
        let (flags, keys) = self.login_round(isid, itt, 0x80 | 1, text_segment(&pairs))?;
        if let Some((user, secret)) = &chap.mutual {
            let n = key(&keys, "CHAP_N")?;
            let r = unhex(&key(&keys, "CHAP_R")?)
                .ok_or_else(|| ClientError::Protocol("bad CHAP_R".into()))?;
            if &n != user || r != chap_response(my_id, secret, &my_challenge) {
                return Err(ClientError::Protocol(
                    "target failed mutual CHAP authentication".into(),
                ));
            }
        }
        self.neg.keys.extend(keys);
        Ok(flags)
    }

    /// Sends one Login Request and reads its response; returns the response flags and keys.
    fn login_round(
        &mut self,
        isid: &[u8; 6],
        itt: u32,
        flags: u8,
        data: Vec<u8>,
    ) -> Result<(u8, Vec<(String, String)>)> {
        let mut p = Pdu::new(op::LOGIN_REQUEST | IMMEDIATE, flags);
        p.bhs[8..14].copy_from_slice(isid);
        p.bhs[14..16].copy_from_slice(&self.tsih.to_be_bytes());
        p.set_u32(16, itt);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = data;
        self.send(&p)?;
        let r = self.recv()?;
        if r.opcode() != op::LOGIN_RESPONSE {
            return Err(ClientError::Protocol(format!(
                "expected Login Response, got opcode {:#04x}",
                r.opcode()
            )));
        }
        let keys = parse_text(&r.data);
        let (class, detail) = (r.bhs[36], r.bhs[37]);
        if class != 0 {
            return Err(ClientError::LoginRefused {
                class,
                detail,
                keys,
            });
        }
        self.tsih = u16::from_be_bytes([r.bhs[14], r.bhs[15]]);
        self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
        Ok((r.flags(), keys))
    }

    /// Sends a PDU with the negotiated digests.
    pub fn send(&mut self, p: &Pdu) -> Result<()> {
        let wire = p.encode(self.hd, self.dd);
        self.send_bytes(&wire)
    }

    /// Sends bytes as they are (malformed-PDU tests).
    pub fn send_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.stream.write_all(b)?;
        Ok(())
    }

    /// Whether digests are in force (for building raw PDUs).
    pub fn digests(&self) -> (bool, bool) {
        (self.hd, self.dd)
    }

    /// Reads one PDU, checking digests; AHS is skipped.
    pub fn recv(&mut self) -> Result<Pdu> {
        let mut p = Pdu::new(0, 0);
        self.stream.read_exact(&mut p.bhs)?;
        let ahs_len = usize::from(p.bhs[4]) * 4;
        let data_len = p.data_len_field();
        if ahs_len > MAX_AHS || data_len > MAX_DATA_SEGMENT {
            return Err(ClientError::Protocol(format!(
                "oversized PDU: ahs {ahs_len} data {data_len}"
            )));
        }
        let mut ahs = vec![0u8; ahs_len];
        self.stream.read_exact(&mut ahs)?;
        if self.hd {
            let got = self.read_u32_le()?;
            let want = crc32c::crc32c_append(crc32c::crc32c(&p.bhs), &ahs);
            if got != want {
                return Err(ClientError::Protocol(format!(
                    "bad header digest from target: {got:#010x} != {want:#010x}"
                )));
            }
        }
        if data_len > 0 {
            let mut data = vec![0u8; pdu::padded_len(data_len)];
            self.stream.read_exact(&mut data)?;
            if self.dd {
                let got = self.read_u32_le()?;
                let want = crc32c::crc32c(&data);
                if got != want {
                    return Err(ClientError::Protocol(format!(
                        "bad data digest from target: {got:#010x} != {want:#010x}"
                    )));
                }
            }
            data.truncate(data_len);
            p.data = data;
        }
        Ok(p)
    }

    fn read_u32_le(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.stream.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Answers a target NOP-In that asks for a reply (TTT not reserved, RFC 7143 11.19).
    fn answer_nop_in(&mut self, nop: &Pdu) -> Result<()> {
        let ttt = nop.u32_at(20);
        if ttt == RESERVED_TAG {
            return Ok(());
        }
        let mut p = Pdu::new(op::NOP_OUT | IMMEDIATE, FINAL);
        p.bhs[8..16].copy_from_slice(&nop.bhs[8..16]);
        p.set_u32(16, RESERVED_TAG);
        p.set_u32(20, ttt);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        self.send(&p)
    }

    /// Reads PDUs until one that is not a target-initiated NOP-In or async message.
    pub fn recv_response(&mut self) -> Result<Pdu> {
        for _ in 0..MAX_PDUS_PER_COMMAND {
            let p = self.recv()?;
            match p.opcode() {
                op::NOP_IN if p.itt() == RESERVED_TAG => self.answer_nop_in(&p)?,
                op::ASYNC_MESSAGE => {}
                _ => return Ok(p),
            }
        }
        Err(ClientError::Protocol("too many unsolicited PDUs".into()))
    }

    /// A SCSI command header for `cdb` (not yet sent); advances CmdSN.
    pub fn scsi_header(&mut self, lun: u64, cdb: &[u8], write_len: u32, read_len: u32) -> Pdu {
        let mut flags = FINAL | 0x01; // SIMPLE task attribute
        if write_len > 0 {
            flags |= 0x20;
        }
        if read_len > 0 {
            flags |= 0x40;
        }
        let mut p = Pdu::new(op::SCSI_COMMAND, flags);
        p.set_lun(lun);
        let itt = self.itt();
        p.set_u32(16, itt);
        p.set_u32(20, write_len.max(read_len));
        p.set_u32(24, self.cmd_sn);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        p.set_u32(28, self.exp_stat_sn);
        p.bhs[32..32 + cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        p
    }

    /// Runs one SCSI command to completion: immediate data, unsolicited Data-Out and R2T
    /// service for writes; Data-In collection for reads.
    pub fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        data_out: &[u8],
        read_len: u32,
    ) -> Result<ScsiResult> {
        let write_len = u32::try_from(data_out.len())
            .map_err(|_| ClientError::Protocol("write too big".into()))?;
        let mut p = self.scsi_header(lun, cdb, write_len, read_len);
        let itt = p.itt();
        let mtu = self.neg.target_max_recv_dsl.max(512) as usize;
        let mut sent = 0usize;
        if !data_out.is_empty() && self.neg.immediate_data {
            sent = data_out.len().min(self.neg.first_burst as usize).min(mtu);
            p.data = data_out[..sent].to_vec();
        }
        self.send(&p)?;
        if !data_out.is_empty() && !self.neg.initial_r2t {
            let unsolicited = data_out.len().min(self.neg.first_burst as usize);
            if sent < unsolicited {
                self.data_out(lun, itt, RESERVED_TAG, data_out, sent, unsolicited - sent)?;
            }
        }
        let mut res = ScsiResult {
            data: vec![0u8; read_len as usize],
            ..Default::default()
        };
        let mut got_data = 0usize;
        for _ in 0..MAX_PDUS_PER_COMMAND {
            let r = self.recv_response()?;
            match r.opcode() {
                op::R2T if r.itt() == itt => {
                    let (ttt, off, len) =
                        (r.u32_at(20), r.u32_at(40) as usize, r.u32_at(44) as usize);
                    if off.checked_add(len).is_none_or(|e| e > data_out.len()) {
                        return Err(ClientError::Protocol(format!(
                            "R2T beyond the data: {off}+{len}"
                        )));
                    }
                    self.data_out(lun, itt, ttt, data_out, off, len)?;
                }
                op::DATA_IN if r.itt() == itt => {
                    let off = r.u32_at(40) as usize;
                    let end = off + r.data.len();
                    if end > res.data.len() {
                        return Err(ClientError::Protocol(format!(
                            "Data-In beyond the buffer: {off}..{end}"
                        )));
                    }
                    res.data[off..end].copy_from_slice(&r.data);
                    got_data = got_data.max(end);
                    if r.flags() & 0x01 != 0 {
                        self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
                        res.status = r.bhs[3];
                        res.residual = r.u32_at(44);
                        res.data.truncate(got_data);
                        return Ok(res);
                    }
                }
                op::SCSI_RESPONSE if r.itt() == itt => {
                    self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
                    if r.bhs[2] != 0 {
                        return Err(ClientError::Protocol(format!(
                            "iSCSI response {:#04x}",
                            r.bhs[2]
                        )));
                    }
                    res.status = r.bhs[3];
                    res.residual = r.u32_at(44);
                    if r.data.len() >= 2 {
                        let n = usize::from(u16::from_be_bytes([r.data[0], r.data[1]]));
                        res.sense = r.data[2..(2 + n).min(r.data.len())].to_vec();
                    }
                    res.data.truncate(got_data);
                    return Ok(res);
                }
                op::REJECT => return Err(ClientError::Reject { reason: r.bhs[2] }),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected opcode {other:#04x} (itt {:#x}) during command {itt:#x}",
                        r.itt()
                    )));
                }
            }
        }
        Err(ClientError::Protocol("command did not complete".into()))
    }

    /// Sends `len` bytes of `data` from `offset` as Data-Out PDUs no larger than the
    /// target's MaxRecvDataSegmentLength.
    fn data_out(
        &mut self,
        lun: u64,
        itt: u32,
        ttt: u32,
        data: &[u8],
        offset: usize,
        len: usize,
    ) -> Result<()> {
        let mtu = self.neg.target_max_recv_dsl.max(512) as usize;
        let end = offset + len;
        let mut at = offset;
        let mut data_sn = 0u32;
        while at < end {
            let n = mtu.min(end - at);
            let last = at + n == end;
            let mut p = Pdu::new(op::DATA_OUT, if last { FINAL } else { 0 });
            p.set_lun(lun);
            p.set_u32(16, itt);
            p.set_u32(20, ttt);
            p.set_u32(28, self.exp_stat_sn);
            p.set_u32(36, data_sn);
            p.set_u32(40, at as u32);
            p.data = data[at..at + n].to_vec();
            self.send(&p)?;
            at += n;
            data_sn += 1;
        }
        Ok(())
    }

    /// NOP-Out ping with `data`; returns the echoed data of the NOP-In.
    pub fn ping(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let p = self.ping_pdu(data);
        let itt = p.itt();
        self.send(&p)?;
        let r = self.recv_response()?;
        match r.opcode() {
            op::NOP_IN if r.itt() == itt => {
                self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
                Ok(r.data)
            }
            op::REJECT => Err(ClientError::Reject { reason: r.bhs[2] }),
            o => Err(ClientError::Protocol(format!(
                "expected NOP-In, got opcode {o:#04x}"
            ))),
        }
    }

    /// An immediate NOP-Out (ping) PDU, not sent.
    pub fn ping_pdu(&mut self, data: &[u8]) -> Pdu {
        let mut p = Pdu::new(op::NOP_OUT | IMMEDIATE, FINAL);
        let itt = self.itt();
        p.set_u32(16, itt);
        p.set_u32(20, RESERVED_TAG);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = data.to_vec();
        p
    }

    /// Text request SendTargets=All on a discovery session; returns the keys.
    pub fn send_targets(&mut self) -> Result<Vec<(String, String)>> {
        let mut p = Pdu::new(op::TEXT_REQUEST | IMMEDIATE, FINAL);
        let itt = self.itt();
        p.set_u32(16, itt);
        p.set_u32(20, RESERVED_TAG);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        p.data = text_segment(&[("SendTargets", "All")]);
        self.send(&p)?;
        let r = self.recv_response()?;
        if r.opcode() != op::TEXT_RESPONSE {
            return Err(ClientError::Protocol(format!(
                "expected Text Response, got {:#04x}",
                r.opcode()
            )));
        }
        self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
        Ok(parse_text(&r.data))
    }

    /// Logout (close the session) and wait for the response.
    pub fn logout(mut self) -> Result<()> {
        let mut p = Pdu::new(op::LOGOUT_REQUEST | IMMEDIATE, FINAL);
        let itt = self.itt();
        p.set_u32(16, itt);
        p.set_u32(24, self.cmd_sn);
        p.set_u32(28, self.exp_stat_sn);
        self.send(&p)?;
        let r = self.recv_response()?;
        if r.opcode() != op::LOGOUT_RESPONSE || r.bhs[2] != 0 {
            return Err(ClientError::Protocol(format!(
                "logout: opcode {:#04x} response {}",
                r.opcode(),
                r.bhs[2]
            )));
        }
        Ok(())
    }

    // ---- SCSI helpers (SBC-3 CDB layouts) ----

    pub fn test_unit_ready(&mut self, lun: u64) -> Result<ScsiResult> {
        self.command(lun, &[0u8; 6], &[], 0)
    }

    /// READ CAPACITY(10): (last LBA, block size).
    pub fn read_capacity10(&mut self, lun: u64) -> Result<(u32, u32)> {
        let r = self.command(lun, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8)?;
        if !r.is_good() || r.data.len() < 8 {
            return Err(ClientError::Protocol(format!(
                "READ CAPACITY(10) failed: {r:?}"
            )));
        }
        let d = &r.data;
        Ok((
            u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        ))
    }

    /// WRITE(10) of `data` at `lba`; `fua` sets the FUA bit (SBC-3 5.40).
    pub fn write10(
        &mut self,
        lun: u64,
        lba: u32,
        blocks: u16,
        data: &[u8],
        fua: bool,
    ) -> Result<ScsiResult> {
        let mut cdb = [0u8; 10];
        cdb[0] = 0x2a;
        cdb[1] = if fua { 0x08 } else { 0 };
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        self.command(lun, &cdb, data, 0)
    }

    /// READ(10) of `blocks` blocks of `block_size` at `lba`.
    pub fn read10(
        &mut self,
        lun: u64,
        lba: u32,
        blocks: u16,
        block_size: u32,
    ) -> Result<ScsiResult> {
        let mut cdb = [0u8; 10];
        cdb[0] = 0x28;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        self.command(lun, &cdb, &[], u32::from(blocks) * block_size)
    }

    /// SYNCHRONIZE CACHE(10) of the whole medium (SBC-3 5.22).
    pub fn synchronize_cache10(&mut self, lun: u64) -> Result<ScsiResult> {
        self.command(lun, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0)
    }

    /// Clears the unit attention a new I_T nexus may get (power on / reset) by issuing
    /// TEST UNIT READY a bounded number of times.
    pub fn clear_unit_attention(&mut self, lun: u64) -> Result<()> {
        for _ in 0..4 {
            if self.test_unit_ready(lun)?.is_good() {
                return Ok(());
            }
        }
        Err(ClientError::Protocol(
            "TEST UNIT READY never returned GOOD".into(),
        ))
    }
}

fn random_isid() -> [u8; 6] {
    // Random-type ISID (RFC 7143 11.12.5, T = 10b). Two sessions of one initiator name with
    // the same ISID would reinstate each other, so a process-wide counter keeps them apart.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let n = NEXT
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_be_bytes();
    let p = (std::process::id() as u16).to_be_bytes();
    [0x80, 0x00, p[0], p[1], n[0], n[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chap_response_is_md5_of_id_secret_challenge() {
        // MD5("abc") (RFC 1321 A.5) split as identifier 'a', secret "b", challenge "c".
        assert_eq!(
            hex(&chap_response(b'a', b"b", b"c")),
            "0x900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn hex_round_trip_and_garbage() {
        let b: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert_eq!(unhex("0x0"), None);
        assert_eq!(unhex("0xzz"), None);
        assert_eq!(unhex("00"), None);
    }
}
