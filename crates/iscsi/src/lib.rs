//! iSCSI target (RFC 7143).
//!
//! Pure parts — the PDU codec ([`pdu`]), text key=value handling ([`text`]), the login and
//! negotiation state machine ([`login`]) and CHAP ([`login::chap`]) — do no I/O and are easy to
//! fuzz. The runtime ([`server`]) owns sockets: one task per connection, mapping iSCSI tasks
//! onto [`esos_scsi::LunMap::submit`].

pub mod digest;
#[doc(hidden)]
pub mod fuzzing;
pub mod login;
pub mod params;
pub mod pdu;
pub mod server;
pub mod text;

mod conn;
mod session;
