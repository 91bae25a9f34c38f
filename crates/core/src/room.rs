//! The room of one space: who is in it, who is on the mic, when it ends. The stage actions
//! (hands, invitations, mutes, moderation, reactions, chat, pins) are in [`stage`].

mod stage;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use confab_proto::{
    EndReason, ParticipantId, ParticipantInfo, Role, ServerMsg, SpaceId, SpaceInfo, SpaceState,
    UserId,
};

use crate::chat::ChatLog;
use crate::name::clean_name;
use crate::rate::RateLimit;
use crate::roster::Roster;
use crate::{Input, MediaChange, Output, RoomConfig, RoomError};

/// One live space as a state machine: feed it [`Input`]s, drain its [`Output`]s.
///
/// Every method that changes the room validates first and mutates after, so a refused input
/// leaves the room (and its output queue) exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    id: SpaceId,
    title: String,
    host_name: String,
    config: RoomConfig,
    /// When the room opened (or was restored): chat times are counted from here.
    opened: Instant,
    roster: Roster,
    /// The host's account, carried into the seat on every resume.
    host_user: Option<UserId>,
    /// Accounts blocked from the host's spaces.
    blocked: BTreeSet<UserId>,
    /// Connections and accounts removed from this space: they may not come back.
    removed: BTreeSet<ParticipantId>,
    removed_users: BTreeSet<UserId>,
    /// Raised hands, oldest first. Mirrors `hand_raised` in the roster.
    hands: Vec<ParticipantId>,
    /// Pending invitations to speak: invitee to inviter. Invitees are listeners.
    invites: BTreeMap<ParticipantId, ParticipantId>,
    pinned: Option<String>,
    chat: ChatLog,
    /// Rate-limit state per account (a GCRA arrival time); idle entries are dropped on leave.
    reaction_rate: BTreeMap<Option<UserId>, Instant>,
    chat_rate: BTreeMap<Option<UserId>, Instant>,
    /// `Some` once the room has ended.
    ended: Option<EndReason>,
    /// When the empty host seat gives up. Set only while the room is live and the host seat is
    /// empty; `None` then too if `host_grace` reaches past what an `Instant` can hold.
    host_deadline: Option<Instant>,
    /// Listeners' comings and goings not announced yet (see [`RosterNews`]).
    news: RosterNews,
    outputs: VecDeque<Output>,
}

/// Roster news gathered for one tick ([`RoomConfig::roster_tick`]) so that a join storm costs
/// one broadcast per tick instead of one per join (N² messages for N joins). Announced as
/// [`ServerMsg::Participants`]: clients apply `left`, then `joined`, replacing by id, so the
/// news may repeat what a joiner's snapshot already holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RosterNews {
    /// Entries to add or replace, in join order.
    joined: Vec<ParticipantInfo>,
    /// Ids to drop. Never undone by a later join in the same tick: someone who joined in this
    /// tick and left again may be in a snapshot a later joiner received.
    left: Vec<ParticipantId>,
    /// When the news goes out; `None` while there is none.
    due: Option<Instant>,
}

impl Room {
    /// A new live space whose host `host` is connected. `id`, `title` and `host_name` are taken
    /// as given: checking them is the server's job. The first outputs start the host's media.
    pub fn new(
        id: SpaceId,
        title: String,
        host: ParticipantId,
        host_name: String,
        config: RoomConfig,
        now: Instant,
    ) -> Room {
        let mut room = Room::empty(id, title, host_name, config, now);
        let name = room.host_name.clone();
        room.seat_host(ParticipantInfo::new(host, name, Role::Host));
        room
    }

    /// A live space reloaded after a server restart: nobody is connected, and the host has
    /// `host_grace` from `now` to [`Input::Resume`], else the room ends with
    /// [`EndReason::HostGone`].
    pub fn restored(
        id: SpaceId,
        title: String,
        host_name: String,
        config: RoomConfig,
        now: Instant,
    ) -> Room {
        let mut room = Room::empty(id, title, host_name, config, now);
        room.host_deadline = now.checked_add(config.host_grace);
        room
    }

    /// The host's account, set right after [`Room::new`] or [`Room::restored`] (before any
    /// input). Shown on the host's entry now and after every resume.
    pub fn with_host_user(mut self, user: UserId) -> Room {
        if let Some(host) = self.roster.host().cloned() {
            self.roster.replace(ParticipantInfo {
                user: Some(user.clone()),
                ..host
            });
        }
        self.host_user = Some(user);
        self
    }

