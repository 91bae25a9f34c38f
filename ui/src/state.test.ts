import { describe, expect, it } from "vitest";
import type { AppState, CurrentSpace, SpaceSummary, SpeakerDiagnostics } from "./bindings";
import { ago, initials, parseTopics, ordered } from "./format";
import { HISTORY, initialModel, reduce, type Model } from "./state";

const space = (id: string, host: string, listeners = 0): SpaceSummary => ({
  id,
  title: `${host}'s show`,
  host,
  topics: [],
  listeners,
});

const base: AppState = {
  profile: "default",
  serverUrl: "http://127.0.0.1:7373",
  embeddedServer: true,
  connected: true,
  displayName: "ada",
  account: null,
  live: [],
  followed: [],
  upcoming: [],
  blocked: [],
  avatars: [],
  current: null,
  pushToTalk: null,
};

const current: CurrentSpace = {
  space: {
    id: "abcdefghijkl",
    title: "Morning",
    host: "bob",
    state: "live",
    participants: [
      { id: 2, name: "zoe", role: "listener" },
      { id: 1, name: "bob", role: "host" },
      { id: 3, name: "ada", role: "listener" },
    ],
  },
  you: 3,
  role: "listener",
  muted: false,
  mediaConnected: true,
  invitedBy: null,
  chat: [],
};

const loaded = (state: Partial<AppState> = {}): Model =>
  reduce(initialModel, { type: "loaded", state: { ...base, ...state } });

describe("reduce", () => {
  it("keeps events that come before the first state and applies them on top of it", () => {
    let m = reduce(initialModel, { type: "event", event: { type: "directory", live: [space("aaaaaaaaaaaa", "bob")] } });
    expect(m.app).toBeNull();
    m = reduce(m, { type: "loaded", state: base });
    expect(m.app?.live.map((s) => s.host)).toEqual(["bob"]);
    expect(m.early).toEqual([]);
  });

  it("replaces the live list and the followed hosts from their events", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "directory", live: [space("aaaaaaaaaaaa", "bob", 4)] } });
    m = reduce(m, {
      type: "event",
      event: { type: "followed", followed: [{ host: "bob", liveSpace: null, lastTitle: "Old", lastLiveAt: 5 }] },
    });
    expect(m.app?.live[0].listeners).toBe(4);
    expect(m.app?.followed[0].lastTitle).toBe("Old");
  });

  it("enters a space and leaves it when it ends, with a notice saying why", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "current", current } });
    m = reduce(m, { type: "event", event: { type: "speaking", slot: 0, speaker: 1 } });
    expect(m.speaking[0]).toBe(1);
    m = reduce(m, { type: "event", event: { type: "ended", space: "abcdefghijkl", reason: "host_ended" } });
    expect(m.app?.current).toBeNull();
    expect(m.speaking).toEqual({});
    expect(m.notices.map((n) => n.text)).toEqual(["The host ended the space"]);
  });

  it("ignores the end of a space it is not in", () => {
    let m = loaded({ current });
    m = reduce(m, { type: "event", event: { type: "ended", space: "zzzzzzzzzzzz", reason: "host_gone" } });
    expect(m.app?.current).toEqual(current);
    expect(m.notices).toEqual([]);
  });

  it("floats a reaction until it is done, and only inside a space", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "reaction", participant: 1, emoji: "👏" } });
    expect(m.reactions).toEqual([]);
    m = reduce(m, { type: "event", event: { type: "current", current } });
    m = reduce(m, { type: "event", event: { type: "reaction", participant: 1, emoji: "👏" } });
    expect(m.reactions.map((r) => [r.participant, r.emoji])).toEqual([[1, "👏"]]);
    m = reduce(m, { type: "reactionDone", id: m.reactions[0].id });
    expect(m.reactions).toEqual([]);
  });

  it("says why the server refused, and leaves the space when removed", () => {
    let m = loaded({ current });
    m = reduce(m, { type: "event", event: { type: "refused", code: "sign_in_required", message: "sign in to raise a hand" } });
    expect(m.notices.map((n) => [n.kind, n.text])).toEqual([["error", "sign in to raise a hand"]]);
    expect(m.app?.current).toEqual(current);
    m = reduce(m, { type: "event", event: { type: "removed", blocked: true } });
    expect(m.app?.current).toBeNull();
    expect(m.notices[1].text).toContain("blocked");
  });

  it("takes the account's name once signed in, and the levels as they come", () => {
    let m = loaded({ current });
    m = reduce(m, { type: "event", event: { type: "account", account: { handle: "ada_l", displayName: "Ada L", bio: "", avatar: null } } });
    expect(m.app?.account?.handle).toBe("ada_l");
    expect(m.app?.displayName).toBe("Ada L");
    m = reduce(m, { type: "event", event: { type: "levels", levels: [{ participant: 1, rms: 0.2 }] } });
    expect(m.levels).toEqual({ 1: 0.2 });
    m = reduce(m, { type: "event", event: { type: "levels", levels: [] } });
    expect(m.levels).toEqual({});
  });

  it("keeps one avatar per account, the newest", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "avatars", avatars: [{ handle: "bo", src: "data:image/png;base64,AA" }] } });
    m = reduce(m, { type: "event", event: { type: "avatars", avatars: [{ handle: "bo", src: "data:image/png;base64,BB" }] } });
    expect(m.app?.avatars).toEqual([{ handle: "bo", src: "data:image/png;base64,BB" }]);
  });

  it("keeps a minute of each speaker's diagnostics, drops speakers no longer heard, forgets all on leaving", () => {
    const fig = (participant: number, bufferMs: number, loss: number | null = 0.02): SpeakerDiagnostics => ({
      participant,
      rttMs: 12,
      jitterMs: null,
      loss,
      bufferMs,
      targetMs: 40,
      fecRecovered: 0,
      concealed: 1,
    });
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "diagnostics", speakers: [fig(1, 50)] } });
    expect(m.diagnostics).toEqual({}); // outside a space
    m = reduce(m, { type: "event", event: { type: "current", current } });
    m = reduce(m, { type: "event", event: { type: "diagnostics", speakers: [fig(1, 50, null), fig(2, 70)] } });
    m = reduce(m, { type: "event", event: { type: "diagnostics", speakers: [fig(1, 60)] } });
    expect(Object.keys(m.diagnostics)).toEqual(["1"]);
    const one = m.diagnostics[1];
    expect(one.bufferMs).toEqual([50, 60]);
    expect(one.lossPct).toEqual([null, 2]);
    expect(one.jitterMs).toEqual([null, null]);
    expect(one.rttMs).toEqual([12, 12]);
    expect(one.last.bufferMs).toBe(60);
    for (let i = 0; i < HISTORY + 15; i++) {
      m = reduce(m, { type: "event", event: { type: "diagnostics", speakers: [fig(1, i)] } });
    }
    expect(m.diagnostics[1].bufferMs.length).toBe(HISTORY);
    expect(m.diagnostics[1].bufferMs.at(-1)).toBe(HISTORY + 14);
    expect(m.diagnostics[1].bufferMs[0]).toBe(15);
    m = reduce(m, { type: "event", event: { type: "current", current: null } });
    expect(m.diagnostics).toEqual({});
  });

  it("follows the push-to-talk key", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "micMode", key: "F8" } });
    expect(m.app?.pushToTalk).toBe("F8");
    m = reduce(m, { type: "event", event: { type: "micMode", key: null } });
    expect(m.app?.pushToTalk).toBeNull();
  });

  it("tracks the connection and keeps only the last few notices", () => {
    let m = loaded();
    m = reduce(m, { type: "event", event: { type: "connection", connected: false, message: "lost" } });
    expect(m.app?.connected).toBe(false);
    for (let i = 0; i < 10; i++) m = reduce(m, { type: "notice", kind: "error", text: `e${i}` });
    expect(m.notices.map((n) => n.text)).toEqual(["e6", "e7", "e8", "e9"]);
    m = reduce(m, { type: "dismiss", id: m.notices[0].id });
    expect(m.notices.map((n) => n.text)).toEqual(["e7", "e8", "e9"]);
  });
});

