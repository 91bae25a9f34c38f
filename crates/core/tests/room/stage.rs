//! The stage as people use it: going up and coming down, what is heard while muted, the limits
//! on the mic, and the rate limits on reactions and chat, with time passed in explicitly.

use std::time::{Duration, Instant};

use confab_core::{Input, MediaChange, Output, RateLimit, Room, RoomConfig, RoomError};
use confab_proto::{ChatId, ParticipantId, REACTIONS, Role, ServerMsg, SpaceId, UserId};

const HOST: ParticipantId = ParticipantId(1);

fn user(i: u64) -> Option<UserId> {
    UserId::new(format!("user{i}")).ok()
}

fn drain(room: &mut Room) -> Vec<Output> {
    std::iter::from_fn(|| room.poll_output()).collect()
}

/// A live room with signed-in listeners 10.. (as many as asked), outputs drained.
fn room(config: RoomConfig, listeners: u64, t0: Instant) -> Room {
    let space = SpaceId::from_entropy([9; SpaceId::LEN]);
    let mut room = Room::new(space, "Stage".into(), HOST, "ada".into(), config, t0);
    for i in 10..10 + listeners {
        room.handle(
            Input::Join {
                who: ParticipantId(i),
                name: format!("listener {i}"),
                user: user(i),
            },
            t0,
        )
        .expect("the fixture's joins fit");
    }
    // The joins' news goes out with the tick; the tests start after it.
    if let Some(due) = room.news_due() {
        room.handle_timeout(due);
    }
    drain(&mut room);
    room
}

fn forwarded(room: &Room) -> Vec<ParticipantId> {
    room.speakers().collect()
}

/// Asserts `input` is refused with `err` and the room (queued outputs included) is unchanged.
fn refused(room: &mut Room, input: Input, now: Instant, err: RoomError) {
    let before = room.clone();
    let shown = format!("{input:?}");
    assert_eq!(room.handle(input, now), Err(err), "{shown}");
    assert_eq!(*room, before, "{shown} changed the room");
}

#[test]
fn a_raised_hand_goes_up_muted_speaks_when_unmuted_and_comes_back_down() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 2, t0);
    let ann = ParticipantId(10);
    room.handle(Input::RaiseHand { who: ann }, t0).unwrap();
    assert_eq!(room.hands(), [ann]);
    let out = drain(&mut room);
    assert!(out.contains(&Output::Broadcast {
        msg: ServerMsg::HandQueue { hands: vec![ann] },
        except: None
    }));

    room.handle(
        Input::ApproveHand {
            who: HOST,
            target: ann,
        },
        t0,
    )
    .unwrap();
    let out = drain(&mut room);
    assert_eq!(room.role_of(ann), Some(Role::Speaker));
    assert!(room.hands().is_empty());
    // On the mic but muted: nothing of hers is forwarded yet.
    assert!(
        !out.iter().any(|o| matches!(o, Output::Media(_))),
        "{out:?}"
    );
    assert_eq!(forwarded(&room), [HOST]);

    room.handle(Input::UnmuteSelf { who: ann }, t0).unwrap();
    assert!(drain(&mut room).contains(&Output::Media(MediaChange::StartSpeaking(ann))));
    assert_eq!(forwarded(&room), [HOST, ann]);

    // The host mutes her: her audio stops at the SFU, not just in the UI.
    room.handle(
        Input::Mute {
            who: HOST,
            target: ann,
        },
        t0,
    )
    .unwrap();
    assert!(drain(&mut room).contains(&Output::Media(MediaChange::StopSpeaking(ann))));
    assert_eq!(forwarded(&room), [HOST]);
    // She may unmute herself again (as in other live-audio apps); removal is the sanction.
    room.handle(Input::UnmuteSelf { who: ann }, t0).unwrap();
    assert_eq!(forwarded(&room), [HOST, ann]);

    room.handle(Input::StepDown { who: ann }, t0).unwrap();
    assert!(drain(&mut room).contains(&Output::Media(MediaChange::StopSpeaking(ann))));
    let p = room.participant(ann).unwrap();
    assert_eq!(
        (p.role, p.muted, p.hand_raised),
        (Role::Listener, false, false)
    );
    assert_eq!(forwarded(&room), [HOST]);
}

