// Line charts of training curves, drawn as inline SVG, with the numbers as a table beside them.

import { h, num, svg, table } from "./dom.js";

const W = 480;
const H = 220;
const PAD = { left: 52, right: 12, top: 12, bottom: 34 };

/**
 * Return a figure charting `series` ([{name, points: [[x, y], ...]}]) over x, with a legend and
 * a table of the same numbers for people who do not see the chart.
 */
export function lineChart({ title, xLabel, series }) {
  const drawn = series.filter((s) => s.points.length);
  const all = drawn.flatMap((s) => s.points);
  if (!all.length) return h("p", { class: "hint" }, `${title}: no epoch has finished yet.`);
  const scale = scales(all);
  const plot = svg(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-label": `${title}: ${drawn.map((s) => s.name).join(" and ")} by ${xLabel}`,
    },
    svg("title", {}, title),
    axes(scale, xLabel),
    drawn.map((s, i) => line(s, i, scale)),
  );
  const legend = h(
    "ul",
    { class: "legend" },
    drawn.map((s, i) => h("li", { class: `s${i}` }, s.name)),
  );
  return h(
    "figure",
    { class: "chart-figure" },
    h("figcaption", {}, title),
    plot,
    legend,
    numbers(title, xLabel, drawn),
  );
}

function scales(points) {
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1]; // one point, or a flat line: give it some room
  const x = (v) => PAD.left + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  return { x, y, x0, x1, y0, y1 };
}

function axes(s, xLabel) {
  const bottom = H - PAD.bottom;
  return svg(
    "g",
    { class: "axes" },
    svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom }),
    svg("line", { x1: PAD.left, y1: bottom, x2: W - PAD.right, y2: bottom }),
    tick(PAD.left - 6, s.y(s.y1) + 4, num(s.y1, 3), "end"),
    tick(PAD.left - 6, s.y(s.y0), num(s.y0, 3), "end"),
    tick(s.x(s.x0), bottom + 16, num(s.x0), "middle"),
    s.x1 !== s.x0 ? tick(s.x(s.x1), bottom + 16, num(s.x1), "middle") : null,
    tick((PAD.left + W) / 2, H - 2, xLabel, "middle"),
  );
}

function tick(x, y, text, anchor) {
  return svg("text", { x, y, "text-anchor": anchor }, text);
}

function line(series, index, s) {
  const coords = series.points.map(([x, y]) => `${s.x(x).toFixed(1)},${s.y(y).toFixed(1)}`);
  const dots = series.points.map(([x, y]) =>
    svg("circle", { cx: s.x(x).toFixed(1), cy: s.y(y).toFixed(1), r: 3 }),
  );
  return svg(
    "g",
    { class: `series s${index}` },
    svg("polyline", { points: coords.join(" ") }),
    dots,
  );
}

function numbers(title, xLabel, series) {
  const xs = [...new Set(series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
  const columns = { [xLabel]: (x) => x };
  for (const s of series) {
    const byX = new Map(s.points);
    columns[s.name] = (x) => num(byX.get(x));
  }
  return h("details", {}, h("summary", {}, "Show the numbers"), table(title, columns, xs));
}
