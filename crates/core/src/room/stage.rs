//! The stage actions: hands, invitations, stepping down, mutes, moderation, co-hosts, the pin,
//! reactions and chat. Each checks everything first and changes the room only once it is sure,
//! so a refusal leaves the room and its output queue as they were.
//!
//! Checks run in one order, so the same input always gets the same refusal: is the actor in
//! the room (`NotIn`), signed in (`SignInRequired`, the host excepted), in a role that may do
//! this (`NotAllowed`); then is the target in (`NoSuchParticipant`) and in a state this applies
//! to (`InvalidTarget`); then is there a seat (`StageFull`), is the content valid, and is the
//! actor within its rate.

use std::time::Instant;

use confab_proto::{ChatId, ChatMessage, ParticipantId, ParticipantInfo, Role, ServerMsg, UserId};

use super::{Room, forwards};
use crate::chat::{clean_chat, clean_link, is_reaction};
use crate::{MediaChange, Output, RoomError};

impl Room {
    /// The actor `who`: in the room, and signed in unless it is the host.
    fn actor(&self, who: ParticipantId) -> Result<&ParticipantInfo, RoomError> {
        let p = self.roster.get(who).ok_or(RoomError::NotIn)?;
        if p.user.is_none() && p.role != Role::Host {
            return Err(RoomError::SignInRequired);
        }
        Ok(p)
    }

    /// The actor `who` as a moderator (host or co-host); its role.
    fn moderator(&self, who: ParticipantId) -> Result<Role, RoomError> {
        let role = self.actor(who)?.role;
        if role.moderates() {
            Ok(role)
        } else {
            Err(RoomError::NotAllowed)
        }
    }

    fn target(&self, target: ParticipantId) -> Result<&ParticipantInfo, RoomError> {
        self.roster.get(target).ok_or(RoomError::NoSuchParticipant)
    }

    fn speaker_seat_free(&self) -> bool {
        self.roster.count(Role::Speaker) < self.config.max_speakers
    }

    /// Applies `change` to `who`'s entry and tells the world exactly what changed: the new entry
    /// to everyone, the hand queue if a hand went up or down, and the media plane if its audio
    /// starts or stops being forwarded. Leaving the audience drops a pending invitation.
    fn update(&mut self, who: ParticipantId, change: impl FnOnce(&mut ParticipantInfo)) {
        let Some(before) = self.roster.get(who).cloned() else {
            return;
        };
        let mut after = before.clone();
        change(&mut after);
        if !after.role.speaks() {
            // Canonical at rest: a mute means nothing off the mic.
            after.muted = false;
        }
        if after.role != Role::Listener {
            after.hand_raised = false;
            self.invites.remove(&who);
        }
        if after == before {
            return;
        }
        self.roster.replace(after.clone());
        self.broadcast(
            ServerMsg::ParticipantUpdated {
                participant: after.clone(),
            },
            None,
        );
        if before.hand_raised != after.hand_raised {
            if after.hand_raised {
                self.hands.push(who);
            } else {
                self.hands.retain(|h| *h != who);
            }
            self.broadcast_hands();
        }
        match (forwards(&before), forwards(&after)) {
            (false, true) => self.media(MediaChange::StartSpeaking(who)),
            (true, false) => self.media(MediaChange::StopSpeaking(who)),
            _ => {}
        }
    }

    pub(super) fn raise_hand(&mut self, who: ParticipantId, up: bool) -> Result<(), RoomError> {
        if self.actor(who)?.role != Role::Listener {
            return Err(RoomError::NotAllowed);
        }
        self.update(who, |p| p.hand_raised = up);
        Ok(())
    }

    pub(super) fn approve_hand(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        self.moderator(who)?;
        let t = self.target(target)?;
        if t.role != Role::Listener || !t.hand_raised {
            return Err(RoomError::InvalidTarget);
        }
        if !self.speaker_seat_free() {
            return Err(RoomError::StageFull);
        }
        self.bring_up(target);
        Ok(())
    }

