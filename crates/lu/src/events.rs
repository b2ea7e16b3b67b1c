//! Per-unit event fan-out: something changed that initiators must hear of (capacity,
//! reservations, access states, LUN inventory, a reset). Each front-end subscribes once
//! per unit and turns events into its own notices: SCSI queues unit attentions per I_T
//! nexus, NVMe will post asynchronous event notices.
//!
//! Delivery is synchronous, in the poster's thread, before `post` returns: a front-end's
//! notice is in place before the command that caused it completes, as SPC requires of
//! unit attentions. Nothing is queued here; each subscriber bounds its own notices (the
//! SCSI queues keep at most `MAX_UA_PER_NEXUS` per nexus).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use esos_common::sync::LockExt as _;

/// Front-ends subscribed to one unit at once (SCSI, NVMe, NBD, with room to spare).
pub const MAX_SUBSCRIBERS: usize = 16;

/// What happened to the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The device grew or shrank.
    CapacityChanged,
    /// The set of units an initiator sees changed.
    LunsChanged,
    /// The access state of a port group changed.
    AccessStateChanged,
    /// Another initiator's reservation removed this initiator's (SPC-4 RESERVATIONS PREEMPTED).
    ReservationsPreempted,
    /// A reservation this initiator was subject to was released or cleared.
    ReservationsReleased,
    /// This initiator's registration was removed by another initiator.
    RegistrationsPreempted,
}

/// One front-end's subscription, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// A fresh id: front-ends take one per unit before subscribing, so it can be kept in
    /// the subscriber itself.
    pub fn new() -> SubscriberId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for SubscriberId {
    fn default() -> Self {
        Self::new()
    }
}

/// One session of one front-end: `session` is the front-end's own key (the SCSI nexus id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session {
    pub subscriber: SubscriberId,
    pub session: u64,
}

/// Who an event is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Every session of every front-end.
    All,
    /// Every session except the one whose command caused the change (it learns from its
    /// own command's status).
    AllBut(Session),
    /// Only these sessions (e.g. the holders of the preempted registrations).
    Only(&'a [Session]),
}

/// An [`Audience`] as one subscriber sees it, in its own session keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    All,
    AllBut(u64),
    Only(Vec<u64>),
}

impl Audience<'_> {
    /// The sessions of subscriber `me` this event is for.
    pub fn sessions_of(&self, me: SubscriberId) -> Recipients {
        match *self {
            Audience::All => Recipients::All,
            Audience::AllBut(s) if s.subscriber == me => Recipients::AllBut(s.session),
            Audience::AllBut(_) => Recipients::All,
            Audience::Only(list) => Recipients::Only(
                list.iter()
                    .filter(|s| s.subscriber == me)
                    .map(|s| s.session)
                    .collect(),
            ),
        }
    }
}

/// A front-end's side of a unit: turns events into its own notices. Called with no lock
/// of the unit held; must not block.
pub trait Subscriber: Send + Sync {
    fn deliver(&self, event: Event, to: Audience<'_>);
}

/// The subscribers of one unit.
#[derive(Default)]
pub struct Events {
    /// At most [`MAX_SUBSCRIBERS`] live entries; dead ones are pruned on subscribe.
    subscribers: Mutex<Vec<(SubscriberId, Weak<dyn Subscriber>)>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.subscribers.locked().len();
        f.debug_struct("Events").field("subscribers", &n).finish()
    }
}

/// More than [`MAX_SUBSCRIBERS`] front-ends on one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_SUBSCRIBERS} front-ends subscribed to one unit")]
pub struct TooManySubscribers;

impl Events {
    /// Adds a subscriber for as long as it lives (held weakly: a front-end's unit that
    /// is dropped stops receiving without unsubscribing).
    pub fn subscribe(
        &self,
        id: SubscriberId,
        subscriber: Weak<dyn Subscriber>,
    ) -> Result<(), TooManySubscribers> {
        let mut subs = self.subscribers.locked();
        subs.retain(|(_, s)| s.strong_count() > 0);
        if subs.len() >= MAX_SUBSCRIBERS {
            return Err(TooManySubscribers);
        }
        subs.push((id, subscriber));
        Ok(())
    }

    /// Delivers `event` to every live subscriber, which picks its sessions from `to`.
    pub fn post(&self, event: Event, to: Audience<'_>) {
        let live: Vec<Arc<dyn Subscriber>> = self
            .subscribers
            .locked()
            .iter()
            .filter_map(|(_, s)| s.upgrade())
            .collect();
        for s in live {
            s.deliver(event, to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<(Event, Recipients)>>, SubscriberId);

    impl Subscriber for Log {
        fn deliver(&self, event: Event, to: Audience<'_>) {
            self.0.locked().push((event, to.sessions_of(self.1)));
        }
    }

    #[test]
    fn each_subscriber_sees_its_own_audience() {
        let ev = Events::default();
        let a = Arc::new(Log::default());
        let b = Arc::new(Log::default());
        ev.subscribe(a.1, Arc::downgrade(&a) as Weak<dyn Subscriber>)
            .unwrap();
        ev.subscribe(b.1, Arc::downgrade(&b) as Weak<dyn Subscriber>)
            .unwrap();
        let from_a = Session {
            subscriber: a.1,
            session: 7,
        };
        ev.post(Event::AccessStateChanged, Audience::AllBut(from_a));
        ev.post(Event::RegistrationsPreempted, Audience::Only(&[from_a]));
        assert_eq!(
            *a.0.locked(),
            vec![
                (Event::AccessStateChanged, Recipients::AllBut(7)),
                (Event::RegistrationsPreempted, Recipients::Only(vec![7]))
            ]
        );
        assert_eq!(
            *b.0.locked(),
            vec![
                (Event::AccessStateChanged, Recipients::All),
                (Event::RegistrationsPreempted, Recipients::Only(vec![]))
            ]
        );
        drop(b);
        ev.post(Event::CapacityChanged, Audience::All);
        assert_eq!(a.0.locked().len(), 3);
    }

    #[test]
    fn subscribers_are_bounded_and_dead_ones_make_room() {
        let ev = Events::default();
        let keep: Vec<Arc<Log>> = (0..MAX_SUBSCRIBERS).map(|_| Arc::default()).collect();
        for s in &keep {
            ev.subscribe(s.1, Arc::downgrade(s) as Weak<dyn Subscriber>)
                .unwrap();
        }
        let extra = Arc::new(Log::default());
        let weak = Arc::downgrade(&extra) as Weak<dyn Subscriber>;
        assert_eq!(ev.subscribe(extra.1, weak.clone()), Err(TooManySubscribers));
        drop(keep);
        ev.subscribe(extra.1, weak).unwrap();
    }
}
