// The one door to the backend: typed commands that throw `IpcFailure` with the backend's
// stable code, and the typed events. Everything here comes from the generated bindings.

import { commands, events, type AppEvent, type IpcError, type ReportKind, type StageAction } from "./bindings";

/** A failed command: `error.code` is stable, `message` is for people. */
export class IpcFailure extends Error {
  readonly error: IpcError;
  constructor(error: IpcError) {
    super(error.message);
    this.error = error;
  }
}

type Result<T> = { status: "ok"; data: T } | { status: "error"; error: IpcError };

async function unwrap<T>(pending: Promise<Result<T>>): Promise<T> {
  const r = await pending;
  if (r.status === "ok") return r.data;
  throw new IpcFailure(r.error);
}

/** Every command, resolving to its value or throwing an `IpcFailure`. */
export const api = {
  getState: () => unwrap(commands.getState()),
  createSpace: (title: string, topics: string[]) => unwrap(commands.createSpace(title, topics)),
  joinSpace: (id: string) => unwrap(commands.joinSpace(id)),
  leaveSpace: () => unwrap(commands.leaveSpace()),
  endSpace: () => unwrap(commands.endSpace()),
  setMuted: (muted: boolean) => unwrap(commands.setMuted(muted)),
  follow: (host: string) => unwrap(commands.follow(host)),
  unfollow: (host: string) => unwrap(commands.unfollow(host)),
  getSettings: () => unwrap(commands.getSettings()),
  saveSettings: (...a: Parameters<typeof commands.saveSettings>) => unwrap(commands.saveSettings(...a)),
  listDevices: () => unwrap(commands.listDevices()),
  playTestSound: () => unwrap(commands.playTestSound()),
  setLevelMeter: (on: boolean) => unwrap(commands.setLevelMeter(on)),
  setDiagnostics: (on: boolean) => unwrap(commands.setDiagnostics(on)),
  search: (query: string) => unwrap(commands.search(query)),
  createAccount: (handle: string, displayName: string) => unwrap(commands.createAccount(handle, displayName)),
  stage: (action: StageAction) => unwrap(commands.stage(action)),
  setReminder: (id: string, on: boolean) => unwrap(commands.setReminder(id, on)),
  scheduleSpace: (title: string, topics: string[], startsAt: number) =>
    unwrap(commands.scheduleSpace(title, topics, startsAt)),
  cancelScheduled: (id: string) => unwrap(commands.cancelScheduled(id)),
  startScheduled: (id: string) => unwrap(commands.startScheduled(id)),
  blockUser: (handle: string, blocked: boolean) => unwrap(commands.blockUser(handle, blocked)),
  report: (kind: ReportKind, target: string, reason: string) => unwrap(commands.report(kind, target, reason)),
  setVolume: (participant: number, volume: number) => unwrap(commands.setVolume(participant, volume)),
  updateProfile: (bio: string, avatar: string | null) => unwrap(commands.updateProfile(bio, avatar)),
};

/** Subscribes to `app-event`; resolves to the function that unsubscribes. */
export function onAppEvent(handler: (event: AppEvent) => void): Promise<() => void> {
  return events.appEvent.listen((e) => handler(e.payload));
}

/** Subscribes to `open-space-failed` (a link, notification or tray click that failed). */
export function onOpenSpaceFailed(handler: (error: IpcError) => void): Promise<() => void> {
  return events.openSpaceFailed.listen((e) => handler(e.payload));
}

/** The message of anything a command threw. */
export function messageOf(e: unknown): string {
  if (e instanceof IpcFailure) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

// Microphone levels arrive ~20 times a second: they go to whoever draws a meter, not
// through the whole UI's state.
type Level = { rms: number; peak: number };
const levelListeners = new Set<(l: Level) => void>();
export function publishLevel(level: Level): void {
  for (const l of levelListeners) l(level);
}
export function subscribeLevel(listener: (l: Level) => void): () => void {
  levelListeners.add(listener);
  return () => levelListeners.delete(listener);
}