    /// Makes listener `who` a speaker, arriving muted: nobody is put on air without acting.
    fn bring_up(&mut self, who: ParticipantId) {
        self.update(who, |p| {
            p.role = Role::Speaker;
            p.muted = true;
        });
    }

    pub(super) fn dismiss_hand(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        self.moderator(who)?;
        let t = self.target(target)?;
        if t.role != Role::Listener || !t.hand_raised {
            return Err(RoomError::InvalidTarget);
        }
        self.update(target, |p| p.hand_raised = false);
        Ok(())
    }

    pub(super) fn invite(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        self.moderator(who)?;
        let t = self.target(target)?;
        if t.role != Role::Listener || t.user.is_none() {
            return Err(RoomError::InvalidTarget);
        }
        if !self.speaker_seat_free() {
            return Err(RoomError::StageFull);
        }
        if self.invites.contains_key(&target) {
            // Already invited (by anyone): one invitation is enough.
            return Ok(());
        }
        self.invites.insert(target, who);
        self.send(target, ServerMsg::Invited { by: who });
        Ok(())
    }

    pub(super) fn accept_invite(&mut self, who: ParticipantId) -> Result<(), RoomError> {
        self.actor(who)?;
        if !self.invites.contains_key(&who) {
            return Err(RoomError::NoInvite);
        }
        if !self.speaker_seat_free() {
            // The invitation stays: a seat may free up.
            return Err(RoomError::StageFull);
        }
        self.bring_up(who);
        Ok(())
    }

    pub(super) fn decline_invite(&mut self, who: ParticipantId) -> Result<(), RoomError> {
        self.actor(who)?;
        if self.invites.remove(&who).is_none() {
            return Err(RoomError::NoInvite);
        }
        self.broadcast(ServerMsg::InviteDeclined { participant: who }, None);
        Ok(())
    }

    pub(super) fn step_down(&mut self, who: ParticipantId) -> Result<(), RoomError> {
        match self.actor(who)?.role {
            Role::Speaker | Role::Cohost => {
                self.update(who, |p| p.role = Role::Listener);
                Ok(())
            }
            _ => Err(RoomError::NotAllowed),
        }
    }

    pub(super) fn mute_self(&mut self, who: ParticipantId, muted: bool) -> Result<(), RoomError> {
        if !self.actor(who)?.role.speaks() {
            return Err(RoomError::NotAllowed);
        }
        self.update(who, |p| p.muted = muted);
        Ok(())
    }

    pub(super) fn mute(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        let role = self.moderator(who)?;
        let t = self.target(target)?;
        if !t.role.speaks() {
            return Err(RoomError::InvalidTarget);
        }
        if t.role == Role::Host && role != Role::Host {
            return Err(RoomError::NotAllowed);
        }
        self.update(target, |p| p.muted = true);
        Ok(())
    }

    pub(super) fn mute_all(&mut self, who: ParticipantId) -> Result<(), RoomError> {
        let role = self.moderator(who)?;
        let targets: Vec<ParticipantId> = self
            .roster
            .stage()
            .filter(|p| p.id != who && !p.muted && (role == Role::Host || p.role != Role::Host))
            .map(|p| p.id)
            .collect();
        for target in targets {
            self.update(target, |p| p.muted = true);
        }
        Ok(())
    }

    /// [`Input::Remove`](crate::Input) and, with `block`, [`Input::Block`](crate::Input).
    pub(super) fn remove(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
        now: Instant,
        block: bool,
    ) -> Result<(), RoomError> {
        let role = self.moderator(who)?;
        let t = self.target(target)?;
        if target == who {
            // Leaving is how one removes oneself.
            return Err(RoomError::InvalidTarget);
        }
        if t.role == Role::Host || (t.role == Role::Cohost && role != Role::Host) {
            return Err(RoomError::NotAllowed);
        }
        let user = t.user.clone();
        // The notice goes first, while the target still receives.
        self.send(
            target,
            ServerMsg::Removed {
                space: self.id.clone(),
                blocked: block,
            },
        );
        self.removed.insert(target);
        if let Some(user) = &user {
            self.removed_users.insert(user.clone());
        }
        self.depart(target, now);
        if block && let Some(user) = user {
            self.block_user(user);
        }
        Ok(())
    }

