//! Seeded randomized simulation: one room after another, fed random inputs (valid and not, from
//! random actors, every stage action included) at random instants, checked after every step
//! against a small independent model of membership and against what a server would derive
//! from the outputs alone (who receives, whose audio is forwarded). `SEED=<n>` reproduces one
//! run; `SIM_SEEDS=<n>` runs seeds 0..n instead of the default set.
//!
//! The model predicts membership exactly (joins, leaves, the host seat, removals, blocks) and
//! the first refusals every stage action must give (not in the room, signed out); the stage
//! roles themselves it reads from the room and holds to the invariants: one host, seats within
//! limits, listing order, forwarded audio = on the mic and unmuted, hands only on listeners.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use confab_core::{Input, MediaChange, Output, RateLimit, Room, RoomConfig, RoomError};
use confab_proto::{
    ChatId, EndReason, MAX_NAME_CHARS, ParticipantId, ParticipantInfo, REACTIONS, Role, ServerMsg,
    SpaceId, SpaceState, UserId,
};

/// 200 seeds of 500 steps by default: thousands of short-lived rooms, a few seconds in debug.
const DEFAULT_SEEDS: u64 = 200;
const STEPS_PER_SEED: usize = 500;
/// Connection ids drawn from 0..POOL, so the same ids come back and collide often.
const POOL: u64 = 40;

/// xorshift64*: tiny, and its sequence never changes under a dependency upgrade, so a printed
/// seed reproduces forever.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // SplitMix64 finaliser: spreads small seeds and never yields the all-zero state.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Prints the seed if the simulation panics, so `SEED=` can replay it.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("room simulation failed; reproduce with SEED={}", self.0);
        }
    }
}

/// What the room should be, kept in plain collections so it shares no code with the room.
struct Model {
    host: Option<ParticipantId>,
    /// Everyone but the host, in join order, with their accounts.
    others: Vec<(ParticipantId, Option<UserId>)>,
    removed: BTreeSet<ParticipantId>,
    removed_users: BTreeSet<UserId>,
    blocked: BTreeSet<UserId>,
    deadline: Option<Instant>,
    ended: Option<EndReason>,
    max: usize,
    grace: Duration,
}

impl Model {
    fn members(&self) -> BTreeSet<ParticipantId> {
        self.host
            .iter()
            .copied()
            .chain(self.others.iter().map(|(p, _)| *p))
            .collect()
    }

    fn is_in(&self, who: ParticipantId) -> bool {
        self.host == Some(who) || self.others.iter().any(|(p, _)| *p == who)
    }

    fn user_of(&self, who: ParticipantId) -> Option<&UserId> {
        self.others
            .iter()
            .find(|(p, _)| *p == who)
            .and_then(|(_, u)| u.as_ref())
    }

    fn join_order(&self, who: ParticipantId) -> usize {
        self.others
            .iter()
            .position(|(p, _)| *p == who)
            .unwrap_or(usize::MAX)
    }

    fn end(&mut self, reason: EndReason) {
        self.host = None;
        self.others.clear();
        self.deadline = None;
        self.ended = Some(reason);
    }

