//! From the ring buffer to typed events: `reader` drains the ring buffer
//! (AsyncFd wakeups plus a short timer, since the probes submit without
//! wakeups), `decode` turns records into [`event::Event`]s.

pub mod decode;
pub mod event;
pub mod reader;
