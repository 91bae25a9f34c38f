// Home: what is live (updating as the directory changes), search, starting a space, and the
// hosts you follow with their last-known spaces (shown offline too).

import { useEffect, useState } from "preact/hooks";
import type { Act } from "./app";
import type { AppState, FollowedHost, SpaceSummary, Upcoming } from "./bindings";
import { ago, listeners, MAX_TITLE_CHARS, parseTopics, startsIn } from "./format";
import { api } from "./ipc";
import { Avatar, Icon, LiveBadge, Topics } from "./ui";

type Props = { app: AppState; act: Act };

/** The key a host is followed by (as the backend's `host_key`). */
export function hostKey(space: SpaceSummary): string {
  return space.host_handle != null ? `@${space.host_handle}` : space.host;
}

export function HomeView({ app, act, openSettings }: Props & { openSettings: () => void }) {
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
              <SpaceCard key={s.id} space={s} app={app} followed={followed.has(hostKey(s))} act={act} />
            ))}
          </ul>
        )}
      </section>
      <div class="side-col">
        {app.account === null && (
          <div class="card account-nudge">
            <p>
              <strong>Create your account</strong> to raise your hand, react, chat and schedule spaces.
            </p>
            <button type="button" class="secondary small" onClick={openSettings}>
              Create account
            </button>
          </div>
        )}
        <StartForm app={app} act={act} />
        <UpcomingList app={app} act={act} />
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
      {(space.speakers ?? []).length > 0 && (
        <p class="speakers-line muted">
          <Icon name="mic" size={13} /> with {(space.speakers ?? []).join(", ")}
        </p>
      )}
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
  const [later, setLater] = useState(false);
  const [when, setWhen] = useState("");
  const { topics, error } = parseTopics(topicText);
  const inSpace = app.current !== null;
  const startsAt = when === "" ? NaN : Math.floor(new Date(when).getTime() / 1000);
  const ready =
    title.trim() !== "" &&
    error === null &&
    app.connected &&
    !busy &&
    (later ? Number.isFinite(startsAt) && app.account !== null : !inSpace);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    const ok = await act(() =>
      later ? api.scheduleSpace(title.trim(), topics, startsAt) : api.createSpace(title.trim(), topics),
    );
    setBusy(false);
    if (ok) {
      setTitle("");
      setTopicText("");
      setWhen("");
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
      <div class="when" role="radiogroup" aria-label="When">
        <label>
          <input type="radio" name="when" checked={!later} onChange={() => setLater(false)} /> Now
        </label>
        <label>
          <input type="radio" name="when" checked={later} onChange={() => setLater(true)} /> Later
        </label>
        {later && (
          <input
            type="datetime-local"
            aria-label="Start time"
            value={when}
            onInput={(e) => setWhen(e.currentTarget.value)}
          />
        )}
      </div>
      {later && app.account === null && <small class="hint error">Scheduling needs an account</small>}
      <button class="primary wide" type="submit" disabled={!ready}>
        {busy
          ? later
            ? "Scheduling…"
            : "Starting…"
          : later
            ? "Schedule"
            : inSpace
              ? "Leave your space to start one"
              : "Go live"}
      </button>
    </form>
  );
}

function UpcomingList({ app, act }: Props) {
  if (app.upcoming.length === 0) return null;
  return (
    <section class="card upcoming" aria-labelledby="upcoming-heading">
      <h2 id="upcoming-heading">
        <Icon name="radio" /> Upcoming
      </h2>
      <ul class="upcoming-list">
        {app.upcoming.map((u: Upcoming) => (
          <li key={u.id} class="upcoming-item">
            <div class="followed-text">
              <strong>{u.title}</strong>
              <span class="muted">
                @{u.host} · {startsIn(u.startsAt)}
              </span>
            </div>
            {u.mine ? (
              <>
                <button
                  type="button"
                  class="primary small"
                  disabled={app.current !== null || !app.connected}
                  aria-label={`Start ${u.title} now`}
                  onClick={() => act(() => api.startScheduled(u.id))}
                >
                  Start
                </button>
                <button type="button" class="ghost small" aria-label={`Cancel ${u.title}`} onClick={() => act(() => api.cancelScheduled(u.id))}>
                  Cancel
                </button>
              </>
            ) : (
              <button
                type="button"
                class={u.reminded ? "ghost small" : "secondary small"}
                aria-pressed={u.reminded}
                disabled={app.account === null}
                title={app.account === null ? "Create an account to get reminders" : undefined}
                aria-label={`${u.reminded ? "Reminded of" : "Remind me of"} ${u.title}`}
                onClick={() => act(() => api.setReminder(u.id, !u.reminded))}
              >
                {u.reminded ? "Reminded" : "Remind me"}
              </button>
            )}
          </li>
        ))}
      </ul>
    </section>
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
