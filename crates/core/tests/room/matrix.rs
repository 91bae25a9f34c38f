//! The authorization matrix: every privileged action × every kind of actor, generated from
//! one table. A refused cell must give its exact error and leave the room, its listing and
//! its queued outputs exactly as they were; an allowed cell must show its effect. Failures are
//! collected and reported by cell name.

use std::time::{Duration, Instant};

use confab_core::{Input, MediaChange, Output, Room, RoomConfig, RoomError};
use confab_proto::{ChatId, ParticipantId, Role, ServerMsg, SpaceId, SpaceInfo, UserId};

const HOST: ParticipantId = ParticipantId(1);
const COHOST: ParticipantId = ParticipantId(2);
/// A second co-host: the target of co-host-on-co-host actions and of `UnmakeCohost`.
const COHOST2: ParticipantId = ParticipantId(3);
const SPEAKER: ParticipantId = ParticipantId(4);
/// A second speaker, unmuted, the author of chat message 0: the target of mutes, promotion and
/// deleting someone else's message.
const SPEAKER2: ParticipantId = ParticipantId(5);
const LISTENER: ParticipantId = ParticipantId(6);
/// A listener with a raised hand.
const HAND: ParticipantId = ParticipantId(7);
const SIGNED_OUT: ParticipantId = ParticipantId(8);
const REMOVED: ParticipantId = ParticipantId(9);
const BLOCKED: ParticipantId = ParticipantId(10);
/// A signed-in listener: the target of invitations, removal and blocking.
const AUDIENCE: ParticipantId = ParticipantId(12);

const OTHERS_MESSAGE: ChatId = ChatId(0);
const LINK: &str = "https://example.org/agenda";

fn user(name: &str) -> Option<UserId> {
    Some(UserId::new(name).expect("test ids are valid"))
}

/// The room every cell starts from: a host, two co-hosts, two speakers (all unmuted), a
/// listener, a raised hand, a signed-out listener, a removed and a blocked participant, one
/// more listener, and a chat message from the second speaker.
fn fixture(t0: Instant) -> Room {
    let config = RoomConfig {
        max_cohosts: 3,
        ..RoomConfig::default()
    };
    let space = SpaceId::from_entropy([5; SpaceId::LEN]);
    let mut room = Room::new(space, "Matrix".into(), HOST, "host".into(), config, t0)
        .with_host_user(UserId::new("host").expect("valid"));
    let ok = |room: &mut Room, input: Input| {
        let shown = format!("{input:?}");
        room.handle(input, t0)
            .unwrap_or_else(|e| panic!("fixture step {shown}: {e}"));
    };
    for (who, name, account) in [
        (COHOST, "cohost", user("cohost")),
        (COHOST2, "cohost2", user("cohost2")),
        (SPEAKER, "speaker", user("speaker")),
        (SPEAKER2, "speaker2", user("speaker2")),
        (LISTENER, "listener", user("listener")),
        (HAND, "hand", user("hand")),
        (SIGNED_OUT, "signed out", None),
        (REMOVED, "removed", user("removed")),
        (BLOCKED, "blocked", user("blocked")),
        (AUDIENCE, "audience", user("audience")),
    ] {
        ok(
            &mut room,
            Input::Join {
                who,
                name: name.into(),
                user: account,
            },
        );
    }
    for target in [COHOST, COHOST2] {
        ok(&mut room, Input::MakeCohost { who: HOST, target });
        ok(&mut room, Input::UnmuteSelf { who: target });
    }
    for target in [SPEAKER, SPEAKER2] {
        ok(&mut room, Input::Invite { who: HOST, target });
        ok(&mut room, Input::AcceptInvite { who: target });
        ok(&mut room, Input::UnmuteSelf { who: target });
    }
    ok(&mut room, Input::RaiseHand { who: HAND });
    ok(
        &mut room,
        Input::Chat {
            who: SPEAKER2,
            text: "first".into(),
        },
    );
    ok(
        &mut room,
        Input::Remove {
            who: HOST,
            target: REMOVED,
        },
    );
    ok(
        &mut room,
        Input::Block {
            who: HOST,
            target: BLOCKED,
        },
    );
    std::iter::from_fn(|| room.poll_output()).for_each(drop);
    room
}