    fn block_user(&mut self, user: UserId) {
        if self.blocked.insert(user.clone()) {
            self.outputs.push_back(Output::Blocked { user });
        }
    }

    pub(super) fn make_cohost(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        if self.actor(who)?.role != Role::Host {
            return Err(RoomError::NotAllowed);
        }
        let t = self.target(target)?;
        if !matches!(t.role, Role::Speaker | Role::Listener) || t.user.is_none() {
            return Err(RoomError::InvalidTarget);
        }
        if self.roster.count(Role::Cohost) >= self.config.max_cohosts {
            return Err(RoomError::StageFull);
        }
        let from_audience = t.role == Role::Listener;
        self.update(target, |p| {
            p.role = Role::Cohost;
            if from_audience {
                p.muted = true;
            }
        });
        Ok(())
    }

    pub(super) fn unmake_cohost(
        &mut self,
        who: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), RoomError> {
        if self.actor(who)?.role != Role::Host {
            return Err(RoomError::NotAllowed);
        }
        if self.target(target)?.role != Role::Cohost {
            return Err(RoomError::InvalidTarget);
        }
        let role = if self.speaker_seat_free() {
            Role::Speaker
        } else {
            Role::Listener
        };
        self.update(target, |p| p.role = role);
        Ok(())
    }

    pub(super) fn pin(&mut self, who: ParticipantId, link: Option<&str>) -> Result<(), RoomError> {
        self.moderator(who)?;
        let link = link.map(clean_link).transpose()?;
        if link == self.pinned {
            return Ok(());
        }
        self.pinned = link.clone();
        self.broadcast(ServerMsg::Pinned { link }, None);
        Ok(())
    }

    /// The account `who` acts as, which its rate limits are kept under. Only a signed-out host
    /// acts without one, and there is one host: `None` is the host's key.
    fn rate_key(&self, who: ParticipantId) -> Result<Option<UserId>, RoomError> {
        Ok(self.actor(who)?.user.clone())
    }

    pub(super) fn react(
        &mut self,
        who: ParticipantId,
        emoji: &str,
        now: Instant,
    ) -> Result<(), RoomError> {
        let key = self.rate_key(who)?;
        if !is_reaction(emoji) {
            return Err(RoomError::InvalidReaction);
        }
        let tat = self
            .config
            .reaction_limit
            .admit(self.reaction_rate.get(&key).copied(), now)
            .ok_or(RoomError::RateLimited)?;
        self.reaction_rate.insert(key, tat);
        self.broadcast(
            ServerMsg::Reaction {
                participant: who,
                emoji: emoji.to_owned(),
            },
            None,
        );
        Ok(())
    }

    pub(super) fn send_chat(
        &mut self,
        who: ParticipantId,
        text: &str,
        now: Instant,
    ) -> Result<(), RoomError> {
        let key = self.rate_key(who)?;
        let text = clean_chat(text)?;
        let tat = self
            .config
            .chat_limit
            .admit(self.chat_rate.get(&key).copied(), now)
            .ok_or(RoomError::RateLimited)?;
        self.chat_rate.insert(key, tat);
        let id = self.chat.next_id();
        self.chat.push(who);
        let at_ms = now.saturating_duration_since(self.opened).as_millis();
        let message = ChatMessage {
            id,
            author: who,
            text,
            at_ms: u64::try_from(at_ms).unwrap_or(u64::MAX),
        };
        self.broadcast(ServerMsg::Chat { message }, None);
        Ok(())
    }

    pub(super) fn delete_chat(&mut self, who: ParticipantId, id: ChatId) -> Result<(), RoomError> {
        let role = self.actor(who)?.role;
        let author = self.chat.author(id).ok_or(RoomError::NoSuchMessage)?;
        if author != who && !role.moderates() {
            return Err(RoomError::NotAllowed);
        }
        self.chat.forget(id);
        self.broadcast(ServerMsg::ChatDeleted { id }, None);
        Ok(())
    }
}
