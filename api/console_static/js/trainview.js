// A training job's curves (loss per epoch), its latest sample grid and the versions it registered.

import { lineChart } from "./chart.js";
import { h, num, table, when } from "./dom.js";
import { artifactImage } from "./gallery.js";

// Which losses each kind of training reports per epoch in `progress.history`.
const CURVES = [
  { title: "Loss per epoch", names: ["loss", "val_loss"] },
  { title: "GAN losses per epoch", names: ["d_loss", "g_loss"] },
];

/** Return a section that `update(job)` keeps current as the training job reports progress. */
export function trainingSection(signal) {
  const curves = h("div", { class: "curves" });
  const grid = h("div", { class: "grid-sample" });
  const versions = h("div");
  const section = h(
    "section",
    { "aria-labelledby": "training-title" },
    h("h2", { id: "training-title" }, "Training"),
    h("div", { class: "training-row" }, curves, grid),
    versions,
  );
  let shown = { epochs: -1, grid: null, versions: -1 };
  const update = (job) => {
    const p = job.progress || {};
    const history = p.history || [];
    if (history.length !== shown.epochs) curves.replaceChildren(...charts(history));
    if (p.grid && p.grid.id !== shown.grid) grid.replaceChildren(gridFigure(p, signal));
    const registered = [...(p.versions || []), ...finalVersion(job)];
    if (registered.length !== shown.versions) versions.replaceChildren(versionTable(registered));
    shown = { epochs: history.length, grid: p.grid?.id ?? shown.grid, versions: registered.length };
  };
  return { section, update };
}

function charts(history) {
  const drawn = CURVES.filter((curve) =>
    history.some((entry) => curve.names.some((n) => typeof entry[n] === "number")),
  );
  if (!drawn.length)
    return [h("p", { class: "hint" }, "The curves appear when the first epoch ends.")];
  return drawn.map((curve) =>
    lineChart({
      title: curve.title,
      xLabel: "epoch",
      series: curve.names.map((name) => ({
        name,
        points: history.filter((e) => typeof e[name] === "number").map((e) => [e.epoch, e[name]]),
      })),
    }),
  );
}

function gridFigure(progress, signal) {
  const epoch = progress.history?.length || progress.epoch;
  return h(
    "figure",
    {},
    artifactImage(progress.grid.url, `Sample grid after epoch ${epoch}`, signal),
    h("figcaption", {}, `Samples after epoch ${epoch} (the same latent points every epoch)`),
  );
}

/** Return the version a finished job registered, as its progress lists the interim ones. */
function finalVersion(job) {
  const model = job.result?.model;
  return model ? [{ model, epochs: job.result.metrics?.epochs, at: job.finished_at }] : [];
}

function versionTable(registered) {
  if (!registered.length) return h("p", { class: "hint" }, "No version registered yet.");
  return table(
    "Versions registered by this job",
    {
      Version: (v) => v.model,
      "After epoch": (v) => num(v.epochs),
      Landed: (v) => when(v.at),
    },
    registered,
  );
}
