// The diagnostics panel: for each speaker we hear, the last minute of round-trip time, jitter,
// loss and jitter-buffer delay as sparklines, with the latest figure. The backend sends the
// figures once a second only while this panel is open.

import { useEffect } from "preact/hooks";
import type { ParticipantId, ParticipantInfo } from "./bindings";
import { api } from "./ipc";
import { Sparkline } from "./sparkline";
import type { Diagnostics } from "./state";

type Props = {
  diagnostics: Record<ParticipantId, Diagnostics>;
  byId: Map<ParticipantId, ParticipantInfo>;
};

const fixed = (v: number | null | undefined, digits: number, unit: string) =>
  v == null ? "—" : `${v.toFixed(digits)} ${unit}`;

export function DiagnosticsPanel({ diagnostics, byId }: Props) {
  useEffect(() => {
    api.setDiagnostics(true).catch(() => {});
    return () => {
      api.setDiagnostics(false).catch(() => {});
    };
  }, []);
  const speakers = Object.entries(diagnostics);
  return (
    <section class="diagnostics card" aria-labelledby="diagnostics-heading">
      <h2 id="diagnostics-heading" class="stage-label">
        Diagnostics · last minute
      </h2>
      {speakers.length === 0 ? (
        <p class="muted">No speaker heard yet.</p>
      ) : (
        <ul class="diag-list">
          {speakers.map(([id, d]) => {
            const name = byId.get(Number(id))?.name ?? `#${id}`;
            const rows: [string, (number | null)[], number, string][] = [
              ["Round trip", d.rttMs, 20, fixed(d.last.rttMs, 1, "ms")],
              ["Jitter", d.jitterMs, 10, fixed(d.last.jitterMs, 1, "ms")],
              ["Loss", d.lossPct, 5, fixed(d.last.loss === null ? null : d.last.loss * 100, 1, "%")],
              ["Buffer", d.bufferMs, 100, `${fixed(d.last.bufferMs, 0, "ms")} (aim ${d.last.targetMs.toFixed(0)})`],
            ];
            return (
              <li key={id} class="diag-speaker" data-participant={id}>
                <strong>{name}</strong>
                <dl>
                  {rows.map(([label, values, floor, now]) => (
                    <div key={label} class="diag-row">
                      <dt>{label}</dt>
                      <dd>
                        <Sparkline values={values} floor={floor} label={`${label} of ${name}, last minute`} />
                        <span class="diag-now">{now}</span>
                      </dd>
                    </div>
                  ))}
                </dl>
                <small class="hint">
                  {d.last.fecRecovered} rebuilt from FEC · {d.last.concealed} concealed
                </small>
              </li>
            );
          })}
        </ul>
      )}
      <small class="hint">Round trip is to the server: it relays every speaker, so it is the same for each.</small>
    </section>
  );
}
