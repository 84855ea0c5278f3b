//! From the ring buffer to typed events: `reader` drains the ring buffer
//! (AsyncFd wakeups plus a short timer, since the probes submit without
//! wakeups), `decode` turns records into [`event::Event`]s; `process`
//! decodes exec/fork records, which go to the identity stage's store.

pub mod decode;
pub mod event;
pub mod process;
pub mod reader;
