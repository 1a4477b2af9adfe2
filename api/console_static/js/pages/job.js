// A job's page: everything about one job, live while it runs.

import { get } from "../api.js";
import { h, pageTitle } from "../dom.js";
import { mountJob } from "../jobview.js";

export async function render(main, { id, signal }) {
  const job = await get(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  const body = h("div", { class: "job" });
  main.append(
    pageTitle(`Job ${job.type}`),
    h("p", { class: "hint" }, h("a", { href: "#/jobs" }, "← All jobs")),
    body,
  );
  await mountJob(body, job, signal);
}
