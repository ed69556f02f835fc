//! The sessions that may hold an offer in a local ledger, readable from
//! any thread: Decide first asks whether its session has an offer, and for
//! almost every session the answer is no. Asking the writer thread for
//! that no costs a thread hop per Decide; this set answers it in place.
//!
//! The set only ever over-approximates: a (campaign, session) is added
//! when the ledger is opened with a row for it and when a reservation for
//! it is applied (before its commit, so before any caller can learn of
//! it), and never removed. A session not in the set holds no offer, so
//! "none" is the answer the writer would give; one in the set is asked as
//! before. Keys are hashed: a collision only sends a session the long way.
//! Reservations themselves still go through the writer, so this changes
//! no money rule.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{PoisonError, RwLock};

/// See the module docs.
#[derive(Debug, Default)]
pub struct MaybeOffered {
    keys: RwLock<HashSet<u64>>,
}

fn key(campaign: &str, session_id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one((campaign, session_id))
}

impl MaybeOffered {
    /// Notes that the session may hold an offer from now on.
    pub fn insert(&self, campaign: &str, session_id: &str) {
        let k = key(campaign, session_id);
        if !self.may_hold(campaign, session_id) {
            self.keys
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(k);
        }
    }

    /// False: the session holds no offer (in this ledger).
    pub fn may_hold(&self, campaign: &str, session_id: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key(campaign, session_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_inserted_per_campaign() {
        let s = MaybeOffered::default();
        assert!(!s.may_hold("c", "s1"));
        s.insert("c", "s1");
        assert!(s.may_hold("c", "s1"));
        assert!(!s.may_hold("d", "s1"));
        assert!(!s.may_hold("c", "s2"));
    }
}