#[test]
fn the_listing_is_host_cohosts_speakers_listeners_and_counts_agree() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 5, t0);
    let [a, b, c, d, e] = [10, 11, 12, 13, 14].map(ParticipantId);
    for target in [d, b] {
        room.handle(Input::Invite { who: HOST, target }, t0)
            .unwrap();
        room.handle(Input::AcceptInvite { who: target }, t0)
            .unwrap();
    }
    room.handle(
        Input::MakeCohost {
            who: HOST,
            target: e,
        },
        t0,
    )
    .unwrap();
    let order: Vec<ParticipantId> = room.participants().map(|p| p.id).collect();
    assert_eq!(order, [HOST, e, b, d, a, c]);
    assert_eq!(room.info().participants.len(), 6);
    assert_eq!((room.participant_count(), room.listener_count()), (6, 2));
}

#[test]
fn the_mic_holds_the_host_two_cohosts_and_ten_speakers() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 20, t0);
    for i in 10..20 {
        let who = ParticipantId(i);
        room.handle(Input::RaiseHand { who }, t0).unwrap();
        room.handle(
            Input::ApproveHand {
                who: HOST,
                target: who,
            },
            t0,
        )
        .unwrap();
    }
    for i in [20, 21] {
        room.handle(
            Input::MakeCohost {
                who: HOST,
                target: ParticipantId(i),
            },
            t0,
        )
        .unwrap();
    }
    assert_eq!(room.stage().count(), 13);
    let late = ParticipantId(22);
    room.handle(Input::RaiseHand { who: late }, t0).unwrap();
    refused(
        &mut room,
        Input::ApproveHand {
            who: HOST,
            target: late,
        },
        t0,
        RoomError::StageFull,
    );
    refused(
        &mut room,
        Input::Invite {
            who: HOST,
            target: late,
        },
        t0,
        RoomError::StageFull,
    );
    refused(
        &mut room,
        Input::MakeCohost {
            who: HOST,
            target: late,
        },
        t0,
        RoomError::StageFull,
    );
    // A speaker stepping down frees a seat for the raised hand.
    room.handle(
        Input::StepDown {
            who: ParticipantId(10),
        },
        t0,
    )
    .unwrap();
    room.handle(
        Input::ApproveHand {
            who: HOST,
            target: late,
        },
        t0,
    )
    .unwrap();
    assert_eq!(room.stage().count(), 13);
    // A co-host demoted while every speaker seat is taken goes to the audience.
    room.handle(
        Input::UnmakeCohost {
            who: HOST,
            target: ParticipantId(20),
        },
        t0,
    )
    .unwrap();
    assert_eq!(room.role_of(ParticipantId(20)), Some(Role::Listener));
}

#[test]
fn an_invitation_waits_for_a_seat_and_goes_with_its_listener() {
    let t0 = Instant::now();
    let config = RoomConfig {
        max_speakers: 1,
        ..RoomConfig::default()
    };
    let mut room = room(config, 3, t0);
    let [a, b, c] = [10, 11, 12].map(ParticipantId);
    room.handle(
        Input::Invite {
            who: HOST,
            target: a,
        },
        t0,
    )
    .unwrap();
    assert_eq!(
        drain(&mut room),
        [Output::Send {
            to: a,
            msg: ServerMsg::Invited { by: HOST }
        }]
    );
    room.handle(
        Input::Invite {
            who: HOST,
            target: b,
        },
        t0,
    )
    .unwrap();
    room.handle(Input::AcceptInvite { who: b }, t0).unwrap();
    // The seat went to b first; a's invitation stays until a seat frees.
    refused(
        &mut room,
        Input::AcceptInvite { who: a },
        t0,
        RoomError::StageFull,
    );
    room.handle(Input::StepDown { who: b }, t0).unwrap();
    room.handle(Input::AcceptInvite { who: a }, t0).unwrap();
    assert_eq!(room.role_of(a), Some(Role::Speaker));
    // Leaving drops an invitation; declining tells the room.
    room.handle(Input::StepDown { who: a }, t0).unwrap();
    room.handle(
        Input::Invite {
            who: HOST,
            target: c,
        },
        t0,
    )
    .unwrap();
    room.handle(Input::Leave { who: c }, t0).unwrap();
    assert_eq!(room.invited_by(c), None);
    room.handle(
        Input::Invite {
            who: HOST,
            target: a,
        },
        t0,
    )
    .unwrap();
    drain(&mut room);
    room.handle(Input::DeclineInvite { who: a }, t0).unwrap();
    assert_eq!(
        drain(&mut room),
        [Output::Broadcast {
            msg: ServerMsg::InviteDeclined { participant: a },
            except: None
        }]
    );
    refused(
        &mut room,
        Input::DeclineInvite { who: a },
        t0,
        RoomError::NoInvite,
    );
}