    /// The accounts the host has blocked, as the server stored them; set right after
    /// [`Room::new`] or [`Room::restored`]. They cannot join.
    pub fn with_blocked(mut self, users: impl IntoIterator<Item = UserId>) -> Room {
        self.blocked.extend(users);
        self
    }

    fn empty(
        id: SpaceId,
        title: String,
        host_name: String,
        config: RoomConfig,
        now: Instant,
    ) -> Room {
        Room {
            id,
            title,
            host_name,
            config,
            opened: now,
            roster: Roster::default(),
            host_user: None,
            blocked: BTreeSet::new(),
            removed: BTreeSet::new(),
            removed_users: BTreeSet::new(),
            hands: Vec::new(),
            invites: BTreeMap::new(),
            pinned: None,
            chat: ChatLog::default(),
            reaction_rate: BTreeMap::new(),
            chat_rate: BTreeMap::new(),
            ended: None,
            host_deadline: None,
            news: RosterNews::default(),
            outputs: VecDeque::new(),
        }
    }

    /// Applies one input. A refused input returns `Err` and leaves the room state and the
    /// output queue exactly unchanged. Timers fire only in [`Room::handle_timeout`], never
    /// here: a `Resume` that arrives after the deadline but before `handle_timeout` is accepted.
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<(), RoomError> {
        if self.ended.is_some() {
            return Err(RoomError::Ended);
        }
        match input {
            Input::Join { who, name, user } => self.join(who, &name, user, now),
            Input::Leave { who } => self.leave(who, now, false),
            Input::Disconnected { who } => self.leave(who, now, true),
            Input::Resume { who, name } => self.resume(who, &name, now),
            // Only the host may end, and the host needs no account: so the refusal says
            // "not allowed" whoever else asks, signed in or not.
            Input::End { who } => match self.roster.role_of(who) {
                Some(Role::Host) => {
                    self.end(EndReason::HostEnded);
                    Ok(())
                }
                Some(_) => Err(RoomError::NotAllowed),
                None => Err(RoomError::NotIn),
            },
            Input::Shutdown => {
                self.end(EndReason::ServerShutdown);
                Ok(())
            }
            Input::RaiseHand { who } => self.raise_hand(who, true),
            Input::LowerHand { who } => self.raise_hand(who, false),
            Input::ApproveHand { who, target } => self.approve_hand(who, target),
            Input::DismissHand { who, target } => self.dismiss_hand(who, target),
            Input::Invite { who, target } => self.invite(who, target),
            Input::AcceptInvite { who } => self.accept_invite(who),
            Input::DeclineInvite { who } => self.decline_invite(who),
            Input::StepDown { who } => self.step_down(who),
            Input::MuteSelf { who } => self.mute_self(who, true),
            Input::UnmuteSelf { who } => self.mute_self(who, false),
            Input::Mute { who, target } => self.mute(who, target),
            Input::MuteAll { who } => self.mute_all(who),
            Input::Remove { who, target } => self.remove(who, target, now, false),
            Input::Block { who, target } => self.remove(who, target, now, true),
            Input::MakeCohost { who, target } => self.make_cohost(who, target),
            Input::UnmakeCohost { who, target } => self.unmake_cohost(who, target),
            Input::Pin { who, link } => self.pin(who, link.as_deref()),
            Input::React { who, emoji } => self.react(who, &emoji, now),
            Input::Chat { who, text } => self.send_chat(who, &text, now),
            Input::DeleteChat { who, id } => self.delete_chat(who, id),
        }
    }

    /// The next thing to do, in order. Drain after each `handle`/`handle_timeout`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Room::handle_timeout`] must next be called: when gathered roster news is due,
    /// or the host-grace deadline while the host seat is empty; else `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.news.due, self.host_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the gathered roster news goes out; `None` while none is gathered.
    pub fn news_due(&self) -> Option<Instant> {
        self.news.due
    }

