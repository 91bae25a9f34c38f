// The space you are in: the stage (host, co-hosts, speakers) and the audience, the raised
// hands, reactions, chat, and the controls your role allows. Every action is a request: the
// server decides, and what it decides comes back as events. A hidden button is a courtesy,
// never the rule.

import { useEffect, useRef, useState } from "preact/hooks";
import type { Act } from "./app";
import type { AppState, ChatMessage, CurrentSpace, ParticipantId, ParticipantInfo, Role, StageAction } from "./bindings";
import { listeners, MAX_CHAT_CHARS, MAX_LINK_CHARS, ordered, REACTIONS } from "./format";
import { api } from "./ipc";
import { DiagnosticsPanel } from "./diagnostics";
import { type Diagnostics, type Reaction, SPEAKING_LEVEL } from "./state";
import { Avatar, Icon, LiveBadge, Topics } from "./ui";

type Props = {
  app: AppState;
  current: CurrentSpace;
  speaking: Record<number, ParticipantId | null>;
  levels: Record<ParticipantId, number>;
  volumes: Record<ParticipantId, number>;
  diagnostics: Record<ParticipantId, Diagnostics>;
  reactions: Reaction[];
  act: Act;
};

/** How long "End space" waits for the confirming second press. */
const CONFIRM_MS = 4000;

/** The avatar of account `handle`, if the app has it. */
export function avatarOf(app: AppState, handle: string | null | undefined): string | null {
  if (handle == null) return null;
  return app.avatars.find((a) => a.handle === handle)?.src ?? null;
}

const onMic = (r: Role) => r === "host" || r === "cohost" || r === "speaker";
const moderates = (r: Role) => r === "host" || r === "cohost";

