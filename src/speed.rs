//! `rtclab speed` (placeholder; filled by the foundation issue).
