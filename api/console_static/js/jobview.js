// One job as a panel: live status and progress, a Cancel button, the text as it is decoded,
// the result (text or images), the error, every attempt, the params and the timestamps.

import { post } from "./api.js";
import { config } from "./config.js";
import { announce, badge, facts, h, json, num, problemBox, table, when } from "./dom.js";
import { gallery } from "./gallery.js";
import { fraction, isTraining, progressText } from "./jobinfo.js";
import { follow } from "./live.js";
import { trainingSection } from "./trainview.js";

/** Show `job` in `container` and go on following it live until it ends or `signal` aborts. */
export async function mountJob(container, job, signal, { details = true } = {}) {
  const cfg = await config();
  const view = panel(job, cfg, signal, details);
  container.replaceChildren(...view.parts);
  view.update(job);
  if (cfg.terminal_statuses.includes(job.status)) return;
  follow(job.id, { onJob: view.update, onText: view.addText, signal }).catch((error) =>
    view.problems.replaceChildren(problemBox(error)),
  );
}

function panel(job, cfg, signal, details) {
  const status = h("p", {
    class: "job-status",
    "aria-live": "polite",
    "data-testid": "job-status",
  });
  const steps = h("p", { class: "hint", "data-testid": "job-progress" });
  const bar = h("progress", { max: 1, "aria-label": "Progress" });
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel");
  const problems = h("div");
  const live = h("pre", {
    class: "generated",
    "aria-live": "polite",
    "aria-label": "Text so far",
    tabindex: "0",
    hidden: true,
  });
  const result = h("section", { "aria-label": "Result", class: "result" });
  const training = isTraining(cfg, job.type) ? trainingSection(signal) : null;
  const about = h("div");
  const terminal = (j) => cfg.terminal_statuses.includes(j.status);
  let ended = false;
  cancel.addEventListener("click", () => cancelJob(job.id, cancel, problems, update));
  function update(current) {
    const asking = current.cancel_requested && !terminal(current);
    if (status.dataset.said !== `${current.status} ${asking}`) {
      status.dataset.said = `${current.status} ${asking}`; // a live region: speak changes only
      status.replaceChildren(
        "Status: ",
        badge(current.status),
        asking ? " (cancel requested)" : "",
      );
    }
    // A finished job's share says nothing more (a training job's epochs still do).
    steps.textContent = terminal(current) && !current.progress?.epochs ? "" : progressText(current);
    const share = fraction(current);
    bar.hidden = share === null || terminal(current);
    if (share !== null) bar.value = share;
    cancel.hidden = terminal(current);
    cancel.disabled = current.cancel_requested;
    training?.update(current);
    const seen = `${current.status} ${current.attempts} ${current.errors.length}`;
    if (details && about.dataset.said !== seen) {
      about.dataset.said = seen; // re-drawn when they change, not on each progress report
      about.replaceChildren(...aboutJob(current));
    }
    if (terminal(current) && !ended) {
      ended = true;
      result.replaceChildren(...outcome(current, signal));
      live.hidden = true;
      live.setAttribute("aria-busy", "false");
      announce(`Job ${current.status}`);
    }
  }
  const addText = (text) => {
    live.hidden = false;
    live.setAttribute("aria-busy", "true"); // read the text once it is whole, not each piece
    live.textContent += text;
  };
  const parts = [
    status,
    steps,
    bar,
    h("div", { class: "actions" }, cancel),
    problems,
    live,
    result,
    training?.section,
    about,
  ];
  return { parts: parts.filter(Boolean), update, addText, problems };
}

async function cancelJob(id, button, problems, update) {
  button.disabled = true;
  try {
    update(await post(`/v1/jobs/${id}/cancel`));
    problems.replaceChildren();
  } catch (error) {
    button.disabled = false;
    problems.replaceChildren(problemBox(error));
  }
}

function outcome(job, signal) {
  const parts = [];
  const r = job.result;
  if (r && Array.isArray(r.images)) parts.push(h("h2", {}, "Images"), gallery(r.images, signal));
  if (r && typeof r.text === "string")
    parts.push(h("h2", {}, "Text"), h("pre", { class: "generated", tabindex: "0" }, r.text));
  if (r && r.metrics) parts.push(h("h2", {}, "Metrics"), metricList(r.metrics));
  if (job.error)
    parts.push(
      h("h2", {}, "Error"),
      h(
        "p",
        { class: "problem", role: "alert" },
        h("code", {}, job.error.code),
        `: ${job.error.message}`,
      ),
    );
  return parts;
}

/** Return a model's or a job's metrics as a short list. */
export function metricList(metrics) {
  return h(
    "ul",
    { class: "metrics" },
    Object.entries(metrics).map(([k, v]) => h("li", {}, h("span", {}, k), ` ${num(v)}`)),
  );
}

function aboutJob(job) {
  const parts = [
    h("h2", {}, "Details"),
    facts([
      ["Id", h("code", {}, job.id)],
      ["Type", job.type],
      ["Model", job.model],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`],
      ["Priority", String(job.priority)],
      ["Created", when(job.created_at)],
      ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)],
      ["Results expired", job.expired_at ? when(job.expired_at) : null],
    ]),
    h("h2", {}, "Params"),
    json(job.params),
  ];
  if (job.errors.length) {
    parts.push(
      h("h2", {}, "Attempts that did not succeed"),
      table(
        "Attempts",
        {
          Attempt: (e) => e.attempt,
          Code: (e) => h("code", {}, e.code),
          Message: (e) => e.message,
          Worker: (e) => e.worker || "—",
          At: (e) => when(e.at),
        },
        job.errors,
      ),
    );
  }
  if (job.result && !job.result.images && typeof job.result.text !== "string")
    parts.push(h("h2", {}, "Result"), json(job.result));
  return parts;
}
