//! The room driven from outside, as the server drives it: scenarios a user would notice
//! (the host comes back in time or the space ends; a full space turns people away), and a
//! seeded randomized simulation (`sim`) that checks the room's invariants after every step.

mod matrix;
mod sim;
mod stage;

use std::time::{Duration, Instant};

use confab_core::{Input, MediaChange, Output, Room, RoomConfig, RoomError};
use confab_proto::{EndReason, ParticipantId, Role, ServerMsg, SpaceId, SpaceState};

const HOST: ParticipantId = ParticipantId(1);
const GRACE: Duration = Duration::from_secs(30);

fn space() -> SpaceId {
    SpaceId::from_entropy([3; SpaceId::LEN])
}

fn drain(room: &mut Room) -> Vec<Output> {
    std::iter::from_fn(|| room.poll_output()).collect()
}

fn config(max_participants: usize) -> RoomConfig {
    RoomConfig {
        max_participants,
        host_grace: GRACE,
        ..RoomConfig::default()
    }
}

fn live_room(config: RoomConfig, now: Instant) -> Room {
    let mut room = Room::new(space(), "Evening".into(), HOST, "ada".into(), config, now);
    drain(&mut room);
    room
}

fn join(room: &mut Room, id: u64, now: Instant) -> Result<(), RoomError> {
    room.handle(
        Input::Join {
            who: ParticipantId(id),
            name: format!("listener {id}"),
            user: None,
        },
        now,
    )
}

fn resume(who: ParticipantId) -> Input {
    Input::Resume {
        who,
        name: "ada".into(),
    }
}

/// Calls `handle_timeout` every `step` the way a server's timer loop would, from `from` to `to`.
fn tick(room: &mut Room, from: Instant, to: Instant, step: Duration) -> Vec<Output> {
    let mut now = from;
    let mut out = Vec::new();
    while now <= to {
        room.handle_timeout(now);
        out.extend(drain(room));
        now += step;
    }
    out
}

