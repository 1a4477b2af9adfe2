// Jobs: the newest first, filtered by status and type, with live status.

import { get } from "../api.js";
import { config } from "../config.js";
import { badge, field, h, jobLink, pageTitle, problemBox, when } from "../dom.js";
import { fraction, progressText } from "../jobinfo.js";
import { every, follow } from "../live.js";

// Each followed job holds a connection, and a browser opens only six per host: follow a few of
// the unfinished jobs over SSE and read the list again now and then for the rest.
const MAX_STREAMS = 3;
const REFRESH_MS = 5000;
const PAGE_SIZE = 20;
const MAX_PAGE = 100; // the API's largest page

export async function render(main, { query, signal }) {
  const cfg = await config();
  const filters = { status: query.get("status") || "", type: query.get("type") || "" };
  const body = h("tbody", {}, h("tr", {}, h("td", { colspan: 6 }, "Loading…")));
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const errors = h("div");
  const view = {
    body,
    rows: new Map(),
    streams: new Set(),
    cfg,
    signal,
    errors,
    cursor: null,
    shown: PAGE_SIZE,
  };
  main.append(pageTitle("Jobs"), filterForm(cfg, filters), errors, jobTable(body), more);
  more.addEventListener("click", async () => {
    await loadMore(view, filters).catch((error) => errors.replaceChildren(problemBox(error)));
    more.hidden = !view.cursor;
  });
  every(
    REFRESH_MS,
    signal,
    async () => {
      await refresh(view, filters);
      more.hidden = !view.cursor;
      errors.replaceChildren();
    },
    (error) => errors.replaceChildren(problemBox(error)),
  );
}

function filterForm(cfg, filters) {
  const status = select("status", ["", ...cfg.job_statuses], filters.status, "any status");
  const type = select("type", ["", ...cfg.job_types.map((t) => t.name)], filters.type, "any type");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("Status", status),
    field("Type", type),
    h("button", { type: "submit" }, "Filter"),
  );
  const apply = (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (status.value) params.set("status", status.value);
    if (type.value) params.set("type", type.value);
    location.hash = `#/jobs${params.size ? `?${params}` : ""}`;
  };
  form.addEventListener("submit", apply);
  form.addEventListener("change", apply);
  return form;
}

function select(name, values, chosen, anyLabel) {
  return h(
    "select",
    { name },
    values.map((v) => h("option", { value: v, selected: v === chosen }, v || anyLabel)),
  );
}

function jobTable(body) {
  const head = ["Created", "Type", "Model", "Status", "Progress", "Job"];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "jobs" },
      h("caption", {}, "Jobs, newest first (status updates live)"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          head.map((name) => h("th", { scope: "col" }, name)),
        ),
      ),
      body,
    ),
  );
}

function listUrl(filters, limit, cursor) {
  const params = new URLSearchParams({ limit });
  if (filters.status) params.set("status", filters.status);
  if (filters.type) params.set("type", filters.type);
  if (cursor) params.set("cursor", cursor);
  return `/v1/jobs?${params}`;
}

/** Read the newest jobs again, as many as are shown, and show them in order. */
async function refresh(view, filters) {
  if (view.shown > MAX_PAGE) return; // past the API's largest page: only the streams update it
  const page = await get(listUrl(filters, view.shown, null), { signal: view.signal });
  const rows = new Map(page.data.map((job) => [job.id, rowOf(view, job)]));
  view.rows = rows;
  view.cursor = page.next_cursor;
  const now = [...view.body.children];
  const same = now.length === rows.size && [...rows.values()].every((row, i) => row === now[i]);
  if (!same) view.body.replaceChildren(...rows.values()); // unchanged rows keep the focus
  if (!rows.size) view.body.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, "No jobs match.")));
}

async function loadMore(view, filters) {
  const page = await get(listUrl(filters, PAGE_SIZE, view.cursor), { signal: view.signal });
  for (const job of page.data) view.rows.set(job.id, rowOf(view, job));
  view.body.append(...page.data.map((job) => view.rows.get(job.id)));
  view.shown += page.data.length;
  view.cursor = page.next_cursor;
}

/** Return the row of a job: the one shown while it is current (or a stream follows it). */
function rowOf(view, job) {
  const known = view.rows.get(job.id);
  if (known && (view.streams.has(job.id) || known.dataset.said === said(job))) return known;
  if (!view.cfg.terminal_statuses.includes(job.status) && view.streams.size < MAX_STREAMS)
    watch(view, job.id);
  const row = jobRow(job, view.cfg.terminal_statuses.includes(job.status));
  known?.replaceWith(row);
  return row;
}

function said(job) {
  return `${job.status} ${progressText(job)}`;
}

function watch(view, jobId) {
  view.streams.add(jobId);
  const update = (job) => {
    const row = jobRow(job, view.cfg.terminal_statuses.includes(job.status));
    view.rows.get(jobId)?.replaceWith(row);
    view.rows.set(jobId, row);
  };
  follow(jobId, { onJob: update, signal: view.signal })
    .catch((error) => view.errors.replaceChildren(problemBox(error)))
    .finally(() => view.streams.delete(jobId));
}

function jobRow(job, ended) {
  const share = ended ? null : fraction(job);
  const bar =
    share === null
      ? progressText(job)
      : h(
          "span",
          {},
          h("progress", {
            max: 1,
            value: share,
            "aria-label": `Job ${job.id.slice(0, 8)} progress`,
          }),
          ` ${progressText(job)}`,
        );
  const steps = ended && !job.progress?.epochs ? "" : bar; // a finished job's share says nothing
  return h(
    "tr",
    { "data-id": job.id, "data-status": job.status, "data-said": said(job) },
    h("td", {}, when(job.created_at)),
    h("td", {}, job.type),
    h("td", {}, job.model || "—"),
    h("td", {}, badge(job.status)),
    h("td", {}, steps),
    h("td", {}, jobLink(job.id)),
  );
}
