//! Persistent reservations of a replicated unit, cluster-wide: the primary sends the
//! encoded state (`esos_lu::reservations::encode_state`) after every change, in the order
//! of the changes; a secondary saves what arrives to its APTPL file and replaces its own
//! state, so after a failover the new primary enforces exactly what the old one did.

use std::sync::{Arc, Mutex};

use esos_common::sync::LockExt as _;
use esos_lu::Unit;
use esos_lu::reservations::{Observer, PrState, Reservations, decode_state, encode_state, save};
use tokio::sync::mpsc;

/// Largest reservation state accepted from a peer: far above what
/// `MAX_REGISTRATIONS` registrations encode to.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// Sends the reservation state through `send` after every change made while
/// `is_primary()` holds. A change that leaves the encoding as it was is not sent again.
pub fn publish(
    reservations: &Reservations,
    is_primary: impl Fn() -> bool + Send + Sync + 'static,
    send: impl Fn(Vec<u8>) + Send + Sync + 'static,
) {
    let last: Mutex<Option<String>> = Mutex::new(None);
    let installed = reservations.observe(Observer::new(move |s: &PrState| {
        if !is_primary() {
            return;
        }
        let text = encode_state(s);
        let mut last = last.locked();
        if last.as_deref() != Some(text.as_str()) {
            send(text.clone().into_bytes());
            *last = Some(text);
        }
    }));
    assert!(installed, "one reservation observer per unit");
}

/// How often a primary sends its whole reservation state again: a peer that reconnected
/// (or a new primary's peers) converge within this without a change to carry it.
pub const RESEND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the whole state every [`RESEND_INTERVAL`] while `is_primary()`. The state is
/// read and sent under the reservation lock, so it is ordered with the changes
/// [`publish`] sends.
pub async fn resend(
    unit: Arc<Unit>,
    is_primary: impl Fn() -> bool + Send + Sync + 'static,
    send: impl Fn(Vec<u8>) + Send + Sync + 'static,
) {
    let mut tick = tokio::time::interval(RESEND_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if is_primary() {
            let g = unit.reservations.lock();
            send(encode_state(&g.state).into_bytes());
        }
    }
}

/// Why a state from the primary was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyStateError {
    #[error("{0} bytes; at most {MAX_STATE_BYTES}")]
    TooLarge(usize),
    #[error("not UTF-8")]
    NotText,
    #[error(transparent)]
    Decode(#[from] esos_lu::state_file::StateFileError),
}

/// Applies one state received from the primary: saved first (when the unit keeps an
/// APTPL file), then made the unit's own.
pub fn apply_state(reservations: &Reservations, blob: &[u8]) -> Result<(), ApplyStateError> {
    if blob.len() > MAX_STATE_BYTES {
        return Err(ApplyStateError::TooLarge(blob.len()));
    }
    let text = std::str::from_utf8(blob).map_err(|_| ApplyStateError::NotText)?;
    let state = decode_state(text, "reservations from the primary")?;
    if let Some(path) = reservations.file() {
        save(path, &state)?;
    }
    reservations.lock().state = state;
    Ok(())
}

/// Applies every state from `states` until the sender is gone. A bad state is logged and
/// skipped: the next change brings the whole state again.
pub async fn follow(unit: Arc<Unit>, device: String, mut states: mpsc::Receiver<Vec<u8>>) {
    while let Some(blob) = states.recv().await {
        let u = unit.clone();
        let res = tokio::task::spawn_blocking(move || apply_state(&u.reservations, &blob)).await;
        match res {
            Ok(Ok(())) => {
                tracing::debug!(device = %device, "reservations from the primary applied")
            }
            Ok(Err(e)) => {
                tracing::error!(device = %device, error = %e, "reservations from the primary not applied")
            }
            Err(e) => tracing::error!(device = %device, error = %e, "applying reservations failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn unit(file: Option<std::path::PathBuf>) -> Reservations {
        Reservations::new(file).unwrap()
    }

    #[test]
    fn primary_changes_reach_the_secondary() {
        let dir = tempfile::tempdir().unwrap();
        let primary = unit(None);
        let secondary = unit(Some(dir.path().join("db.pr")));
        let sent = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let is_primary = Arc::new(AtomicBool::new(true));
        let (s, p) = (sent.clone(), is_primary.clone());
        publish(
            &primary,
            move || p.load(Ordering::Relaxed),
            move |b| s.locked().push(b),
        );
        let text = "esos-pr 1\naptpl 1\ngeneration 3\nreg 1 00000000000000aa 1 iqn.a *\nres 1 1\n";
        primary.lock().state = decode_state(text, "t").unwrap();
        // The same state again is not sent twice.
        primary.lock().state = decode_state(text, "t").unwrap();
        assert_eq!(sent.locked().len(), 1);
        apply_state(&secondary, &sent.locked()[0]).unwrap();
        assert_eq!(secondary.snapshot(), primary.snapshot());
        let saved = esos_lu::reservations::load(&dir.path().join("db.pr")).unwrap();
        assert_eq!(saved, primary.snapshot());
        // A secondary sends nothing, and bad input changes nothing.
        is_primary.store(false, Ordering::Relaxed);
        primary.lock().state = PrState::default();
        assert_eq!(sent.locked().len(), 1);
        assert!(apply_state(&secondary, b"junk").is_err());
        assert!(apply_state(&secondary, &vec![b'x'; MAX_STATE_BYTES + 1]).is_err());
        assert_eq!(secondary.snapshot(), saved);
    }
}
