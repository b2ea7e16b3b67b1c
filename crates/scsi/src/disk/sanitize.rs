//! SANITIZE (SBC-4 4.11, 5.30): OVERWRITE and BLOCK ERASE over the whole medium, and
//! EXIT FAILURE MODE. CRYPTOGRAPHIC ERASE is refused by the decoder (`cdb/sanitize.rs`).
//!
//! The operation runs as a task of its own, in bounded chunks, so it outlives the command
//! that started it: with IMMED the command returns at once, without it the command waits
//! for the task, and task management (ABORT TASK, resets) stops neither (SBC-4 4.11.1).
//! While it runs, `dispatch::sanitize_gate` answers every command but INQUIRY, REPORT LUNS and REQUEST
//! SENSE with NOT READY, SANITIZE IN PROGRESS and the progress; after a failure it
//! answers them with MEDIUM ERROR, SANITIZE COMMAND FAILED until a sanitize succeeds or
//! EXIT FAILURE MODE (allowed by AUSE) ends the failure mode (SBC-4 4.11.3).

use std::sync::Arc;

use esos_block::{BlockDevice, BlockError};

use super::rw::{check_data_out, check_writable};
use super::{Done, Fail, Outcome, provision};
use crate::cdb::{Sanitize, SanitizeAction};
use crate::sense::{Asc, Sense, SenseKey};
use crate::unit::LogicalUnit;
use crate::{Command, IoBuf};

/// Bytes written per step of an OVERWRITE pass: the one buffer the operation holds.
pub const OVERWRITE_CHUNK_BYTES: u64 = 1 << 20;

/// Bytes released (or zeroed) per step of a BLOCK ERASE; progress is updated per step.
pub const ERASE_CHUNK_BYTES: u64 = 64 << 20;

/// Largest OVERWRITE COUNT: the field has 5 bits (SBC-4 5.30.2.2).
pub const MAX_OVERWRITE_PASSES: u8 = 31;

/// What the background task writes.
#[derive(Debug)]
enum Work {
    /// `block` is one logical block of the repeated initialization pattern.
    Overwrite {
        block: Vec<u8>,
        invert: bool,
        passes: u8,
    },
    Erase,
}

/// SANITIZE: validates the CDB against the unit and the parameter list, then starts the
/// operation; returns at once with IMMED, after completion without.
pub async fn sanitize(lu: &Arc<LogicalUnit>, cmd: &Command, s: Sanitize, buf: &IoBuf) -> Outcome {
    let work = match s.action {
        SanitizeAction::ExitFailureMode => return exit_failure_mode(lu),
        SanitizeAction::BlockErase => Work::Erase,
        SanitizeAction::Overwrite => {
            let bs = lu.device.block_size() as usize;
            if usize::from(s.param_len) > bs + 4 {
                // SBC-4 5.30.2.1: at most one block of pattern.
                return Err(Sense::invalid_cdb_field(7, None).into());
            }
            check_data_out(cmd.expected_len, buf, u64::from(s.param_len))?;
            parse_overwrite(&buf[..usize::from(s.param_len)], bs)?
        }
    };
    check_writable(lu)?;
    if !lu.sanitize.begin() {
        return Err(lu
            .sanitize
            .refusal()
            .unwrap_or(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE))
            .into());
    }
    let transfer = u64::from(s.param_len);
    let task_lu = Arc::clone(lu);
    let task = tokio::spawn(async move {
        let r = run(&task_lu, &work).await;
        if let Err(e) = &r {
            tracing::error!("sanitize failed: {e}");
        }
        task_lu.sanitize.finish(r.is_ok(), s.ause);
        r
    });
    let done = Done {
        data_in: 0,
        transfer,
    };
    if s.immed {
        return Ok(done);
    }
    // Aborting the command ends the wait, not the sanitize (SBC-4 4.11: it survives
    // task management and resets, and later commands see it in progress).
    let since = lu.aborts.mark();
    let joined = tokio::select! {
        r = task => r,
        () = lu.aborts.wait(since, cmd.nexus.id, cmd.tag) => {
            return Err(Sense::new(SenseKey::AbortedCommand, Asc::NO_ADDITIONAL_SENSE).into());
        }
    };
    match joined {
        Ok(Ok(())) => Ok(done),
        // Not the block-error mapping (`block_status.rs`) on purpose: whatever the block
        // layer said, a failed sanitize leaves the LU in the failed state that SBC-4 4.11.4
        // reports as MEDIUM ERROR, SANITIZE COMMAND FAILED, to this and later commands.
        Ok(Err(_)) => Err(Sense::new(SenseKey::MediumError, Asc::SANITIZE_COMMAND_FAILED).into()),
        Err(e) => {
            // The task panicked: its state was not finished.
            tracing::error!("sanitize task ended abnormally: {e}");
            lu.sanitize.finish(false, s.ause);
            Err(Sense::new(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE).into())
        }
    }
}

/// SBC-4 5.30.5: leaves the failure mode of a sanitize that had AUSE 1; after one with
/// AUSE 0 the request is invalid. Without a failure there is nothing to leave.
fn exit_failure_mode(lu: &LogicalUnit) -> Outcome {
    if lu.sanitize.exit_failure_mode() {
        Ok(Done::NO_DATA)
    } else {
        Err(Sense::invalid_cdb_field(1, Some(4)).into())
    }
}

