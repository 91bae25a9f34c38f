//! How a stage message from the server changes the space the app is in. Pure, so every case is
//! tested without a server; [`super::App`] does the I/O the returned [`Effect`] asks for.

use std::collections::HashSet;

use confab_proto::ipc::{CHAT_KEPT, CurrentSpace};
use confab_proto::{ParticipantId, ServerMsg};

/// What the app must do beyond redrawing the space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    /// Nothing more (the space changed, or nothing did).
    None,
    /// Our own entry changed: go on or off the mic, follow the mute the server holds.
    Me { speaks: bool, muted: bool },
    /// Show a reaction.
    Reaction {
        participant: ParticipantId,
        emoji: String,
    },
    /// We were removed (and perhaps blocked); the space is over for us.
    Removed { blocked: bool },
    /// A message this module does not handle.
    Unhandled,
}

/// Whether `who`'s account is in `blocked` (a signed-out participant is never blocked).
pub(super) fn is_blocked(
    cur: &CurrentSpace,
    who: ParticipantId,
    blocked: &HashSet<String>,
) -> bool {
    !blocked.is_empty()
        && cur
            .space
            .participants
            .iter()
            .find(|p| p.id == who)
            .and_then(|p| p.user.as_ref())
            .is_some_and(|u| blocked.contains(u.as_str()))
}

/// Applies `msg` to `cur`. Chat and reactions from accounts in `blocked` are dropped.
pub(super) fn apply(cur: &mut CurrentSpace, msg: ServerMsg, blocked: &HashSet<String>) -> Effect {
    match msg {
        ServerMsg::ParticipantUpdated { participant } => {
            let me = participant.id == cur.you;
            if me {
                let was = cur.role.speaks();
                cur.role = participant.role;
                cur.muted = participant.muted;
                if participant.role.speaks() && !was {
                    cur.invited_by = None;
                }
            }
            match cur
                .space
                .participants
                .iter_mut()
                .find(|p| p.id == participant.id)
            {
                Some(p) => *p = participant.clone(),
                None => cur.space.participants.push(participant.clone()),
            }
            // Host, co-hosts, speakers, listeners; each group keeps its order (a stable sort).
            cur.space.participants.sort_by_key(|p| p.role);
            if me {
                Effect::Me {
                    speaks: participant.role.speaks(),
                    muted: participant.muted,
                }
            } else {
                Effect::None
            }
        }
        ServerMsg::HandQueue { hands } => {
            cur.space.hands = hands;
            Effect::None
        }
        ServerMsg::Invited { by } => {
            cur.invited_by = Some(by);
            Effect::None
        }
        ServerMsg::InviteDeclined { .. } => Effect::None,
        ServerMsg::Reaction { participant, emoji } => {
            if is_blocked(cur, participant, blocked) {
                Effect::None
            } else {
                Effect::Reaction { participant, emoji }
            }
        }
        ServerMsg::Chat { message } => {
            if !is_blocked(cur, message.author, blocked) {
                cur.chat.push(message);
                if cur.chat.len() > CHAT_KEPT {
                    let extra = cur.chat.len() - CHAT_KEPT;
                    cur.chat.drain(..extra);
                }
            }
            Effect::None
        }
        ServerMsg::ChatDeleted { id } => {
            cur.chat.retain(|m| m.id != id);
            Effect::None
        }
        ServerMsg::Pinned { link } => {
            cur.space.pinned = link;
            Effect::None
        }
        ServerMsg::Removed { space, blocked } if space == cur.space.id => {
            Effect::Removed { blocked }
        }
        _ => Effect::Unhandled,
    }
}

#[cfg(test)]
mod tests {
    use confab_proto::{ChatId, ChatMessage, ParticipantInfo, Role, SpaceInfo, SpaceState, UserId};

    use super::*;

    fn person(id: u64, name: &str, role: Role, user: Option<&str>) -> ParticipantInfo {
        ParticipantInfo {
            user: user.map(|u| UserId::new(u).unwrap()),
            ..ParticipantInfo::new(ParticipantId(id), name.into(), role)
        }
    }

    /// Ada hosts; we are Bob (2), a listener; Cy (3) listens too.
    fn space() -> CurrentSpace {
        CurrentSpace {
            space: SpaceInfo {
                id: "abcdefgh2345".parse().unwrap(),
                title: "Morning show".into(),
                host: "Ada".into(),
                state: SpaceState::Live,
                participants: vec![
                    person(1, "Ada", Role::Host, Some("ada")),
                    person(2, "Bob", Role::Listener, Some("bob")),
                    person(3, "Cy", Role::Listener, Some("cy")),
                ],
                pinned: None,
                hands: vec![],
            },
            you: ParticipantId(2),
            role: Role::Listener,
            muted: false,
            media_connected: true,
            invited_by: None,
            chat: vec![],
        }
    }