    /// Applies `input` as the rules say, returning the expected result; `None` when the model
    /// does not predict the outcome (a stage action past the checks every action makes). Roles
    /// are read from `room` as it was before the input.
    fn apply(&mut self, input: &Input, now: Instant, room: &Room) -> Option<Result<(), RoomError>> {
        if self.ended.is_some() {
            return Some(Err(RoomError::Ended));
        }
        Some(match input {
            Input::Join { who, name, user } => self.join(*who, name, user.as_ref()),
            Input::Leave { who } | Input::Disconnected { who } => {
                if self.host == Some(*who) {
                    if matches!(input, Input::Leave { .. }) {
                        self.end(EndReason::HostEnded);
                    } else {
                        self.host = None;
                        self.deadline = now.checked_add(self.grace);
                    }
                } else if let Some(i) = self.others.iter().position(|(p, _)| p == who) {
                    self.others.remove(i);
                } else {
                    return Some(Err(RoomError::NotIn));
                }
                Ok(())
            }
            Input::Resume { who, name } => {
                if self.host.is_some() {
                    return Some(Err(RoomError::HostPresent));
                }
                if self.is_in(*who) {
                    return Some(Err(RoomError::AlreadyIn));
                }
                if self.removed.contains(who) {
                    return Some(Err(RoomError::Removed));
                }
                if !name_ok(name) {
                    return Some(Err(RoomError::InvalidName));
                }
                self.host = Some(*who);
                self.deadline = None;
                Ok(())
            }
            Input::End { who } => {
                if self.host == Some(*who) {
                    self.end(EndReason::HostEnded);
                    Ok(())
                } else if self.is_in(*who) {
                    Err(RoomError::NotAllowed)
                } else {
                    Err(RoomError::NotIn)
                }
            }
            Input::Shutdown => {
                self.end(EndReason::ServerShutdown);
                Ok(())
            }
            stage => {
                let who = actor_of(stage);
                if !self.is_in(who) {
                    return Some(Err(RoomError::NotIn));
                }
                if self.host != Some(who) && self.user_of(who).is_none() {
                    return Some(Err(RoomError::SignInRequired));
                }
                match stage {
                    Input::Remove { target, .. } | Input::Block { target, .. } => {
                        let block = matches!(stage, Input::Block { .. });
                        return self
                            .remove(room, who, *target, block)
                            .map(Some)
                            .unwrap_or(None);
                    }
                    _ => return None,
                }
            }
        })
    }

    fn join(
        &mut self,
        who: ParticipantId,
        name: &str,
        user: Option<&UserId>,
    ) -> Result<(), RoomError> {
        if self.is_in(who) {
            return Err(RoomError::AlreadyIn);
        }
        if let Some(user) = user {
            if self.blocked.contains(user) {
                return Err(RoomError::Blocked);
            }
            if self.removed_users.contains(user) {
                return Err(RoomError::Removed);
            }
            if self.others.iter().any(|(_, u)| u.as_ref() == Some(user)) {
                return Err(RoomError::AlreadyIn);
            }
        }
        if self.removed.contains(&who) {
            return Err(RoomError::Removed);
        }
        if !name_ok(name) {
            return Err(RoomError::InvalidName);
        }
        if self.others.len() + 1 >= self.max {
            return Err(RoomError::Full);
        }
        self.others.push((who, user.cloned()));
        Ok(())
    }

    /// Remove and Block, predicted in full: who may remove whom is the heart of moderation.
    /// `Err` means "no prediction" (never happens for these: kept for symmetry with `apply`).
    fn remove(
        &mut self,
        room: &Room,
        who: ParticipantId,
        target: ParticipantId,
        block: bool,
    ) -> Result<Result<(), RoomError>, ()> {
        let actor = room.role_of(who).ok_or(())?;
        if !matches!(actor, Role::Host | Role::Cohost) {
            return Ok(Err(RoomError::NotAllowed));
        }
        let Some(role) = room.role_of(target) else {
            return Ok(Err(RoomError::NoSuchParticipant));
        };
        if target == who {
            return Ok(Err(RoomError::InvalidTarget));
        }
        if role == Role::Host || (role == Role::Cohost && actor != Role::Host) {
            return Ok(Err(RoomError::NotAllowed));
        }
        let user = self.user_of(target).cloned();
        self.others.retain(|(p, _)| *p != target);
        self.removed.insert(target);
        if let Some(user) = user {
            self.removed_users.insert(user.clone());
            if block {
                self.blocked.insert(user);
            }
        }
        Ok(Ok(()))
    }

    fn timeout(&mut self, now: Instant) {
        if self.ended.is_none() && self.host.is_none() && self.deadline.is_some_and(|d| d <= now) {
            self.end(EndReason::HostGone);
        }
    }
}

