//! The io_uring engine for regular files and block devices.
//!
//! One ring per device, behind a mutex, with an eventfd registered so completions wake a
//! reaper task through tokio's reactor (no SQPOLL, no spinning: an idle device costs nothing).
//!
//! Ownership rule, on which all the `unsafe` here rests: an operation's buffer lives in its
//! slot of [`State::slots`] from before its SQE is pushed until its CQE has been reaped. A
//! future that is dropped early only marks its slot orphaned; the reaper frees the buffer
//! when the kernel is done with it, and [`Shared`]'s `Drop` waits for every outstanding CQE
//! before the ring and the buffers go away.
//!
//! Submission allocates nothing: slots and the resubmission list are sized once, and a
//! semaphore with one permit per free slot bounds what is in flight.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use esos_common::sync::LockExt;
use io_uring::{IoUring, opcode, types};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;

use crate::buf::Mem;
use crate::{BlockError, sync};

/// Operations one ring keeps in flight; also its submission queue size. The completion queue
/// is twice that (kernel default), so it cannot overflow.
pub const URING_QUEUE_DEPTH: u32 = 256;

/// Largest transfer one SQE asks for (its length field is 32 bits); bigger buffers continue
/// as if the transfer had been short. Tests use a small value so every multi-chunk transfer
/// exercises the continuation path.
const MAX_SQE_BYTES: usize = if cfg!(test) { 64 << 10 } else { 1 << 30 };

/// How often one operation is resubmitted after EINTR/EAGAIN/ECANCELED before it fails.
const MAX_RETRIES: u8 = 16;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Read,
    Write { fua: bool },
    Fsync,
}

/// Who is waiting for an operation, or what it finished with.
#[derive(Debug)]
enum Waiter {
    /// The future is alive; wake it on completion.
    Waiting(Option<Waker>),
    /// Finished with 0 or a positive errno; the future has not collected it yet.
    Done(i32),
    /// The future was dropped; free the slot when the CQE arrives.
    Orphaned,
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    offset: u64,
    /// Owned here until the CQE is reaped (see the module doc).
    buf: Mem,
    /// Bytes transferred so far.
    done: usize,
    retries: u8,
    waiter: Waiter,
}

struct State {
    ring: IoUring,
    /// Indexed by SQE user_data.
    slots: Vec<Option<Op>>,
    free: Vec<u32>,
    /// Ops the kernel may still touch or whose result is not collected: slots in use.
    in_flight: usize,
    /// Continuations of short transfers, pushed after the completion queue is released.
    resubmit: Vec<u32>,
    reaper_alive: bool,
    #[cfg(test)]
    orphaned: usize,
}

struct Shared {
    state: Mutex<State>,
    /// One permit per free slot; a permit is forgotten when its slot is taken and added back
    /// when the slot is freed.
    permits: Semaphore,
    eventfd: Arc<OwnedFd>,
    /// Keeps the descriptor in every SQE open.
    file: Arc<File>,
}

/// A device's ring.
pub(crate) struct Ring {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_flight = lock(&self.shared.state).in_flight;
        f.debug_struct("Ring")
            .field("in_flight", &in_flight)
            .finish()
    }
}

// A panic while holding the lock leaves slots consistent (every update is one assignment),
// so a poisoned lock is still usable.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.locked()
}

fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Ring {
    pub(crate) fn new(file: &Arc<File>) -> io::Result<Ring> {
        let ring = IoUring::new(URING_QUEUE_DEPTH)?;
        let eventfd = new_eventfd()?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let depth = URING_QUEUE_DEPTH as usize;
        let state = State {
            ring,
            slots: (0..depth).map(|_| None).collect(),
            free: (0..URING_QUEUE_DEPTH).rev().collect(),
            in_flight: 0,
            resubmit: Vec::with_capacity(depth),
            reaper_alive: false,
            #[cfg(test)]
            orphaned: 0,
        };
        Ok(Ring {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                permits: Semaphore::new(depth),
                eventfd: Arc::new(eventfd),
                file: Arc::clone(file),
            }),
        })
    }

    /// Operations whose slot is still in use (tests check cancelled ones are reclaimed).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.shared.state).in_flight
    }

    /// How many requests were cancelled while the kernel still held them.
    #[cfg(test)]
    pub(crate) fn orphaned(&self) -> usize {
        lock(&self.shared.state).orphaned
    }

    pub(crate) async fn read(&self, offset: u64, buf: Mem) -> (Result<(), BlockError>, Mem) {
        if let Err(e) = self.shared.ensure_reaper() {
            tracing::warn!(error = %e, "io_uring reaper could not start; read via blocking I/O");
            return sync::read(&self.shared.file, offset, buf).await;
        }
        let len = buf.len();
        let (errno, buf) = self.shared.run(OpKind::Read, offset, buf).await;
        (
            check(errno, || format!("read at {offset} of {len} bytes")),
            buf,
        )
    }

    pub(crate) async fn write(
        &self,
        offset: u64,
        buf: Mem,
        fua: bool,
    ) -> (Result<(), BlockError>, Mem) {
        if let Err(e) = self.shared.ensure_reaper() {
            tracing::warn!(error = %e, "io_uring reaper could not start; write via blocking I/O");
            return sync::write(&self.shared.file, offset, buf, fua).await;
        }
        let len = buf.len();
        let (errno, buf) = self.shared.run(OpKind::Write { fua }, offset, buf).await;
        (
            check(errno, || format!("write at {offset} of {len} bytes")),
            buf,
        )
    }

    pub(crate) async fn flush(&self) -> Result<(), BlockError> {
        if let Err(e) = self.shared.ensure_reaper() {
            tracing::warn!(error = %e, "io_uring reaper could not start; flush via blocking I/O");
            return sync::flush(&self.shared.file).await;
        }
        let (errno, _) = self
            .shared
            .run(OpKind::Fsync, 0, Mem::Vec(Vec::new()))
            .await;
        check(errno, || "flush".to_owned())
    }
}

fn check(errno: i32, what: impl FnOnce() -> String) -> Result<(), BlockError> {
    if errno == 0 {
        Ok(())
    } else {
        Err(BlockError::io(what(), io::Error::from_raw_os_error(errno)))
    }
}