    /// Announces gathered roster news that is due, and ends the room with
    /// [`EndReason::HostGone`] if the host-grace deadline is at or before `now`. Harmless to
    /// call early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.news.due.is_some_and(|due| due <= now) {
            self.flush_news();
        }
        if self.host_deadline.is_some_and(|deadline| deadline <= now) {
            self.end(EndReason::HostGone);
        }
    }

    pub fn id(&self) -> &SpaceId {
        &self.id
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The host's name as the directory lists it (fixed at creation).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The host's account, when the host signed in.
    pub fn host_user(&self) -> Option<&UserId> {
        self.host_user.as_ref()
    }

    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    pub fn state(&self) -> SpaceState {
        match self.ended {
            None => SpaceState::Live,
            Some(_) => SpaceState::Ended,
        }
    }

    /// Why the room ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended
    }

    /// The space as participants see it: host, co-hosts, speakers, then listeners, each in
    /// join order; the pinned link and the raised hands.
    pub fn info(&self) -> SpaceInfo {
        SpaceInfo {
            id: self.id.clone(),
            title: self.title.clone(),
            host: self.host_name.clone(),
            state: self.state(),
            participants: self.participants().cloned().collect(),
            pinned: self.pinned.clone(),
            hands: self.hands.clone(),
        }
    }

    pub fn listener_count(&self) -> u32 {
        u32::try_from(self.roster.listener_count()).unwrap_or(u32::MAX)
    }

    /// Everyone in the room, the host included when present.
    pub fn participant_count(&self) -> usize {
        self.roster.len()
    }

    pub fn role_of(&self, who: ParticipantId) -> Option<Role> {
        self.roster.role_of(who)
    }

    /// `who`'s entry as everyone sees it.
    pub fn participant(&self, who: ParticipantId) -> Option<&ParticipantInfo> {
        self.roster.get(who)
    }

    /// The host's connection; `None` while the host seat is empty or after the end.
    pub fn host(&self) -> Option<ParticipantId> {
        self.roster.host().map(|h| h.id)
    }

    /// Whose audio is forwarded: everyone on the mic who is not muted, in listing order.
    pub fn speakers(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.roster.stage().filter(|p| forwards(p)).map(|p| p.id)
    }

    /// Everyone on the mic (host, co-hosts, speakers), muted or not, in listing order.
    pub fn stage(&self) -> impl Iterator<Item = &ParticipantInfo> + '_ {
        self.roster.stage()
    }

    /// Host, then co-hosts, speakers and listeners, each in join order.
    pub fn participants(&self) -> impl Iterator<Item = &ParticipantInfo> + '_ {
        self.roster.iter()
    }

    /// The raised hands, oldest first.
    pub fn hands(&self) -> &[ParticipantId] {
        &self.hands
    }

    /// Who invited `who` up to speak, if an invitation is pending.
    pub fn invited_by(&self, who: ParticipantId) -> Option<ParticipantId> {
        self.invites.get(&who).copied()
    }

    pub fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// Whether `user` is blocked from the host's spaces.
    pub fn is_blocked(&self, user: &UserId) -> bool {
        self.blocked.contains(user)
    }

    /// Whether connection `who` was removed from this space.
    pub fn was_removed(&self, who: ParticipantId) -> bool {
        self.removed.contains(&who)
    }

    fn join(
        &mut self,
        who: ParticipantId,
        name: &str,
        user: Option<UserId>,
        now: Instant,
    ) -> Result<(), RoomError> {
        if self.roster.contains(who) {
            return Err(RoomError::AlreadyIn);
        }
        if let Some(user) = &user {
            if self.blocked.contains(user) {
                return Err(RoomError::Blocked);
            }
            if self.removed_users.contains(user) {
                return Err(RoomError::Removed);
            }
            // One connection per account: a block or removal then reaches all of it.
            if self.roster.with_user(user).is_some() || self.host_user.as_ref() == Some(user) {
                return Err(RoomError::AlreadyIn);
            }
        }
        if self.removed.contains(&who) {
            return Err(RoomError::Removed);
        }
        let name = clean_name(name)?;
        // Everyone but the host takes one of the other seats, on the mic or not.
        let others = self.roster.len() - usize::from(self.roster.host().is_some());
        if others >= self.config.listener_seats() {
            return Err(RoomError::Full);
        }
        let info = ParticipantInfo {
            user,
            ..ParticipantInfo::new(who, name, Role::Listener)
        };
        self.roster.add(info.clone());
        self.announce_join(info, now);
        self.media(MediaChange::StartReceiving(who));
        Ok(())
    }

    fn leave(&mut self, who: ParticipantId, now: Instant, lost: bool) -> Result<(), RoomError> {
        let role = self.roster.role_of(who).ok_or(RoomError::NotIn)?;
        if role == Role::Host && !lost {
            self.end(EndReason::HostEnded);
            return Ok(());
        }
        self.depart(who, now);
        if role == Role::Host {
            self.host_deadline = now.checked_add(self.config.host_grace);
        }
        Ok(())
    }

    /// Takes `who` (who is in) out of the room: tells the others, drops its hand and
    /// invitation, stops its media.
    fn depart(&mut self, who: ParticipantId, now: Instant) {
        let Some(info) = self.roster.remove(who) else {
            return;
        };
        self.invites.remove(&who);
        // An idle limiter is the same as none; a busy one stays, so leaving and coming back
        // does not refill it.
        for rates in [&mut self.reaction_rate, &mut self.chat_rate] {
            if rates
                .get(&info.user)
                .is_some_and(|tat| RateLimit::is_idle(*tat, now))
            {
                rates.remove(&info.user);
            }
        }
        if forwards(&info) {
            self.media(MediaChange::StopSpeaking(who));
        }
        self.media(MediaChange::StopReceiving(who));
        // After it stops receiving, so the one who left is told nothing more (a removed one
        // has had its notice).
        self.announce_leave(&info, now);
        if info.hand_raised {
            self.hands.retain(|h| *h != who);
            self.broadcast_hands();
        }
    }

    fn resume(&mut self, who: ParticipantId, name: &str, now: Instant) -> Result<(), RoomError> {
        if self.roster.host().is_some() {
            return Err(RoomError::HostPresent);
        }
        if self.roster.contains(who) {
            return Err(RoomError::AlreadyIn);
        }
        // Gone means gone, whatever token it shows.
        if self.removed.contains(&who) {
            return Err(RoomError::Removed);
        }
        let name = clean_name(name)?;
        let info = ParticipantInfo {
            user: self.host_user.clone(),
            ..ParticipantInfo::new(who, name, Role::Host)
        };
        self.host_deadline = None;
        self.announce_join(info.clone(), now);
        self.seat_host(info);
        Ok(())
    }

    /// Seats the host (unmuted) and starts its media; the caller has checked the seat is empty.
    fn seat_host(&mut self, info: ParticipantInfo) {
        let who = info.id;
        self.roster.add(info);
        self.media(MediaChange::StartSpeaking(who));
        self.media(MediaChange::StartReceiving(who));
    }

    /// Tells everyone present, releases everyone's media, then reports the end. Only called
    /// while live, so `Output::Ended` is emitted once.
    fn end(&mut self, reason: EndReason) {
        // Nobody needs to hear who came and went in a space that is over.
        self.news = RosterNews::default();
        let msg = ServerMsg::Ended {
            space: self.id.clone(),
            reason,
        };
        self.broadcast(msg, None);
        for p in self.roster.clear() {
            if forwards(&p) {
                self.media(MediaChange::StopSpeaking(p.id));
            }
            self.media(MediaChange::StopReceiving(p.id));
        }
        self.hands.clear();
        self.invites.clear();
        self.ended = Some(reason);
        self.host_deadline = None;
        self.outputs.push_back(Output::Ended { reason });
    }

    /// Queues `msg` for everyone; gathered roster news goes first, so nobody hears of a
    /// participant (an update, a chat, a hand) before hearing that it joined.
    fn broadcast(&mut self, msg: ServerMsg, except: Option<ParticipantId>) {
        self.flush_news();
        self.outputs.push_back(Output::Broadcast { msg, except });
    }

    fn send(&mut self, to: ParticipantId, msg: ServerMsg) {
        self.flush_news();
        self.outputs.push_back(Output::Send { to, msg });
    }

    /// Gathers `info`'s arrival for the next tick; the stage's (a host resuming) go out at
    /// once, since slot and media news about it follow right away.
    fn announce_join(&mut self, info: ParticipantInfo, now: Instant) {
        let stage = info.role.speaks();
        self.news.joined.retain(|p| p.id != info.id);
        self.news.joined.push(info);
        self.schedule_news(stage, now);
    }

    /// Gathers `info`'s departure for the next tick (the stage's at once).
    fn announce_leave(&mut self, info: &ParticipantInfo, now: Instant) {
        self.news.joined.retain(|p| p.id != info.id);
        if !self.news.left.contains(&info.id) {
            self.news.left.push(info.id);
        }
        self.schedule_news(info.role.speaks(), now);
    }

    /// Sends the gathered news at the end of the tick, or now if `now_please`.
    fn schedule_news(&mut self, now_please: bool, now: Instant) {
        let due = match self.news.due {
            Some(due) => Some(due),
            None => now.checked_add(self.config.roster_tick),
        };
        match due {
            Some(due) if !now_please && due > now => self.news.due = Some(due),
            _ => self.flush_news(),
        }
    }

    /// Announces the gathered roster news to everyone in the room now.
    fn flush_news(&mut self) {
        let news = std::mem::take(&mut self.news);
        let listeners = self.listener_count();
        for msg in confab_proto::participants_frames(news.joined, news.left, listeners) {
            self.outputs
                .push_back(Output::Broadcast { msg, except: None });
        }
    }

    fn broadcast_hands(&mut self) {
        let hands = self.hands.clone();
        self.broadcast(ServerMsg::HandQueue { hands }, None);
    }

    fn media(&mut self, change: MediaChange) {
        self.outputs.push_back(Output::Media(change));
    }
}