/// The participant a stage action comes from.
fn actor_of(input: &Input) -> ParticipantId {
    match input {
        Input::RaiseHand { who }
        | Input::LowerHand { who }
        | Input::ApproveHand { who, .. }
        | Input::DismissHand { who, .. }
        | Input::Invite { who, .. }
        | Input::AcceptInvite { who }
        | Input::DeclineInvite { who }
        | Input::StepDown { who }
        | Input::MuteSelf { who }
        | Input::UnmuteSelf { who }
        | Input::Mute { who, .. }
        | Input::MuteAll { who }
        | Input::Remove { who, .. }
        | Input::Block { who, .. }
        | Input::MakeCohost { who, .. }
        | Input::UnmakeCohost { who, .. }
        | Input::Pin { who, .. }
        | Input::React { who, .. }
        | Input::Chat { who, .. }
        | Input::DeleteChat { who, .. } => *who,
        other => panic!("not a stage action: {other:?}"),
    }
}

fn name_ok(name: &str) -> bool {
    let n = name.trim().chars().count();
    (1..=MAX_NAME_CHARS).contains(&n)
}

/// What a server learns from the outputs alone: who receives broadcasts and whose audio flows.
#[derive(Default)]
struct Wire {
    receivers: BTreeSet<ParticipantId>,
    speakers: BTreeSet<ParticipantId>,
    /// Removed connections whose notice was sent; they must never receive again.
    gone: BTreeSet<ParticipantId>,
    /// Removal notices sent whose `StopReceiving` has not come yet.
    noticed: BTreeSet<ParticipantId>,
    blocked: BTreeSet<UserId>,
    ended: usize,
    /// Each receiver's copy of the roster, as a client keeps it: the snapshot it joined with,
    /// then every roster message it was sent.
    views: BTreeMap<ParticipantId, BTreeMap<ParticipantId, ParticipantInfo>>,
}

impl Wire {
    fn view_of(&mut self, who: ParticipantId) -> &mut BTreeMap<ParticipantId, ParticipantInfo> {
        self.views.entry(who).or_default()
    }
}

fn random_name(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => String::new(),
        1 => " \t ".into(),
        2 => "é".repeat(MAX_NAME_CHARS),
        3 => "x".repeat(MAX_NAME_CHARS + 1),
        4 => format!("  spaced {}  ", rng.below(100)),
        _ => format!("user{}", rng.below(1000)),
    }
}

/// Mostly signed in; accounts drawn from a smaller pool than connections, so one account
/// tries to come in twice and a blocked account comes back under a new connection.
fn random_user(rng: &mut Rng) -> Option<UserId> {
    if rng.percent(20) {
        None
    } else {
        UserId::new(format!("u{}", rng.below(POOL / 2))).ok()
    }
}

/// Mostly someone in the room (the stage more often), sometimes anyone.
fn random_who(rng: &mut Rng, room: &Room) -> ParticipantId {
    let present: Vec<ParticipantId> = room.participants().map(|p| p.id).collect();
    let stage: Vec<ParticipantId> = room.stage().map(|p| p.id).collect();
    if !stage.is_empty() && rng.percent(30) {
        rng.pick(&stage)
    } else if !present.is_empty() && rng.percent(70) {
        rng.pick(&present)
    } else {
        ParticipantId(rng.below(POOL))
    }
}

fn random_target(rng: &mut Rng, room: &Room) -> ParticipantId {
    if !room.hands().is_empty() && rng.percent(30) {
        rng.pick(room.hands())
    } else {
        random_who(rng, room)
    }
}

/// Someone to leave: rarely the host, so rooms live long enough for a stage to form.
fn random_leaver(rng: &mut Rng, room: &Room) -> ParticipantId {
    let others: Vec<ParticipantId> = room
        .participants()
        .filter(|p| p.role != Role::Host)
        .map(|p| p.id)
        .collect();
    if !others.is_empty() && rng.percent(97) {
        rng.pick(&others)
    } else if rng.percent(90) {
        ParticipantId(rng.below(POOL))
    } else {
        random_who(rng, room)
    }
}