#[test]
fn a_removed_participant_is_told_first_then_hears_and_is_told_nothing() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 2, t0);
    let [a, b] = [10, 11].map(ParticipantId);
    room.handle(
        Input::Invite {
            who: HOST,
            target: a,
        },
        t0,
    )
    .unwrap();
    room.handle(Input::AcceptInvite { who: a }, t0).unwrap();
    room.handle(Input::UnmuteSelf { who: a }, t0).unwrap();
    drain(&mut room);
    room.handle(
        Input::Block {
            who: HOST,
            target: a,
        },
        t0,
    )
    .unwrap();
    let space = room.id().clone();
    assert_eq!(
        drain(&mut room),
        [
            Output::Send {
                to: a,
                msg: ServerMsg::Removed {
                    space,
                    blocked: true
                }
            },
            Output::Media(MediaChange::StopSpeaking(a)),
            Output::Media(MediaChange::StopReceiving(a)),
            Output::Broadcast {
                msg: ServerMsg::Participants {
                    joined: Vec::new(),
                    left: vec![a],
                    listeners: room.listener_count(),
                },
                except: None
            },
            Output::Blocked {
                user: user(10).unwrap()
            },
        ]
    );
    // Everything from the removed connection is refused as from someone not there.
    for input in [
        Input::React {
            who: a,
            emoji: "👋".into(),
        },
        Input::Chat {
            who: a,
            text: "let me back".into(),
        },
        Input::RaiseHand { who: a },
        Input::Leave { who: a },
    ] {
        refused(&mut room, input, t0, RoomError::NotIn);
    }
    // Later broadcasts are addressed to the room, which a no longer is in.
    room.handle(
        Input::Chat {
            who: b,
            text: "hi".into(),
        },
        t0,
    )
    .unwrap();
    assert!(
        drain(&mut room)
            .iter()
            .all(|o| !matches!(o, Output::Send { to, .. } if *to == a))
    );
}

#[test]
fn signed_out_people_listen_only() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 0, t0);
    let guest = ParticipantId(50);
    room.handle(
        Input::Join {
            who: guest,
            name: "guest".into(),
            user: None,
        },
        t0,
    )
    .unwrap();
    for input in [
        Input::RaiseHand { who: guest },
        Input::React {
            who: guest,
            emoji: "💯".into(),
        },
        Input::Chat {
            who: guest,
            text: "hello".into(),
        },
    ] {
        refused(&mut room, input, t0, RoomError::SignInRequired);
    }
    assert_eq!(
        RoomError::SignInRequired.code(),
        confab_proto::ErrorCode::SignInRequired
    );
    // And cannot be brought up: the host's invitation is refused for it.
    refused(
        &mut room,
        Input::Invite {
            who: HOST,
            target: guest,
        },
        t0,
        RoomError::InvalidTarget,
    );
    refused(
        &mut room,
        Input::MakeCohost {
            who: HOST,
            target: guest,
        },
        t0,
        RoomError::InvalidTarget,
    );
}