describe("format", () => {
  it("parses up to three topics and says what is wrong otherwise", () => {
    expect(parseTopics(" rust, #audio,, Rust ")).toEqual({ topics: ["rust", "audio"], error: null });
    expect(parseTopics("a,b,c,d").error).toBe("At most 3 topics");
    expect(parseTopics("x".repeat(33)).error).toBe("A topic is at most 32 characters");
  });

  it("puts the host first, then co-hosts, speakers and listeners, each by name", () => {
    expect(ordered(current.space.participants).map((p) => p.name)).toEqual(["bob", "ada", "zoe"]);
    const mixed = [
      { id: 5, name: "al", role: "listener" as const },
      { id: 6, name: "zed", role: "speaker" as const },
      { id: 7, name: "cy", role: "cohost" as const },
      { id: 8, name: "bo", role: "speaker" as const },
      { id: 1, name: "hal", role: "host" as const },
    ];
    expect(ordered(mixed).map((p) => p.name)).toEqual(["hal", "cy", "bo", "zed", "al"]);
  });

  it("says how long ago in words", () => {
    const now = 1_000_000_000_000;
    expect(ago(now / 1000 - 10, now)).toBe("just now");
    expect(ago(now / 1000 - 300, now)).toBe("5 min ago");
    expect(ago(now / 1000 - 3 * 3600, now)).toBe("3 h ago");
    expect(ago(now / 1000 - 86400, now)).toBe("yesterday");
    expect(ago(now / 1000 - 5 * 86400, now)).toBe("5 days ago");
  });

  it("makes initials from one or two words", () => {
    expect(initials("ada")).toBe("AD");
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("  ")).toBe("?");
  });
});