/// Mostly someone with a pending invitation.
fn random_invitee(rng: &mut Rng, room: &Room) -> ParticipantId {
    let invited: Vec<ParticipantId> = room
        .participants()
        .filter(|p| room.invited_by(p.id).is_some())
        .map(|p| p.id)
        .collect();
    if !invited.is_empty() && rng.percent(70) {
        rng.pick(&invited)
    } else {
        random_who(rng, room)
    }
}

fn random_input(rng: &mut Rng, room: &Room) -> Input {
    let who = random_who(rng, room);
    let target = random_target(rng, room);
    match rng.below(100) {
        0..=17 => Input::Join {
            who: ParticipantId(rng.below(POOL)),
            name: random_name(rng),
            user: random_user(rng),
        },
        18..=22 => Input::Leave {
            who: random_leaver(rng, room),
        },
        23..=27 => Input::Disconnected {
            who: random_leaver(rng, room),
        },
        28..=31 => Input::Resume {
            who,
            name: random_name(rng),
        },
        32 => Input::End {
            who: match room.host() {
                Some(host) if rng.percent(10) => host,
                _ => random_leaver(rng, room),
            },
        },
        33 if rng.percent(10) => Input::Shutdown,
        34..=39 => Input::RaiseHand { who },
        40..=41 => Input::LowerHand { who },
        42..=46 => Input::ApproveHand { who, target },
        47 => Input::DismissHand { who, target },
        48..=50 => Input::Invite { who, target },
        51..=53 => Input::AcceptInvite {
            who: random_invitee(rng, room),
        },
        54 => Input::DeclineInvite {
            who: random_invitee(rng, room),
        },
        55..=57 => Input::StepDown { who },
        58..=60 => Input::MuteSelf { who },
        61..=65 => Input::UnmuteSelf { who },
        66..=67 => Input::Mute { who, target },
        68 => Input::MuteAll { who },
        69..=71 => Input::Remove { who, target },
        72..=73 => Input::Block { who, target },
        74..=76 => Input::MakeCohost { who, target },
        77..=78 => {
            let cohosts: Vec<ParticipantId> = room
                .participants()
                .filter(|p| p.role == Role::Cohost)
                .map(|p| p.id)
                .collect();
            Input::UnmakeCohost {
                who: match room.host() {
                    Some(host) if rng.percent(50) => host,
                    _ => who,
                },
                target: if !cohosts.is_empty() && rng.percent(60) {
                    rng.pick(&cohosts)
                } else {
                    target
                },
            }
        }
        79..=80 => Input::Pin {
            who,
            link: match rng.below(3) {
                0 => None,
                1 => Some(format!("https://example.org/{}", rng.below(3))),
                _ => Some("javascript:alert(1)".into()),
            },
        },
        81..=88 => Input::React {
            who,
            emoji: if rng.percent(90) {
                rng.pick(&REACTIONS).to_owned()
            } else {
                "👍".into()
            },
        },
        89..=95 => Input::Chat {
            who,
            text: match rng.below(10) {
                0 => "   ".into(),
                1 => "x".repeat(501),
                _ => format!("message {}", rng.below(1000)),
            },
        },
        _ => Input::DeleteChat {
            who,
            id: ChatId(rng.below(40)),
        },
    }
}

