//! The deterministic network simulator (placeholder; filled by the foundation issue).
