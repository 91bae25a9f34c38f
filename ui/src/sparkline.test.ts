import { describe, expect, it } from "vitest";
import { sparklinePoints } from "./sparkline";

const parse = (points: string) => points.split(" ").map((p) => p.split(",").map(Number));

describe("sparklinePoints", () => {
  it("scales the samples to the box: oldest left, newest right, the largest at the top", () => {
    const pts = parse(sparklinePoints([0, 5, 10], 100, 20));
    expect(pts).toEqual([
      [0, 20],
      [50, 10],
      [100, 0],
    ]);
    for (const [x, y] of parse(sparklinePoints([3, 1, 4, 1, 5, 9, 2, 6], 120, 24))) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(120);
      expect(y).toBeGreaterThanOrEqual(0);
      expect(y).toBeLessThanOrEqual(24);
    }
  });

  it("keeps small values low when the scale has a floor", () => {
    expect(parse(sparklinePoints([1, 2], 10, 20, 10))).toEqual([
      [0, 18],
      [10, 16],
    ]);
  });

  it("draws nothing for no samples and a flat line across for one", () => {
    expect(sparklinePoints([], 100, 20)).toBe("");
    expect(sparklinePoints([null, null], 100, 20)).toBe("");
    expect(sparklinePoints([7], 100, 20)).toBe("0,0 100,0");
    expect(sparklinePoints([0], 100, 20)).toBe("0,20 100,20");
  });

  it("leaves missing samples out but keeps everyone else's place in time", () => {
    expect(parse(sparklinePoints([2, null, 4], 100, 20))).toEqual([
      [0, 10],
      [100, 0],
    ]);
  });

  it("never draws outside the box for bad input", () => {
    expect(parse(sparklinePoints([-5, Number.NaN, Infinity, 5], 100, 20))).toEqual([
      [0, 20],
      [100, 0],
    ]);
    expect(sparklinePoints([1, 2], 0, 20)).toBe("");
  });
});