export function SpaceView({ app, current, speaking, levels, volumes, diagnostics, reactions, act }: Props) {
  const [showDiagnostics, setShowDiagnostics] = useState(false);
  const { space, role, muted, mediaConnected, you } = current;
  const people = ordered(space.participants);
  const stage = people.filter((p) => onMic(p.role));
  const audience = people.filter((p) => !onMic(p.role));
  const slotted = new Set(Object.values(speaking).filter((s): s is ParticipantId => s !== null));
  const live = app.live.find((s) => s.id === space.id);
  const hostKey = live?.host_handle != null ? `@${live.host_handle}` : space.host;
  const follows = app.followed.some((f) => f.host === hostKey);
  const isHost = role === "host";
  const stageAct = (action: StageAction) => act(() => api.stage(action));
  const hands = (space.hands ?? [])
    .map((id) => space.participants.find((p) => p.id === id))
    .filter((p): p is ParticipantInfo => p !== undefined);
  const byId = new Map(space.participants.map((p) => [p.id, p]));
  const inviter = current.invitedBy !== null ? byId.get(current.invitedBy) : undefined;

  const person = (p: ParticipantInfo, big: boolean) => (
    <Person
      key={p.id}
      p={p}
      you={p.id === you}
      speaking={(levels[p.id] ?? 0) >= SPEAKING_LEVEL && !p.muted}
      slotted={slotted.has(p.id)}
      reactions={reactions.filter((r) => r.participant === p.id)}
      big={big}
      app={app}
      myRole={role}
      volume={volumes[p.id] ?? 1}
      act={act}
    />
  );

  return (
    <section class="space-view" aria-labelledby="space-title">
      <header class="space-head card">
        <div class="space-status">
          <LiveBadge />
          <span class={mediaConnected ? "audio-state ok" : "audio-state"}>
            {!mediaConnected
              ? "Connecting audio…"
              : onMic(role)
                ? muted
                  ? "Your microphone is muted"
                  : "You are on air"
                : "Audio connected"}
          </span>
          <span class="listeners">
            <Icon name="users" size={15} />
            {listeners(audience.length)}
          </span>
        </div>
        <h1 id="space-title">{space.title}</h1>
        <div class="host-line">
          <span class="muted">Hosted by</span>
          <strong>{space.host}</strong>
          {hostKey.startsWith("@") && <span class="muted">{hostKey}</span>}
          {!isHost && (
            <button
              type="button"
              class={follows ? "ghost small" : "secondary small"}
              aria-pressed={follows}
              onClick={() => act(() => (follows ? api.unfollow(hostKey) : api.follow(hostKey)))}
            >
              {follows ? "Following" : "Follow"}
            </button>
          )}
        </div>
        <Topics topics={live?.topics ?? []} />
        {space.pinned != null && (
          <p class="pinned">
            <span class="tag">Pinned</span> <span class="pinned-link">{space.pinned}</span>
            {moderates(role) && (
              <button type="button" class="ghost small" onClick={() => stageAct({ type: "pin", link: null })}>
                Unpin
              </button>
            )}
          </p>
        )}
        <div class="head-tools">
          {moderates(role) && <PinForm stageAct={stageAct} />}
          {!isHost && app.account !== null && (
            <ReportButton label="Report space" what={space.title} onSend={(reason) => act(() => api.report("space", space.id, reason))} />
          )}
        </div>
      </header>

      {inviter !== undefined && (
        <div class="invite card" role="alert">
          <span>
            <strong>{inviter.name}</strong> invites you to speak
          </span>
          <button type="button" class="primary small" onClick={() => stageAct({ type: "acceptInvite" })}>
            Join the stage
          </button>
          <button type="button" class="ghost small" onClick={() => stageAct({ type: "declineInvite" })}>
            Not now
          </button>
        </div>
      )}

      {moderates(role) && hands.length > 0 && (
        <section class="hands card" aria-labelledby="hands-heading">
          <h2 id="hands-heading" class="stage-label">
            Raised hands · {hands.length}
          </h2>
          <ul class="hand-list">
            {hands.map((p) => (
              <li key={p.id} class="hand">
                <Avatar name={p.name} size={30} src={avatarOf(app, p.user)} />
                <span class="person-name">{p.name}</span>
                <button
                  type="button"
                  class="primary small"
                  aria-label={`Bring ${p.name} up to speak`}
                  onClick={() => stageAct({ type: "approveHand", participant: p.id })}
                >
                  Approve
                </button>
                <button
                  type="button"
                  class="ghost small"
                  aria-label={`Dismiss ${p.name}'s hand`}
                  onClick={() => stageAct({ type: "dismissHand", participant: p.id })}
                >
                  Dismiss
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}

      <div class="space-body">
        <div class="stage card">
          <h2 class="stage-label">On stage · {stage.length}</h2>
          <ul class="people hosts" aria-label="On stage">
            {stage.map((p) => person(p, true))}
          </ul>
          <h2 class="stage-label">Listeners · {audience.length}</h2>
          {audience.length === 0 ? (
            <p class="muted">No listeners yet. Share the link: confab://space/{space.id}</p>
          ) : (
            <ul class="people" aria-label="Listeners">
              {audience.map((p) => person(p, false))}
            </ul>
          )}
        </div>
        <Chat app={app} current={current} byId={byId} act={act} />
      </div>

      {showDiagnostics && <DiagnosticsPanel diagnostics={diagnostics} byId={byId} />}

      <footer class="controls" aria-label="Space controls">
        {onMic(role) && app.pushToTalk !== null && (
          <span class={muted ? "talk-key" : "talk-key talking"} role="status" aria-live="polite">
            <Icon name={muted ? "micOff" : "mic"} />
            {muted ? `Hold ${app.pushToTalk} to talk` : "Talking…"}
          </span>
        )}
        {onMic(role) && app.pushToTalk === null && (
          <button
            type="button"
            class={muted ? "control muted" : "control"}
            aria-pressed={muted}
            onClick={() => act(() => api.setMuted(!muted))}
          >
            <Icon name={muted ? "micOff" : "mic"} />
            {muted ? "Unmute" : "Mute"}
          </button>
        )}
        {role === "listener" && app.account !== null && (
          <HandButton raised={byId.get(you)?.hand_raised ?? false} stageAct={stageAct} />
        )}
        {role === "listener" && app.account === null && (
          <span class="muted small-note">Create an account in Settings to raise your hand</span>
        )}
        {moderates(role) && (
          <button type="button" class="control" onClick={() => stageAct({ type: "muteAll" })}>
            <Icon name="micOff" />
            Mute all
          </button>
        )}
        {app.account !== null && <Reactions stageAct={stageAct} />}
        <span class="spacer" />
        <button
          type="button"
          class="control"
          aria-pressed={showDiagnostics}
          onClick={() => setShowDiagnostics(!showDiagnostics)}
        >
          Diagnostics
        </button>
        {(role === "speaker" || role === "cohost") && (
          <button type="button" class="control" onClick={() => stageAct({ type: "stepDown" })}>
            Step down
          </button>
        )}
        {isHost ? (
          <EndButton act={act} />
        ) : (
          <button type="button" class="control" onClick={() => act(() => api.leaveSpace())}>
            <Icon name="leave" />
            Leave quietly
          </button>
        )}
      </footer>
    </section>
  );
}

function PinForm({ stageAct }: { stageAct: (a: StageAction) => Promise<boolean> }) {
  const [open, setOpen] = useState(false);
  const [link, setLink] = useState("");
  if (!open) {
    return (
      <button type="button" class="ghost small" onClick={() => setOpen(true)}>
        Pin a link
      </button>
    );
  }
  return (
    <form
      class="inline-form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await stageAct({ type: "pin", link: link.trim() })) {
          setOpen(false);
          setLink("");
        }
      }}
    >
      <input
        type="url"
        value={link}
        maxLength={MAX_LINK_CHARS}
        placeholder="https://…"
        aria-label="Link to pin"
        onInput={(e) => setLink(e.currentTarget.value)}
      />
      <button type="submit" class="secondary small" disabled={link.trim() === ""}>
        Pin
      </button>
      <button type="button" class="ghost small" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}

/** A report to the server's operator, with a reason. */
function ReportButton({ label, what, onSend }: { label: string; what: string; onSend: (reason: string) => Promise<boolean> }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [sent, setSent] = useState(false);
  if (sent) return <span class="muted small-note">Reported. Thank you.</span>;
  if (!open) {
    return (
      <button type="button" class="ghost small" onClick={() => setOpen(true)}>
        {label}
      </button>
    );
  }
  return (
    <form
      class="inline-form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await onSend(reason.trim())) setSent(true);
      }}
    >
      <input
        value={reason}
        maxLength={1000}
        placeholder={`What is wrong with “${what}”?`}
        aria-label="Why report it"
        onInput={(e) => setReason(e.currentTarget.value)}
      />
      <button type="submit" class="danger small" disabled={reason.trim() === ""}>
        Send report
      </button>
      <button type="button" class="ghost small" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}

function HandButton({ raised, stageAct }: { raised: boolean; stageAct: (a: StageAction) => Promise<boolean> }) {
  return (
    <button
      type="button"
      class={raised ? "control raised" : "control"}
      aria-pressed={raised}
      onClick={() => stageAct({ type: raised ? "lowerHand" : "raiseHand" })}
    >
      <span aria-hidden="true">✋</span>
      {raised ? "Lower hand" : "Raise hand"}
    </button>
  );
}

function Reactions({ stageAct }: { stageAct: (a: StageAction) => Promise<boolean> }) {
  return (
    <div class="reaction-bar" role="group" aria-label="React">
      {REACTIONS.map((emoji) => (
        <button
          key={emoji}
          type="button"
          class="reaction-button"
          aria-label={`React ${emoji}`}
          onClick={() => stageAct({ type: "react", emoji })}
        >
          {emoji}
        </button>
      ))}
    </div>
  );
}

function EndButton({ act }: { act: Act }) {
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    if (!armed) return;
    const t = setTimeout(() => setArmed(false), CONFIRM_MS);
    return () => clearTimeout(t);
  }, [armed]);
  return (
    <button
      type="button"
      class="danger"
      onClick={() => (armed ? act(() => api.endSpace()) : setArmed(true))}
    >
      {armed ? "End it for everyone?" : "End space"}
    </button>
  );
}

