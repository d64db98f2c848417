//! Where a run's files end up and how they get there exactly once: the destination and its areas
//! ([`destination`]), a batch's way from local files to published ones as types ([`batch`]), the
//! ledger of commits ([`ledger`]), the lease that orders runs ([`lease`]),
//! the recovery steps of the protocol ([`protocol`]), and the crash points that test it
//! ([`crash_point`]). `docs/commit-protocol.md` tells the protocol step by step.

pub mod batch;
pub mod crash_point;
pub mod destination;
pub mod lease;
pub mod ledger;
pub mod protocol;
