//! One task per signaling connection: decodes frames, checks them, and talks to room tasks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use confab_core::Room;
use confab_proto::{
    ClientMsg, ErrorCode, MAX_NAME_CHARS, MAX_TITLE_CHARS, MAX_TOPIC_CHARS, MAX_TOPICS,
    PROTOCOL_VERSION, ParticipantId, Role, ServerMsg, SpaceId, SpaceState, UserId, decode_client,
    encode, joined_frames,
};
use confab_rtc::{MuxSession, SessionEvent};
use futures_util::{SinkExt, StreamExt};
use rand::RngExt as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::Shared;
use crate::room::{self, Refusal, RoomCmd, lock};

/// A connection that sends this many refused frames in a row is closed: it is broken or
/// hostile, and answering forever costs us.
const MAX_CONSECUTIVE_ERRORS: u32 = 32;

/// How long directory changes are gathered before one snapshot goes to a watcher.
const DIRECTORY_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a new connection may take to send `hello`.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

struct Conn {
    shared: Arc<Shared>,
    who: ParticipantId,
    name: Option<String>,
    /// The account this connection signed in as (hello's token), if any.
    user: Option<UserId>,
    room: Option<(SpaceId, mpsc::Sender<RoomCmd>)>,
    session: Option<MuxSession>,
    out: room::Conn,
    /// Set once the client asked for directory updates.
    watching: Option<watch::Receiver<u64>>,
    close: bool,
}

pub(crate) async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let who = ParticipantId(shared.next_participant.fetch_add(1, Ordering::Relaxed));
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<room::Outbound>(256);
    let mut shutdown = shared.shutdown.clone();
    let mut conn = Conn {
        shared,
        who,
        name: None,
        user: None,
        room: None,
        session: None,
        out: out_tx,
        watching: None,
        close: false,
    };
    let mut errors_in_a_row = 0;
    // A connection that never says hello holds a socket for nothing: give it a deadline.
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);
    tracing::debug!(participant = %who, "signaling connected");
    while !conn.close {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let reply = error(ErrorCode::BadFrame, "signaling frames are JSON text, not binary");
                        if send(&mut sink, &reply).await.is_err() { break; }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let replies = conn.handle_frame(text.as_str()).await;
                for reply in replies {
                    if let ServerMsg::Error { code, message } = &reply {
                        errors_in_a_row += 1;
                        tracing::warn!(participant = %who, ?code, %message, "refused a signaling frame");
                    } else {
                        errors_in_a_row = 0;
                    }
                    if send(&mut sink, &reply).await.is_err() {
                        conn.close = true;
                    }
                }
                if errors_in_a_row >= MAX_CONSECUTIVE_ERRORS {
                    tracing::warn!(participant = %who, "closing a connection that sends only bad frames");
                    break;
                }
            }
            Some(out) = out_rx.recv() => {
                if let Some(space) = &out.ended
                    && conn.room.as_ref().is_some_and(|(id, _)| id == space)
                {
                    conn.room = None;
                    conn.close_media().await;
                }
                if sink.send(Message::Text(out.text)).await.is_err() { break; }
            }
            true = directory_changed(&mut conn.watching) => {
                // Coalesce a burst of changes (a join storm) into one snapshot.
                tokio::time::sleep(DIRECTORY_DEBOUNCE).await;
                if let Some(rx) = conn.watching.as_mut() {
                    rx.borrow_and_update();
                }
                let spaces = crate::http::live_directory(&conn.shared);
                if send(&mut sink, &ServerMsg::Directory { spaces }).await.is_err() {
                    break;
                }
            }
            Some(event) = next_event(&mut conn.session) => {
                conn.on_media_event(event).await;
            }
            _ = &mut hello_deadline, if conn.name.is_none() => {
                let reply = error(ErrorCode::HelloFirst, format!("no hello within {} s", HELLO_TIMEOUT.as_secs()));
                let _ = send(&mut sink, &reply).await;
                tracing::warn!(participant = %who, "closing a connection that never said hello");
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    conn.leave(true).await;
    let _ = sink.close().await;
    tracing::debug!(participant = %who, "signaling closed");
}

