// The space you are in: who is there (host first), and the controls your role allows.

import { useEffect, useState } from "preact/hooks";
import type { Act } from "./app";
import type { AppState, CurrentSpace, ParticipantId, ParticipantInfo } from "./bindings";
import { listeners, ordered } from "./format";
import { api } from "./ipc";
import { Avatar, Icon, LiveBadge, Topics } from "./ui";

type Props = {
  app: AppState;
  current: CurrentSpace;
  speaking: Record<number, ParticipantId | null>;
  act: Act;
};

/** How long "End space" waits for the confirming second press. */
const CONFIRM_MS = 4000;

export function SpaceView({ app, current, speaking, act }: Props) {
  const { space, role, muted, mediaConnected } = current;
  const isHost = role === "host";
  const people = ordered(space.participants);
  const hosts = people.filter((p) => p.role === "host");
  const audience = people.filter((p) => p.role !== "host");
  const speakers = new Set(Object.values(speaking).filter((s): s is ParticipantId => s !== null));
  const follows = app.followed.some((f) => f.host === space.host);
  const topics = app.live.find((s) => s.id === space.id)?.topics ?? [];

  return (
    <section class="space-view" aria-labelledby="space-title">
      <header class="space-head card">
        <div class="space-status">
          <LiveBadge />
          <span class={mediaConnected ? "audio-state ok" : "audio-state"}>
            {mediaConnected ? (isHost ? (muted ? "Your microphone is muted" : "You are on air") : "Audio connected") : "Connecting audio…"}
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
          {!isHost && (
            <button
              type="button"
              class={follows ? "ghost small" : "secondary small"}
              aria-pressed={follows}
              onClick={() => act(() => (follows ? api.unfollow(space.host) : api.follow(space.host)))}
            >
              {follows ? "Following" : "Follow"}
            </button>
          )}
        </div>
        <Topics topics={topics} />
      </header>

      <div class="stage card">
        <h2 class="stage-label">Host</h2>
        <ul class="people hosts">
          {hosts.map((p) => (
            <Person key={p.id} p={p} me={app.displayName} speaking={speakers.has(p.id)} muted={isHost && muted} big />
          ))}
        </ul>
        <h2 class="stage-label">Listeners · {audience.length}</h2>
        {audience.length === 0 ? (
          <p class="muted">No listeners yet. Share the link: confab://space/{space.id}</p>
        ) : (
          <ul class="people">
            {audience.map((p) => (
              <Person key={p.id} p={p} me={app.displayName} speaking={speakers.has(p.id)} muted={false} />
            ))}
          </ul>
        )}
      </div>

      <footer class="controls" aria-label="Space controls">
        {isHost ? (
          <>
            <button
              type="button"
              class={muted ? "control muted" : "control"}
              aria-pressed={muted}
              onClick={() => act(() => api.setMuted(!muted))}
            >
              <Icon name={muted ? "micOff" : "mic"} />
              {muted ? "Unmute" : "Mute"}
            </button>
            <EndButton act={act} />
          </>
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

function Person({ p, me, speaking, muted, big = false }: { p: ParticipantInfo; me: string; speaking: boolean; muted: boolean; big?: boolean }) {
  const you = p.name === me;
  return (
    <li class={speaking ? "person speaking" : "person"}>
      <Avatar name={p.name} size={big ? 72 : 52} ring={speaking} />
      <span class="person-name">
        {p.name}
        {you && <span class="muted"> (you)</span>}
      </span>
      {muted && (
        <span class="person-muted" aria-label="muted">
          <Icon name="micOff" size={14} />
        </span>
      )}
    </li>
  );
}
