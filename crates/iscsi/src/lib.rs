//! iSCSI target (RFC 7143).
//!
//! Pure parts — the PDU codec ([`pdu`]), text key=value handling ([`text`]), the login and
//! negotiation state machine ([`login`]) and CHAP ([`login::chap`]) — do no I/O and are easy to
//! fuzz. The runtime ([`server`]) owns sockets: it accepts connections, each served by
//! `conn` (login, then a reader and a writer task in full feature phase) which maps iSCSI
//! tasks onto [`esos_scsi::LunMap::submit`]; sessions live in one table (`session`).

pub mod digest;
#[doc(hidden)]
pub mod fuzzing;
pub mod login;
pub mod params;
pub mod pdu;
pub mod server;
pub mod text;

mod config;
mod conn;
mod session;
mod shared;