/// Whether `p`'s audio is forwarded: on the mic and not muted.
fn forwards(p: &ParticipantInfo) -> bool {
    p.role.speaks() && !p.muted
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const HOST: ParticipantId = ParticipantId(1);
    const ANN: ParticipantId = ParticipantId(2);
    const BOB: ParticipantId = ParticipantId(3);
    const DAN: ParticipantId = ParticipantId(5);
    const GRACE: Duration = Duration::from_secs(30);

    fn space() -> SpaceId {
        SpaceId::from_entropy([7; SpaceId::LEN])
    }

    /// Roster news goes out at once here; `roster_news_is_gathered_per_tick` covers the tick.
    fn config(max_participants: usize) -> RoomConfig {
        RoomConfig {
            max_participants,
            host_grace: GRACE,
            roster_tick: Duration::ZERO,
            ..RoomConfig::default()
        }
    }

    fn news(joined: &[ParticipantInfo], left: &[ParticipantId], listeners: u32) -> Output {
        Output::Broadcast {
            msg: ServerMsg::Participants {
                joined: joined.to_vec(),
                left: left.to_vec(),
                listeners,
            },
            except: None,
        }
    }

    fn drain(room: &mut Room) -> Vec<Output> {
        std::iter::from_fn(|| room.poll_output()).collect()
    }

    /// A live room with the host and the given listeners, outputs drained.
    fn room_with(t0: Instant, listeners: &[(ParticipantId, &str)]) -> Room {
        let mut room = Room::new(
            space(),
            "Morning show".into(),
            HOST,
            "ada".into(),
            config(100),
            t0,
        );
        for (who, name) in listeners {
            room.handle(join(*who, name), t0).unwrap();
        }
        drain(&mut room);
        room
    }

    fn join(who: ParticipantId, name: &str) -> Input {
        Input::Join {
            who,
            name: name.into(),
            user: None,
        }
    }

    fn resume(who: ParticipantId, name: &str) -> Input {
        Input::Resume {
            who,
            name: name.into(),
        }
    }

    fn media(change: MediaChange) -> Output {
        Output::Media(change)
    }

    fn ended_msg(reason: EndReason) -> Output {
        Output::Broadcast {
            msg: ServerMsg::Ended {
                space: space(),
                reason,
            },
            except: None,
        }
    }

    fn listener(id: ParticipantId, name: &str) -> ParticipantInfo {
        ParticipantInfo::new(id, name.into(), Role::Listener)
    }

    /// Asserts `input` is refused with `err` and changes nothing, including queued outputs.
    fn assert_refused(room: &mut Room, input: Input, now: Instant, err: RoomError) {
        let before = room.clone();
        let (info, listeners) = (room.info(), room.listener_count());
        assert_eq!(room.handle(input.clone(), now), Err(err), "{input:?}");
        assert_eq!(room.info(), info, "{input:?}");
        assert_eq!(room.listener_count(), listeners, "{input:?}");
        assert_eq!(*room, before, "{input:?} changed the room");
    }

    fn ids(room: &Room) -> Vec<ParticipantId> {
        room.participants().map(|p| p.id).collect()
    }

    #[test]
    fn a_new_room_seats_the_host_speaking_and_receiving() {
        let t0 = Instant::now();
        let mut room = Room::new(
            space(),
            "Morning show".into(),
            HOST,
            "ada".into(),
            config(100),
            t0,
        );
        assert_eq!(
            drain(&mut room),
            [
                media(MediaChange::StartSpeaking(HOST)),
                media(MediaChange::StartReceiving(HOST))
            ]
        );
        assert_eq!(room.state(), SpaceState::Live);
        assert_eq!(
            (room.id(), room.title(), room.host_name()),
            (&space(), "Morning show", "ada")
        );
        assert_eq!(room.host(), Some(HOST));
        assert_eq!(room.role_of(HOST), Some(Role::Host));
        assert_eq!(room.speakers().collect::<Vec<_>>(), [HOST]);
        assert_eq!((room.participant_count(), room.listener_count()), (1, 0));
        assert_eq!(room.poll_timeout(), None);
        assert_eq!(room.end_reason(), None);
        let info = room.info();
        assert_eq!(info.host, "ada");
        assert_eq!(info.state, SpaceState::Live);
        assert_eq!(
            info.participants,
            [ParticipantInfo::new(HOST, "ada".into(), Role::Host)]
        );
    }

    #[test]
    fn a_join_tells_the_others_and_starts_receiving() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[]);
        room.handle(join(BOB, "  bob "), t0).unwrap();
        // Told before BOB receives: the joiner learns the room from its own snapshot.
        assert_eq!(
            drain(&mut room),
            [
                news(&[listener(BOB, "bob")], &[], 1),
                media(MediaChange::StartReceiving(BOB)),
            ]
        );
        room.handle(join(ANN, "ann"), t0).unwrap();
        drain(&mut room);
        // Host first, then join order (BOB has the larger id but joined first).
        assert_eq!(ids(&room), [HOST, BOB, ANN]);
        assert_eq!(room.info().participants[1], listener(BOB, "bob"));
        assert_eq!(room.role_of(ANN), Some(Role::Listener));
        assert_eq!((room.participant_count(), room.listener_count()), (3, 2));
        assert_eq!(room.speakers().collect::<Vec<_>>(), [HOST]);
    }

    #[test]
    fn refused_joins_change_nothing_even_with_outputs_queued() {
        let t0 = Instant::now();
        let mut room = Room::new(space(), "Full".into(), HOST, "ada".into(), config(2), t0);
        room.handle(join(ANN, "ann"), t0).unwrap();
        // Outputs deliberately left queued: a refusal must not touch them.
        assert_refused(&mut room, join(ANN, "ann again"), t0, RoomError::AlreadyIn);
        assert_refused(&mut room, join(HOST, "ada"), t0, RoomError::AlreadyIn);
        assert_refused(&mut room, join(BOB, " "), t0, RoomError::InvalidName);
        assert_refused(
            &mut room,
            join(BOB, &"b".repeat(65)),
            t0,
            RoomError::InvalidName,
        );
        assert_refused(&mut room, join(BOB, "bob"), t0, RoomError::Full);
        // The host's two media starts and the join's news and media start are still there.
        assert_eq!(drain(&mut room).len(), 4);
    }

    #[test]
    fn a_listener_leaving_or_dropping_is_announced_and_stops_receiving() {
        let t0 = Instant::now();
        for lost in [false, true] {
            let mut room = room_with(t0, &[(ANN, "ann"), (BOB, "bob")]);
            let input = if lost {
                Input::Disconnected { who: ANN }
            } else {
                Input::Leave { who: ANN }
            };
            room.handle(input, t0).unwrap();
            assert_eq!(
                drain(&mut room),
                [media(MediaChange::StopReceiving(ANN)), news(&[], &[ANN], 1)]
            );
            assert_eq!(ids(&room), [HOST, BOB]);
            assert_eq!(room.role_of(ANN), None);
            assert_eq!(room.poll_timeout(), None, "a listener starts no timer");
            assert_refused(&mut room, Input::Leave { who: ANN }, t0, RoomError::NotIn);
            assert_refused(
                &mut room,
                Input::Disconnected { who: ANN },
                t0,
                RoomError::NotIn,
            );
        }
    }

    #[test]
    fn the_host_leaving_on_purpose_ends_the_space_for_everyone() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann"), (BOB, "bob")]);
        room.handle(Input::Leave { who: HOST }, t0).unwrap();
        assert_eq!(
            drain(&mut room),
            [
                ended_msg(EndReason::HostEnded),
                media(MediaChange::StopSpeaking(HOST)),
                media(MediaChange::StopReceiving(HOST)),
                media(MediaChange::StopReceiving(ANN)),
                media(MediaChange::StopReceiving(BOB)),
                Output::Ended {
                    reason: EndReason::HostEnded
                },
            ]
        );
        assert_eq!(room.state(), SpaceState::Ended);
        assert_eq!(room.end_reason(), Some(EndReason::HostEnded));
        assert_eq!((room.participant_count(), room.listener_count()), (0, 0));
        assert_eq!((room.host(), room.speakers().count()), (None, 0));
        assert!(room.info().participants.is_empty());
        assert_eq!(room.info().state, SpaceState::Ended);
    }

    #[test]
    fn after_the_end_every_input_is_refused_silently() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann")]);
        room.handle(Input::End { who: HOST }, t0).unwrap();
        drain(&mut room);
        let later = t0 + Duration::from_secs(3600);
        for input in [
            join(BOB, "bob"),
            Input::Leave { who: ANN },
            Input::Leave { who: HOST },
            Input::Disconnected { who: HOST },
            resume(BOB, "ada"),
            Input::End { who: HOST },
            Input::Shutdown,
        ] {
            assert_refused(&mut room, input, later, RoomError::Ended);
        }
        room.handle_timeout(later);
        assert_eq!(room.poll_output(), None);
        assert_eq!(room.poll_timeout(), None);
    }

    #[test]
    fn only_the_host_may_end() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann")]);
        assert_refused(
            &mut room,
            Input::End { who: ANN },
            t0,
            RoomError::NotAllowed,
        );
        assert_refused(&mut room, Input::End { who: BOB }, t0, RoomError::NotIn);
        room.handle(Input::End { who: HOST }, t0).unwrap();
        let out = drain(&mut room);
        assert_eq!(out.first(), Some(&ended_msg(EndReason::HostEnded)));
        assert_eq!(
            out.last(),
            Some(&Output::Ended {
                reason: EndReason::HostEnded
            })
        );
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn shutdown_ends_with_its_own_reason() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann")]);
        room.handle(Input::Shutdown, t0).unwrap();
        let out = drain(&mut room);
        assert_eq!(out.first(), Some(&ended_msg(EndReason::ServerShutdown)));
        assert_eq!(
            out.last(),
            Some(&Output::Ended {
                reason: EndReason::ServerShutdown
            })
        );
        assert_eq!(room.end_reason(), Some(EndReason::ServerShutdown));
    }

    #[test]
    fn a_lost_host_leaves_an_empty_seat_and_a_deadline() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann")]);
        let t1 = t0 + Duration::from_secs(5);
        room.handle(Input::Disconnected { who: HOST }, t1).unwrap();
        assert_eq!(
            drain(&mut room),
            [
                media(MediaChange::StopSpeaking(HOST)),
                media(MediaChange::StopReceiving(HOST)),
                news(&[], &[HOST], 1),
            ]
        );
        assert_eq!(room.state(), SpaceState::Live);
        assert_eq!((room.host(), room.role_of(HOST)), (None, None));
        assert_eq!(room.speakers().count(), 0);
        assert_eq!(ids(&room), [ANN]);
        assert_eq!(room.poll_timeout(), Some(t1 + GRACE));
        // The room stays open meanwhile.
        room.handle(join(BOB, "bob"), t1).unwrap();
        drain(&mut room);
        room.handle_timeout(t1 + GRACE - Duration::from_nanos(1));
        assert_eq!((room.poll_output(), room.state()), (None, SpaceState::Live));
    }

    #[test]
    fn resume_refills_the_seat_and_cancels_the_deadline() {
        let t0 = Instant::now();
        let mut room = room_with(t0, &[(ANN, "ann")]);
        assert_refused(&mut room, resume(BOB, "ada"), t0, RoomError::HostPresent);
        room.handle(Input::Disconnected { who: HOST }, t0).unwrap();
        drain(&mut room);
        assert_refused(&mut room, resume(ANN, "ada"), t0, RoomError::AlreadyIn);
        assert_refused(&mut room, resume(BOB, ""), t0, RoomError::InvalidName);
        let host2 = ParticipantId(10);
        room.handle(resume(host2, " ada "), t0).unwrap();
        let seat = ParticipantInfo::new(host2, "ada".into(), Role::Host);
        assert_eq!(
            drain(&mut room),
            [
                news(&[seat], &[], 1),
                media(MediaChange::StartSpeaking(host2)),
                media(MediaChange::StartReceiving(host2)),
            ]
        );
        assert_eq!(room.host(), Some(host2));
        assert_eq!(ids(&room), [host2, ANN]);
        assert_eq!(room.poll_timeout(), None);
        room.handle_timeout(t0 + GRACE * 10);
        assert_eq!((room.poll_output(), room.state()), (None, SpaceState::Live));
        assert_refused(&mut room, resume(BOB, "ada"), t0, RoomError::HostPresent);
    }

    #[test]
    fn a_restored_room_waits_for_its_host_then_gives_up() {
        let t0 = Instant::now();
        let mut room = Room::restored(space(), "Back".into(), "ada".into(), config(100), t0);
        assert_eq!(room.poll_output(), None);
        assert_eq!(
            (room.state(), room.host(), room.participant_count()),
            (SpaceState::Live, None, 0)
        );
        assert_eq!(room.poll_timeout(), Some(t0 + GRACE));
        assert_eq!(room.info().host, "ada");
        room.handle_timeout(t0 + GRACE);
        assert_eq!(
            drain(&mut room),
            [
                ended_msg(EndReason::HostGone),
                Output::Ended {
                    reason: EndReason::HostGone
                }
            ]
        );
        assert_eq!(room.state(), SpaceState::Ended);
        assert_eq!(room.poll_timeout(), None);
    }

    #[test]
    fn roster_news_is_gathered_per_tick() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(150);
        let cy = ParticipantId(4);
        let mut room = Room::new(
            space(),
            "Storm".into(),
            HOST,
            "ada".into(),
            RoomConfig {
                roster_tick: tick,
                ..config(100)
            },
            t0,
        );
        drain(&mut room);
        let t1 = t0 + Duration::from_millis(10);
        room.handle(join(ANN, "ann"), t0).unwrap();
        room.handle(join(BOB, "bob"), t1).unwrap();
        room.handle(join(cy, "cy"), t1).unwrap();
        // Joined and gone within the tick: told as gone (a later joiner's snapshot had it).
        room.handle(Input::Leave { who: BOB }, t1).unwrap();
        assert_eq!(
            drain(&mut room),
            [
                media(MediaChange::StartReceiving(ANN)),
                media(MediaChange::StartReceiving(BOB)),
                media(MediaChange::StartReceiving(cy)),
                media(MediaChange::StopReceiving(BOB)),
            ]
        );
        // Due one tick after the first news, not after the last.
        assert_eq!(room.poll_timeout(), Some(t0 + tick));
        room.handle_timeout(t0 + tick - Duration::from_nanos(1));
        assert_eq!(room.poll_output(), None);
        room.handle_timeout(t0 + tick);
        assert_eq!(
            drain(&mut room),
            [news(&[listener(ANN, "ann"), listener(cy, "cy")], &[BOB], 2)]
        );
        assert_eq!(room.poll_timeout(), None);
        // Anything else about the room goes out after the news it depends on.
        let t2 = t0 + tick * 2;
        room.handle(Input::Leave { who: cy }, t2).unwrap();
        room.handle(join(BOB, "bob"), t2).unwrap();
        let link = Some("https://example.org/notes".to_owned());
        room.handle(Input::Pin { who: HOST, link }, t2).unwrap();
        let out = drain(&mut room);
        assert_eq!(out[0], media(MediaChange::StopReceiving(cy)));
        assert_eq!(out[1], media(MediaChange::StartReceiving(BOB)));
        assert_eq!(out[2], news(&[listener(BOB, "bob")], &[cy], 2));
        assert!(matches!(
            &out[3],
            Output::Broadcast {
                msg: ServerMsg::Pinned { .. },
                ..
            }
        ));
        assert_eq!(room.poll_timeout(), None);
        // A refused join leaves the gathered news alone; the end drops it.
        room.handle(join(DAN, "dan"), t2).unwrap();
        let before = room.clone();
        assert_eq!(room.handle(join(DAN, "dan"), t2), Err(RoomError::AlreadyIn));
        assert_eq!(room, before);
        room.handle(Input::End { who: HOST }, t2).unwrap();
        let out = drain(&mut room);
        assert!(out.iter().all(|o| !matches!(
            o,
            Output::Broadcast {
                msg: ServerMsg::Participants { .. },
                ..
            }
        )));
        assert_eq!(room.poll_timeout(), None);
    }

    #[test]
    fn a_grace_too_long_for_an_instant_never_expires_and_never_panics() {
        let t0 = Instant::now();
        let forever = RoomConfig {
            host_grace: Duration::MAX,
            ..RoomConfig::default()
        };
        let mut room = Room::restored(space(), "Forever".into(), "ada".into(), forever, t0);
        assert_eq!(room.poll_timeout(), None);
        room.handle_timeout(t0 + Duration::from_secs(1 << 40));
        assert_eq!(room.state(), SpaceState::Live);
        room.handle(resume(HOST, "ada"), t0).unwrap();
        room.handle(Input::Disconnected { who: HOST }, t0).unwrap();
        assert_eq!(room.state(), SpaceState::Live);
    }
}