fn new_room(rng: &mut Rng, now: Instant) -> (Room, Model, Wire) {
    let config = RoomConfig {
        max_participants: rng.pick(&[0, 1, 2, 3, 5, 8, 20, 10_000, 10_000]),
        host_grace: rng.pick(&[
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(30),
            Duration::MAX,
        ]),
        max_cohosts: rng.pick(&[0, 1, 2]),
        max_speakers: rng.pick(&[0, 1, 3, 10]),
        reaction_limit: RateLimit {
            burst: rng.pick(&[1, 5]),
            every: rng.pick(&[Duration::from_millis(200), Duration::from_secs(1)]),
        },
        chat_limit: RateLimit {
            burst: rng.pick(&[1, 3]),
            every: rng.pick(&[Duration::from_millis(500), Duration::from_secs(2)]),
        },
        roster_tick: rng.pick(&[
            Duration::ZERO,
            Duration::from_millis(150),
            Duration::from_secs(1),
        ]),
    };
    let id = SpaceId::from_entropy([rng.below(32) as u8; SpaceId::LEN]);
    let blocked: BTreeSet<UserId> = (0..rng.below(3)).filter_map(|_| random_user(rng)).collect();
    let mut model = Model {
        host: None,
        others: Vec::new(),
        removed: BTreeSet::new(),
        removed_users: BTreeSet::new(),
        blocked: blocked.clone(),
        deadline: None,
        ended: None,
        max: config.max_participants.max(1),
        grace: config.host_grace,
    };
    let room = if rng.percent(85) {
        let host = ParticipantId(rng.below(POOL));
        model.host = Some(host);
        Room::new(id, "sim".into(), host, "host".into(), config, now)
    } else {
        model.deadline = now.checked_add(config.host_grace);
        Room::restored(id, "sim".into(), "host".into(), config, now)
    };
    let room = room.with_blocked(blocked);
    let wire = Wire {
        blocked: model.blocked.clone(),
        ..Wire::default()
    };
    (room, model, wire)
}

