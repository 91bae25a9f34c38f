// A small line chart of recent samples, drawn as an inline SVG polyline: no charting library.

/** The polyline `points` for `values` in a `width` × `height` box: the oldest sample at the
 *  left edge, the newest at the right, 0 at the bottom and `max(values, floor)` at the top.
 *  Missing samples (`null`) leave their place empty. One sample draws a flat line across;
 *  none draws nothing (""). */
export function sparklinePoints(values: (number | null)[], width: number, height: number, floor = 0): string {
  const known = values.flatMap((v, i) => (v !== null && Number.isFinite(v) ? [[i, Math.max(0, v)] as const] : []));
  if (known.length === 0 || width <= 0 || height <= 0) return "";
  const top = Math.max(floor, ...known.map(([, v]) => v));
  const y = (v: number) => round(top > 0 ? height - (v / top) * height : height);
  if (known.length === 1) {
    const h = y(known[0][1]);
    return `0,${h} ${round(width)},${h}`;
  }
  const step = width / Math.max(1, values.length - 1);
  return known.map(([i, v]) => `${round(i * step)},${y(v)}`).join(" ");
}

const round = (n: number) => Math.round(n * 10) / 10;

type Props = {
  values: (number | null)[];
  /** The smallest top of the scale, so a quiet line stays low instead of filling the box. */
  floor?: number;
  width?: number;
  height?: number;
  label: string;
};

export function Sparkline({ values, floor = 0, width = 120, height = 24, label }: Props) {
  return (
    <svg class="sparkline" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      <polyline points={sparklinePoints(values, width, height, floor)} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}
