//! STUN (placeholder; filled by the foundation issue).
