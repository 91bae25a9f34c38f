//! Who is in a room: the host's seat and the listeners in join order.

use std::collections::BTreeMap;

use confab_proto::{ParticipantId, ParticipantInfo, Role};

/// The people in a room. The host's seat is separate from the listeners so "at most one host"
/// holds by construction; listeners are kept by join sequence so the listing order is stable.
/// Ordered maps only: lookups are logarithmic and nothing depends on a hasher's seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Roster {
    host: Option<ParticipantInfo>,
    listeners: BTreeMap<u64, ParticipantInfo>,
    seq_of: BTreeMap<ParticipantId, u64>,
    next_seq: u64,
}

impl Roster {
    pub(crate) fn host(&self) -> Option<&ParticipantInfo> {
        self.host.as_ref()
    }

    pub(crate) fn role_of(&self, who: ParticipantId) -> Option<Role> {
        if self.host.as_ref().is_some_and(|h| h.id == who) {
            Some(Role::Host)
        } else if self.seq_of.contains_key(&who) {
            Some(Role::Listener)
        } else {
            None
        }
    }

    pub(crate) fn contains(&self, who: ParticipantId) -> bool {
        self.role_of(who).is_some()
    }

    pub(crate) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.listeners.len() + usize::from(self.host.is_some())
    }

    /// Host first, then listeners in join order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ParticipantInfo> + '_ {
        self.host.iter().chain(self.listeners.values())
    }

    /// Seats `info` as the host. The caller has checked the seat is empty and `info.id` is not in.
    pub(crate) fn seat_host(&mut self, info: ParticipantInfo) {
        debug_assert!(self.host.is_none() && !self.contains(info.id));
        self.host = Some(info);
    }

    pub(crate) fn unseat_host(&mut self) -> Option<ParticipantInfo> {
        self.host.take()
    }

    /// Adds a listener. The caller has checked `info.id` is not in.
    pub(crate) fn add_listener(&mut self, info: ParticipantInfo) {
        debug_assert!(!self.contains(info.id));
        let seq = self.next_seq;
        // 2^64 joins cannot happen in one process's life; saturating keeps this panic-free.
        self.next_seq = self.next_seq.saturating_add(1);
        self.seq_of.insert(info.id, seq);
        self.listeners.insert(seq, info);
    }

    pub(crate) fn remove_listener(&mut self, who: ParticipantId) -> Option<ParticipantInfo> {
        let seq = self.seq_of.remove(&who)?;
        self.listeners.remove(&seq)
    }

    /// Empties the room, returning everyone in listing order.
    pub(crate) fn clear(&mut self) -> Vec<ParticipantInfo> {
        self.seq_of.clear();
        let listeners = std::mem::take(&mut self.listeners);
        self.host
            .take()
            .into_iter()
            .chain(listeners.into_values())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, role: Role) -> ParticipantInfo {
        ParticipantInfo {
            id: ParticipantId(id),
            name: format!("p{id}"),
            role,
        }
    }

    fn ids(roster: &Roster) -> Vec<u64> {
        roster.iter().map(|p| p.id.0).collect()
    }

    #[test]
    fn host_first_then_join_order_not_id_order() {
        let mut roster = Roster::default();
        for id in [9, 3, 7] {
            roster.add_listener(info(id, Role::Listener));
        }
        roster.seat_host(info(5, Role::Host));
        assert_eq!(ids(&roster), [5, 9, 3, 7]);
        assert_eq!(
            roster.remove_listener(ParticipantId(3)).map(|p| p.id.0),
            Some(3)
        );
        roster.add_listener(info(3, Role::Listener));
        assert_eq!(ids(&roster), [5, 9, 7, 3]);
        assert_eq!((roster.len(), roster.listener_count()), (4, 3));
    }

    #[test]
    fn roles_removal_and_clear() {
        let mut roster = Roster::default();
        roster.seat_host(info(1, Role::Host));
        roster.add_listener(info(2, Role::Listener));
        assert_eq!(roster.role_of(ParticipantId(1)), Some(Role::Host));
        assert_eq!(roster.role_of(ParticipantId(2)), Some(Role::Listener));
        assert_eq!(roster.role_of(ParticipantId(3)), None);
        // The host is not a listener: removing it as one does nothing.
        assert_eq!(roster.remove_listener(ParticipantId(1)), None);
        assert_eq!(roster.remove_listener(ParticipantId(3)), None);
        assert_eq!(roster.unseat_host().map(|p| p.id.0), Some(1));
        assert_eq!(roster.host(), None);
        roster.seat_host(info(4, Role::Host));
        let everyone: Vec<u64> = roster.clear().iter().map(|p| p.id.0).collect();
        assert_eq!(everyone, [4, 2]);
        assert_eq!(
            roster,
            Roster {
                next_seq: 1,
                ..Roster::default()
            }
        );
    }
}
