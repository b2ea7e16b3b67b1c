//! Codec tests: properties of the decoder and round trips for every PDU type.

use esos_common::be::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};

use super::request::{AHS_BIDI_READ_LENGTH, AHS_EXTENDED_CDB};
use super::response::start;
use super::*;

#[cfg(test)]
mod decode {
    use super::*;
    use proptest::prelude::*;

    fn arb_cmd() -> impl Strategy<Value = ScsiCommand> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..8,
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<(u32, u32)>(),
            any::<[u8; 16]>(),
        )
            .prop_map(|(imm, r, w, attr, lun, itt, edtl, (cmd_sn, exp), cdb16)| {
                let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
                cdb[..16].copy_from_slice(&cdb16);
                ScsiCommand {
                    immediate: imm,
                    final_flag: true,
                    read: r,
                    write: w,
                    attr,
                    lun,
                    itt,
                    edtl,
                    cmd_sn,
                    exp_stat_sn: exp,
                    cdb,
                    cdb_len: 16,
                    bidi_read_len: None,
                }
            })
    }

    proptest! {
        #[test]
        fn scsi_command_round_trip(c in arb_cmd(), dl in 0usize..(1 << 24)) {
            let h = build::scsi_command(&c, dl);
            prop_assert_eq!(common(&h).data_len, dl);
            prop_assert_eq!(parse_request(&h, &[]).unwrap(), Request::ScsiCommand(c));
        }

        #[test]
        fn data_out_round_trip(f: bool, lun: u64, itt: u32, ttt: u32, e: u32, sn: u32, off: u32) {
            let d = DataOut { final_flag: f, lun, itt, ttt, exp_stat_sn: e, data_sn: sn, buffer_offset: off };
            let h = build::data_out(&d, 512);
            prop_assert_eq!(parse_request(&h, &[]).unwrap(), Request::DataOut(d));
        }

        #[test]
        fn parse_never_panics(bhs in any::<[u8; 48]>(), ahs in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_request(&bhs, &ahs);
        }
    }

    #[test]
    fn extended_cdb_ahs() {
        let c = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: 1,
            lun: 0,
            itt: 1,
            edtl: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            cdb: [0x7f; esos_scsi::MAX_CDB_LEN],
            cdb_len: 16,
            bidi_read_len: None,
        };
        let h = build::scsi_command(&c, 0);
        // 16 extra CDB bytes: AHSLength = 17, padded to 20 bytes.
        let mut ahs = vec![0u8, 17, AHS_EXTENDED_CDB, 0];
        ahs.extend_from_slice(&[0x7f; 16]);
        ahs.resize(20, 0);
        let Request::ScsiCommand(p) = parse_request(&h, &ahs).unwrap() else {
            panic!()
        };
        assert_eq!(p.cdb_len, 32);
        assert_eq!(&p.cdb[16..32], &[0x7f; 16]);
        assert!(parse_request(&h, &ahs[..8]).is_err());
    }

    /// Found by the `pdu` fuzz target: two extended-CDB AHSs left the longer one's tail
    /// beyond `cdb_len`.
    #[test]
    fn repeated_ahs_types_are_refused() {
        let mut c = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: 1,
            lun: 0,
            itt: 1,
            edtl: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            cdb: [0; esos_scsi::MAX_CDB_LEN],
            cdb_len: 16,
            bidi_read_len: None,
        };
        c.cdb[0] = 0x7f;
        let h = build::scsi_command(&c, 0);
        let mut long = vec![0u8, 17, AHS_EXTENDED_CDB, 0];
        long.extend_from_slice(&[0xee; 16]);
        long.resize(20, 0);
        let short = [0u8, 3, AHS_EXTENDED_CDB, 0, 1, 2, 0, 0];
        let twice = [long.clone(), short.to_vec()].concat();
        assert_eq!(
            parse_request(&h, &twice),
            Err(PduError::BadAhs(twice.len()))
        );
        let bidi = [0u8, 5, AHS_BIDI_READ_LENGTH, 0, 0, 0, 2, 0];
        let bidi_twice = [bidi, bidi].concat();
        assert_eq!(
            parse_request(&h, &bidi_twice),
            Err(PduError::BadAhs(bidi_twice.len()))
        );
        let Ok(Request::ScsiCommand(p)) = parse_request(&h, &[long, bidi.to_vec()].concat()) else {
            panic!("one AHS of each type is fine");
        };
        assert_eq!((p.cdb_len, p.bidi_read_len), (32, Some(512)));
    }

    #[test]
    fn target_opcodes_are_refused() {
        let mut h = [0u8; BHS_LEN];
        h[0] = opcode::SCSI_RESPONSE;
        assert_eq!(parse_request(&h, &[]), Err(PduError::UnknownOpcode(0x21)));
    }

    #[test]
    fn data_in_with_status_and_residual() {
        let mut h = [0u8; BHS_LEN];
        let seq = SeqNums {
            stat_sn: 7,
            exp_cmd_sn: 8,
            max_cmd_sn: 40,
        };
        let mut d = DataIn {
            final_flag: true,
            status: Some(CollapsedStatus {
                status: 0,
                residual: esos_scsi::Residual::Underflow(100),
            }),
            lun: 0,
            itt: 5,
            seq,
            data_sn: 2,
            offset: 4096,
            data_len: 512,
        };
        encode_data_in(&mut h, &d);
        assert_eq!(h[0], opcode::DATA_IN);
        assert_eq!(h[1], 0x80 | 0x01 | 0x02);
        assert_eq!(u32_at(&h, 24), 7);
        assert_eq!(u32_at(&h, 44), 100);
        assert_eq!(u32_at(&h, 36), 2);
        assert_eq!(u32_at(&h, 40), 4096);
        assert_eq!(common(&h).data_len, 512);
        d.final_flag = false;
        d.status = None;
        d.data_sn = 3;
        d.offset = 0;
        encode_data_in(&mut h, &d);
        assert_eq!(h[1], 0);
        assert_eq!(u32_at(&h, 24), 0);
    }

    #[test]
    fn padding() {
        assert_eq!(pad_len(0), 0);
        assert_eq!(pad_len(1), 3);
        assert_eq!(pad_len(4), 0);
        assert_eq!(pad_len(18), 2);
    }
}

