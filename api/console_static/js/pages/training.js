// Training: train a text or image model (its page then shows the curves and a Cancel button),
// and the training jobs of this key.

import { get, post } from "../api.js";
import { config } from "../config.js";
import { badge, field, h, jobLink, pageTitle, problemBox, table, when } from "../dom.js";
import { extraParams, readParams, schemaInput } from "../forms.js";
import { progressText, trainingTypes } from "../jobinfo.js";
import { every } from "../live.js";

const FIELDS = ["preset", "epochs"];
const REFRESH_MS = 5000;

export async function render(main, { signal }) {
  const cfg = await config();
  const types = trainingTypes(cfg);
  const list = h("div", {}, h("p", {}, "Loading…"));
  main.append(
    pageTitle("Training"),
    await trainForm(types, signal),
    h("h2", {}, "Training jobs"),
    list,
  );
  every(
    REFRESH_MS,
    signal,
    async () => {
      const jobs = await trainingJobs(types, signal);
      const said = jobs.map((j) => `${j.id} ${j.status} ${progressText(j)}`).join("\n");
      if (list.dataset.said === said) return; // unchanged: keep the table (and the focus in it)
      list.dataset.said = said;
      list.replaceChildren(jobsTable(jobs, cfg));
    },
    (error) => list.replaceChildren(problemBox(error)),
  );
}

async function trainForm(types, signal) {
  const datasets = (await get("/v1/datasets", { signal })).data;
  const kind = h(
    "select",
    { name: "type" },
    types.map((t) => h("option", { value: t.name }, `${t.model_kind} (${t.name})`)),
  );
  const name = h("input", { name: "model", required: true, maxlength: 128, autocomplete: "off" });
  const params = h("div");
  const dataset = h("select", { name: "dataset_id" });
  const extra = extraParams("More parameters");
  const problems = h("div");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "train-title" },
    h("h2", { id: "train-title" }, "Train a model"),
    field("Kind", kind),
    field(
      "Model name",
      name,
      "A new name, or one of your models: the result becomes its next version.",
    ),
    params,
    field("Dataset", dataset),
    field(
      "More parameters (JSON object, optional)",
      extra.area,
      'Any other training parameter, e.g. {"batch_size": 32}.',
    ),
    h("button", { type: "submit" }, "Start training"),
    problems,
  );
  const chosen = () => types.find((t) => t.name === kind.value);
  const refill = () => {
    const type = chosen();
    params.replaceChildren(
      ...FIELDS.map((f) =>
        field(f === "preset" ? "Preset" : "Epochs", schemaInput(type.params, f)),
      ),
    );
    const fit = datasets.filter((d) => d.kind === type.model_kind);
    dataset.replaceChildren(
      h("option", { value: "" }, "built-in data"),
      fit.map((d) => h("option", { value: d.id }, `${d.name} (${d.items} items)`)),
    );
  };
  kind.addEventListener("change", refill);
  refill();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const type = chosen();
      const body = {
        type: type.name,
        model: name.value.trim(),
        params: { ...readParams(form, type.params), ...extra.read() },
      };
      const job = await post("/v1/jobs", body, { signal });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      problems.replaceChildren(problemBox(error));
    }
  });
  return form;
}

async function trainingJobs(types, signal) {
  const pages = await Promise.all(
    types.map((t) => get(`/v1/jobs?type=${encodeURIComponent(t.name)}&limit=20`, { signal })),
  );
  return pages.flatMap((p) => p.data).sort((a, b) => b.created_at.localeCompare(a.created_at));
}

function jobsTable(jobs, cfg) {
  if (!jobs.length) return h("p", {}, "No training jobs yet.");
  return table(
    "Training jobs, newest first",
    {
      Created: (j) => when(j.created_at),
      Type: (j) => j.type,
      Model: (j) => j.model,
      Status: (j) => badge(j.status),
      Progress: (j) => progressText(j),
      Job: (j) => jobLink(j.id, cfg.terminal_statuses.includes(j.status) ? "open" : "open, cancel"),
    },
    jobs,
  );
}