/// Resolves when the directory changed (true), or never when not watching.
async fn directory_changed(watching: &mut Option<watch::Receiver<u64>>) -> bool {
    match watching {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn next_event(session: &mut Option<MuxSession>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.next_event().await,
        None => std::future::pending().await,
    }
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    msg: &ServerMsg,
) -> Result<(), axum::Error> {
    sink.send(Message::Text(encode(msg).into())).await
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

fn refusal(r: Refusal) -> ServerMsg {
    error(r.0, r.1)
}

/// Trims and bounds a user-supplied string: 1..=max characters, no control characters.
pub(crate) fn clean(field: &str, value: &str, max: usize) -> Result<String, Refusal> {
    let v = value.trim();
    let problem = if v.is_empty() {
        format!("{field} is empty")
    } else if v.chars().count() > max {
        format!("{field} is longer than {max} characters")
    } else if v.chars().any(char::is_control) {
        format!("{field} contains control characters")
    } else {
        return Ok(v.to_owned());
    };
    Err((ErrorCode::InvalidInput, problem))
}

/// Trims, bounds and de-duplicates (case-insensitively) a space's topics.
pub(crate) fn clean_topics(topics: &[String]) -> Result<Vec<String>, Refusal> {
    if topics.len() > MAX_TOPICS {
        return Err((
            ErrorCode::InvalidInput,
            format!("a space has at most {MAX_TOPICS} topics"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(topics.len());
    for t in topics {
        let t = clean("topic", t, MAX_TOPIC_CHARS)?;
        if !out.iter().any(|o| o.to_lowercase() == t.to_lowercase()) {
            out.push(t);
        }
    }
    Ok(out)
}

fn random_space_id() -> SpaceId {
    let bytes: [u8; SpaceId::LEN] = rand::rng().random();
    SpaceId::from_entropy(bytes)
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The room input a stage request from `who` stands for; `None` for messages that are not
/// stage requests. (The cluster's home node maps requests relayed from other nodes the same way.)
pub(crate) fn stage_input(who: ParticipantId, msg: ClientMsg) -> Option<confab_core::Input> {
    use confab_core::Input;
    Some(match msg {
        ClientMsg::RaiseHand => Input::RaiseHand { who },
        ClientMsg::LowerHand => Input::LowerHand { who },
        ClientMsg::ApproveHand { participant } => Input::ApproveHand {
            who,
            target: participant,
        },
        ClientMsg::DismissHand { participant } => Input::DismissHand {
            who,
            target: participant,
        },
        ClientMsg::Invite { participant } => Input::Invite {
            who,
            target: participant,
        },
        ClientMsg::AcceptInvite => Input::AcceptInvite { who },
        ClientMsg::DeclineInvite => Input::DeclineInvite { who },
        ClientMsg::StepDown => Input::StepDown { who },
        ClientMsg::MuteSelf => Input::MuteSelf { who },
        ClientMsg::UnmuteSelf => Input::UnmuteSelf { who },
        ClientMsg::Mute { participant } => Input::Mute {
            who,
            target: participant,
        },
        ClientMsg::MuteAll => Input::MuteAll { who },
        ClientMsg::Remove { participant } => Input::Remove {
            who,
            target: participant,
        },
        ClientMsg::Block { participant } => Input::Block {
            who,
            target: participant,
        },
        ClientMsg::MakeCohost { participant } => Input::MakeCohost {
            who,
            target: participant,
        },
        ClientMsg::UnmakeCohost { participant } => Input::UnmakeCohost {
            who,
            target: participant,
        },
        ClientMsg::Pin { link } => Input::Pin { who, link },
        ClientMsg::React { emoji } => Input::React { who, emoji },
        ClientMsg::Chat { text } => Input::Chat { who, text },
        ClientMsg::DeleteChat { id } => Input::DeleteChat { who, id },
        _ => return None,
    })
}

impl Conn {
    async fn handle_frame(&mut self, text: &str) -> Vec<ServerMsg> {
        let msg = match decode_client(text) {
            Ok(m) => m,
            Err(e) => return vec![error(e.code(), e.to_string())],
        };
        let Some(name) = self.name.clone() else {
            return match msg {
                ClientMsg::Hello {
                    version,
                    name,
                    token,
                } => self.hello(version, &name, token).await,
                _ => vec![error(ErrorCode::HelloFirst, "send hello first")],
            };
        };
        match msg {
            ClientMsg::Hello { .. } => {
                vec![error(ErrorCode::HelloFirst, "hello was already received")]
            }
            ClientMsg::Create {
                title,
                topics,
                schedule,
            } => self.create(&name, &title, &topics, schedule).await,
            ClientMsg::Watch => {
                if self.watching.is_none() {
                    let mut rx = self.shared.directory_changed.subscribe();
                    rx.mark_changed();
                    self.watching = Some(rx);
                }
                Vec::new()
            }
            ClientMsg::Join { space } => self.join(&name, space).await,
            ClientMsg::Resume { space, host_token } => self.resume(&name, space, host_token).await,
            ClientMsg::Offer { sdp } => self.offer(sdp).await,
            ClientMsg::Leave => {
                if self.room.is_none() {
                    return vec![error(ErrorCode::NotInSpace, "you are in no space")];
                }
                self.leave(false).await;
                Vec::new()
            }
            ClientMsg::End => self.end().await,
            stage => self.stage(stage).await,
        }
    }

    /// A stage request: the room decides, by the sender's role, and tells everyone.
    async fn stage(&mut self, msg: ClientMsg) -> Vec<ServerMsg> {
        let Some(input) = stage_input(self.who, msg) else {
            return vec![error(
                ErrorCode::UnknownType,
                "this server does not handle that message",
            )];
        };
        let Some((_, room)) = &self.room else {
            return vec![error(ErrorCode::NotInSpace, "you are in no space")];
        };
        let (reply, answer) = oneshot::channel();
        if room.send(RoomCmd::Stage { input, reply }).await.is_err() {
            return vec![error(ErrorCode::SpaceEnded, "the space has ended")];
        }
        match answer.await {
            Ok(Ok(())) => Vec::new(),
            Ok(Err((code, message))) => vec![error(code, message)],
            Err(_) => vec![error(ErrorCode::SpaceEnded, "the space has ended")],
        }
    }

    async fn hello(&mut self, version: u32, name: &str, token: Option<String>) -> Vec<ServerMsg> {
        if version != PROTOCOL_VERSION {
            self.close = true;
            return vec![error(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
            )];
        }
        // A signed-in connection goes by its account's display name, whatever it says: a
        // name next to an account is the one that account chose.
        let mut name = name.to_owned();
        if let Some(token) = token {
            let shared = Arc::clone(&self.shared);
            let now = crate::unix_now();
            let user =
                tokio::task::spawn_blocking(move || shared.accounts.user_for_token(&token, now))
                    .await;
            match user {
                Ok(Ok(user)) => match UserId::new(&user.handle) {
                    Ok(id) => {
                        self.user = Some(id);
                        name = user.display_name;
                    }
                    Err(e) => return vec![error(ErrorCode::Internal, e.to_string())],
                },
                Ok(Err(e)) => return vec![error(e.code(), e.to_string())],
                Err(e) => return vec![error(ErrorCode::Internal, e.to_string())],
            }
        }
        match clean("name", &name, MAX_NAME_CHARS) {
            Ok(name) => {
                self.name = Some(name);
                vec![ServerMsg::Welcome {
                    version: PROTOCOL_VERSION,
                    you: self.who,
                }]
            }
            Err(e) => vec![refusal(e)],
        }
    }

    async fn create(
        &mut self,
        name: &str,
        title: &str,
        topics: &[String],
        schedule: Option<SpaceId>,
    ) -> Vec<ServerMsg> {
        if self.room.is_some() {
            return vec![error(ErrorCode::AlreadyInSpace, "leave your space first")];
        }
        // Starting a scheduled space: only its signed-in host, only while still scheduled.
        if let Some(id) = &schedule {
            let Some(user) = self.user.clone() else {
                return vec![error(
                    ErrorCode::SignInRequired,
                    "sign in to start a scheduled space",
                )];
            };
            let shared = Arc::clone(&self.shared);
            let sid = id.as_str().to_owned();
            let ok = tokio::task::spawn_blocking(move || {
                shared.schedules.startable(user.as_str(), &sid)
            })
            .await;
            match ok {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return vec![error(e.code(), e.to_string())],
                Err(e) => return vec![error(ErrorCode::Internal, e.to_string())],
            }
        }
        let title = match clean("title", title, MAX_TITLE_CHARS) {
            Ok(t) => t,
            Err(e) => return vec![refusal(e)],
        };
        let topics = match clean_topics(topics) {
            Ok(t) => t,
            Err(e) => return vec![refusal(e)],
        };
        let id = schedule.clone().unwrap_or_else(random_space_id);
        let token = random_token();
        let shared = Arc::clone(&self.shared);
        let (db_id, db_title, db_topics, db_name, db_token, db_user) = (
            id.clone(),
            title.clone(),
            topics.clone(),
            name.to_owned(),
            token.clone(),
            self.user.clone(),
        );
        let inserted = tokio::task::spawn_blocking(move || {
            shared.db.insert_space(
                &db_id,
                &db_title,
                &db_topics,
                &db_name,
                &db_token,
                db_user.as_ref().map(UserId::as_str),
            )
        })
        .await;
        if !matches!(inserted, Ok(Ok(_))) {
            tracing::error!(?inserted, "could not record a new space");
            return vec![error(
                ErrorCode::Internal,
                "could not create the space; try again",
            )];
        }
        let mut room = Room::new(
            id.clone(),
            title,
            self.who,
            name.to_owned(),
            self.shared.config.room,
            Instant::now(),
        );
        if let Some(user) = self.user.clone() {
            // The host's account and everyone it ever blocked from its spaces.
            let shared = Arc::clone(&self.shared);
            let host = user.clone();
            let blocked = tokio::task::spawn_blocking(move || shared.db.blocked_by(host.as_str()))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
            let blocked = match blocked {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the host's blocks");
                    return vec![error(
                        ErrorCode::Internal,
                        "could not create the space; try again",
                    )];
                }
            };
            room = room
                .with_host_user(user)
                .with_blocked(blocked.into_iter().filter_map(|b| UserId::new(b).ok()));
        }
        let info = room.info();
        let handle = room::spawn(
            Arc::clone(&self.shared),
            room,
            token.clone(),
            topics,
            Some((self.who, self.out.clone())),
        );
        self.room = Some((id.clone(), handle.sender()));
        lock(&self.shared.rooms).insert(id.clone(), handle);
        if schedule.is_some() {
            let shared = Arc::clone(&self.shared);
            let sid = id.as_str().to_owned();
            let marked = tokio::task::spawn_blocking(move || shared.schedules.started(&sid)).await;
            if !matches!(marked, Ok(Ok(()))) {
                tracing::error!(?marked, space = %id, "could not mark a schedule live");
            }
        }
        tracing::info!(space = %id, host = %self.who, "space opened");
        joined_frames(info, Role::Host, Some(token))
    }

    /// Why `id` cannot be entered when no room task has it.
    async fn missing(&self, id: &SpaceId) -> ServerMsg {
        let shared = Arc::clone(&self.shared);
        let lookup = id.clone();
        match tokio::task::spawn_blocking(move || shared.db.space(&lookup)).await {
            Ok(Ok(Some(rec))) if rec.state == SpaceState::Ended => {
                error(ErrorCode::SpaceEnded, format!("space {id} has ended"))
            }
            Ok(Ok(_)) => error(ErrorCode::NoSuchSpace, format!("no space {id}")),
            _ => error(
                ErrorCode::Internal,
                "could not look the space up; try again",
            ),
        }
    }

    async fn join(&mut self, name: &str, id: SpaceId) -> Vec<ServerMsg> {
        let (who, name, conn) = (self.who, name.to_owned(), self.out.clone());
        let user = self.user.clone();
        self.enter(id, Role::Listener, None, |reply| RoomCmd::Join {
            who,
            name,
            user,
            conn,
            reply,
        })
        .await
    }

    async fn resume(&mut self, name: &str, id: SpaceId, token: String) -> Vec<ServerMsg> {
        let (who, name, conn) = (self.who, name.to_owned(), self.out.clone());
        let host_token = Some(token.clone());
        self.enter(id, Role::Host, host_token, |reply| RoomCmd::Resume {
            who,
            name,
            token,
            conn,
            reply,
        })
        .await
    }

    /// Asks room `id` to let us in with the command `make` builds; on success we are in it
    /// with `role`.
    async fn enter(
        &mut self,
        id: SpaceId,
        role: Role,
        host_token: Option<String>,
        make: impl FnOnce(oneshot::Sender<Result<confab_proto::SpaceInfo, Refusal>>) -> RoomCmd,
    ) -> Vec<ServerMsg> {
        if self.room.is_some() {
            return vec![error(ErrorCode::AlreadyInSpace, "leave your space first")];
        }
        // A space whose home is another node is entered through this node's proxy for it.
        let found =
            room::find(&self.shared, &id).or_else(|| crate::cluster::find(&self.shared, &id));
        let Some(tx) = found else {
            return vec![self.missing(&id).await];
        };
        let (reply, rx) = oneshot::channel();
        match ask(&tx, make(reply), rx).await {
            Some(Ok(space)) => {
                self.room = Some((id, tx));
                // Paged here, not in the room task: the room only clones its roster, and the
                // connection tasks share the encoding across cores.
                joined_frames(space, role, host_token)
            }
            Some(Err(r)) => vec![refusal(r)],
            None => vec![self.missing(&id).await],
        }
    }

    async fn offer(&mut self, sdp: String) -> Vec<ServerMsg> {
        let Some((_, tx)) = self.room.clone() else {
            return vec![error(
                ErrorCode::NotInSpace,
                "join a space before offering media",
            )];
        };
        self.close_media().await;
        match self.shared.mux.answer_client(sdp, true).await {
            Ok((session, answer, slots)) => {
                let _ = tx
                    .send(RoomCmd::MediaReady {
                        who: self.who,
                        slots,
                    })
                    .await;
                self.session = Some(session);
                vec![ServerMsg::Answer { sdp: answer }]
            }
            Err(e) => vec![error(
                ErrorCode::MediaFailed,
                format!("could not answer the offer: {e}"),
            )],
        }
    }

    async fn end(&mut self) -> Vec<ServerMsg> {
        let Some((_, tx)) = self.room.clone() else {
            return vec![error(ErrorCode::NotInSpace, "you are in no space")];
        };
        let (reply, rx) = oneshot::channel();
        match ask(
            &tx,
            RoomCmd::End {
                who: self.who,
                reply,
            },
            rx,
        )
        .await
        {
            Some(Ok(())) => Vec::new(),
            Some(Err(r)) => vec![refusal(r)],
            None => vec![error(ErrorCode::SpaceEnded, "the space has ended")],
        }
    }

    async fn on_media_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::RemoteAudio(audio) => {
                if let Some((_, tx)) = &self.room {
                    let _ = tx
                        .send(RoomCmd::Uplink {
                            who: self.who,
                            audio,
                        })
                        .await;
                }
            }
            SessionEvent::Closed => tracing::debug!(participant = %self.who, "media closed"),
            _ => {}
        }
    }

    async fn close_media(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }

    /// Leaves the current space: on purpose, or because the connection is gone.
    async fn leave(&mut self, disconnected: bool) {
        if let Some((_, tx)) = self.room.take() {
            let cmd = if disconnected {
                RoomCmd::Disconnected { who: self.who }
            } else {
                RoomCmd::Leave { who: self.who }
            };
            let _ = tx.send(cmd).await;
        }
        self.close_media().await;
    }
}

/// Sends a command and waits for its reply; `None` if the room task is gone.
async fn ask<T>(tx: &mpsc::Sender<RoomCmd>, cmd: RoomCmd, rx: oneshot::Receiver<T>) -> Option<T> {
    tx.send(cmd).await.ok()?;
    rx.await.ok()
}
