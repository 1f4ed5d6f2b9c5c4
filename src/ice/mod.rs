//! ICE: Interactive Connectivity Establishment (RFC 8445), with trickle
//! (RFC 8838) and consent freshness (RFC 7675).
//!
//! (Module doc completed with the agent.)

pub mod candidate;

pub use candidate::{Address, Candidate, CandidateError, CandidateKind};
pub mod agent;

pub use agent::{
    Agent, AgentConfig, CandidatePair, ConnectionState, Credentials, FailureReason, IceError,
    IceEvent, LocalCandidate, PairState,
};
