// Settings: display name, microphone and speaker (with a live input meter and a test sound),
// open mic or push-to-talk, and the server. The meter runs only while this page is open.

import { useEffect, useState } from "preact/hooks";
import type { Act } from "./app";
import type { Account, AppState, Devices, Settings } from "./bindings";
import { api, messageOf, subscribeLevel } from "./ipc";
import { HANDLE_PATTERN } from "./format";
import { Avatar, Icon } from "./ui";

type Props = { app: AppState; act: Act };

/** The key push-to-talk offers first (the backend's `DEFAULT_TALK_KEY`). */
const DEFAULT_TALK_KEY = "F8";

export function SettingsView({ app, act }: Props) {
  const [settings, setSettings] = useState<Settings | null>(null);
  const [devices, setDevices] = useState<Devices | null>(null);
  const [deviceError, setDeviceError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.getSettings().then(setSettings, (e) => setDeviceError(messageOf(e)));
    api.listDevices().then(setDevices, (e) => setDeviceError(messageOf(e)));
    api.setLevelMeter(true).catch((e) => setDeviceError(messageOf(e)));
    return () => {
      api.setLevelMeter(false).catch(() => {});
    };
  }, []);

  if (settings === null) return <p class="loading">Loading settings…</p>;
  const edit = (patch: Partial<Settings>) => {
    setSettings({ ...settings, ...patch });
    setSaved(false);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const clean = { ...settings, serverUrl: settings.serverUrl?.trim() || null };
    const ok = await act(() => api.saveSettings(clean));
    setBusy(false);
    setSaved(ok);
    // The meter listens to the microphone that was chosen: restart it on the new one.
    if (ok) await api.setLevelMeter(false).then(() => api.setLevelMeter(true)).catch(() => {});
  };

  return (
    <form class="settings" onSubmit={save} aria-labelledby="settings-heading">
      <header class="settings-head">
        <h1 id="settings-heading">Settings</h1>
        <div class="save-row">
          <button class="primary" type="submit" disabled={busy}>
            {busy ? "Saving…" : "Save"}
          </button>
          {saved && (
            <span class="saved" role="status">
              Saved
            </span>
          )}
        </div>
      </header>

      <AccountCard app={app} act={act} />

      <section class="card" aria-labelledby="you-heading">
        <h2 id="you-heading">You</h2>
        <label class="field">
          <span>Display name</span>
          <input
            value={settings.displayName}
            maxLength={64}
            required
            onInput={(e) => edit({ displayName: e.currentTarget.value })}
          />
          <small class="hint">Shown to others in spaces; used from your next connection.</small>
        </label>
      </section>

      <section class="card" aria-labelledby="audio-heading">
        <h2 id="audio-heading">Audio</h2>
        {deviceError !== null && <p class="hint error">{deviceError}</p>}
        <label class="field">
          <span>Microphone</span>
          <select
            value={settings.inputDevice ?? ""}
            onChange={(e) => edit({ inputDevice: e.currentTarget.value || null })}
          >
            <option value="">System default</option>
            {devices?.inputs.map((d) => (
              <option key={d.id} value={d.id}>
                {d.description}
              </option>
            ))}
          </select>
        </label>
        <Meter />
        <label class="field">
          <span>Speaker</span>
          <select
            value={settings.outputDevice ?? ""}
            onChange={(e) => edit({ outputDevice: e.currentTarget.value || null })}
          >
            <option value="">System default</option>
            {devices?.outputs.map((d) => (
              <option key={d.id} value={d.id}>
                {d.description}
              </option>
            ))}
          </select>
        </label>
        <fieldset class="voice-options">
          <legend>Voice processing</legend>
          {(
            [
              ["noiseSuppression", "Noise suppression", "Removes steady room noise: fans, hum, traffic"],
              ["echoCancellation", "Echo cancellation", "Keeps what your speakers play out of your microphone"],
              ["autoGain", "Automatic gain", "Brings a quiet or loud voice to an even level"],
            ] as const
          ).map(([key, label, hint]) => (
            <label key={key} class="check">
              <input
                type="checkbox"
                name={key}
                checked={settings.voice[key]}
                onChange={(e) => edit({ voice: { ...settings.voice, [key]: e.currentTarget.checked } })}
              />
              <span>
                {label}
                <small class="hint">{hint}</small>
              </span>
            </label>
          ))}
        </fieldset>
        <fieldset class="voice-options" aria-describedby="mic-mode-hint">
          <legend>Microphone on stage</legend>
          <label class="check">
            <input
              type="radio"
              name="micMode"
              value="open"
              checked={settings.micMode.type === "open"}
              onChange={() => edit({ micMode: { type: "open" } })}
            />
            <span>Open mic</span>
          </label>
          <label class="check">
            <input
              type="radio"
              name="micMode"
              value="pushToTalk"
              checked={settings.micMode.type === "pushToTalk"}
              onChange={() => edit({ micMode: { type: "pushToTalk", key: DEFAULT_TALK_KEY } })}
            />
            <span>Push to talk</span>
          </label>
          {settings.micMode.type === "pushToTalk" && (
            <label class="field">
              <span>Key to hold</span>
              <input
                name="talkKey"
                value={settings.micMode.key}
                maxLength={40}
                required
                placeholder={DEFAULT_TALK_KEY}
                onInput={(e) => edit({ micMode: { type: "pushToTalk", key: e.currentTarget.value } })}
              />
            </label>
          )}
          <small id="mic-mode-hint" class="hint">
            With push to talk your microphone is muted unless you hold the key, even while Confab is in the background:
            F1 to F24, or Ctrl, Alt, Shift or Super with a letter, a digit or Space (Ctrl+Space).
          </small>
        </fieldset>
        <button type="button" class="secondary" onClick={() => act(() => api.playTestSound())}>
          <Icon name="speaker" />
          Play test sound
        </button>
      </section>

      <section class="card" aria-labelledby="server-heading">
        <h2 id="server-heading">Server</h2>
        <label class="field">
          <span>Server URL</span>
          <input
            type="url"
            value={settings.serverUrl ?? ""}
            placeholder="Empty: the server built into Confab"
            onInput={(e) => edit({ serverUrl: e.currentTarget.value })}
          />
          <small class="hint">
            In use: {app.serverUrl}
            {app.embeddedServer ? " (built in)" : ""}. A change takes effect when Confab restarts.
          </small>
        </label>
      </section>

      {app.blocked.length > 0 && (
        <section class="card" aria-labelledby="blocked-heading">
          <h2 id="blocked-heading">Blocked for you</h2>
          <p class="hint">You do not hear, see reactions from or read the chat of these accounts.</p>
          <ul class="blocked-list">
            {app.blocked.map((h) => (
              <li key={h}>
                @{h}
                <button type="button" class="ghost small" aria-label={`Unblock @${h}`} onClick={() => act(() => api.blockUser(h, false))}>
                  Unblock
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
    </form>
  );
}

/** The account on this server: who you are, or a way to create one. No password: this device
 * holds a key (in the system keychain where there is one) and signs the server's challenge. */
function AccountCard({ app, act }: Props) {
  const [handle, setHandle] = useState("");
  const [name, setName] = useState(app.displayName);
  const [busy, setBusy] = useState(false);
  const valid = new RegExp(`^${HANDLE_PATTERN}$`).test(handle.trim());
  if (app.account !== null) {
    return (
      <section class="card" aria-labelledby="account-heading">
        <h2 id="account-heading">Account</h2>
        <p class="account-line">
          Signed in as <strong class="account-handle">@{app.account.handle}</strong> · {app.account.displayName}
        </p>
        <small class="hint">This device's key signs you in; nothing to remember.</small>
        <ProfileEditor account={app.account} act={act} />
      </section>
    );
  }
  const create = async () => {
    if (!valid || busy) return;
    setBusy(true);
    await act(() => api.createAccount(handle.trim(), name.trim()));
    setBusy(false);
  };
  return (
    <section class="card" aria-labelledby="account-heading">
      <h2 id="account-heading">Account</h2>
      <p class="hint">An account lets you raise your hand, react, chat and schedule spaces. No password: this device keeps a key.</p>
      <label class="field">
        <span>Handle</span>
        <input
          name="handle"
          value={handle}
          placeholder="ada_l"
          pattern={HANDLE_PATTERN}
          aria-invalid={handle !== "" && !valid}
          onInput={(e) => setHandle(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              create();
            }
          }}
        />
        <small class={handle !== "" && !valid ? "hint error" : "hint"}>3 to 20 letters, digits or _, starting with a letter</small>
      </label>
      <label class="field">
        <span>Name others see</span>
        <input name="account-name" value={name} maxLength={64} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <button
        type="button"
        class="primary"
        disabled={!valid || name.trim() === "" || busy || app.current !== null}
        title={app.current !== null ? "Leave your space first" : undefined}
        onClick={create}
      >
        {busy ? "Creating…" : "Create account"}
      </button>
    </section>
  );
}

/** The microphone's level: RMS as a bar, the peak as a tick, on a -60..0 dBFS scale. */
function Meter() {
  const [level, setLevel] = useState({ rms: 0, peak: 0 });
  useEffect(() => subscribeLevel(setLevel), []);
  const pct = (x: number) => {
    const db = 20 * Math.log10(Math.max(x, 1e-6));
    return Math.round(Math.min(100, Math.max(0, ((db + 60) / 60) * 100)));
  };
  const rms = pct(level.rms);
  return (
    <div class="meter-row">
      <span class="meter-label" id="meter-label">
        Input level
      </span>
      <div class="meter" role="meter" aria-labelledby="meter-label" aria-valuemin={0} aria-valuemax={100} aria-valuenow={rms}>
        <div class="meter-rest" style={{ width: `${100 - rms}%` }} />
        {level.peak > 0 && <div class="meter-peak" style={{ left: `${pct(level.peak)}%` }} />}
      </div>
    </div>
  );
}

/** The largest avatar the server takes. */
const MAX_AVATAR_BYTES = 64 * 1024;
const MAX_BIO_CHARS = 160;

/** Bio and avatar, saved on their own (the display name is saved with the other settings). */
function ProfileEditor({ account, act }: { account: Account; act: Act }) {
  const [bio, setBio] = useState(account.bio);
  const [avatar, setAvatar] = useState<string | null>(account.avatar);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const pick = (file: File | undefined) => {
    setProblem(null);
    if (file === undefined) return;
    if (file.type !== "image/png" && file.type !== "image/jpeg") return setProblem("A PNG or JPEG picture");
    if (file.size > MAX_AVATAR_BYTES) return setProblem("At most 64 KiB");
    const reader = new FileReader();
    reader.onload = () => setAvatar(String(reader.result));
    reader.onerror = () => setProblem("Could not read the picture");
    reader.readAsDataURL(file);
  };
  const save = async () => {
    setBusy(true);
    const base64 = avatar === null ? null : avatar.slice(avatar.indexOf(",") + 1);
    await act(() => api.updateProfile(bio.trim(), base64));
    setBusy(false);
  };
  const changed = bio !== account.bio || avatar !== account.avatar;
  return (
    <div class="profile-editor">
      <div class="avatar-row">
        <Avatar name={account.displayName} size={56} src={avatar} />
        <label class="secondary small file-button">
          Choose picture
          <input type="file" accept="image/png,image/jpeg" onChange={(e) => pick(e.currentTarget.files?.[0])} />
        </label>
        {avatar !== null && (
          <button type="button" class="ghost small" onClick={() => setAvatar(null)}>
            Remove
          </button>
        )}
      </div>
      {problem !== null && <small class="hint error">{problem}</small>}
      <label class="field">
        <span>Bio</span>
        <input value={bio} maxLength={MAX_BIO_CHARS} placeholder="One line about you" onInput={(e) => setBio(e.currentTarget.value)} />
      </label>
      <button type="button" class="secondary" disabled={!changed || busy} onClick={save}>
        {busy ? "Saving…" : "Save profile"}
      </button>
    </div>
  );
}