type PersonProps = {
  p: ParticipantInfo;
  you: boolean;
  speaking: boolean;
  slotted: boolean;
  reactions: Reaction[];
  big: boolean;
  app: AppState;
  myRole: Role;
  volume: number;
  act: Act;
};

const ROLE_LABEL: Record<Role, string | null> = { host: "Host", cohost: "Co-host", speaker: "Speaker", listener: null };

function Person({ p, you, speaking, slotted, reactions, big, app, myRole, volume, act }: PersonProps) {
  const label = ROLE_LABEL[p.role];
  const last = reactions.length > 0 ? reactions[reactions.length - 1] : undefined;
  const handle = p.user ?? null;
  const blocked = handle !== null && app.blocked.includes(handle);
  return (
    <li
      class={["person", speaking ? "speaking" : "", slotted ? "slotted" : ""].join(" ").trim()}
      data-participant={p.id}
      data-speaking={speaking ? "true" : "false"}
    >
      <span class="avatar-wrap">
        <Avatar name={p.name} size={big ? 72 : 52} ring={speaking} src={avatarOf(app, handle)} />
        {last !== undefined && (
          <span key={last.id} class="reaction-bubble" aria-label={`${p.name} reacted ${last.emoji}`}>
            {last.emoji}
          </span>
        )}
        {p.hand_raised && (
          <span class="hand-badge" aria-label={`${p.name} raised a hand`}>
            ✋
          </span>
        )}
      </span>
      <span class="person-name">
        {p.name}
        {you && <span class="muted"> (you)</span>}
      </span>
      <span class="person-meta">
        {label !== null && <span class="role-tag">{label}</span>}
        {onMic(p.role) && p.muted && (
          <span class="person-muted" aria-label={`${p.name} is muted`}>
            <Icon name="micOff" size={14} />
          </span>
        )}
        {blocked && <span class="tag">Blocked</span>}
        {!blocked && volume === 0 && <span class="tag">Muted for you</span>}
      </span>
      {!you && <PersonMenu p={p} app={app} myRole={myRole} blocked={blocked} volume={volume} act={act} />}
    </li>
  );
}