/// Drains one step's outputs through the wire view and checks each against the model.
fn check_outputs(
    room: &mut Room,
    wire: &mut Wire,
    before: &BTreeSet<ParticipantId>,
    model: &Model,
) {
    let outputs: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    let after = model.members();
    for (i, output) in outputs.iter().enumerate() {
        match output {
            Output::Broadcast { msg, except } => {
                let recipients: BTreeSet<ParticipantId> = wire
                    .receivers
                    .iter()
                    .copied()
                    .filter(|p| Some(*p) != *except)
                    .collect();
                assert!(
                    recipients.is_disjoint(&wire.gone) && recipients.is_disjoint(&wire.noticed),
                    "a removed participant got {msg:?}"
                );
                match msg {
                    ServerMsg::Ended { space, reason } => {
                        assert_eq!(space, room.id());
                        assert_eq!(Some(*reason), model.ended);
                        assert_eq!(*except, None);
                        assert_eq!(&recipients, before, "Ended must reach everyone present");
                    }
                    // The listener count is as of sending; later outputs of the step may
                    // change it, so the roster check below is the one that counts.
                    ServerMsg::Participants { joined, left, .. } => {
                        assert_eq!(*except, None);
                        assert!(!joined.is_empty() || !left.is_empty(), "empty news");
                        for p in joined {
                            assert_eq!(p.name, p.name.trim());
                        }
                        for r in &recipients {
                            let view = wire.view_of(*r);
                            view.retain(|id, _| !left.contains(id));
                            for p in joined {
                                view.insert(p.id, p.clone());
                            }
                        }
                    }
                    ServerMsg::ParticipantUpdated { participant } => {
                        assert!(wire.receivers.contains(&participant.id));
                        assert!(!participant.muted || participant.role.speaks());
                        assert!(!participant.hand_raised || participant.role == Role::Listener);
                        for r in &recipients {
                            let view = wire.view_of(*r);
                            assert!(
                                view.contains_key(&participant.id),
                                "{r} told of an update to {} it never heard of",
                                participant.id
                            );
                            view.insert(participant.id, participant.clone());
                        }
                    }
                    ServerMsg::HandQueue { .. }
                    | ServerMsg::InviteDeclined { .. }
                    | ServerMsg::Pinned { .. }
                    | ServerMsg::ChatDeleted { .. } => {}
                    ServerMsg::Reaction { participant, emoji } => {
                        assert!(REACTIONS.contains(&emoji.as_str()));
                        assert!(wire.receivers.contains(participant));
                        for r in &recipients {
                            assert!(
                                wire.view_of(*r).contains_key(participant),
                                "{r}: who reacted?"
                            );
                        }
                    }
                    ServerMsg::Chat { message } => {
                        assert!(wire.receivers.contains(&message.author));
                        assert!(!message.text.trim().is_empty());
                        for r in &recipients {
                            assert!(
                                wire.view_of(*r).contains_key(&message.author),
                                "{r}: who chats?"
                            );
                        }
                    }
                    other => panic!("unexpected broadcast {other:?}"),
                }
                // Gathered news goes out before a removal notice, while its target still
                // receives (and is gone by the end of the step): receivers at that point are
                // what the wire view checked above.
                if !matches!(
                    msg,
                    ServerMsg::Ended { .. } | ServerMsg::Participants { .. }
                ) {
                    assert!(
                        recipients.is_subset(&after),
                        "a broadcast reached someone who left: {recipients:?} vs {after:?}"
                    );
                }
            }
            Output::Send { to, msg } => {
                assert!(wire.receivers.contains(to), "{msg:?} sent to {to}, not in");
                assert!(!wire.gone.contains(to) && !wire.noticed.contains(to));
                match msg {
                    ServerMsg::Invited { by } => {
                        assert!(room.role_of(*by).is_some_and(Role::moderates));
                    }
                    ServerMsg::Removed { space, .. } => {
                        assert_eq!(space, room.id());
                        assert!(!after.contains(to), "{to} told it was removed but is in");
                        wire.noticed.insert(*to);
                    }
                    other => panic!("unexpected message to one {other:?}"),
                }
            }
            Output::Media(MediaChange::StartReceiving(p)) => {
                assert!(!wire.gone.contains(p), "{p} receives again after removal");
                assert!(wire.receivers.insert(*p), "{p} started receiving twice");
                // The snapshot a server sends with `Joined`, taken right after the input.
                let snapshot = room.info().participants.into_iter().map(|q| (q.id, q));
                wire.views.insert(*p, snapshot.collect());
            }
            Output::Media(MediaChange::StopReceiving(p)) => {
                assert!(
                    wire.receivers.remove(p),
                    "{p} stopped receiving without starting"
                );
                wire.views.remove(p);
                if wire.noticed.remove(p) {
                    wire.gone.insert(*p);
                }
            }
            Output::Media(MediaChange::StartSpeaking(p)) => {
                assert!(after.contains(p), "{p} speaks without being in");
                assert!(wire.speakers.insert(*p), "{p} started speaking twice");
            }
            Output::Media(MediaChange::StopSpeaking(p)) => {
                assert!(
                    wire.speakers.remove(p),
                    "{p} stopped speaking without starting"
                );
            }
            Output::Blocked { user } => {
                assert!(wire.blocked.insert(user.clone()), "{user} blocked twice");
                assert!(model.blocked.contains(user));
            }
            Output::Ended { reason } => {
                wire.ended += 1;
                assert_eq!(wire.ended, 1, "Ended emitted twice");
                assert_eq!(Some(*reason), model.ended);
                assert_eq!(i + 1, outputs.len(), "Ended must be the last output");
            }
            other => panic!("unexpected output {other:?}"),
        }
    }
    assert!(
        wire.noticed.is_empty(),
        "a removal notice without StopReceiving"
    );
}

