// Small, pure helpers for what the UI shows.

import type { ParticipantInfo } from "./bindings";

/** Limits of the server (crates/proto): checked here only to say so before sending. */
export const MAX_TITLE_CHARS = 120;
export const MAX_TOPICS = 3;
export const MAX_TOPIC_CHARS = 32;
export const MAX_CHAT_CHARS = 500;
export const MAX_LINK_CHARS = 512;
/** The reactions a space offers (crates/proto `REACTIONS`; the server refuses others). */
export const REACTIONS = ["💯", "😂", "👏", "❤️", "🙌", "👋"] as const;
/** A handle as the server takes it: 3 to 20 of letters, digits and _, starting with a letter
 * (case is ignored). The server checks again. */
export const HANDLE_PATTERN = "[A-Za-z][A-Za-z0-9_]{2,19}";

export function listeners(n: number): string {
  return n === 1 ? "1 listening" : `${n} listening`;
}

/** Topics typed as "rust, audio, #music": trimmed, without a leading '#', no duplicates. */
export function parseTopics(text: string): { topics: string[]; error: string | null } {
  const topics: string[] = [];
  for (const raw of text.split(",")) {
    const t = raw.trim().replace(/^#+/, "").trim();
    if (t !== "" && !topics.some((x) => x.toLowerCase() === t.toLowerCase())) topics.push(t);
  }
  if (topics.length > MAX_TOPICS) return { topics, error: `At most ${MAX_TOPICS} topics` };
  const long = topics.find((t) => [...t].length > MAX_TOPIC_CHARS);
  if (long !== undefined) return { topics, error: `A topic is at most ${MAX_TOPIC_CHARS} characters` };
  return { topics, error: null };
}

const ROLE_RANK: Record<ParticipantInfo["role"], number> = { host: 0, cohost: 1, speaker: 2, listener: 3 };

/** The host, co-hosts, speakers, then listeners; each group by name. */
export function ordered(participants: ParticipantInfo[]): ParticipantInfo[] {
  return [...participants].sort((a, b) => {
    if (a.role !== b.role) return ROLE_RANK[a.role] - ROLE_RANK[b.role];
    return a.name.localeCompare(b.name);
  });
}

/** "in 5 min", "in 3 h", "tomorrow 09:30", or a date, from seconds since the epoch. */
export function startsIn(unixSeconds: number, nowMs: number = Date.now()): string {
  const s = Math.floor(unixSeconds - nowMs / 1000);
  if (s <= 60) return "starting now";
  if (s < 3600) return `in ${Math.round(s / 60)} min`;
  if (s < 12 * 3600) return `in ${Math.round(s / 3600)} h`;
  const d = new Date(unixSeconds * 1000);
  return d.toLocaleString(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** "just now", "5 min ago", "3 h ago", "2 days ago" from seconds since the epoch. */
export function ago(unixSeconds: number, nowMs: number = Date.now()): string {
  const s = Math.max(0, Math.floor(nowMs / 1000 - unixSeconds));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return d === 1 ? "yesterday" : `${d} days ago`;
}

/** One or two letters for an avatar. */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return "?";
  const letters = words.length === 1 ? [...words[0]].slice(0, 2) : [[...words[0]][0], [...words[1]][0]];
  return letters.join("").toUpperCase();
}

/** A stable hue per name, so a person keeps their colour everywhere. */
export function hue(name: string): number {
  let h = 0;
  for (const c of name) h = (h * 31 + (c.codePointAt(0) ?? 0)) % 360;
  return h;
}