/** What we may ask about someone else: the moderation our role allows, and blocking or
 * reporting them for ourself. */
function PersonMenu({
  p,
  app,
  myRole,
  blocked,
  volume,
  act,
}: {
  p: ParticipantInfo;
  app: AppState;
  myRole: Role;
  blocked: boolean;
  volume: number;
  act: Act;
}) {
  const ref = useRef<HTMLDetailsElement>(null);
  const [reporting, setReporting] = useState(false);
  const [reason, setReason] = useState("");
  const close = () => ref.current?.removeAttribute("open");
  const stage = (action: StageAction) => {
    close();
    return act(() => api.stage(action));
  };
  const handle = p.user ?? null;
  const items: Array<[string, () => unknown]> = [];
  if (moderates(myRole) && p.role !== "host") {
    if (p.role === "listener") items.push(["Invite to speak", () => stage({ type: "invite", participant: p.id })]);
    if (onMic(p.role) && !p.muted) items.push(["Mute", () => stage({ type: "mute", participant: p.id })]);
    if (myRole === "host" && p.role === "speaker" && handle !== null)
      items.push(["Make co-host", () => stage({ type: "makeCohost", participant: p.id })]);
    if (myRole === "host" && p.role === "cohost") items.push(["Remove as co-host", () => stage({ type: "unmakeCohost", participant: p.id })]);
    items.push(["Remove from space", () => stage({ type: "remove", participant: p.id })]);
    if (handle !== null) items.push(["Block from my spaces", () => stage({ type: "block", participant: p.id })]);
  }
  if (handle !== null && app.account !== null) {
    items.push([
      blocked ? "Unblock for me" : "Block for me",
      () => {
        close();
        return act(() => api.blockUser(handle, !blocked));
      },
    ]);
    items.push(["Report…", () => setReporting(true)]);
  }
  if (items.length === 0 && !onMic(p.role)) return null;
  return (
    <details class="person-menu" ref={ref}>
      <summary aria-label={`Actions for ${p.name}`}>⋯</summary>
      <div class="menu card">
        {reporting && handle !== null ? (
          <form
            class="report-form"
            onSubmit={async (e) => {
              e.preventDefault();
              const ok = await act(() => api.report("user", handle, reason.trim()));
              if (ok) {
                setReporting(false);
                setReason("");
                close();
              }
            }}
          >
            <label class="field">
              <span>Why report {p.name}?</span>
              <textarea value={reason} maxLength={1000} onInput={(e) => setReason(e.currentTarget.value)} />
            </label>
            <button type="submit" class="danger small" disabled={reason.trim() === ""}>
              Send report
            </button>
          </form>
        ) : (
          <>
            {onMic(p.role) && (
              <label class="volume">
                <span>Volume for you · {Math.round(volume * 100)}%</span>
                <input
                  type="range"
                  min={0}
                  max={200}
                  step={5}
                  value={Math.round(volume * 100)}
                  aria-label={`Volume for ${p.name}`}
                  onChange={(e) => act(() => api.setVolume(p.id, Number(e.currentTarget.value) / 100))}
                />
              </label>
            )}
            {onMic(p.role) && (
              <button type="button" class="menu-item" onClick={() => act(() => api.setVolume(p.id, volume === 0 ? 1 : 0))}>
                {volume === 0 ? "Unmute for me" : "Mute for me"}
              </button>
            )}
            {items.map(([label, run]) => (
              <button key={label} type="button" class="menu-item" onClick={() => run()}>
                {label}
              </button>
            ))}
          </>
        )}
      </div>
    </details>
  );
}

