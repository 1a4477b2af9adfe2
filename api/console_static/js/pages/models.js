// Models: every model this key can use, with its versions and their metrics.

import { get } from "../api.js";
import { h, jobLink, pageTitle, table, when } from "../dom.js";
import { metricList } from "../jobview.js";

export async function render(main, { signal }) {
  const models = (await get("/v1/models", { signal })).data;
  main.append(pageTitle("Models"));
  if (!models.length) main.append(h("p", {}, "No model has a version yet."));
  for (const model of models) main.append(modelSection(model));
}

function modelSection(model) {
  const id = `model-${model.name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const shared = model.shared ? "shared with every tenant" : "yours only";
  const about = `${model.kind} · ${shared} · latest version ${model.latest_version ?? "none yet"}`;
  return h(
    "section",
    { class: "card", "aria-labelledby": id },
    h("h2", { id }, model.name),
    h("p", {}, about),
    table(
      `Versions of ${model.name}, newest first`,
      {
        Version: (v) => String(v.version),
        Status: (v) => v.status,
        Created: (v) => when(v.created_at),
        Metrics: (v) => metricList(v.metrics),
        "Trained by": (v) => (v.job_id ? jobLink(v.job_id) : "—"),
      },
      model.versions,
    ),
  );
}
