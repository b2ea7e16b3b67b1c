//! A minimal initiator-side iSCSI PDU codec (RFC 7143 11), written independently of
//! `esos-iscsi` so the two cannot share a misreading of the RFC.

/// Basic Header Segment length (RFC 7143 11.2.1).
pub const BHS_LEN: usize = 48;

/// Opcodes the client sends or expects (RFC 7143 11.2.1.2).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const LOGIN_REQUEST: u8 = 0x03;
    pub const TEXT_REQUEST: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQUEST: u8 = 0x06;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MESSAGE: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// The immediate-delivery bit of byte 0.
pub const IMMEDIATE: u8 = 0x40;
/// The Final bit of byte 1.
pub const FINAL: u8 = 0x80;

/// One PDU: header (BHS only; the client never sends AHS) and data segment (unpadded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: [u8; BHS_LEN],
    pub data: Vec<u8>,
}

impl Pdu {
    /// A zeroed header with the opcode byte and flags byte set.
    pub fn new(opcode_byte: u8, flags: u8) -> Pdu {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = opcode_byte;
        bhs[1] = flags;
        Pdu {
            bhs,
            data: Vec::new(),
        }
    }

    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }

    pub fn flags(&self) -> u8 {
        self.bhs[1]
    }

    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bhs[at],
            self.bhs[at + 1],
            self.bhs[at + 2],
            self.bhs[at + 3],
        ])
    }

    pub fn set_u32(&mut self, at: usize, v: u32) {
        self.bhs[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    /// Sets the LUN field with SAM single-level peripheral addressing (LUN < 256) or flat
    /// addressing (LUN < 16384).
    pub fn set_lun(&mut self, lun: u64) {
        let v: u64 = if lun < 256 {
            lun << 48
        } else {
            ((0x40 | (lun >> 8)) << 56) | ((lun & 0xff) << 48)
        };
        self.bhs[8..16].copy_from_slice(&v.to_be_bytes());
    }

    /// Declared data segment length (bytes 5..8).
    pub fn data_len_field(&self) -> usize {
        usize::from(self.bhs[5]) << 16 | usize::from(self.bhs[6]) << 8 | usize::from(self.bhs[7])
    }

    /// Writes the data segment length of `self.data` into the header.
    pub fn set_data_len(&mut self, len: usize) {
        let b = (len as u32).to_be_bytes();
        self.bhs[5..8].copy_from_slice(&b[1..4]);
    }

    /// Serialises with optional digests; the length field is taken from `data`.
    pub fn encode(&self, header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut p = self.clone();
        p.set_data_len(self.data.len());
        p.encode_raw(header_digest, data_digest)
    }

    /// Serialises as is (length field untouched), for malformed-PDU tests.
    pub fn encode_raw(&self, header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(BHS_LEN + 8 + self.data.len() + 3);
        out.extend_from_slice(&self.bhs);
        if header_digest {
            out.extend_from_slice(&crc32c::crc32c(&self.bhs).to_le_bytes());
        }
        if !self.data.is_empty() {
            out.extend_from_slice(&self.data);
            let padded = padded_len(self.data.len());
            out.resize(out.len() + padded - self.data.len(), 0);
            if data_digest {
                let start = out.len() - padded;
                out.extend_from_slice(&crc32c::crc32c(&out[start..]).to_le_bytes());
            }
        }
        out
    }
}

/// Length rounded up to a multiple of 4 (RFC 7143 11.2.1: data segments are padded).
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// Encodes `key=value` pairs as a text data segment (NUL-terminated pairs).
pub fn text_segment(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        v.extend_from_slice(k.as_bytes());
        v.push(b'=');
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// Decodes a text data segment into `(key, value)` pairs.
pub fn parse_text(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let s = String::from_utf8_lossy(kv);
            match s.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (s.into_owned(), String::new()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let seg = text_segment(&[("HeaderDigest", "CRC32C"), ("MaxBurstLength", "262144")]);
        assert_eq!(seg, b"HeaderDigest=CRC32C\0MaxBurstLength=262144\0");
        assert_eq!(
            parse_text(&seg),
            [
                ("HeaderDigest".into(), "CRC32C".into()),
                ("MaxBurstLength".into(), "262144".into())
            ]
        );
    }

    #[test]
    fn encoding_pads_and_digests() {
        let mut p = Pdu::new(op::NOP_OUT | IMMEDIATE, FINAL);
        p.data = vec![1, 2, 3, 4, 5];
        let wire = p.encode(true, true);
        assert_eq!(wire.len(), 48 + 4 + 8 + 4);
        assert_eq!(&wire[5..8], &[0, 0, 5]);
        assert_eq!(&wire[48..52], &crc32c::crc32c(&wire[..48]).to_le_bytes());
        assert_eq!(&wire[52..60], &[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(&wire[60..64], &crc32c::crc32c(&wire[52..60]).to_le_bytes());
        assert_eq!(p.encode(false, false).len(), 48 + 8);
    }

    #[test]
    fn lun_encoding() {
        let mut p = Pdu::new(0, 0);
        p.set_lun(3);
        assert_eq!(&p.bhs[8..16], &[0, 3, 0, 0, 0, 0, 0, 0]);
        p.set_lun(0x123);
        assert_eq!(&p.bhs[8..10], &[0x41, 0x23]);
    }
}