impl Shared {
    /// Starts a reaper on the current runtime unless one is running. A reaper dies with its
    /// runtime, so a device used from a later runtime gets a new one.
    fn ensure_reaper(self: &Arc<Self>) -> io::Result<()> {
        let mut st = lock(&self.state);
        if st.reaper_alive {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let _guard = handle.enter();
        // SAFETY: the AsyncFd owns an `Arc` of the eventfd's `OwnedFd`, so the descriptor stays
        // open and unchanged for the AsyncFd's whole life.
        let afd = unsafe {
            AsyncFd::register_with_interest(Arc::clone(&self.eventfd), Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        st.reaper_alive = true;
        let reaper = Reaper {
            shared: Arc::downgrade(self),
            afd,
        };
        handle.spawn(reaper.run());
        Ok(())
    }

    /// Submits one operation and waits for it; returns 0 or an errno, and the buffer.
    async fn run(&self, kind: OpKind, offset: u64, buf: Mem) -> (i32, Mem) {
        let Ok(permit) = self.permits.acquire().await else {
            return (libc::EIO, buf); // never closed
        };
        let idx = {
            let mut st = lock(&self.state);
            let Some(idx) = st.free.pop() else {
                // A permit guarantees a free slot; reaching here is a bookkeeping bug.
                debug_assert!(false, "permit without a free slot");
                return (libc::EAGAIN, buf);
            };
            let op = Op {
                kind,
                offset,
                buf,
                done: 0,
                retries: 0,
                waiter: Waiter::Waiting(None),
            };
            st.slots[idx as usize] = Some(op);
            st.in_flight += 1;
            permit.forget();
            if let Err(errno) = self.push(&mut st, idx) {
                // Not queued: the kernel never saw the buffer, hand it straight back.
                let op = self.free_slot(&mut st, idx);
                return (errno, op.buf);
            }
            self.submit(&st);
            // Page-cache hits often complete inside io_uring_enter: collect them now and
            // save a trip through the reaper.
            self.drain(&mut st);
            idx
        };
        OpWait {
            shared: self,
            idx: Some(idx),
        }
        .await
    }

    /// Queues the SQE for the rest of slot `idx`'s transfer.
    fn push(&self, st: &mut State, idx: u32) -> Result<(), i32> {
        let fd = types::Fd(self.file.as_raw_fd());
        let Some(op) = st.slots[idx as usize].as_mut() else {
            return Err(libc::EINVAL);
        };
        let offset = op.offset + op.done as u64;
        let len = (op.buf.len() - op.done).min(MAX_SQE_BYTES) as u32;
        let entry = match op.kind {
            OpKind::Read => {
                // A shared payload is never read into (`SharedBuf` is write-only here).
                let Some(rest) = op.buf.as_mut_slice().map(|b| &mut b[op.done..]) else {
                    return Err(libc::EINVAL);
                };
                opcode::Read::new(fd, rest.as_mut_ptr(), len)
                    .offset(offset)
                    .build()
            }
            OpKind::Write { fua } => {
                opcode::Write::new(fd, op.buf.as_slice()[op.done..].as_ptr(), len)
                    .offset(offset)
                    .rw_flags(if fua { libc::RWF_DSYNC } else { 0 })
                    .build()
            }
            OpKind::Fsync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(u64::from(idx));
        // SAFETY: the entry points into `op.buf`, a heap buffer owned by slot `idx`, and at
        // `self.file`'s descriptor, which `self` keeps open. The slot is released only after
        // this SQE's CQE has been reaped (`complete`), or by `Drop for Shared` after waiting
        // for it, so buffer and descriptor outlive the kernel's use of them.
        let pushed = unsafe { st.ring.submission().push(&entry) };
        if pushed.is_err() {
            // In-flight ops never exceed the SQ size and every push is followed by a submit,
            // so a full SQ means an earlier submit failed; flush it and try once more.
            self.submit(st);
            // SAFETY: as above.
            unsafe { st.ring.submission().push(&entry) }.map_err(|_| libc::EAGAIN)?;
        }
        Ok(())
    }

    /// Hands queued SQEs to the kernel. On failure they stay queued and go with the next
    /// submit; their slots stay owned, so nothing is freed under the kernel.
    fn submit(&self, st: &State) {
        for _ in 0..MAX_RETRIES {
            match st.ring.submit() {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring submit failed; will retry on next I/O");
                    return;
                }
            }
        }
    }

    /// Reaps every completion: finishes ops, continues short transfers.
    fn drain(&self, st: &mut State) {
        loop {
            let mut reaped = 0;
            {
                let State {
                    ring,
                    slots,
                    free,
                    in_flight,
                    resubmit,
                    ..
                } = &mut *st;
                for cqe in ring.completion() {
                    reaped += 1;
                    let idx = cqe.user_data() as u32;
                    let Some(op) = slots.get_mut(idx as usize).and_then(Option::as_mut) else {
                        debug_assert!(false, "completion for empty slot {idx}");
                        continue;
                    };
                    match advance(op, cqe.result()) {
                        Step::Again => resubmit.push(idx),
                        Step::Finished(errno) => {
                            if let Waiter::Waiting(w) = &mut op.waiter {
                                if let Some(w) = w.take() {
                                    w.wake();
                                }
                                op.waiter = Waiter::Done(errno);
                            } else {
                                // Orphaned: the kernel is done, so the buffer may go.
                                slots[idx as usize] = None;
                                free.push(idx);
                                *in_flight -= 1;
                                self.permits.add_permits(1);
                            }
                        }
                    }
                }
            }
            let mut pending = std::mem::take(&mut st.resubmit);
            for idx in pending.drain(..) {
                if let Err(errno) = self.push(st, idx) {
                    self.finish_unqueued(st, idx, errno);
                }
            }
            st.resubmit = pending;
            if reaped == 0 {
                return;
            }
            self.submit(st);
        }
    }

    /// Ends an op whose continuation could not be queued (so the kernel holds nothing of it).
    fn finish_unqueued(&self, st: &mut State, idx: u32, errno: i32) {
        let Some(op) = st.slots[idx as usize].as_mut() else {
            return;
        };
        match &mut op.waiter {
            Waiter::Waiting(w) => {
                if let Some(w) = w.take() {
                    w.wake();
                }
                op.waiter = Waiter::Done(errno);
            }
            _ => {
                self.free_slot(st, idx);
            }
        }
    }

    fn free_slot(&self, st: &mut State, idx: u32) -> Op {
        let op = st.slots[idx as usize].take();
        st.free.push(idx);
        st.in_flight -= 1;
        self.permits.add_permits(1);
        op.unwrap_or_else(|| Op {
            kind: OpKind::Fsync,
            offset: 0,
            buf: Mem::Vec(Vec::new()),
            done: 0,
            retries: 0,
            waiter: Waiter::Orphaned,
        })
    }
}

enum Step {
    /// Submit the rest again.
    Again,
    /// Done: 0 or an errno.
    Finished(i32),
}

/// Applies one CQE result to an op.
fn advance(op: &mut Op, res: i32) -> Step {
    if res < 0 {
        let errno = -res;
        // ECANCELED comes when the submitting thread exits; the op was never done.
        let transient = matches!(errno, libc::EINTR | libc::EAGAIN | libc::ECANCELED);
        if transient && op.retries < MAX_RETRIES {
            op.retries += 1;
            return Step::Again;
        }
        return Step::Finished(errno);
    }
    let n = res as usize;
    match op.kind {
        OpKind::Fsync => Step::Finished(0),
        OpKind::Read if n == 0 => {
            // End of file inside the device: someone truncated it; such blocks read as zeros.
            if let Some(rest) = op.buf.as_mut_slice() {
                rest[op.done..].fill(0);
            }
            op.done = op.buf.len();
            Step::Finished(0)
        }
        OpKind::Write { .. } if n == 0 => Step::Finished(libc::EIO),
        OpKind::Read | OpKind::Write { .. } => {
            op.done = (op.done + n).min(op.buf.len());
            if op.done == op.buf.len() {
                Step::Finished(0)
            } else {
                Step::Again
            }
        }
    }
}

/// Waits for slot `idx`; if dropped first, orphans the slot instead of freeing the buffer.
struct OpWait<'a> {
    shared: &'a Shared,
    idx: Option<u32>,
}

impl Future for OpWait<'_> {
    type Output = (i32, Mem);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(idx) = self.idx else {
            return Poll::Ready((libc::EINVAL, Mem::Vec(Vec::new())));
        };
        let shared = self.shared;
        let mut st = lock(&shared.state);
        let Some(op) = st.slots[idx as usize].as_mut() else {
            return Poll::Ready((libc::EINVAL, Mem::Vec(Vec::new())));
        };
        match &mut op.waiter {
            Waiter::Done(errno) => {
                let errno = *errno;
                let op = shared.free_slot(&mut st, idx);
                drop(st);
                self.idx = None;
                Poll::Ready((errno, op.buf))
            }
            Waiter::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Waiter::Orphaned => Poll::Ready((libc::EINVAL, Mem::Vec(Vec::new()))),
        }
    }
}

