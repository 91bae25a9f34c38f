// The window: a sidebar (navigation, the space you are in, the connection) and one view.
// State comes only from the backend (getState, then `app-event`); views ask for changes with
// commands and wait for the events that follow.

import { useCallback, useEffect, useReducer, useRef, useState } from "preact/hooks";
import type { AppState } from "./bindings";
import { HomeView } from "./home";
import { api, messageOf, onAppEvent, onOpenSpaceFailed, publishLevel } from "./ipc";
import { SettingsView } from "./settings";
import { SpaceView } from "./space";
import { initialModel, reduce } from "./state";
import { Avatar, Icon, type IconName, LiveBadge, Notices } from "./ui";

type View = "home" | "space" | "settings";

/** Runs a command; a failure becomes an error notice. Resolves to whether it worked. */
export type Act = (what: () => Promise<unknown>) => Promise<boolean>;

const NOTICE_MS = 5000;
/** How long a reaction floats on an avatar. */
const REACTION_MS = 3000;

export function App() {
  const [model, dispatch] = useReducer(reduce, initialModel);
  const [view, setView] = useState<View>("home");
  const app = model.app;

  useEffect(() => {
    const unsubscribe: Array<() => void> = [];
    let gone = false;
    const fail = (e: unknown) => dispatch({ type: "notice", kind: "error", text: messageOf(e) });
    (async () => {
      try {
        const subs = await Promise.all([
          onAppEvent((event) => {
            if (event.type === "inputLevel") publishLevel(event);
            else dispatch({ type: "event", event });
          }),
          onOpenSpaceFailed((e) =>
            dispatch({ type: "notice", kind: "error", text: `Could not open the space: ${e.message}` }),
          ),
        ]);
        if (gone) subs.forEach((u) => u());
        else unsubscribe.push(...subs);
      } catch (e) {
        fail(e);
      }
      try {
        dispatch({ type: "loaded", state: await api.getState() });
      } catch (e) {
        fail(e);
      }
    })();
    return () => {
      gone = true;
      unsubscribe.forEach((u) => u());
    };
  }, []);

  // Entering a space (from here, a link, a notification or the tray) shows it; leaving it
  // goes home.
  const currentId = app?.current?.space.id ?? null;
  const lastId = useRef<string | null>(null);
  useEffect(() => {
    if (currentId !== null && currentId !== lastId.current) setView("space");
    if (currentId === null) setView((v) => (v === "space" ? "home" : v));
    lastId.current = currentId;
  }, [currentId]);

  // Notices fade on their own.
  useEffect(() => {
    const timers = model.notices.map((n) => setTimeout(() => dispatch({ type: "dismiss", id: n.id }), NOTICE_MS));
    return () => timers.forEach(clearTimeout);
  }, [model.notices]);

  // Reactions float for a moment.
  useEffect(() => {
    const timers = model.reactions.map((r) => setTimeout(() => dispatch({ type: "reactionDone", id: r.id }), REACTION_MS));
    return () => timers.forEach(clearTimeout);
  }, [model.reactions]);

  const act: Act = useCallback(async (what) => {
    try {
      await what();
      return true;
    } catch (e) {
      dispatch({ type: "notice", kind: "error", text: messageOf(e) });
      return false;
    }
  }, []);

  return (
    <div class="layout">
      <Sidebar app={app} view={view} setView={setView} />
      <main class="main" id="main">
        {app === null ? (
          <p class="loading">Starting…</p>
        ) : view === "settings" ? (
          <SettingsView app={app} act={act} />
        ) : view === "space" && app.current !== null ? (
          <SpaceView
            app={app}
            current={app.current}
            speaking={model.speaking}
            levels={model.levels}
            volumes={model.volumes}
            diagnostics={model.diagnostics}
            reactions={model.reactions}
            act={act}
          />
        ) : (
          <HomeView app={app} act={act} openSettings={() => setView("settings")} />
        )}
      </main>
      <Notices notices={model.notices} dismiss={(id) => dispatch({ type: "dismiss", id })} />
    </div>
  );
}

function Sidebar({ app, view, setView }: { app: AppState | null; view: View; setView: (v: View) => void }) {
  const current = app?.current ?? null;
  const item = (v: View, icon: IconName, label: string) => (
    <li>
      <button
        type="button"
        class="nav-item"
        aria-current={view === v ? "page" : undefined}
        onClick={() => setView(v)}
      >
        <Icon name={icon} />
        {label}
      </button>
    </li>
  );
  return (
    <aside class="sidebar">
      <div class="brand">
        <Logo />
        <span>Confab</span>
      </div>
      <nav aria-label="Main">
        <ul class="nav">
          {item("home", "home", "Home")}
          {current !== null && item("space", "radio", "Your space")}
          {item("settings", "settings", "Settings")}
        </ul>
      </nav>
      {current !== null && (
        <button type="button" class="now card" onClick={() => setView("space")}>
          <LiveBadge />
          <span class="now-title">{current.space.title}</span>
          <span class="muted">
            {current.role === "listener"
              ? `Listening to ${current.space.host}`
              : `${current.role === "host" ? "You host" : "On stage"} · ${current.muted ? "muted" : "on air"}`}
          </span>
        </button>
      )}
      <div class="sidebar-foot">
        {app !== null && (
          <>
            <div class="me">
              <Avatar name={app.displayName} size={32} src={app.account?.avatar ?? null} />
              <div>
                <strong>{app.displayName}</strong>
                <span class="muted">{app.account !== null ? `@${app.account.handle}` : `profile ${app.profile} · no account`}</span>
              </div>
            </div>
            <p class={app.connected ? "conn online" : "conn offline"}>
              <span class="conn-dot" aria-hidden="true" />
              {app.connected ? "Connected" : "Connecting…"}
              <span class="muted conn-server">{app.embeddedServer ? "built-in server" : app.serverUrl}</span>
            </p>
          </>
        )}
      </div>
    </aside>
  );
}

function Logo() {
  return (
    <svg class="logo" width="30" height="30" viewBox="0 0 32 32" aria-hidden="true">
      <defs>
        <linearGradient id="logo-g" x1="0" y1="0" x2="0" y2="1">
          <stop offset="0" stop-color="#7c5cff" />
          <stop offset="1" stop-color="#ff5c8a" />
        </linearGradient>
      </defs>
      <rect width="32" height="32" rx="7" fill="url(#logo-g)" />
      <g stroke="#fff" stroke-width="2.5" stroke-linecap="round">
        <path d="M8 14.5v3M12 11.5v9M16 8.5v15M20 12v8M24 15v2" />
      </g>
    </svg>
  );
}