function Chat({ app, current, byId, act }: { app: AppState; current: CurrentSpace; byId: Map<ParticipantId, ParticipantInfo>; act: Act }) {
  const [text, setText] = useState("");
  const list = useRef<HTMLOListElement>(null);
  const count = current.chat.length;
  useEffect(() => {
    const el = list.current;
    if (el !== null) el.scrollTop = el.scrollHeight;
  }, [count]);
  const mod = moderates(current.role);
  const send = async (e: Event) => {
    e.preventDefault();
    const t = text.trim();
    if (t === "") return;
    if (await act(() => api.stage({ type: "chat", text: t }))) setText("");
  };
  return (
    <section class="chat card" aria-labelledby="chat-heading">
      <h2 id="chat-heading" class="stage-label">
        Chat
      </h2>
      <ol class="chat-list" ref={list} aria-label="Chat messages">
        {current.chat.length === 0 && <li class="muted">No messages yet.</li>}
        {current.chat.map((m: ChatMessage) => {
          const author = byId.get(m.author)?.name ?? "someone who left";
          return (
            <li key={m.id} class="chat-message">
              <strong>{author}</strong> <span class="chat-text">{m.text}</span>
              {mod && (
                <button
                  type="button"
                  class="icon-button"
                  aria-label={`Delete ${author}'s message`}
                  onClick={() => act(() => api.stage({ type: "deleteChat", id: m.id }))}
                >
                  <Icon name="x" size={12} />
                </button>
              )}
            </li>
          );
        })}
      </ol>
      {app.account !== null ? (
        <form class="chat-form" onSubmit={send}>
          <input
            value={text}
            maxLength={MAX_CHAT_CHARS}
            placeholder="Say something"
            aria-label="Chat message"
            onInput={(e) => setText(e.currentTarget.value)}
          />
          <button type="submit" class="secondary small" disabled={text.trim() === ""}>
            Send
          </button>
        </form>
      ) : (
        <p class="muted small-note">Create an account in Settings to chat.</p>
      )}
    </section>
  );
}