impl Drop for OpWait<'_> {
    fn drop(&mut self) {
        let Some(idx) = self.idx.take() else { return };
        let mut st = lock(&self.shared.state);
        let Some(op) = st.slots[idx as usize].as_mut() else {
            return;
        };
        if matches!(op.waiter, Waiter::Done(_)) {
            self.shared.free_slot(&mut st, idx);
        } else {
            // The kernel may still write into the buffer: leave it to the reaper.
            op.waiter = Waiter::Orphaned;
            #[cfg(test)]
            {
                st.orphaned += 1;
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Orphaned ops may still be in the kernel: wait for them before the ring and the
        // buffers are freed. Only cancelled requests can be outstanding here (a live future
        // holds a reference), so this is short.
        let mut waits = 0;
        while st.in_flight > 0 {
            let waited = st.ring.submit_and_wait(1);
            let (slots, ring) = (&mut st.slots, &mut st.ring);
            for cqe in ring.completion() {
                if let Some(slot) = slots.get_mut(cqe.user_data() as usize)
                    && slot.take().is_some()
                {
                    st.in_flight -= 1;
                }
            }
            waits += 1;
            if let Err(e) = waited
                && (e.raw_os_error() != Some(libc::EINTR) || waits > 1000)
            {
                // Cannot learn when the kernel is done: leak the buffers rather than
                // free memory it may still write.
                tracing::error!(error = %e, "io_uring teardown: leaking in-flight buffers");
                std::mem::forget(std::mem::take(&mut st.slots));
                break;
            }
        }
        // Wake the reaper so it sees the ring is gone and exits.
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// Drains the completion queue whenever the eventfd fires.
struct Reaper {
    shared: Weak<Shared>,
    afd: AsyncFd<Arc<OwnedFd>>,
}

impl Reaper {
    async fn run(self) {
        // Completions may have arrived while no reaper was running.
        match self.shared.upgrade() {
            Some(s) => s.drain(&mut lock(&s.state)),
            None => return,
        }
        loop {
            let Ok(mut ready) = self.afd.readable().await else {
                return;
            };
            let mut count = [0u8; 8];
            // Reset the counter before draining, so a completion posted after the drain
            // fires the eventfd again.
            let read = ready.try_io(|fd| {
                // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes long.
                let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if read.is_err() {
                continue; // would block: readiness cleared, wait again
            }
            let Some(s) = self.shared.upgrade() else {
                return;
            };
            s.drain(&mut lock(&s.state));
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Dies with its runtime: let the next operation start a new one.
        if let Some(s) = self.shared.upgrade() {
            lock(&s.state).reaper_alive = false;
        }
    }
}
