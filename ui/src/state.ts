// The UI's model of the app, changed only by what the backend says: the state from
// `getState`, then every `app-event`. Pure functions, so they are tested without a window.

import type { AppEvent, AppState, EndReason, ParticipantId } from "./bindings";

export type Notice = { id: number; kind: "info" | "error"; text: string };

export type Model = {
  /** Null until the first `getState` answers. */
  app: AppState | null;
  /** Events that came before the first state; applied on top of it. */
  early: AppEvent[];
  /** Who speaks in each receive slot of the current space. */
  speaking: Record<number, ParticipantId | null>;
  notices: Notice[];
  nextNotice: number;
};

export const initialModel: Model = { app: null, early: [], speaking: {}, notices: [], nextNotice: 1 };

export type Action =
  | { type: "loaded"; state: AppState }
  | { type: "event"; event: AppEvent }
  | { type: "notice"; kind: Notice["kind"]; text: string }
  | { type: "dismiss"; id: number };

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
  }
}

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
      return {
        ...model,
        app: { ...app, current: event.current },
        speaking: event.current === null ? {} : model.speaking,
      };
    case "ended": {
      if (app.current?.space.id !== event.space) return model;
      const next = { ...model, app: { ...app, current: null }, speaking: {} };
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
    // Levels go straight to the meter; the shell turns followedLive into a notification.
    case "inputLevel":
    case "followedLive":
      return model;
  }
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