fn check_invariants(room: &Room, model: &Model, wire: &Wire) {
    let listed: Vec<ParticipantId> = room.participants().map(|p| p.id).collect();
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        model.members(),
        "participants vs model"
    );
    // Host, co-hosts, speakers, listeners; join order within each group.
    let rank = |role: Role| match role {
        Role::Host => 0,
        Role::Cohost => 1,
        Role::Speaker => 2,
        _ => 3,
    };
    let keys: Vec<(u8, usize)> = room
        .participants()
        .map(|p| (rank(p.role), model.join_order(p.id)))
        .collect();
    assert!(keys.is_sorted(), "listing order {keys:?}");
    assert_eq!(
        room.info()
            .participants
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        listed
    );
    let count = |role: Role| room.participants().filter(|p| p.role == role).count();
    let config = room.config();
    assert!(count(Role::Host) <= 1, "{} hosts", count(Role::Host));
    // Exactly one host while live, except while its seat is held empty for `host_grace`.
    assert_eq!(count(Role::Host), usize::from(model.host.is_some()));
    assert_eq!(room.host(), model.host);
    assert!(
        count(Role::Cohost) <= config.max_cohosts,
        "too many co-hosts"
    );
    assert!(
        count(Role::Speaker) <= config.max_speakers,
        "too many speakers"
    );
    assert!(room.participant_count() <= model.max);
    assert_eq!(room.participant_count(), listed.len());
    assert_eq!(room.listener_count() as usize, count(Role::Listener));
    for p in room.participants() {
        if p.id != model.host.unwrap_or(ParticipantId(u64::MAX)) {
            assert_eq!(p.user.as_ref(), model.user_of(p.id), "{p:?}");
        }
        assert!(!p.muted || p.role.speaks(), "{p:?} muted off the mic");
        assert!(!p.hand_raised || p.role == Role::Listener, "{p:?}");
        assert!(p.role == Role::Listener || p.role == Role::Host || p.user.is_some());
        if room.invited_by(p.id).is_some() {
            assert_eq!(p.role, Role::Listener, "{p:?} invited but not a listener");
        }
    }
    let hands: BTreeSet<ParticipantId> = room
        .participants()
        .filter(|p| p.hand_raised)
        .map(|p| p.id)
        .collect();
    assert_eq!(room.hands().iter().copied().collect::<BTreeSet<_>>(), hands);
    assert_eq!(room.hands().len(), hands.len(), "a hand queued twice");
    assert_eq!(
        wire.receivers,
        model.members(),
        "media receivers vs members"
    );
    assert!(wire.receivers.is_disjoint(&wire.gone));
    let on_air: BTreeSet<ParticipantId> = room
        .participants()
        .filter(|p| p.role.speaks() && !p.muted)
        .map(|p| p.id)
        .collect();
    assert_eq!(wire.speakers, on_air, "forwarded vs on the mic and unmuted");
    assert_eq!(wire.speakers, room.speakers().collect::<BTreeSet<_>>());
    assert_eq!(wire.blocked, model.blocked);
    for user in &model.blocked {
        assert!(room.is_blocked(user));
    }
    assert_eq!(room.end_reason(), model.ended);
    let state = if model.ended.is_some() {
        SpaceState::Ended
    } else {
        SpaceState::Live
    };
    assert_eq!(room.state(), state);
    assert_eq!(wire.ended, usize::from(model.ended.is_some()));
    let timeout = if model.ended.is_none() && model.host.is_none() {
        model.deadline
    } else {
        None
    };
    let timeout = match (timeout, room.news_due()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    assert_eq!(room.poll_timeout(), timeout);
    // Once the gathered news is out, every receiver's roster is the room's: none was lost.
    if room.news_due().is_none() && model.ended.is_none() {
        let roster: BTreeMap<ParticipantId, ParticipantInfo> =
            room.participants().map(|p| (p.id, p.clone())).collect();
        for r in &wire.receivers {
            assert_eq!(wire.views.get(r), Some(&roster), "{r}'s roster");
        }
    }
}

#[derive(Default, Debug)]
struct Stats {
    accepted: usize,
    refused: usize,
    ended: usize,
    stage_accepted: usize,
    removals: usize,
    /// Accepted inputs by kind, so a kind the simulation never got through is noticed.
    kinds: std::collections::BTreeMap<String, usize>,
}