/// The kinds of actor, in table column order.
const ACTORS: [(&str, ParticipantId); 7] = [
    ("host", HOST),
    ("cohost", COHOST),
    ("speaker", SPEAKER),
    ("listener", LISTENER),
    ("removed", REMOVED),
    ("blocked", BLOCKED),
    ("signed-out", SIGNED_OUT),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Allowed,
    Refused(RoomError),
}

use Expect::Refused;
const OK: Expect = Expect::Allowed;
const NO: Expect = Refused(RoomError::NotAllowed);
const OUT: Expect = Refused(RoomError::NotIn);
const SIGN: Expect = Refused(RoomError::SignInRequired);

/// One column: how to build the input for an actor, what to do first (so an allowed cell has
/// something to change: a hand to lower, an invitation to answer), the expected outcome per
/// actor (host, cohost, speaker, listener, removed, blocked, signed-out), and the effect an
/// allowed cell must show given the outputs it produced.
struct Action {
    name: &'static str,
    input: fn(ParticipantId) -> Input,
    prep: fn(&mut Room, ParticipantId, Instant),
    expect: [Expect; 7],
    effect: fn(&Room, &[Output], ParticipantId) -> bool,
}

fn no_prep(_: &mut Room, _: ParticipantId, _: Instant) {}

fn sent(out: &[Output], want: &Output) -> bool {
    out.contains(want)
}

fn media(change: MediaChange) -> Output {
    Output::Media(change)
}

fn broadcast_has(out: &[Output], pred: impl Fn(&ServerMsg) -> bool) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Broadcast { msg, .. } if pred(msg)))
}

fn info(room: &Room, who: ParticipantId) -> confab_proto::ParticipantInfo {
    room.participant(who).cloned().expect("in the room")
}

/// A removal: the notice reaches the target before its media stops, and it is gone for good.
fn removed(room: &Room, out: &[Output], target: ParticipantId, blocked: bool) -> bool {
    let notice = out.iter().position(|o| {
        matches!(o, Output::Send { to, msg: ServerMsg::Removed { blocked: b, .. } } if *to == target && *b == blocked)
    });
    let stop = out
        .iter()
        .position(|o| *o == media(MediaChange::StopReceiving(target)));
    room.participant(target).is_none()
        && room.was_removed(target)
        && matches!((notice, stop), (Some(n), Some(s)) if n < s)
        && !out[stop.unwrap_or(0)..]
            .iter()
            .any(|o| matches!(o, Output::Send { to, .. } if *to == target))
}

