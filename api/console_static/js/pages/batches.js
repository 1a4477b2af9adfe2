// Batches: submit one, find the recent ones, and a batch's page with its progress, counts and
// a download of its results.

import { download, events, get, post } from "../api.js";
import { config } from "../config.js";
import { badge, facts, field, h, pageTitle, problemBox, table, when } from "../dom.js";
import { pause } from "../live.js";

const RECENT_BATCHES = 20; // the newest, one page of GET /v1/batches

export async function render(main, { signal }) {
  const cfg = await config();
  main.append(
    pageTitle("Batches"),
    openForm(),
    submitForm(cfg, signal),
    h("h2", {}, "Recent batches"),
    await recent(signal),
  );
}

function openForm() {
  const input = h("input", {
    name: "batch",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const form = h(
    "form",
    { class: "card inline", "aria-label": "Open a batch" },
    field("Batch id", input),
    h("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/batches/${encodeURIComponent(input.value.trim())}`;
  });
  return form;
}

function submitForm(cfg, signal) {
  const types = cfg.job_types.filter((t) => t.queue === "generate").map((t) => t.name);
  const type = h(
    "select",
    { name: "type" },
    types.map((t) => h("option", { value: t, selected: t === "text.generate" }, t)),
  );
  const model = h("input", { name: "model", autocomplete: "off" });
  const items = h("textarea", {
    name: "items",
    rows: 5,
    required: true,
    spellcheck: "false",
    placeholder: '{"custom_id": "a", "params": {"prompt": "The ", "max_tokens": 40}}',
  });
  const problems = h("div");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "batch-title" },
    h("h2", { id: "batch-title" }, "Submit a batch"),
    field("Type", type),
    field("Model (name or name:version)", model),
    field("Items (JSON lines)", items, 'One {"custom_id": …, "params": {…}} object per line.'),
    h("button", { type: "submit" }, "Submit batch"),
    problems,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = {
        type: type.value,
        model: model.value.trim() || null,
        items: jsonLines(items.value),
      };
      const batch = await post("/v1/batches", body, { signal });
      location.hash = `#/batches/${batch.id}`;
    } catch (error) {
      problems.replaceChildren(problemBox(error));
    }
  });
  return form;
}

function jsonLines(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line, i) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`Item line ${i + 1} is not JSON.`);
      }
    });
}

async function recent(signal) {
  const batches = (await get(`/v1/batches?limit=${RECENT_BATCHES}`, { signal })).data;
  if (!batches.length) return h("p", {}, "No batches yet.");
  return table(
    "Recent batches",
    {
      Created: (b) => when(b.created_at),
      Type: (b) => b.type,
      Status: (b) => badge(b.status),
      Progress: (b) => progressBar(b),
      Batch: (b) => h("a", { href: `#/batches/${b.id}` }, b.id.slice(0, 8)),
    },
    batches,
  );
}

function progressBar(batch) {
  return h(
    "span",
    {},
    h("progress", {
      max: 1,
      value: batch.progress,
      "aria-label": `Batch ${batch.id.slice(0, 8)} progress`,
    }),
    ` ${Math.round(batch.progress * 100)}% of ${batch.total}`,
  );
}

/** A batch's page: status and counts, live over its event stream, and its results. */
export async function renderOne(main, { id, signal }) {
  const cfg = await config();
  let batch = await get(`/v1/batches/${encodeURIComponent(id)}`, { signal });
  const status = h("p", { "aria-live": "polite" });
  const about = h("div");
  const problems = h("div");
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel batch");
  const save = h("button", { type: "button" }, "Download results (JSONL)");
  const show = (current) => {
    batch = current;
    if (status.dataset.said !== current.status) {
      status.dataset.said = current.status; // a live region: speak the status when it changes
      status.replaceChildren("Status: ", badge(current.status));
    }
    about.replaceChildren(...batchFacts(current));
    cancel.hidden = cfg.batch_terminal_statuses.includes(current.status);
  };
  cancel.addEventListener("click", () =>
    post(`/v1/batches/${batch.id}/cancel`, undefined, { signal })
      .then(show)
      .catch((error) => problems.replaceChildren(problemBox(error))),
  );
  save.addEventListener("click", () =>
    download(`/v1/batches/${batch.id}/results`, `batch-${batch.id}.jsonl`, { signal }).catch(
      (error) => problems.replaceChildren(problemBox(error)),
    ),
  );
  main.append(
    pageTitle("Batch"),
    h("p", { class: "hint" }, h("a", { href: "#/batches" }, "← All batches")),
    status,
    about,
    h("div", { class: "actions" }, save, cancel),
    problems,
  );
  show(batch);
  if (!cfg.batch_terminal_statuses.includes(batch.status))
    watchBatch(batch.id, show, problems, signal);
}

async function watchBatch(id, show, problems, signal) {
  while (!signal.aborted) {
    try {
      for await (const message of events(`/v1/batches/${id}/events`, { signal })) {
        show(JSON.parse(message.data));
        if (message.event === "result") return;
      }
    } catch (error) {
      if (!signal.aborted) problems.replaceChildren(problemBox(error));
      return;
    }
    await pause(1000, signal); // the stream reached its time limit: open it again
  }
}

function batchFacts(batch) {
  const counts = Object.entries(batch.counts).filter(([, n]) => n > 0);
  return [
    h("p", {}, progressBar(batch)),
    facts([
      ["Id", h("code", {}, batch.id)],
      ["Type", batch.type],
      ["Model", batch.model],
      ["Items", String(batch.total)],
      ["Created", when(batch.created_at)],
      ["Finished", batch.finished_at ? when(batch.finished_at) : null],
      ["Results expired", batch.expired_at ? when(batch.expired_at) : null],
    ]),
    table("Items by status", { Status: ([s]) => badge(s), Items: ([, n]) => n }, counts),
  ];
}
