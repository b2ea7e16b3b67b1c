//! BHS + AHS decoding (crates/iscsi/src/pdu/request.rs). Input: 48 bytes of BHS, then the AHS.
//! Holds: no panic; the common fields stay within their wire widths; every request the
//! `pdu::build` encoders cover decodes again to the same value after re-encoding.
#![no_main]

use esos_iscsi::pdu::{self, BHS_LEN, MAX_AHS_LEN, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((bhs, ahs)) = data.split_first_chunk::<BHS_LEN>() else {
        return;
    };
    let ahs = &ahs[..ahs.len().min(MAX_AHS_LEN)];
    let c = pdu::common(bhs);
    assert!(c.opcode < 0x40);
    assert!(c.ahs_len <= MAX_AHS_LEN);
    assert!(c.data_len < 1 << 24);
    let Ok(req) = pdu::parse_request(bhs, ahs) else {
        return;
    };
    let rebuilt = match &req {
        Request::ScsiCommand(cmd) => {
            let len = usize::from(cmd.cdb_len);
            assert!((16..=esos_scsi::MAX_CDB_LEN).contains(&len));
            assert!(cmd.attr < 8);
            assert_eq!(&cmd.cdb[..16], &bhs[32..48]);
            assert!(cmd.cdb[len..].iter().all(|&b| b == 0));
            Some(pdu::build::scsi_command(cmd, c.data_len))
        }
        Request::DataOut(d) => Some(pdu::build::data_out(d, c.data_len)),
        Request::Login(l) => {
            assert!(l.csg < 4 && l.nsg < 4);
            Some(pdu::build::login(l, c.data_len))
        }
        _ => None,
    };
    if let Some(h) = rebuilt {
        assert_eq!(pdu::common(&h).data_len, c.data_len);
        assert_eq!(pdu::parse_request(&h, ahs).as_ref(), Ok(&req));
    }
});