fn run(seed: u64, stats: &mut Stats) {
    let _guard = SeedGuard(seed);
    let mut rng = Rng::new(seed);
    let mut now = Instant::now();
    let (mut room, mut model, mut wire) = new_room(&mut rng, now);
    check_outputs(&mut room, &mut wire, &BTreeSet::new(), &model);
    let mut after_end = 0;
    for _ in 0..STEPS_PER_SEED {
        if model.ended.is_some() {
            after_end += 1;
            if after_end > 5 {
                after_end = 0;
                (room, model, wire) = new_room(&mut rng, now);
                check_outputs(&mut room, &mut wire, &BTreeSet::new(), &model);
                check_invariants(&room, &model, &wire);
                continue;
            }
        }
        let before = model.members();
        if rng.percent(15) {
            now += match rng.below(4) {
                0 => Duration::ZERO,
                1 => Duration::from_millis(rng.below(3_000)),
                // Land exactly on, or just short of, the deadline.
                2 => room
                    .poll_timeout()
                    .map_or(Duration::ZERO, |d| d.saturating_duration_since(now)),
                _ => room.poll_timeout().map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(now)
                        .saturating_sub(Duration::from_nanos(1))
                }),
            };
            let was_ended = model.ended.is_some();
            room.handle_timeout(now);
            model.timeout(now);
            if was_ended {
                assert_eq!(room.poll_output(), None, "output after the end");
            }
            if !was_ended && model.ended.is_some() {
                stats.ended += 1;
            }
        } else {
            let input = random_input(&mut rng, &room);
            let snapshot = room.clone();
            let (info, listener_count) = (room.info(), room.listener_count());
            let was_ended = model.ended.is_some();
            let expected = model.apply(&input, now, &snapshot);
            let got = room.handle(input.clone(), now);
            if let Some(expected) = expected {
                assert_eq!(got, expected, "{input:?}");
            }
            if got.is_err() {
                stats.refused += 1;
                assert_eq!(room, snapshot, "refused {input:?} changed the room");
                assert_eq!(room.info(), info);
                assert_eq!(room.listener_count(), listener_count);
                assert_eq!(
                    room.poll_output(),
                    None,
                    "refused {input:?} produced output"
                );
            } else {
                stats.accepted += 1;
                let kind = format!("{input:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or_default().to_owned();
                *stats.kinds.entry(kind).or_default() += 1;
                if !matches!(
                    input,
                    Input::Join { .. }
                        | Input::Leave { .. }
                        | Input::Disconnected { .. }
                        | Input::Resume { .. }
                        | Input::End { .. }
                        | Input::Shutdown
                ) {
                    stats.stage_accepted += 1;
                }
                if matches!(input, Input::Remove { .. } | Input::Block { .. }) {
                    stats.removals += 1;
                }
            }
            if !was_ended && model.ended.is_some() {
                stats.ended += 1;
            }
        }
        check_outputs(&mut room, &mut wire, &before, &model);
        check_invariants(&room, &model, &wire);
    }
}

#[test]
fn randomized_rooms_keep_their_invariants() {
    let mut stats = Stats::default();
    match std::env::var("SEED") {
        Ok(seed) => {
            let seed = seed
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("SEED must be a u64, got {seed:?}"));
            run(seed, &mut stats);
        }
        Err(_) => {
            let seeds = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            for seed in 0..seeds {
                run(seed, &mut stats);
            }
            if std::env::var_os("SIM_STATS").is_some() {
                eprintln!("{stats:?}");
            }
            // A simulation that never exercised every path proves little.
            let steps = (seeds as usize) * STEPS_PER_SEED;
            assert!(
                stats.accepted > steps / 10 && stats.refused > steps / 10,
                "{stats:?}"
            );
            assert!(stats.stage_accepted > steps / 20, "{stats:?}");
            assert!(stats.removals > seeds as usize / 4, "{stats:?}");
            assert!(stats.ended > seeds as usize, "{stats:?}");
            if seeds >= DEFAULT_SEEDS {
                assert_eq!(
                    stats.kinds.len(),
                    26,
                    "every input kind accepted: {stats:?}"
                );
            }
        }
    }
}
