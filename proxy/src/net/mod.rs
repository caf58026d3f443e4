//! Socket-level pieces: original destination, protocol detection, replay of
//! detected bytes, and opaque TCP forwarding.

pub mod detect;
pub mod inbound_source;
pub mod orig_dst;
pub mod rewind;
pub mod tcp;
