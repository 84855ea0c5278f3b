//! The kernel/user contract: `#[repr(C)]` types and names shared by the eBPF
//! programs (`tracer-ebpf`) and the agent (`tracer`). No implicit padding; each
//! type's size is asserted at compile time so both sides agree byte for byte.
#![no_std]

pub mod config;
pub mod event;
pub mod go;
pub mod maps;
pub mod process;
pub mod tls;