    fn chat(id: u64, author: u64, text: &str) -> ServerMsg {
        ServerMsg::Chat {
            message: ChatMessage {
                id: ChatId(id),
                author: ParticipantId(author),
                text: text.into(),
                at_ms: id,
            },
        }
    }

    #[test]
    fn being_brought_up_puts_us_on_the_mic_muted_and_first_among_speakers() {
        let mut cur = space();
        cur.invited_by = Some(ParticipantId(1));
        let up = ParticipantInfo {
            muted: true,
            ..person(2, "Bob", Role::Speaker, Some("bob"))
        };
        let effect = apply(
            &mut cur,
            ServerMsg::ParticipantUpdated { participant: up },
            &HashSet::new(),
        );
        assert_eq!(
            effect,
            Effect::Me {
                speaks: true,
                muted: true
            }
        );
        assert_eq!(
            (cur.role, cur.muted, cur.invited_by),
            (Role::Speaker, true, None)
        );
        let order: Vec<u64> = cur.space.participants.iter().map(|p| p.id.0).collect();
        assert_eq!(order, [1, 2, 3], "speakers before listeners");
    }

    #[test]
    fn someone_else_changing_is_no_effect_on_us() {
        let mut cur = space();
        let cy = ParticipantInfo {
            hand_raised: true,
            ..person(3, "Cy", Role::Listener, Some("cy"))
        };
        let effect = apply(
            &mut cur,
            ServerMsg::ParticipantUpdated { participant: cy },
            &HashSet::new(),
        );
        assert_eq!(effect, Effect::None);
        assert!(cur.space.participants[2].hand_raised);
        assert_eq!(cur.role, Role::Listener);
    }

    #[test]
    fn chat_is_kept_bounded_deleted_by_id_and_blocked_authors_are_hidden() {
        let mut cur = space();
        let blocked: HashSet<String> = ["cy".to_owned()].into();
        for i in 0..(CHAT_KEPT as u64 + 5) {
            apply(&mut cur, chat(i, 1, "hi"), &blocked);
        }
        assert_eq!(cur.chat.len(), CHAT_KEPT);
        assert_eq!(cur.chat[0].id, ChatId(5), "the oldest went first");
        apply(&mut cur, chat(9999, 3, "spam"), &blocked);
        assert!(cur.chat.iter().all(|m| m.author != ParticipantId(3)));
        apply(&mut cur, ServerMsg::ChatDeleted { id: ChatId(7) }, &blocked);
        assert!(cur.chat.iter().all(|m| m.id != ChatId(7)));
        assert_eq!(cur.chat.len(), CHAT_KEPT - 1);
    }

    #[test]
    fn reactions_show_unless_their_author_is_blocked() {
        let mut cur = space();
        let blocked: HashSet<String> = ["cy".to_owned()].into();
        let from = |id| ServerMsg::Reaction {
            participant: ParticipantId(id),
            emoji: "👏".into(),
        };
        assert_eq!(
            apply(&mut cur, from(1), &blocked),
            Effect::Reaction {
                participant: ParticipantId(1),
                emoji: "👏".into()
            }
        );
        assert_eq!(apply(&mut cur, from(3), &blocked), Effect::None);
    }

    #[test]
    fn hands_invites_pins_and_removal() {
        let mut cur = space();
        let none = HashSet::new();
        apply(
            &mut cur,
            ServerMsg::HandQueue {
                hands: vec![ParticipantId(3)],
            },
            &none,
        );
        assert_eq!(cur.space.hands, [ParticipantId(3)]);
        apply(
            &mut cur,
            ServerMsg::Invited {
                by: ParticipantId(1),
            },
            &none,
        );
        assert_eq!(cur.invited_by, Some(ParticipantId(1)));
        apply(
            &mut cur,
            ServerMsg::Pinned {
                link: Some("https://example.org".into()),
            },
            &none,
        );
        assert_eq!(cur.space.pinned.as_deref(), Some("https://example.org"));
        let other = ServerMsg::Removed {
            space: "zzzzzzzz2345".parse().unwrap(),
            blocked: false,
        };
        assert_eq!(
            apply(&mut cur, other, &none),
            Effect::Unhandled,
            "another space's removal"
        );
        let ours = ServerMsg::Removed {
            space: cur.space.id.clone(),
            blocked: true,
        };
        assert_eq!(
            apply(&mut cur, ours, &none),
            Effect::Removed { blocked: true }
        );
    }
}
