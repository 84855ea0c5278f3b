//! Where records leave the agent. For now: lines on stdout (JSON or text).

pub mod lines;