fn actions() -> Vec<Action> {
    vec![
        Action {
            name: "raise_hand",
            input: |who| Input::RaiseHand { who },
            prep: no_prep,
            expect: [NO, NO, NO, OK, OUT, OUT, SIGN],
            effect: |room, out, who| {
                info(room, who).hand_raised
                    && room.hands().last() == Some(&who)
                    && broadcast_has(
                        out,
                        |m| matches!(m, ServerMsg::HandQueue { hands } if hands.contains(&who)),
                    )
            },
        },
        Action {
            name: "lower_hand",
            input: |who| Input::LowerHand { who },
            prep: |room, who, t| {
                let _ = room.handle(Input::RaiseHand { who }, t);
            },
            expect: [NO, NO, NO, OK, OUT, OUT, SIGN],
            effect: |room, _, who| !info(room, who).hand_raised && !room.hands().contains(&who),
        },
        Action {
            name: "approve_hand",
            input: |who| Input::ApproveHand { who, target: HAND },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                let p = info(room, HAND);
                // Up as a speaker, muted: not forwarded until it unmutes.
                p.role == Role::Speaker
                    && p.muted
                    && !p.hand_raised
                    && !out
                        .iter()
                        .any(|o| *o == media(MediaChange::StartSpeaking(HAND)))
            },
        },
        Action {
            name: "dismiss_hand",
            input: |who| Input::DismissHand { who, target: HAND },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, _, _| {
                let p = info(room, HAND);
                p.role == Role::Listener && !p.hand_raised && room.hands().is_empty()
            },
        },
        Action {
            name: "invite",
            input: |who| Input::Invite {
                who,
                target: AUDIENCE,
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, who| {
                room.invited_by(AUDIENCE) == Some(who)
                    && sent(
                        out,
                        &Output::Send {
                            to: AUDIENCE,
                            msg: ServerMsg::Invited { by: who },
                        },
                    )
            },
        },
        Action {
            name: "accept_invite",
            input: |who| Input::AcceptInvite { who },
            prep: |room, who, t| {
                let _ = room.handle(
                    Input::Invite {
                        who: HOST,
                        target: who,
                    },
                    t,
                );
            },
            expect: [
                Refused(RoomError::NoInvite),
                Refused(RoomError::NoInvite),
                Refused(RoomError::NoInvite),
                OK,
                OUT,
                OUT,
                SIGN,
            ],
            effect: |room, _, who| {
                info(room, who).role == Role::Speaker && room.invited_by(who).is_none()
            },
        },
        Action {
            name: "decline_invite",
            input: |who| Input::DeclineInvite { who },
            prep: |room, who, t| {
                let _ = room.handle(
                    Input::Invite {
                        who: HOST,
                        target: who,
                    },
                    t,
                );
            },
            expect: [
                Refused(RoomError::NoInvite),
                Refused(RoomError::NoInvite),
                Refused(RoomError::NoInvite),
                OK,
                OUT,
                OUT,
                SIGN,
            ],
            effect: |room, out, who| {
                info(room, who).role == Role::Listener
                    && room.invited_by(who).is_none()
                    && broadcast_has(out, |m| {
                        *m == ServerMsg::InviteDeclined { participant: who }
                    })
            },
        },
        Action {
            name: "step_down",
            input: |who| Input::StepDown { who },
            prep: no_prep,
            expect: [NO, OK, OK, NO, OUT, OUT, SIGN],
            effect: |room, out, who| {
                info(room, who).role == Role::Listener
                    && sent(out, &media(MediaChange::StopSpeaking(who)))
            },
        },
        Action {
            name: "mute_self",
            input: |who| Input::MuteSelf { who },
            prep: no_prep,
            expect: [OK, OK, OK, NO, OUT, OUT, SIGN],
            effect: |room, out, who| {
                info(room, who).muted && sent(out, &media(MediaChange::StopSpeaking(who)))
            },
        },
        Action {
            name: "unmute_self",
            input: |who| Input::UnmuteSelf { who },
            prep: |room, who, t| {
                let _ = room.handle(Input::MuteSelf { who }, t);
            },
            expect: [OK, OK, OK, NO, OUT, OUT, SIGN],
            effect: |room, out, who| {
                !info(room, who).muted && sent(out, &media(MediaChange::StartSpeaking(who)))
            },
        },
        Action {
            name: "mute a speaker",
            input: |who| Input::Mute {
                who,
                target: SPEAKER2,
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                info(room, SPEAKER2).muted
                    && sent(out, &media(MediaChange::StopSpeaking(SPEAKER2)))
                    && !room.speakers().any(|s| s == SPEAKER2)
            },
        },
        Action {
            name: "mute the host",
            input: |who| Input::Mute { who, target: HOST },
            prep: no_prep,
            // A co-host cannot silence the host; the host muting itself is a self-mute.
            expect: [OK, NO, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                info(room, HOST).muted && sent(out, &media(MediaChange::StopSpeaking(HOST)))
            },
        },
        Action {
            name: "mute_all",
            input: |who| Input::MuteAll { who },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, _, who| {
                let spared = |p: ParticipantId| {
                    p == who || (p == HOST && room.role_of(who) == Some(Role::Cohost))
                };
                room.stage().all(|p| p.muted != spared(p.id)) && room.speakers().all(spared)
            },
        },
        Action {
            name: "remove a listener",
            input: |who| Input::Remove {
                who,
                target: AUDIENCE,
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| removed(room, out, AUDIENCE, false),
        },
        Action {
            name: "remove a cohost",
            input: |who| Input::Remove {
                who,
                target: COHOST2,
            },
            prep: no_prep,
            // Co-hosts do not remove each other: only the host settles that.
            expect: [OK, NO, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                removed(room, out, COHOST2, false)
                    && sent(out, &media(MediaChange::StopSpeaking(COHOST2)))
            },
        },
        Action {
            name: "remove the host",
            input: |who| Input::Remove { who, target: HOST },
            prep: no_prep,
            expect: [
                Refused(RoomError::InvalidTarget),
                NO,
                NO,
                NO,
                OUT,
                OUT,
                SIGN,
            ],
            effect: |_, _, _| false,
        },
        Action {
            name: "block",
            input: |who| Input::Block {
                who,
                target: AUDIENCE,
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                let account = UserId::new("audience").expect("valid");
                removed(room, out, AUDIENCE, true)
                    && room.is_blocked(&account)
                    && sent(out, &Output::Blocked { user: account })
            },
        },
        Action {
            name: "make_cohost",
            input: |who| Input::MakeCohost {
                who,
                target: SPEAKER2,
            },
            prep: no_prep,
            expect: [OK, NO, NO, NO, OUT, OUT, SIGN],
            effect: |room, _, _| info(room, SPEAKER2).role == Role::Cohost,
        },
        Action {
            name: "unmake_cohost",
            input: |who| Input::UnmakeCohost {
                who,
                target: COHOST2,
            },
            prep: no_prep,
            expect: [OK, NO, NO, NO, OUT, OUT, SIGN],
            effect: |room, _, _| {
                let p = info(room, COHOST2);
                // Back to a speaker, still on air.
                p.role == Role::Speaker && room.speakers().any(|s| s == COHOST2)
            },
        },
        Action {
            name: "pin",
            input: |who| Input::Pin {
                who,
                link: Some(LINK.into()),
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |room, out, _| {
                room.pinned() == Some(LINK)
                    && broadcast_has(out, |m| {
                        *m == ServerMsg::Pinned {
                            link: Some(LINK.into()),
                        }
                    })
            },
        },
        Action {
            name: "react",
            input: |who| Input::React {
                who,
                emoji: "👏".into(),
            },
            prep: no_prep,
            expect: [OK, OK, OK, OK, OUT, OUT, SIGN],
            effect: |_, out, who| {
                broadcast_has(out, |m| {
                    *m == ServerMsg::Reaction {
                        participant: who,
                        emoji: "👏".into(),
                    }
                })
            },
        },
        Action {
            name: "chat",
            input: |who| Input::Chat {
                who,
                text: " hello ".into(),
            },
            prep: no_prep,
            expect: [OK, OK, OK, OK, OUT, OUT, SIGN],
            effect: |_, out, who| {
                broadcast_has(
                    out,
                    |m| matches!(m, ServerMsg::Chat { message } if message.author == who && message.text == "hello" && message.id == ChatId(1)),
                )
            },
        },
        Action {
            name: "delete someone's chat",
            input: |who| Input::DeleteChat {
                who,
                id: OTHERS_MESSAGE,
            },
            prep: no_prep,
            expect: [OK, OK, NO, NO, OUT, OUT, SIGN],
            effect: |_, out, _| {
                broadcast_has(out, |m| *m == ServerMsg::ChatDeleted { id: OTHERS_MESSAGE })
            },
        },
        Action {
            name: "delete own chat",
            input: |who| Input::DeleteChat { who, id: ChatId(1) },
            prep: |room, who, t| {
                let _ = room.handle(
                    Input::Chat {
                        who,
                        text: "oops".into(),
                    },
                    t,
                );
            },
            // Without its own message, a removed or signed-out actor is refused before that.
            expect: [OK, OK, OK, OK, OUT, OUT, SIGN],
            effect: |_, out, _| {
                broadcast_has(out, |m| *m == ServerMsg::ChatDeleted { id: ChatId(1) })
            },
        },
        Action {
            name: "end",
            input: |who| Input::End { who },
            prep: no_prep,
            // Only the host may end, so anyone else is simply not allowed, signed in or not.
            expect: [OK, NO, NO, NO, OUT, OUT, NO],
            effect: |room, out, _| {
                room.end_reason().is_some() && matches!(out.last(), Some(Output::Ended { .. }))
            },
        },
    ]
}

/// Everything observable about a room: the room itself (its state and queued outputs, by
/// value), how participants see it, and the queued outputs as they would drain.
#[derive(Debug, PartialEq)]
struct Snapshot {
    room: Room,
    info: SpaceInfo,
    counts: (usize, u32),
    pending: Vec<Output>,
}

fn snapshot(room: &Room) -> Snapshot {
    let mut copy = room.clone();
    Snapshot {
        room: room.clone(),
        info: room.info(),
        counts: (room.participant_count(), room.listener_count()),
        pending: std::iter::from_fn(|| copy.poll_output()).collect(),
    }
}

/// Runs one cell; `Err` names what went wrong.
fn cell(
    base: &Room,
    action: &Action,
    actor: ParticipantId,
    expect: Expect,
    t0: Instant,
) -> Result<(), String> {
    let mut room = base.clone();
    (action.prep)(&mut room, actor, t0);
    // Whatever the preparation queued stays queued: a refusal must not touch it.
    let before = snapshot(&room);
    let now = t0 + Duration::from_secs(1);
    let got = room.handle((action.input)(actor), now);
    match (expect, got) {
        (Refused(want), Err(err)) if want == err => {
            let after = snapshot(&room);
            if after != before {
                return Err(format!("refused with {err:?} but changed the room"));
            }
            Ok(())
        }
        (Expect::Allowed, Ok(())) => {
            let all: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
            let new = all.get(before.pending.len()..).unwrap_or_default();
            if all.get(..before.pending.len()) != Some(&before.pending[..]) {
                return Err("queued outputs were disturbed".into());
            }
            if new.is_empty() {
                return Err("allowed but produced no output".into());
            }
            if !(action.effect)(&room, new, actor) {
                return Err(format!(
                    "allowed but the effect is missing; outputs: {new:?}"
                ));
            }
            Ok(())
        }
        (expect, got) => Err(format!("expected {expect:?}, got {got:?}")),
    }
}

#[test]
fn every_privileged_action_by_every_kind_of_actor() {
    let t0 = Instant::now();
    let base = fixture(t0);
    // The fixture is what the table assumes.
    let role = |who| base.role_of(who);
    assert_eq!(
        [
            HOST, COHOST, COHOST2, SPEAKER, SPEAKER2, LISTENER, HAND, SIGNED_OUT
        ]
        .map(role),
        [
            Some(Role::Host),
            Some(Role::Cohost),
            Some(Role::Cohost),
            Some(Role::Speaker),
            Some(Role::Speaker),
            Some(Role::Listener),
            Some(Role::Listener),
            Some(Role::Listener)
        ]
    );
    assert_eq!((role(REMOVED), role(BLOCKED)), (None, None));
    assert_eq!(base.speakers().count(), 5, "everyone on the mic is unmuted");

    let mut failures = Vec::new();
    let mut cells = 0;
    for action in actions() {
        for (i, (actor_name, actor)) in ACTORS.iter().enumerate() {
            cells += 1;
            if let Err(why) = cell(&base, &action, *actor, action.expect[i], t0) {
                failures.push(format!("{} by {actor_name}: {why}", action.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, 25 * ACTORS.len());
}

#[test]
fn a_blocked_or_removed_account_cannot_come_back_under_a_new_connection() {
    let t0 = Instant::now();
    let mut room = fixture(t0);
    for (who, account, err) in [
        (ParticipantId(100), "blocked", RoomError::Blocked),
        (ParticipantId(101), "removed", RoomError::Removed),
    ] {
        let before = snapshot(&room);
        let join = Input::Join {
            who,
            name: account.into(),
            user: user(account),
        };
        assert_eq!(room.handle(join, t0), Err(err));
        assert_eq!(err.code().clone(), err.code());
        assert_eq!(snapshot(&room), before);
    }
    // The removed connections themselves, whatever they claim to be.
    for who in [REMOVED, BLOCKED] {
        let join = Input::Join {
            who,
            name: "again".into(),
            user: None,
        };
        assert_eq!(room.handle(join, t0), Err(RoomError::Removed));
    }
    // A signed-out newcomer may still listen.
    room.handle(
        Input::Join {
            who: ParticipantId(102),
            name: "guest".into(),
            user: None,
        },
        t0,
    )
    .unwrap();
    assert_eq!(room.role_of(ParticipantId(102)), Some(Role::Listener));
}
