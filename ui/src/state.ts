// The UI's model of the app, changed only by what the backend says: the state from
// `getState`, then every `app-event`. Pure functions, so they are tested without a window.

import type { AppEvent, AppState, EndReason, ParticipantId, SpeakerDiagnostics } from "./bindings";

export type Notice = { id: number; kind: "info" | "error"; text: string };

/** A reaction shown on someone's avatar for a moment. */
export type Reaction = { id: number; participant: ParticipantId; emoji: string };

/** One speaker's recent figures, oldest first, one sample a second (at most `HISTORY`). */
export type Diagnostics = {
  rttMs: (number | null)[];
  jitterMs: (number | null)[];
  /** Percent lost. */
  lossPct: (number | null)[];
  bufferMs: number[];
  /** The latest figures as they came. */
  last: SpeakerDiagnostics;
};

/** Samples kept per figure: a minute at one a second. */
export const HISTORY = 60;

export type Model = {
  /** Null until the first `getState` answers. */
  app: AppState | null;
  /** Events that came before the first state; applied on top of it. */
  early: AppEvent[];
  /** Who speaks in each receive slot of the current space. */
  speaking: Record<number, ParticipantId | null>;
  /** How loud each speaker is now (0..1), for the speaking rings. */
  levels: Record<ParticipantId, number>;
  /** Our own volume for people in the space (absent: 1). */
  volumes: Record<ParticipantId, number>;
  /** Each speaker's recent network and playout figures, while the diagnostics panel is open. */
  diagnostics: Record<ParticipantId, Diagnostics>;
  reactions: Reaction[];
  notices: Notice[];
  nextNotice: number;
};

export const initialModel: Model = {
  app: null,
  early: [],
  speaking: {},
  levels: {},
  volumes: {},
  diagnostics: {},
  reactions: [],
  notices: [],
  nextNotice: 1,
};

/** A speaker whose level is at least this shows a speaking ring. */
export const SPEAKING_LEVEL = 0.02;

export type Action =
  | { type: "loaded"; state: AppState }
  | { type: "event"; event: AppEvent }
  | { type: "notice"; kind: Notice["kind"]; text: string }
  | { type: "dismiss"; id: number }
  | { type: "reactionDone"; id: number };

/** At most this many notices are kept; older ones go. */
const MAX_NOTICES = 4;

export function reduce(model: Model, action: Action): Model {
  switch (action.type) {
    case "loaded": {
      let next: Model = { ...model, app: action.state, early: [] };
      for (const event of model.early) next = applyEvent(next, event);
      return next;
    }
    case "event":
      if (model.app === null) return { ...model, early: [...model.early, action.event] };
      return applyEvent(model, action.event);
    case "notice":
      return notice(model, action.kind, action.text);
    case "dismiss":
      return { ...model, notices: model.notices.filter((n) => n.id !== action.id) };
    case "reactionDone":
      return { ...model, reactions: model.reactions.filter((r) => r.id !== action.id) };
  }
}

/** At most this many reactions float at once; older ones go. */
const MAX_REACTIONS = 12;

function applyEvent(model: Model, event: AppEvent): Model {
  const app = model.app;
  if (app === null) return model;
  switch (event.type) {
    case "state":
      return { ...model, app: event.state };
    case "directory":
      return { ...model, app: { ...app, live: event.live } };
    case "followed":
      return { ...model, app: { ...app, followed: event.followed } };
    case "current":
      if (event.current === null) {
        return { ...model, app: { ...app, current: null }, speaking: {}, levels: {}, volumes: {}, diagnostics: {}, reactions: [] };
      }
      return { ...model, app: { ...app, current: event.current } };
    case "ended": {
      if (app.current?.space.id !== event.space) return model;
      const next = { ...model, app: { ...app, current: null }, speaking: {}, diagnostics: {} };
      return notice(next, "info", endedText(event.reason));
    }
    case "connection":
      return { ...model, app: { ...app, connected: event.connected } };
    case "participant": {
      if (app.current === null) return model;
      const verb = event.joined ? "joined" : "left";
      return notice(model, "info", `${event.participant.name} ${verb}`);
    }
    case "speaking":
      return { ...model, speaking: { ...model.speaking, [event.slot]: event.speaker } };
    case "levels": {
      const levels: Record<ParticipantId, number> = {};
      for (const l of event.levels) levels[l.participant] = l.rms;
      return { ...model, levels };
    }
    case "reaction": {
      if (app.current === null) return model;
      const r = { id: model.nextNotice, participant: event.participant, emoji: event.emoji };
      return { ...model, reactions: [...model.reactions, r].slice(-MAX_REACTIONS), nextNotice: r.id + 1 };
    }
    case "deviceFallback":
      return notice(
        model,
        "info",
        `${event.input ? "Microphone" : "Speaker"} “${event.device}” is gone; using the system default`,
      );
    case "refused":
      return notice(model, "error", event.message);
    case "removed":
      return notice(
        { ...model, app: { ...app, current: null }, speaking: {}, levels: {}, diagnostics: {}, reactions: [] },
        "error",
        event.blocked ? "The host removed you and blocked you from their spaces" : "The host removed you from the space",
      );
    case "account":
      return { ...model, app: { ...app, account: event.account, displayName: event.account?.displayName ?? app.displayName } };
    case "upcoming":
      return { ...model, app: { ...app, upcoming: event.upcoming } };
    case "blocked":
      return { ...model, app: { ...app, blocked: event.blocked } };
    case "volumes": {
      const volumes: Record<ParticipantId, number> = {};
      for (const v of event.volumes) volumes[v.participant] = v.volume;
      return { ...model, volumes };
    }
    case "avatars": {
      const fresh = new Set(event.avatars.map((a) => a.handle));
      return { ...model, app: { ...app, avatars: [...app.avatars.filter((a) => !fresh.has(a.handle)), ...event.avatars] } };
    }
    case "diagnostics":
      if (app.current === null) return model;
      return { ...model, diagnostics: addDiagnostics(model.diagnostics, event.speakers) };
    case "micMode":
      return { ...model, app: { ...app, pushToTalk: event.key } };
    // Levels go straight to the meter; the shell turns these into notifications.
    case "inputLevel":
    case "followedLive":
    case "reminder":
      return model;
  }
}

/** Appends each speaker's figures to their history; speakers no longer heard drop out. */
export function addDiagnostics(
  before: Record<ParticipantId, Diagnostics>,
  speakers: SpeakerDiagnostics[],
): Record<ParticipantId, Diagnostics> {
  const next: Record<ParticipantId, Diagnostics> = {};
  for (const d of speakers) {
    const old = before[d.participant];
    next[d.participant] = {
      rttMs: push(old?.rttMs ?? [], d.rttMs),
      jitterMs: push(old?.jitterMs ?? [], d.jitterMs),
      lossPct: push(old?.lossPct ?? [], d.loss === null ? null : d.loss * 100),
      bufferMs: push(old?.bufferMs ?? [], d.bufferMs),
      last: d,
    };
  }
  return next;
}

function push<T>(list: T[], value: T): T[] {
  return [...list, value].slice(-HISTORY);
}

function notice(model: Model, kind: Notice["kind"], text: string): Model {
  const n = { id: model.nextNotice, kind, text };
  return { ...model, notices: [...model.notices, n].slice(-MAX_NOTICES), nextNotice: n.id + 1 };
}

export function endedText(reason: EndReason): string {
  switch (reason) {
    case "host_ended":
      return "The host ended the space";
    case "host_gone":
      return "The host left, so the space ended";
    case "server_shutdown":
      return "The server shut down, so the space ended";
  }
}
