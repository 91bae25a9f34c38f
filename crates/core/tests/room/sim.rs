//! Seeded randomized simulation: one room after another, fed random inputs (valid and not) at
//! random instants, checked after every step against a small independent model and against
//! the membership a server would derive from the outputs. `SEED=<n>` reproduces one run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use confab_core::{Input, MediaChange, Output, Room, RoomConfig, RoomError};
use confab_proto::{
    EndReason, MAX_NAME_CHARS, ParticipantId, Role, ServerMsg, SpaceId, SpaceState,
};

const DEFAULT_SEEDS: [u64; 8] = [1, 2, 3, 42, 1_234_567, 0xC0FFEE, 0xDEAD_BEEF, u64::MAX];
const STEPS_PER_SEED: usize = 20_000;
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

/// What the room should be, kept in plain sets so it shares no code with the room.
struct Model {
    host: Option<ParticipantId>,
    /// Join order.
    listeners: Vec<ParticipantId>,
    deadline: Option<Instant>,
    ended: Option<EndReason>,
    max: usize,
    grace: Duration,
}

impl Model {
    fn members(&self) -> BTreeSet<ParticipantId> {
        self.host.iter().chain(&self.listeners).copied().collect()
    }

    fn is_in(&self, who: ParticipantId) -> bool {
        self.host == Some(who) || self.listeners.contains(&who)
    }

    fn end(&mut self, reason: EndReason) {
        self.host = None;
        self.listeners.clear();
        self.deadline = None;
        self.ended = Some(reason);
    }

    /// Applies `input` as the rules say, returning the expected result.
    fn apply(&mut self, input: &Input, now: Instant) -> Result<(), RoomError> {
        if self.ended.is_some() {
            return Err(RoomError::Ended);
        }
        match input {
            Input::Join { who, name } => {
                if self.is_in(*who) {
                    return Err(RoomError::AlreadyIn);
                }
                if !name_ok(name) {
                    return Err(RoomError::InvalidName);
                }
                if self.listeners.len() + 1 >= self.max {
                    return Err(RoomError::Full);
                }
                self.listeners.push(*who);
            }
            Input::Leave { who } | Input::Disconnected { who } => {
                if self.host == Some(*who) {
                    if matches!(input, Input::Leave { .. }) {
                        self.end(EndReason::HostEnded);
                    } else {
                        self.host = None;
                        self.deadline = now.checked_add(self.grace);
                    }
                } else if let Some(i) = self.listeners.iter().position(|l| l == who) {
                    self.listeners.remove(i);
                } else {
                    return Err(RoomError::NotIn);
                }
            }
            Input::Resume { who, name } => {
                if self.host.is_some() {
                    return Err(RoomError::HostPresent);
                }
                if self.is_in(*who) {
                    return Err(RoomError::AlreadyIn);
                }
                if !name_ok(name) {
                    return Err(RoomError::InvalidName);
                }
                self.host = Some(*who);
                self.deadline = None;
            }
            Input::End { who } => {
                if self.host == Some(*who) {
                    self.end(EndReason::HostEnded);
                } else if self.is_in(*who) {
                    return Err(RoomError::NotAllowed);
                } else {
                    return Err(RoomError::NotIn);
                }
            }
            Input::Shutdown => self.end(EndReason::ServerShutdown),
            other => panic!("the simulation does not generate {other:?}"),
        }
        Ok(())
    }

