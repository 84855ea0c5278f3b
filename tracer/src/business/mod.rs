//! Business view: per-transaction KPIs, Apdex and SLO burn rates (issue 16).
//! Pure computations fed with explicit timestamps so tests drive time; wiring
//! into the pipeline, config, API and exporters is not done yet.

pub mod apdex;
pub mod config;
pub mod matcher;
pub mod slo;

pub use self::{
    config::BusinessConfig,
    matcher::{Matcher, Transaction},
};
