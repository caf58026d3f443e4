//! Socket-level pieces: original destination, protocol detection, replay of
//! detected bytes, opaque TCP forwarding and the self-connection guard.

pub mod detect;
pub mod inbound_source;
pub mod orig_dst;
pub mod rewind;
pub mod self_guard;
pub mod tcp;
