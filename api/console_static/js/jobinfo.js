// What a job's progress says, in words and numbers, whatever its type reports.

import { num } from "./dom.js";

/** Return the share of the job done (0..1), or null when its progress does not say. */
export function fraction(job) {
  const value = job.progress?.fraction;
  return typeof value === "number" ? Math.max(0, Math.min(1, value)) : null;
}

/** Return a job's progress in words: epochs done and share for training, else its status. */
export function progressText(job) {
  const p = job.progress || {};
  if (job.status === "queued") return "waiting for a worker";
  const share = fraction(job) === null ? "" : `${Math.round(fraction(job) * 100)}%`;
  if (p.epochs === undefined) return share || job.status;
  const history = p.history || [];
  const last = history.at(-1);
  const loss = last ? `, loss ${num(last.loss ?? last.g_loss)}` : "";
  return `${history.length} of ${p.epochs} epochs done (${share || "0%"})${loss}`;
}

/** Return the job types that train a model (they register the model they name), by kind. */
export function trainingTypes(cfg) {
  return cfg.job_types.filter((type) => type.model === "target" && type.queue === "train");
}

/** Return whether jobs of the type called `name` train a model. */
export function isTraining(cfg, name) {
  return trainingTypes(cfg).some((type) => type.name === name);
}
