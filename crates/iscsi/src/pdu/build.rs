//! Initiator PDUs built from the request structs, for tests and fuzz targets: the inverse
//! of [`super::parse_request`].

use esos_common::be::{put_u16, put_u32, put_u64};

use super::response::start;
use super::{BHS_LEN, DataOut, LoginRequest, ScsiCommand, opcode};

pub fn scsi_command(c: &ScsiCommand, data_len: usize) -> [u8; BHS_LEN] {
    let mut h = [0u8; BHS_LEN];
    start(&mut h, opcode::SCSI_COMMAND, 0, data_len);
    if c.immediate {
        h[0] |= 0x40;
    }
    h[1] = (c.final_flag as u8) << 7 | (c.read as u8) << 6 | (c.write as u8) << 5 | c.attr & 7;
    put_u64(&mut h, 8, c.lun);
    put_u32(&mut h, 16, c.itt);
    put_u32(&mut h, 20, c.edtl);
    put_u32(&mut h, 24, c.cmd_sn);
    put_u32(&mut h, 28, c.exp_stat_sn);
    h[32..48].copy_from_slice(&c.cdb[..16]);
    h
}

pub fn data_out(d: &DataOut, data_len: usize) -> [u8; BHS_LEN] {
    let mut h = [0u8; BHS_LEN];
    start(
        &mut h,
        opcode::DATA_OUT,
        (d.final_flag as u8) << 7,
        data_len,
    );
    put_u64(&mut h, 8, d.lun);
    put_u32(&mut h, 16, d.itt);
    put_u32(&mut h, 20, d.ttt);
    put_u32(&mut h, 28, d.exp_stat_sn);
    put_u32(&mut h, 36, d.data_sn);
    put_u32(&mut h, 40, d.buffer_offset);
    h
}

pub fn login(l: &LoginRequest, data_len: usize) -> [u8; BHS_LEN] {
    let mut h = [0u8; BHS_LEN];
    let mut flags = (l.csg & 3) << 2 | (l.nsg & 3);
    if l.transit {
        flags |= 0x80;
    }
    if l.cont {
        flags |= 0x40;
    }
    start(&mut h, opcode::LOGIN_REQUEST, flags, data_len);
    h[0] |= 0x40;
    h[2] = l.version_max;
    h[3] = l.version_min;
    h[8..14].copy_from_slice(&l.isid);
    put_u16(&mut h, 14, l.tsih);
    put_u32(&mut h, 16, l.itt);
    put_u16(&mut h, 20, l.cid);
    put_u32(&mut h, 24, l.cmd_sn);
    put_u32(&mut h, 28, l.exp_stat_sn);
    h
}
