//! Exporter-level tests.
