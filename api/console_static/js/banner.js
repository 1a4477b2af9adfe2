// The banner that tells a new user the default models are still training, and when each
// version landed: from the models' versions, and the training jobs this key can see.

import { get } from "./api.js";
import { config } from "./config.js";
import { h } from "./dom.js";
import { progressText, trainingTypes } from "./jobinfo.js";
import { every } from "./live.js";

const POLL_MS = 15_000;

/** Keep `region` up to date until the returned controller aborts. */
export function startBanner(region) {
  const stop = new AbortController();
  every(
    POLL_MS,
    stop.signal,
    () => refresh(region, stop.signal),
    () => {
      region.hidden = true; // the page itself reports errors; the banner just stays quiet
    },
  );
  return stop;
}

async function refresh(region, signal) {
  const cfg = await config();
  const defaults = cfg.default_models;
  const [models, training] = await Promise.all([
    get("/v1/models", { signal }),
    trainingJobs(cfg, signal),
  ]);
  const lines = Object.entries(defaults).map(([kind, name]) =>
    describe(
      kind,
      name,
      models.data.find((m) => m.name === name),
      training.get(name),
    ),
  );
  const busy = lines.some((line) => line.training);
  region.hidden = !busy;
  const said = lines.map((line) => line.text).join("\n");
  if (!busy || region.dataset.said === said) return; // unchanged: nothing new to announce
  region.dataset.said = said;
  region.replaceChildren(
    h(
      "p",
      {},
      h("strong", {}, "The default models are still training."),
      " Generation with a model waits for its first version;" +
        " better versions replace it as they land.",
    ),
    h(
      "ul",
      {},
      lines.map((line) => h("li", {}, line.text)),
    ),
  );
}

/** Return the unfinished training jobs this key can see, by the model they train. */
async function trainingJobs(cfg, signal) {
  const running = new Map();
  for (const type of trainingTypes(cfg)) {
    const page = await get(`/v1/jobs?type=${encodeURIComponent(type.name)}&limit=20`, { signal });
    for (const job of page.data) {
      if (!cfg.terminal_statuses.includes(job.status) && !running.has(job.model))
        running.set(job.model, job);
    }
  }
  return running;
}

function describe(kind, name, model, job) {
  const latest = model?.versions?.[0];
  const landed = latest
    ? `version ${latest.version} landed ${new Date(latest.created_at).toLocaleTimeString()}`
    : "no version yet";
  const progress = job ? `; training: ${progressText(job)}` : "";
  const why = !latest && !job ? " (it is trained on the first start)" : "";
  return {
    training: !latest || Boolean(job),
    text: `${name} (${kind}): ${landed}${progress}${why}`,
  };
}
