// Submit: a generate form per model kind, as config.json describes them. A prompt to a text
// model shows its tokens as they are decoded; images show as a gallery of the PNGs.

import { get, post } from "../api.js";
import { config, jobType } from "../config.js";
import { field, h, pageTitle, problemBox } from "../dom.js";
import { readParams, schemaInput } from "../forms.js";
import { mountJob } from "../jobview.js";

export async function render(main, { signal }) {
  const [models, cfg] = await Promise.all([get("/v1/models", { signal }), config()]);
  main.append(pageTitle("Submit"));
  // One form per model kind the server registers (config.json), built from its metadata.
  for (const kind of cfg.model_kinds) {
    if (!kind.generate) continue;
    const type = await jobType(kind.generate.job_type);
    if (type) main.append(await generateForm(kind.generate, type, models.data, cfg, signal));
  }
}

async function generateForm(spec, type, models, cfg, signal) {
  const ready = models.filter((m) => m.kind === type.model_kind && m.latest_version !== null);
  const id = `submit-${type.model_kind}`;
  const model = h(
    "select",
    { name: "model" },
    ready.map((m) =>
      h(
        "option",
        { value: m.name, selected: m.name === cfg.default_models[type.model_kind] },
        `${m.name} (version ${m.latest_version})`,
      ),
    ),
  );
  const controls = spec.fields.map((f) => field(f.label, schemaInput(type.params, f.name)));
  const output = h("div", { class: "output" });
  const button = h("button", { type: "submit", disabled: !ready.length }, spec.button);
  const form = h(
    "form",
    { class: "card", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, spec.title),
    ready.length
      ? field("Model", model)
      : h(
          "p",
          { class: "hint" },
          `No ${type.model_kind} model has a version yet: the banner above says when one lands.`,
        ),
    controls,
    button,
    output,
  );
  let running = new AbortController();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    running.abort(); // stop following the previous job of this form
    running = new AbortController();
    const body = { type: type.name, model: model.value, params: readParams(form, type.params) };
    button.disabled = true;
    try {
      const job = await post("/v1/jobs", body, { signal });
      const panel = h("div", { class: "job-panel" });
      output.replaceChildren(
        h(
          "p",
          {},
          "Submitted: ",
          h("a", { href: `#/jobs/${job.id}` }, `job ${job.id.slice(0, 8)}`),
        ),
        panel,
      );
      await mountJob(panel, job, AbortSignal.any([signal, running.signal]), { details: false });
    } catch (error) {
      output.replaceChildren(problemBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
