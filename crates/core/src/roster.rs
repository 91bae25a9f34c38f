//! Who is in a room, in listing order: the host, co-hosts, speakers, then listeners, each group
//! in join order.

use std::collections::BTreeMap;

use confab_proto::{ParticipantId, ParticipantInfo, Role, UserId};

/// The people in a room, keyed by `(role, join sequence)` so iterating the map *is* the listing
/// order and a role change keeps a person's place within the new group. Ordered maps only:
/// lookups are logarithmic and nothing depends on a hasher's seed.
///
/// The roster enforces no limits and no "one host": the room checks those before it calls in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Roster {
    members: BTreeMap<(Role, u64), ParticipantInfo>,
    key_of: BTreeMap<ParticipantId, (Role, u64)>,
    next_seq: u64,
}

impl Roster {
    pub(crate) fn get(&self, who: ParticipantId) -> Option<&ParticipantInfo> {
        self.key_of.get(&who).and_then(|key| self.members.get(key))
    }

    pub(crate) fn role_of(&self, who: ParticipantId) -> Option<Role> {
        self.key_of.get(&who).map(|(role, _)| *role)
    }

    pub(crate) fn contains(&self, who: ParticipantId) -> bool {
        self.key_of.contains_key(&who)
    }

    /// The host, if seated. Hosts sort first, so this is the first entry.
    pub(crate) fn host(&self) -> Option<&ParticipantInfo> {
        self.members
            .values()
            .next()
            .filter(|p| p.role == Role::Host)
    }

    /// Whoever is signed in as `user`.
    pub(crate) fn with_user(&self, user: &UserId) -> Option<&ParticipantInfo> {
        self.members
            .values()
            .find(|p| p.user.as_ref() == Some(user))
    }

    /// How many have `role`. Cheap for the stage roles (a few people); listeners are counted
    /// as everyone minus the stage.
    pub(crate) fn count(&self, role: Role) -> usize {
        if role == Role::Listener {
            return self.len() - self.stage().count();
        }
        self.members.range((role, 0)..=(role, u64::MAX)).count()
    }

    pub(crate) fn listener_count(&self) -> usize {
        self.count(Role::Listener)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Host, co-hosts, speakers, then listeners; join order within each group.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ParticipantInfo> + '_ {
        self.members.values()
    }

    /// Everyone on the mic (host, co-hosts, speakers), in listing order.
    pub(crate) fn stage(&self) -> impl Iterator<Item = &ParticipantInfo> + '_ {
        self.members
            .values()
            .take_while(|p| p.role != Role::Listener)
    }

    /// Adds `info` at the end of its role's group. The caller has checked `info.id` is not in.
    pub(crate) fn add(&mut self, info: ParticipantInfo) {
        debug_assert!(!self.contains(info.id));
        let key = (info.role, self.next_seq);
        // 2^64 joins cannot happen in one process's life; saturating keeps this panic-free.
        self.next_seq = self.next_seq.saturating_add(1);
        self.key_of.insert(info.id, key);
        self.members.insert(key, info);
    }

    /// Replaces the entry with `info.id`, moving it to its new role's group (keeping its join
    /// order there). Does nothing if nobody has that id.
    pub(crate) fn replace(&mut self, info: ParticipantInfo) {
        let Some((old_role, seq)) = self.key_of.get(&info.id).copied() else {
            return;
        };
        self.members.remove(&(old_role, seq));
        let key = (info.role, seq);
        self.key_of.insert(info.id, key);
        self.members.insert(key, info);
    }

    pub(crate) fn remove(&mut self, who: ParticipantId) -> Option<ParticipantInfo> {
        let key = self.key_of.remove(&who)?;
        self.members.remove(&key)
    }

    /// Empties the room, returning everyone in listing order.
    pub(crate) fn clear(&mut self) -> Vec<ParticipantInfo> {
        self.key_of.clear();
        std::mem::take(&mut self.members).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, role: Role) -> ParticipantInfo {
        ParticipantInfo::new(ParticipantId(id), format!("p{id}"), role)
    }

    fn ids(roster: &Roster) -> Vec<u64> {
        roster.iter().map(|p| p.id.0).collect()
    }

    #[test]
    fn host_then_cohosts_speakers_listeners_each_in_join_order() {
        let mut roster = Roster::default();
        for id in [9, 3, 7] {
            roster.add(info(id, Role::Listener));
        }
        roster.add(info(5, Role::Host));
        assert_eq!(ids(&roster), [5, 9, 3, 7]);
        // 7 goes up to speak, then 9: speakers are listed by join order, not promotion order.
        roster.replace(info(7, Role::Speaker));
        roster.replace(info(9, Role::Speaker));
        roster.replace(info(3, Role::Cohost));
        assert_eq!(ids(&roster), [5, 3, 9, 7]);
        assert_eq!(roster.stage().count(), 4);
        roster.replace(info(9, Role::Listener));
        assert_eq!(ids(&roster), [5, 3, 7, 9]);
        assert_eq!(
            [Role::Host, Role::Cohost, Role::Speaker, Role::Listener].map(|r| roster.count(r)),
            [1, 1, 1, 1]
        );
        assert_eq!(roster.remove(ParticipantId(3)).map(|p| p.id.0), Some(3));
        roster.add(info(3, Role::Listener));
        assert_eq!(ids(&roster), [5, 7, 9, 3]);
        assert_eq!((roster.len(), roster.listener_count()), (4, 2));
    }

    #[test]
    fn lookups_removal_and_clear() {
        let mut roster = Roster::default();
        roster.add(info(1, Role::Host));
        let mut bob = info(2, Role::Listener);
        bob.user = Some(UserId::new("bob").unwrap());
        roster.add(bob.clone());
        assert_eq!(roster.role_of(ParticipantId(1)), Some(Role::Host));
        assert_eq!(roster.host().map(|p| p.id.0), Some(1));
        assert_eq!(roster.get(ParticipantId(2)), Some(&bob));
        assert_eq!(roster.with_user(&UserId::new("bob").unwrap()), Some(&bob));
        assert_eq!(roster.with_user(&UserId::new("cy").unwrap()), None);
        assert_eq!(roster.role_of(ParticipantId(3)), None);
        roster.replace(info(3, Role::Speaker)); // nobody with that id: nothing happens
        assert_eq!(roster.len(), 2);
        assert_eq!(roster.remove(ParticipantId(3)), None);
        assert_eq!(roster.remove(ParticipantId(1)).map(|p| p.id.0), Some(1));
        assert_eq!(roster.host(), None);
        roster.add(info(4, Role::Host));
        let everyone: Vec<u64> = roster.clear().iter().map(|p| p.id.0).collect();
        assert_eq!(everyone, [4, 2]);
        assert_eq!(
            roster,
            Roster {
                next_seq: 3,
                ..Roster::default()
            }
        );
    }
}
