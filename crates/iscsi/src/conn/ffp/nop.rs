//! NOP-Out from the initiator (pings and CmdSN updates).

use std::future::Future;

use crate::pdu;

use super::super::ConnError;
use super::reader::Reader;
use super::{Done, Msg};

impl<F> Reader<'_, F>
where
    F: Future<Output = Done> + Send + Unpin + 'static,
{
    pub(super) async fn nop_out(&mut self, n: pdu::NopOut, len: usize) -> Result<(), ConnError> {
        let mut data = vec![0u8; len];
        self.rd.read_data(&mut data).await?;
        if n.itt == pdu::RESERVED_TAG {
            // Answer to our NOP-In ping, or a bare CmdSN update: nothing to send.
            return Ok(());
        }
        if !self.accept_cmd_sn(n.cmd_sn, n.immediate) {
            return Ok(());
        }
        if !n.immediate {
            self.advance_cmd_sn(false);
        }
        self.send(Msg::NopIn {
            itt: n.itt,
            lun: n.lun,
            data,
        })
        .await
    }
}
