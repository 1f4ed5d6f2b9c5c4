//! The tokio driver (placeholder; filled by the foundation issue).
