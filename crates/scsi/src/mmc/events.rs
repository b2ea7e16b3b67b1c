//! GET EVENT STATUS NOTIFICATION, polled (MMC-6 6.7), and MECHANISM STATUS (MMC-6 6.11).
//! Only the media event class is supported: it is what an initiator polls to see a disc
//! come and go (Linux `sr` does so every few seconds).

use crate::state::medium::MediaEvent;

/// Notification class 4 (media) in the request bitmap and the SUPPORTED EVENT CLASSES.
const MEDIA_CLASS_BIT: u8 = 1 << 4;
const MEDIA_CLASS: u8 = 4;
/// NEA: no event of a requested (supported) class is available.
const NEA: u8 = 0x80;

/// Whether GET EVENT STATUS NOTIFICATION asks for the media class, which is the only one
/// that consumes an event.
pub fn wants_media(classes: u8) -> bool {
    classes & MEDIA_CLASS_BIT != 0
}

/// The response: the 4-byte header, and with the media class requested a media event
/// descriptor (MMC-6 table 151) with the event and whether a disc is in the closed tray.
/// EVENT DESCRIPTOR LENGTH counts the bytes after the header.
pub fn event_status(classes: u8, event: MediaEvent, present: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0, 0, 0, MEDIA_CLASS_BIT]);
    if !wants_media(classes) {
        out[2] = NEA;
        return;
    }
    out[2] = MEDIA_CLASS;
    // MEDIA STATUS: bit 1 media present; bit 0 tray open (an ejected tray stays open).
    let status = if present { 0x02 } else { 0x01 };
    out.extend_from_slice(&[event as u8, status, 0, 0]);
    out[0..2].copy_from_slice(&4u16.to_be_bytes());
}

/// MECHANISM STATUS: no changer, mechanism idle, the door open when the tray is ejected,
/// and no slot tables.
pub fn mechanism_status(present: bool, out: &mut Vec<u8>) {
    out.clear();
    out.resize(8, 0);
    if !present {
        out[1] = 0x10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_event_and_no_event_available() {
        let mut out = Vec::new();
        event_status(0x10, MediaEvent::NewMedia, true, &mut out);
        assert_eq!(out, [0, 4, 4, 0x10, 2, 2, 0, 0]);
        event_status(0x12, MediaEvent::MediaRemoval, false, &mut out);
        assert_eq!(&out[4..6], &[3, 1]);
        event_status(0x02, MediaEvent::NoChange, true, &mut out);
        assert_eq!(out, [0, 0, 0x80, 0x10]);
        mechanism_status(false, &mut out);
        assert_eq!(out, [0, 0x10, 0, 0, 0, 0, 0, 0]);
    }
}
