// Home: what is live (updating as the directory changes), search, starting a space, and the
// hosts you follow with their last-known spaces (shown offline too).

import { useEffect, useState } from "preact/hooks";
import type { Act } from "./app";
import type { AppState, FollowedHost, SpaceSummary } from "./bindings";
import { ago, listeners, MAX_TITLE_CHARS, parseTopics } from "./format";
import { api } from "./ipc";
import { Avatar, Icon, LiveBadge, Topics } from "./ui";

type Props = { app: AppState; act: Act };

export function HomeView({ app, act }: Props) {
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<SpaceSummary[] | null>(null);
  const q = query.trim();

  // The backend searches; ask again whenever the directory changes.
  useEffect(() => {
    if (q === "") {
      setFound(null);
      return;
    }
    let stale = false;
    api.search(q).then(
      (r) => stale || setFound(r),
      () => stale || setFound([]),
    );
    return () => {
      stale = true;
    };
  }, [q, app.live]);

  const spaces = found ?? app.live;
  const followed = new Set(app.followed.map((f) => f.host));
  return (
    <div class="home">
      <section class="live" aria-labelledby="live-heading">
        <header class="section-head">
          <h1 id="live-heading">
            Live now <span class="count">{app.live.length}</span>
          </h1>
          <label class="search">
            <Icon name="search" />
            <input
              type="search"
              placeholder="Search by title, host or topic"
              aria-label="Search live spaces"
              value={query}
              onInput={(e) => setQuery(e.currentTarget.value)}
            />
          </label>
        </header>
        {spaces.length === 0 ? (
          <div class="empty card">
            <Icon name="wave" size={28} />
            <p>{q !== "" ? `No live space matches “${q}”.` : "Nobody is live right now."}</p>
            <p class="muted">{q !== "" ? "Try a host’s name or a topic." : "Start a space and be the first."}</p>
          </div>
        ) : (
          <ul class="space-grid" aria-label="Live spaces">
            {spaces.map((s) => (
              <SpaceCard key={s.id} space={s} app={app} followed={followed.has(s.host)} act={act} />
            ))}
          </ul>
        )}
      </section>
      <div class="side-col">
        <StartForm app={app} act={act} />
        <Following app={app} act={act} />
      </div>
    </div>
  );
}

/** Joins `id`, first leaving a space we only listen to. */
export async function joinFrom(app: AppState, id: string): Promise<void> {
  const cur = app.current;
  if (cur !== null && cur.space.id !== id && cur.role === "listener") await api.leaveSpace();
  await api.joinSpace(id);
}

function JoinButton({ app, space, act }: { app: AppState; space: SpaceSummary; act: Act }) {
  const here = app.current?.space.id === space.id;
  const hosting = app.current !== null && app.current.role === "host" && !here;
  return (
    <button
      type="button"
      class={here ? "secondary" : "primary"}
      disabled={hosting || !app.connected}
      title={hosting ? "End your space first" : undefined}
      aria-label={`${here ? "Open" : "Join"} ${space.title} by ${space.host}`}
      onClick={() => act(() => joinFrom(app, space.id))}
    >
      {here ? "Open" : "Join"}
    </button>
  );
}

function SpaceCard({ space, app, followed, act }: { space: SpaceSummary; app: AppState; followed: boolean; act: Act }) {
  return (
    <li class="space-card card">
      <div class="card-top">
        <LiveBadge />
        <span class="listeners">
          <Icon name="users" size={15} />
          {listeners(space.listeners)}
        </span>
      </div>
      <h2 class="space-title">{space.title}</h2>
      <div class="host-line">
        <Avatar name={space.host} size={26} />
        <span class="host-name">{space.host}</span>
        {followed && <span class="tag">Following</span>}
      </div>
      <Topics topics={space.topics ?? []} />
      <div class="card-actions">
        <JoinButton app={app} space={space} act={act} />
      </div>
    </li>
  );
}

function StartForm({ app, act }: Props) {
  const [title, setTitle] = useState("");
  const [topicText, setTopicText] = useState("");
  const [busy, setBusy] = useState(false);
  const { topics, error } = parseTopics(topicText);
  const inSpace = app.current !== null;
  const ready = title.trim() !== "" && error === null && !inSpace && app.connected && !busy;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    const ok = await act(() => api.createSpace(title.trim(), topics));
    setBusy(false);
    if (ok) {
      setTitle("");
      setTopicText("");
    }
  };

  return (
    <form class="card start" onSubmit={submit} aria-labelledby="start-heading">
      <h2 id="start-heading">
        <Icon name="mic" /> Start a space
      </h2>
      <label class="field">
        <span>Title</span>
        <input
          value={title}
          maxLength={MAX_TITLE_CHARS}
          placeholder="What do you want to talk about?"
          onInput={(e) => setTitle(e.currentTarget.value)}
        />
      </label>
      <label class="field">
        <span>Topics</span>
        <input
          value={topicText}
          placeholder="music, rust, late-night"
          aria-describedby="topics-hint"
          aria-invalid={error !== null}
          onInput={(e) => setTopicText(e.currentTarget.value)}
        />
        <small id="topics-hint" class={error ? "hint error" : "hint"}>
          {error ?? "Up to 3, separated by commas"}
        </small>
      </label>
      {topics.length > 0 && error === null && <Topics topics={topics} />}
      <button class="primary wide" type="submit" disabled={!ready}>
        {busy ? "Starting…" : inSpace ? "Leave your space to start one" : "Go live"}
      </button>
    </form>
  );
}

function Following({ app, act }: Props) {
  return (
    <section class="card following" aria-labelledby="following-heading">
      <h2 id="following-heading">
        <Icon name="users" /> Following
      </h2>
      {app.followed.length === 0 ? (
        <p class="muted">Follow a host from their space and Confab tells you when they go live.</p>
      ) : (
        <ul class="followed-list">
          {app.followed.map((f) => (
            <FollowedRow key={f.host} f={f} app={app} act={act} />
          ))}
        </ul>
      )}
    </section>
  );
}

function FollowedRow({ f, app, act }: { f: FollowedHost; app: AppState; act: Act }) {
  const live = f.liveSpace;
  return (
    <li class="followed">
      <Avatar name={f.host} size={34} ring={live !== null} />
      <div class="followed-text">
        <strong>{f.host}</strong>
        {live !== null ? (
          <span class="live-line">Live · {live.title}</span>
        ) : (
          <span class="muted" title={f.lastTitle ?? undefined}>
            {f.lastLiveAt !== null ? `Was live ${ago(f.lastLiveAt)}` : "Offline"}
            {f.lastTitle !== null && ` · “${f.lastTitle}”`}
          </span>
        )}
      </div>
      {live !== null ? (
        <JoinButton app={app} space={live} act={act} />
      ) : (
        <button type="button" class="ghost small" aria-label={`Unfollow ${f.host}`} onClick={() => act(() => api.unfollow(f.host))}>
          Unfollow
        </button>
      )}
    </li>
  );
}