/// Round trips for every PDU type: initiator PDUs through `parse_request` (with encoders
/// written here from RFC 7143 11 for those `build` lacks), target PDUs read back at their
/// RFC field offsets.
#[cfg(test)]
mod round_trip {
    use super::*;
    use proptest::prelude::*;

    fn header(op: u8, immediate: bool, flags: u8, data_len: usize) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        start(&mut h, op, flags, data_len);
        if immediate {
            h[0] |= 0x40;
        }
        h
    }

    fn arb_seq() -> impl Strategy<Value = SeqNums> {
        any::<(u32, u32, u32)>().prop_map(|(stat_sn, exp_cmd_sn, max_cmd_sn)| SeqNums {
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        })
    }

    fn arb_residual() -> impl Strategy<Value = esos_scsi::Residual> {
        prop_oneof![
            Just(esos_scsi::Residual::None),
            any::<u32>().prop_map(esos_scsi::Residual::Underflow),
            any::<u32>().prop_map(esos_scsi::Residual::Overflow),
        ]
    }

    /// (flags bits, residual count) as RFC 7143 11.4.5 places them.
    fn residual_on_wire(r: esos_scsi::Residual) -> (u8, u32) {
        match r {
            esos_scsi::Residual::None => (0, 0),
            esos_scsi::Residual::Underflow(n) => (0x02, n),
            esos_scsi::Residual::Overflow(n) => (0x04, n),
        }
    }

    proptest! {
        #[test]
        fn nop_out(imm: bool, lun: u64, itt: u32, ttt: u32, sn: u32, exp: u32, dl in 0usize..1 << 24) {
            let mut h = header(opcode::NOP_OUT, imm, 0x80, dl);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, ttt);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = NopOut { immediate: imm, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: exp };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::NopOut(want)));
            prop_assert_eq!(common(&h).data_len, dl);
        }

        #[test]
        fn task_mgmt(imm: bool, function in 1u8..=14, lun: u64, itt: u32, rtt: u32,
                     sns: (u32, u32, u32, u32)) {
            let mut h = header(opcode::TASK_MGMT_REQUEST, imm, 0x80 | function, 0);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, rtt);
            put_u32(&mut h, 24, sns.0);
            put_u32(&mut h, 28, sns.1);
            put_u32(&mut h, 32, sns.2);
            put_u32(&mut h, 36, sns.3);
            let want = TaskMgmt {
                immediate: imm, function, lun, itt, rtt, cmd_sn: sns.0, exp_stat_sn: sns.1,
                ref_cmd_sn: sns.2, exp_data_sn: sns.3,
            };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::TaskMgmt(want)));
        }

        #[test]
        fn text_request(imm: bool, f: bool, c: bool, lun: u64, itt: u32, ttt: u32, sn: u32,
                        exp: u32, dl in 0usize..1 << 24) {
            let flags = (f as u8) << 7 | (c as u8) << 6;
            let mut h = header(opcode::TEXT_REQUEST, imm, flags, dl);
            put_u64(&mut h, 8, lun);
            put_u32(&mut h, 16, itt);
            put_u32(&mut h, 20, ttt);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = TextRequest {
                immediate: imm, final_flag: f, cont: c, lun, itt, ttt, cmd_sn: sn, exp_stat_sn: exp,
            };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Text(want)));
        }

        #[test]
        fn logout(imm: bool, reason in 0u8..3, itt: u32, cid: u16, sn: u32, exp: u32) {
            let mut h = header(opcode::LOGOUT_REQUEST, imm, 0x80 | reason, 0);
            put_u32(&mut h, 16, itt);
            put_u16(&mut h, 20, cid);
            put_u32(&mut h, 24, sn);
            put_u32(&mut h, 28, exp);
            let want = LogoutRequest { immediate: imm, reason, itt, cid, cmd_sn: sn, exp_stat_sn: exp };
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Logout(want)));
        }

        #[test]
        fn snack(snack_type in 0u8..4, itt: u32) {
            let mut h = header(opcode::SNACK_REQUEST, false, 0x80 | snack_type, 0);
            put_u32(&mut h, 16, itt);
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Snack(Snack { snack_type, itt })));
        }

        #[test]
        fn login_request(t: bool, c: bool, csg in 0u8..4, nsg in 0u8..4, vmax: u8, vmin: u8,
                         isid: [u8; 6], tsih: u16, itt: u32, cid: u16, sn: u32, exp: u32,
                         dl in 0usize..1 << 24) {
            let l = LoginRequest {
                transit: t, cont: c, csg, nsg, version_max: vmax, version_min: vmin, isid, tsih,
                itt, cid, cmd_sn: sn, exp_stat_sn: exp,
            };
            let h = build::login(&l, dl);
            prop_assert_eq!(common(&h).data_len, dl);
            prop_assert!(common(&h).immediate);
            prop_assert_eq!(parse_request(&h, &[]), Ok(Request::Login(l)));
        }

        /// Extended CDBs of every length travel in the AHS (RFC 7143 11.2.2.3).
        #[test]
        fn scsi_command_extended_cdb(extra in proptest::collection::vec(any::<u8>(), 1..=16),
                                     cdb16: [u8; 16], bidi in proptest::option::of(any::<u32>())) {
            let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
            cdb[..16].copy_from_slice(&cdb16);
            cdb[16..16 + extra.len()].copy_from_slice(&extra);
            let c = ScsiCommand {
                immediate: false, final_flag: true, read: bidi.is_some(), write: true, attr: 1,
                lun: 0, itt: 9, edtl: 4096, cmd_sn: 3, exp_stat_sn: 4, cdb,
                cdb_len: (16 + extra.len()) as u8, bidi_read_len: bidi,
            };
            let h = build::scsi_command(&c, 0);
            let mut ahs = vec![0, (extra.len() + 1) as u8, AHS_EXTENDED_CDB, 0];
            ahs.extend_from_slice(&extra);
            ahs.resize(ahs.len() + pad_len(ahs.len()), 0);
            if let Some(n) = bidi {
                ahs.extend_from_slice(&[0, 5, AHS_BIDI_READ_LENGTH, 0]);
                ahs.extend_from_slice(&n.to_be_bytes());
            }
            prop_assert_eq!(parse_request(&h, &ahs), Ok(Request::ScsiCommand(c)));
        }

        #[test]
        fn scsi_response(itt: u32, status: u8, res in arb_residual(), seq in arb_seq(),
                         eds: u32, dl in 0usize..1 << 24) {
            let mut h = [0xAAu8; BHS_LEN];
            encode_scsi_response(&mut h, &ScsiResponse {
                itt, status, residual: res, seq, exp_data_sn: eds, data_len: dl,
            });
            let (flag, count) = residual_on_wire(res);
            prop_assert_eq!(common(&h), BhsCommon {
                opcode: opcode::SCSI_RESPONSE, immediate: false, ahs_len: 0, data_len: dl,
            });
            prop_assert_eq!((h[1], h[2], h[3]), (0x80 | flag, 0, status));
            prop_assert_eq!((u32_at(&h, 16), u32_at(&h, 24), u32_at(&h, 28), u32_at(&h, 32)),
                            (itt, seq.stat_sn, seq.exp_cmd_sn, seq.max_cmd_sn));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 44)), (eds, count));
        }

        #[test]
        fn data_in(f: bool, status in proptest::option::of((any::<u8>(), arb_residual())),
                   lun: u64, itt: u32, seq in arb_seq(), dsn: u32, off: u32,
                   dl in 0usize..1 << 24) {
            let mut h = [0x55u8; BHS_LEN];
            encode_data_in(&mut h, &DataIn {
                final_flag: f,
                status: status.map(|(status, residual)| CollapsedStatus { status, residual }),
                lun, itt, seq, data_sn: dsn, offset: off, data_len: dl,
            });
            prop_assert_eq!(common(&h).opcode, opcode::DATA_IN);
            prop_assert_eq!(common(&h).data_len, dl);
            // The S bit implies the F bit (RFC 7143 11.7.1).
            prop_assert_eq!(h[1] & 0x80 != 0, f || status.is_some());
            prop_assert_eq!(h[1] & 0x01 != 0, status.is_some());
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, RESERVED_TAG));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 40)), (dsn, off));
            match status {
                Some((st, res)) => {
                    let (flag, count) = residual_on_wire(res);
                    prop_assert_eq!((h[1] & 0x06, h[3], u32_at(&h, 44)), (flag, st, count));
                    prop_assert_eq!(u32_at(&h, 24), seq.stat_sn);
                }
                None => prop_assert_eq!((h[1] & 0x06, u32_at(&h, 24), u32_at(&h, 44)), (0, 0, 0)),
            }
        }

        #[test]
        fn r2t(lun: u64, itt: u32, ttt: u32, seq in arb_seq(), sn: u32, off: u32, len: u32) {
            let mut h = [0xFFu8; BHS_LEN];
            encode_r2t(&mut h, &R2t {
                lun, itt, ttt, seq, r2t_sn: sn, offset: off, length: len,
            });
            prop_assert_eq!(common(&h), BhsCommon {
                opcode: opcode::R2T, immediate: false, ahs_len: 0, data_len: 0,
            });
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, ttt));
            prop_assert_eq!((u32_at(&h, 36), u32_at(&h, 40), u32_at(&h, 44)), (sn, off, len));
        }

        #[test]
        fn nop_in_text_logout_reject_async(lun: u64, itt: u32, ttt: u32, seq in arb_seq(),
                                           f: bool, c: bool, code: u8, t2w: u16, t2r: u16,
                                           dl in 0usize..1 << 24) {
            let mut h = [0u8; BHS_LEN];
            encode_nop_in(&mut h, &NopIn { lun, itt, ttt, seq, data_len: dl });
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::NOP_IN, dl));
            prop_assert_eq!((u64_at(&h, 8), u32_at(&h, 16), u32_at(&h, 20)), (lun, itt, ttt));
            encode_text_response(&mut h, &TextResponse {
                final_flag: f, cont: c, lun, itt, ttt, seq, data_len: dl,
            });
            prop_assert_eq!(h[1], (f as u8) << 7 | (c as u8) << 6);
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::TEXT_RESPONSE, dl));
            encode_logout_response(&mut h, &LogoutResponse {
                itt, response: code, seq, time2wait: t2w, time2retain: t2r,
            });
            prop_assert_eq!((h[0], h[2], u32_at(&h, 16)), (opcode::LOGOUT_RESPONSE, code, itt));
            prop_assert_eq!((u16_at(&h, 40), u16_at(&h, 42)), (t2w, t2r));
            encode_reject(&mut h, code, seq);
            prop_assert_eq!((h[0], h[2], common(&h).data_len), (opcode::REJECT, code, BHS_LEN));
            encode_async(&mut h, code, seq, t2w);
            prop_assert_eq!((h[0], h[36], u16_at(&h, 42)), (opcode::ASYNC_MESSAGE, code, t2w));
            prop_assert_eq!(
                (u32_at(&h, 24), u32_at(&h, 28), u32_at(&h, 32)),
                (seq.stat_sn, seq.exp_cmd_sn, seq.max_cmd_sn)
            );
        }

        #[test]
        fn login_response(t: bool, c: bool, csg in 0u8..4, nsg in 0u8..4, class: u8, detail: u8,
                          isid: [u8; 6], tsih: u16, itt: u32, seq in arb_seq(),
                          dl in 0usize..1 << 24) {
            let r = crate::login::LoginResponseFields {
                transit: t, cont: c, csg, nsg, status_class: class, status_detail: detail,
            };
            let mut h = [0u8; BHS_LEN];
            encode_login_response(&mut h, &LoginResponse {
                fields: r, isid, tsih, itt, seq, data_len: dl,
            });
            prop_assert_eq!((common(&h).opcode, common(&h).data_len), (opcode::LOGIN_RESPONSE, dl));
            prop_assert_eq!(h[1], (t as u8) << 7 | (c as u8) << 6 | csg << 2 | nsg);
            prop_assert_eq!(&h[8..14], &isid[..]);
            prop_assert_eq!((u16_at(&h, 14), u32_at(&h, 16), h[36], h[37]), (tsih, itt, class, detail));
        }
    }
}