#[test]
fn a_host_who_reconnects_in_time_keeps_the_space_live() {
    let t0 = Instant::now();
    let mut room = live_room(config(100), t0);
    for id in 10..15 {
        join(&mut room, id, t0).unwrap();
    }
    let lost_at = t0 + Duration::from_secs(600);
    room.handle(Input::Disconnected { who: HOST }, lost_at)
        .unwrap();
    drain(&mut room);
    let deadline = lost_at + GRACE;
    assert_eq!(room.poll_timeout(), Some(deadline));

    let back_at = deadline - Duration::from_millis(1);
    assert!(tick(&mut room, lost_at, back_at, Duration::from_millis(250)).is_empty());
    let again = ParticipantId(2);
    room.handle(resume(again), back_at).unwrap();
    drain(&mut room);

    // Hours later nothing has fired: the deadline went with the empty seat.
    let later = back_at + Duration::from_secs(3 * 3600);
    assert!(tick(&mut room, back_at, later, Duration::from_secs(1)).is_empty());
    assert_eq!(room.state(), SpaceState::Live);
    assert_eq!(room.host(), Some(again));
    assert_eq!(room.listener_count(), 5);
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn a_host_who_stays_away_ends_the_space_exactly_at_the_deadline() {
    let t0 = Instant::now();
    let mut room = live_room(config(100), t0);
    for id in [10, 11] {
        join(&mut room, id, t0).unwrap();
    }
    room.handle(Input::Disconnected { who: HOST }, t0).unwrap();
    drain(&mut room);
    let deadline = t0 + GRACE;

    assert!(
        tick(
            &mut room,
            t0,
            deadline - Duration::from_nanos(1),
            Duration::from_secs(1)
        )
        .is_empty()
    );
    room.handle_timeout(deadline - Duration::from_nanos(1));
    assert_eq!(room.poll_output(), None);
    assert_eq!(room.state(), SpaceState::Live);

    room.handle_timeout(deadline);
    let ended = ServerMsg::Ended {
        space: space(),
        reason: EndReason::HostGone,
    };
    assert_eq!(
        drain(&mut room),
        [
            Output::Broadcast {
                msg: ended,
                except: None
            },
            Output::Media(MediaChange::StopReceiving(ParticipantId(10))),
            Output::Media(MediaChange::StopReceiving(ParticipantId(11))),
            Output::Ended {
                reason: EndReason::HostGone
            },
        ]
    );
    assert_eq!(room.end_reason(), Some(EndReason::HostGone));
    // Once, not again: more ticks and a late resume produce nothing.
    room.handle_timeout(deadline + GRACE);
    assert_eq!(room.handle(resume(HOST), deadline), Err(RoomError::Ended));
    assert_eq!(room.poll_output(), None);
}

#[test]
fn each_loss_of_the_host_restarts_the_grace() {
    let t0 = Instant::now();
    let mut room = live_room(config(100), t0);
    room.handle(Input::Disconnected { who: HOST }, t0).unwrap();
    room.handle(resume(ParticipantId(2)), t0 + Duration::from_secs(20))
        .unwrap();
    let second_loss = t0 + Duration::from_secs(40);
    room.handle(
        Input::Disconnected {
            who: ParticipantId(2),
        },
        second_loss,
    )
    .unwrap();
    drain(&mut room);
    // The first loss's deadline (t0 + 30 s) is long gone; only the second one counts.
    room.handle_timeout(second_loss + GRACE - Duration::from_nanos(1));
    assert_eq!(room.state(), SpaceState::Live);
    room.handle_timeout(second_loss + GRACE);
    assert_eq!(room.end_reason(), Some(EndReason::HostGone));
}

#[test]
fn a_restored_space_is_resumed_by_its_host() {
    let t0 = Instant::now();
    let mut room = Room::restored(space(), "Evening".into(), "ada".into(), config(100), t0);
    // Listeners may come back before the host does.
    join(&mut room, 10, t0).unwrap();
    drain(&mut room);
    room.handle(resume(HOST), t0 + GRACE - Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        drain(&mut room)
            .into_iter()
            .filter(|o| matches!(o, Output::Media(_)))
            .collect::<Vec<_>>(),
        [
            Output::Media(MediaChange::StartSpeaking(HOST)),
            Output::Media(MediaChange::StartReceiving(HOST)),
        ]
    );
    room.handle_timeout(t0 + GRACE * 2);
    assert_eq!(room.state(), SpaceState::Live);
    let info = room.info();
    assert_eq!(info.host, "ada");
    let roles: Vec<_> = info.participants.iter().map(|p| (p.id, p.role)).collect();
    assert_eq!(
        roles,
        [(HOST, Role::Host), (ParticipantId(10), Role::Listener)]
    );
}

#[test]
fn the_default_limit_admits_ten_thousand_including_the_host() {
    let t0 = Instant::now();
    let mut room = live_room(RoomConfig::default(), t0);
    for id in 2..=10_000 {
        join(&mut room, id, t0).unwrap();
    }
    drain(&mut room);
    assert_eq!(
        (room.participant_count(), room.listener_count()),
        (10_000, 9_999)
    );

    let before = room.clone();
    assert_eq!(join(&mut room, 10_001, t0), Err(RoomError::Full));
    assert_eq!(room, before);
    assert_eq!(room.poll_output(), None);

    // A seat freed is a seat taken.
    room.handle(
        Input::Leave {
            who: ParticipantId(5_000),
        },
        t0,
    )
    .unwrap();
    join(&mut room, 10_001, t0).unwrap();
    assert_eq!(join(&mut room, 10_002, t0), Err(RoomError::Full));
    drain(&mut room);
    let ids: Vec<u64> = room.participants().map(|p| p.id.0).collect();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(
        ids.last(),
        Some(&10_001),
        "the latest joiner is listed last"
    );
}

#[test]
fn the_host_seat_is_kept_even_when_the_space_is_full() {
    let t0 = Instant::now();
    let mut room = live_room(config(3), t0);
    join(&mut room, 10, t0).unwrap();
    join(&mut room, 11, t0).unwrap();
    assert_eq!(join(&mut room, 12, t0), Err(RoomError::Full));
    room.handle(Input::Disconnected { who: HOST }, t0).unwrap();
    // The host's empty seat is not up for grabs.
    assert_eq!(join(&mut room, 12, t0), Err(RoomError::Full));
    room.handle(resume(ParticipantId(2)), t0).unwrap();
    assert_eq!(room.participant_count(), 3);
}

#[test]
fn tiny_limits_leave_only_the_host() {
    let t0 = Instant::now();
    for max in [0, 1] {
        let mut room = live_room(config(max), t0);
        assert_eq!(join(&mut room, 10, t0), Err(RoomError::Full), "max {max}");
        assert_eq!(room.participant_count(), 1);
        assert_eq!(room.poll_output(), None);
    }
}

#[test]
fn refusals_carry_their_wire_codes() {
    use confab_proto::ErrorCode;
    let t0 = Instant::now();
    let mut room = live_room(config(100), t0);
    join(&mut room, 10, t0).unwrap();
    let cases = [
        (join(&mut room, 10, t0), ErrorCode::AlreadyInSpace),
        (
            room.handle(
                Input::End {
                    who: ParticipantId(10),
                },
                t0,
            ),
            ErrorCode::NotAllowed,
        ),
        (
            room.handle(resume(ParticipantId(11)), t0),
            ErrorCode::NotAllowed,
        ),
        (
            room.handle(
                Input::Leave {
                    who: ParticipantId(11),
                },
                t0,
            ),
            ErrorCode::NotInSpace,
        ),
        (
            room.handle(
                Input::Join {
                    who: ParticipantId(11),
                    name: "\t".into(),
                    user: None,
                },
                t0,
            ),
            ErrorCode::InvalidInput,
        ),
    ];
    for (result, code) in cases {
        assert_eq!(result.map_err(|e| e.code()), Err(code));
    }
}