/// Parses the OVERWRITE parameter list (SBC-4 5.30.2.2): INVERT, TEST, OVERWRITE COUNT,
/// INITIALIZATION PATTERN LENGTH and the pattern, which is repeated to fill a block.
fn parse_overwrite(list: &[u8], block_size: usize) -> Result<Work, Fail> {
    let invert = list[0] & 0x80 != 0;
    if list[0] & 0x60 != 0 {
        // TEST 00b only: the other values are vendor specific.
        return Err(Sense::invalid_param_field(0, Some(6)).into());
    }
    let passes = list[0] & 0x1F;
    if passes == 0 {
        return Err(Sense::invalid_param_field(0, Some(4)).into());
    }
    if list[1] != 0 {
        return Err(Sense::invalid_param_field(1, Some(7 - list[1].leading_zeros() as u8)).into());
    }
    let len = usize::from(u16::from_be_bytes([list[2], list[3]]));
    if len == 0 || len > block_size || len > list.len() - 4 {
        return Err(Sense::invalid_param_field(2, None).into());
    }
    let pattern = &list[4..4 + len];
    let block: Vec<u8> = pattern.iter().copied().cycle().take(block_size).collect();
    Ok(Work::Overwrite {
        block,
        invert,
        passes,
    })
}

/// Runs the whole operation and makes it durable.
/// Holds a sanitize to `LuSettings::sanitize_rate` bytes per second (0 = unpaced).
struct Pacer {
    start: tokio::time::Instant,
    rate: u64,
}

/// Pacing steps per second: small enough that the progress indication moves smoothly.
const PACE_STEPS_PER_SEC: u64 = 4;

impl Pacer {
    fn new(lu: &LogicalUnit) -> Pacer {
        Pacer {
            start: tokio::time::Instant::now(),
            rate: lu.settings.sanitize_rate,
        }
    }

    /// The largest step of `max` bytes (a multiple of `unit`) that keeps pacing smooth.
    fn step(&self, max: u64, unit: u64) -> u64 {
        if self.rate == 0 {
            return max;
        }
        let want = (self.rate / PACE_STEPS_PER_SEC).max(unit);
        (want - want % unit).clamp(unit, max.max(unit))
    }

    /// Waits until `written` bytes are due at the configured rate.
    async fn pace(&self, written: u64) {
        if self.rate > 0 {
            let due = std::time::Duration::from_secs_f64(written as f64 / self.rate as f64);
            tokio::time::sleep_until(self.start + due).await;
        }
    }
}

async fn run(lu: &LogicalUnit, work: &Work) -> Result<(), BlockError> {
    let len = lu.device.num_blocks() * u64::from(lu.device.block_size());
    let pacer = Pacer::new(lu);
    match work {
        Work::Erase => erase(lu, len, &pacer).await?,
        Work::Overwrite {
            block,
            invert,
            passes,
        } => {
            let inverse: Vec<u8> = block.iter().map(|b| !b).collect();
            let passes = u64::from((*passes).min(MAX_OVERWRITE_PASSES));
            for pass in 0..passes {
                // SBC-4 5.30.2.2: with INVERT the pattern alternates between passes and
                // the last pass writes it as given.
                let b = if pass_inverted(*invert, passes, pass) {
                    &inverse
                } else {
                    block
                };
                overwrite_pass(lu, b, len, pass * len, passes * len, &pacer).await?;
                // Each pass reaches the medium before the next starts.
                lu.device.flush().await?;
            }
        }
    }
    lu.device.flush().await
}

/// SBC-4 5.30.2.2: with INVERT the pattern alternates between passes and the last pass
/// (`pass` counts from 0) writes it as given.
fn pass_inverted(invert: bool, passes: u64, pass: u64) -> bool {
    invert && (passes - 1 - pass) % 2 == 1
}

/// BLOCK ERASE: a unit whose unmapped blocks read as zeros releases every block (GET LBA
/// STATUS then reports them deallocated); any other is zeroed.
async fn erase(lu: &LogicalUnit, len: u64, pacer: &Pacer) -> Result<(), BlockError> {
    let release = provision::lbprz(lu);
    let step = pacer.step(ERASE_CHUNK_BYTES, u64::from(lu.device.block_size()));
    let mut done = 0;
    while done < len {
        let n = step.min(len - done);
        if release {
            lu.device.discard(done, n).await?;
        } else {
            lu.device.write_zeroes(done, n).await?;
        }
        done += n;
        lu.sanitize.set_progress(done, len);
        // A long operation shares its worker with the commands still being answered.
        tokio::task::yield_now().await;
        pacer.pace(done).await;
    }
    Ok(())
}

/// Writes `block` over the whole medium from one buffer of at most
/// [`OVERWRITE_CHUNK_BYTES`]; `base` and `total` place the pass in the progress.
async fn overwrite_pass(
    lu: &LogicalUnit,
    block: &[u8],
    len: u64,
    base: u64,
    total: u64,
    pacer: &Pacer,
) -> Result<(), BlockError> {
    let bs = block.len() as u64;
    let chunk = len.min(pacer.step((OVERWRITE_CHUNK_BYTES / bs).max(1) * bs, bs));
    let mut data = Vec::with_capacity(chunk as usize);
    for _ in 0..chunk / bs {
        data.extend_from_slice(block);
    }
    let mut done = 0;
    while done < len {
        let n = chunk.min(len - done);
        data.truncate(n as usize);
        let (r, back) = lu.device.write(done, data, false).await;
        r?;
        data = back;
        done += n;
        lu.sanitize.set_progress(base + done, total);
        tokio::task::yield_now().await;
        pacer.pace(base + done).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