    fn timeout(&mut self, now: Instant) {
        if self.ended.is_none() && self.host.is_none() && self.deadline.is_some_and(|d| d <= now) {
            self.end(EndReason::HostGone);
        }
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
    ended: usize,
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

/// Mostly someone in the room, sometimes anyone.
fn random_who(rng: &mut Rng, room: &Room) -> ParticipantId {
    let present: Vec<ParticipantId> = room.participants().map(|p| p.id).collect();
    if !present.is_empty() && rng.percent(60) {
        rng.pick(&present)
    } else {
        ParticipantId(rng.below(POOL))
    }
}

fn random_input(rng: &mut Rng, room: &Room) -> Input {
    match rng.below(100) {
        0..=34 => Input::Join {
            who: ParticipantId(rng.below(POOL)),
            name: random_name(rng),
        },
        35..=54 => Input::Leave {
            who: random_who(rng, room),
        },
        55..=74 => Input::Disconnected {
            who: random_who(rng, room),
        },
        75..=89 => Input::Resume {
            who: random_who(rng, room),
            name: random_name(rng),
        },
        90..=98 => Input::End {
            who: match room.host() {
                Some(host) if rng.percent(20) => host,
                _ => random_who(rng, room),
            },
        },
        _ => Input::Shutdown,
    }
}

fn new_room(rng: &mut Rng, now: Instant) -> (Room, Model, Wire) {
    let config = RoomConfig {
        max_participants: rng.pick(&[0, 1, 2, 3, 5, 8, 20, 10_000]),
        host_grace: rng.pick(&[
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(30),
            Duration::MAX,
        ]),
    };
    let id = SpaceId::from_entropy([rng.below(32) as u8; SpaceId::LEN]);
    let mut model = Model {
        host: None,
        listeners: Vec::new(),
        deadline: None,
        ended: None,
        max: config.max_participants.max(1),
        grace: config.host_grace,
    };
    let room = if rng.percent(70) {
        let host = ParticipantId(rng.below(POOL));
        model.host = Some(host);
        Room::new(id, "sim".into(), host, "host".into(), config, now)
    } else {
        model.deadline = now.checked_add(config.host_grace);
        Room::restored(id, "sim".into(), "host".into(), config, now)
    };
    (room, model, Wire::default())
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
                match msg {
                    ServerMsg::Ended { space, reason } => {
                        assert_eq!(space, room.id());
                        assert_eq!(Some(*reason), model.ended);
                        assert_eq!(*except, None);
                        assert_eq!(&recipients, before, "Ended must reach everyone present");
                    }
                    ServerMsg::ParticipantJoined { participant: p } => {
                        assert!(!recipients.contains(&p.id), "{p:?} told of its own join");
                        assert_eq!(p.name, p.name.trim());
                        assert_eq!(Some(p.role), room.role_of(p.id));
                    }
                    ServerMsg::ParticipantLeft { participant } => {
                        assert!(
                            !recipients.contains(participant),
                            "{participant} told of its own leave"
                        );
                        assert!(!after.contains(participant));
                    }
                    other => panic!("unexpected broadcast {other:?}"),
                }
                if !matches!(msg, ServerMsg::Ended { .. }) {
                    assert!(
                        recipients.is_subset(&after),
                        "a broadcast reached someone who left: {recipients:?} vs {after:?}"
                    );
                }
            }
            Output::Media(MediaChange::StartReceiving(p)) => {
                assert!(wire.receivers.insert(*p), "{p} started receiving twice");
            }
            Output::Media(MediaChange::StopReceiving(p)) => {
                assert!(
                    wire.receivers.remove(p),
                    "{p} stopped receiving without starting"
                );
            }
            Output::Media(MediaChange::StartSpeaking(p)) => {
                assert!(wire.speakers.insert(*p), "{p} started speaking twice");
            }
            Output::Media(MediaChange::StopSpeaking(p)) => {
                assert!(
                    wire.speakers.remove(p),
                    "{p} stopped speaking without starting"
                );
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
}

fn check_invariants(room: &Room, model: &Model, wire: &Wire) {
    let listed: Vec<ParticipantId> = room.participants().map(|p| p.id).collect();
    let expected: Vec<ParticipantId> = model.host.iter().chain(&model.listeners).copied().collect();
    assert_eq!(
        listed, expected,
        "participants: host first, then join order"
    );
    assert_eq!(
        room.info()
            .participants
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        expected
    );
    let hosts = room.participants().filter(|p| p.role == Role::Host).count();
    assert!(hosts <= 1, "{hosts} hosts");
    assert_eq!(room.host(), model.host);
    assert!(room.participant_count() <= model.max);
    assert_eq!(room.participant_count(), listed.len());
    let listeners = room
        .participants()
        .filter(|p| p.role == Role::Listener)
        .count();
    assert_eq!(room.listener_count() as usize, listeners);
    assert_eq!(listeners, model.listeners.len());
    assert_eq!(
        wire.receivers,
        model.members(),
        "media receivers vs members"
    );
    assert_eq!(
        wire.speakers,
        room.speakers().collect::<BTreeSet<_>>(),
        "media speakers vs speakers()"
    );
    assert_eq!(wire.speakers, model.host.into_iter().collect());
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
    assert_eq!(room.poll_timeout(), timeout);
}

fn run(seed: u64) {
    let _guard = SeedGuard(seed);
    let mut rng = Rng::new(seed);
    let mut now = Instant::now();
    let (mut room, mut model, mut wire) = new_room(&mut rng, now);
    check_outputs(&mut room, &mut wire, &BTreeSet::new(), &model);
    let mut stats = [0usize; 3]; // accepted, refused, rooms ended
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
                stats[2] += 1;
            }
        } else {
            let input = random_input(&mut rng, &room);
            let snapshot = room.clone();
            let (info, listener_count) = (room.info(), room.listener_count());
            let was_ended = model.ended.is_some();
            let expected = model.apply(&input, now);
            let got = room.handle(input.clone(), now);
            assert_eq!(got, expected, "{input:?}");
            if got.is_err() {
                stats[1] += 1;
                assert_eq!(room, snapshot, "refused {input:?} changed the room");
                assert_eq!(room.info(), info);
                assert_eq!(room.listener_count(), listener_count);
                assert_eq!(
                    room.poll_output(),
                    None,
                    "refused {input:?} produced output"
                );
            } else {
                stats[0] += 1;
            }
            if !was_ended && model.ended.is_some() {
                stats[2] += 1;
            }
        }
        check_outputs(&mut room, &mut wire, &before, &model);
        check_invariants(&room, &model, &wire);
    }
    // A simulation that never exercised both paths proves little.
    assert!(
        stats[0] > STEPS_PER_SEED / 10 && stats[1] > STEPS_PER_SEED / 10,
        "{stats:?}"
    );
    assert!(stats[2] > 10, "only {} rooms ended", stats[2]);
}

#[test]
fn randomized_rooms_keep_their_invariants() {
    match std::env::var("SEED") {
        Ok(seed) => {
            let seed = seed
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("SEED must be a u64, got {seed:?}"));
            run(seed);
        }
        Err(_) => DEFAULT_SEEDS.into_iter().for_each(run),
    }
}