#[test]
fn reactions_come_in_bursts_of_five_then_one_a_second() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 2, t0);
    let [a, b] = [10, 11].map(ParticipantId);
    let react = |who, i: usize| Input::React {
        who,
        emoji: REACTIONS[i % REACTIONS.len()].into(),
    };
    for i in 0..5 {
        room.handle(react(a, i), t0).unwrap();
    }
    refused(&mut room, react(a, 5), t0, RoomError::RateLimited);
    refused(
        &mut room,
        react(a, 5),
        t0 + Duration::from_millis(999),
        RoomError::RateLimited,
    );
    // Per account: b is not held back by a.
    room.handle(react(b, 0), t0).unwrap();
    let t1 = t0 + Duration::from_secs(1);
    room.handle(react(a, 6), t1).unwrap();
    refused(&mut room, react(a, 7), t1, RoomError::RateLimited);
    // Ten quiet seconds refill the burst, and no more than it.
    let t2 = t1 + Duration::from_secs(10);
    for i in 0..5 {
        room.handle(react(a, i), t2).unwrap();
    }
    refused(&mut room, react(a, 0), t2, RoomError::RateLimited);
    // Not one of the set: refused before it costs anything.
    refused(
        &mut room,
        Input::React {
            who: b,
            emoji: "👍".into(),
        },
        t2,
        RoomError::InvalidReaction,
    );
    let sent = drain(&mut room)
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Broadcast {
                    msg: ServerMsg::Reaction { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(sent, 5 + 1 + 1 + 5);
}

#[test]
fn chat_comes_in_bursts_of_three_then_one_every_two_seconds_even_across_a_rejoin() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 1, t0);
    let a = ParticipantId(10);
    let chat = |who, text: &str| Input::Chat {
        who,
        text: text.into(),
    };
    for i in 0..3 {
        room.handle(chat(a, &format!("line {i}")), t0).unwrap();
    }
    refused(&mut room, chat(a, "one more"), t0, RoomError::RateLimited);
    // Leaving and coming back under a new connection does not refill the bucket.
    room.handle(Input::Leave { who: a }, t0).unwrap();
    let a2 = ParticipantId(11);
    room.handle(
        Input::Join {
            who: a2,
            name: "back".into(),
            user: user(10),
        },
        t0,
    )
    .unwrap();
    refused(
        &mut room,
        chat(a2, "one more"),
        t0 + Duration::from_millis(1999),
        RoomError::RateLimited,
    );
    let t2 = t0 + Duration::from_secs(2);
    room.handle(chat(a2, "now"), t2).unwrap();
    refused(&mut room, chat(a2, "and again"), t2, RoomError::RateLimited);
    // Invalid text is refused as such and costs nothing.
    refused(&mut room, chat(a2, "   "), t2, RoomError::InvalidChat);
    refused(
        &mut room,
        chat(a2, &"x".repeat(501)),
        t2,
        RoomError::InvalidChat,
    );
    let messages: Vec<(ChatId, u64)> = drain(&mut room)
        .into_iter()
        .filter_map(|o| match o {
            Output::Broadcast {
                msg: ServerMsg::Chat { message },
                ..
            } => Some((message.id, message.at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        [
            (ChatId(0), 0),
            (ChatId(1), 0),
            (ChatId(2), 0),
            (ChatId(3), 2000)
        ]
    );
}

#[test]
fn the_limits_are_configurable() {
    let t0 = Instant::now();
    let config = RoomConfig {
        reaction_limit: RateLimit {
            burst: 1,
            every: Duration::from_millis(100),
        },
        chat_limit: RateLimit {
            burst: 10,
            every: Duration::from_secs(60),
        },
        ..RoomConfig::default()
    };
    let mut room = room(config, 1, t0);
    let a = ParticipantId(10);
    let react = Input::React {
        who: a,
        emoji: "🙌".into(),
    };
    room.handle(react.clone(), t0).unwrap();
    refused(&mut room, react.clone(), t0, RoomError::RateLimited);
    room.handle(react, t0 + Duration::from_millis(100)).unwrap();
    for i in 0..10 {
        room.handle(
            Input::Chat {
                who: a,
                text: format!("{i}"),
            },
            t0,
        )
        .unwrap();
    }
}

#[test]
fn chat_is_deleted_by_its_author_or_a_moderator_only() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 2, t0);
    let [a, b] = [10, 11].map(ParticipantId);
    room.handle(
        Input::Chat {
            who: a,
            text: "mine".into(),
        },
        t0,
    )
    .unwrap();
    refused(
        &mut room,
        Input::DeleteChat {
            who: b,
            id: ChatId(0),
        },
        t0,
        RoomError::NotAllowed,
    );
    refused(
        &mut room,
        Input::DeleteChat {
            who: a,
            id: ChatId(7),
        },
        t0,
        RoomError::NoSuchMessage,
    );
    room.handle(
        Input::DeleteChat {
            who: a,
            id: ChatId(0),
        },
        t0,
    )
    .unwrap();
    refused(
        &mut room,
        Input::DeleteChat {
            who: HOST,
            id: ChatId(0),
        },
        t0,
        RoomError::NoSuchMessage,
    );
}

#[test]
fn pins_are_http_links_or_nothing() {
    let t0 = Instant::now();
    let mut room = room(RoomConfig::default(), 0, t0);
    for bad in ["javascript:alert(1)", "ftp://x.org", "https://", "notes"] {
        refused(
            &mut room,
            Input::Pin {
                who: HOST,
                link: Some(bad.into()),
            },
            t0,
            RoomError::InvalidLink,
        );
    }
    room.handle(
        Input::Pin {
            who: HOST,
            link: Some(" https://example.org/x ".into()),
        },
        t0,
    )
    .unwrap();
    assert_eq!(room.pinned(), Some("https://example.org/x"));
    assert_eq!(room.info().pinned.as_deref(), Some("https://example.org/x"));
    room.handle(
        Input::Pin {
            who: HOST,
            link: None,
        },
        t0,
    )
    .unwrap();
    assert_eq!(room.pinned(), None);
    let out = drain(&mut room);
    assert_eq!(out.len(), 2, "{out:?}");
}
