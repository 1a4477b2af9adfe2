// Building the page: elements from data (text only, never HTML), formats, and error messages.

/** Return a new element with attributes, properties and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Return an SVG element (charts) with the given attributes and children. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  append(el, children);
  return el;
}

/** Return a heading that pages focus after they render, so keyboard users start there. */
export function pageTitle(text) {
  document.title = `${text} · aigc-queue console`;
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

/** Return a labelled form field: the label's `for` names the control. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

/** Return a table of rows; `columns` maps a header to a function of the row. */
export function table(caption, columns, rows) {
  const head = h(
    "tr",
    {},
    Object.keys(columns).map((name) => h("th", { scope: "col" }, name)),
  );
  const cells = Object.values(columns);
  const body = rows.length
    ? rows.map((row) =>
        h(
          "tr",
          {},
          cells.map((cell) => h("td", {}, cell(row))),
        ),
      )
    : h("tr", {}, h("td", { colspan: cells.length }, "None."));
  return h(
    "div",
    { class: "table-wrap" },
    h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)),
  );
}

/** Return a description list of label → value pairs (values may be elements). */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** Return a date-time as local time, or an em dash when absent. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return h("time", { datetime: date.toISOString() }, date.toLocaleString());
}

/** Return a number rounded for people (losses, rates). */
export function num(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number" || Number.isInteger(value)) return String(value); // counts, ids
  return Number(value.toPrecision(digits)).toString();
}

/** Return a status as a badge whose text says it (colour only repeats it). */
export function badge(status) {
  return h("span", { class: `badge status-${status}` }, status.replaceAll("_", " "));
}

/** Return pretty JSON in a scrollable, focusable block. */
export function json(value) {
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

/** Return a link to a job's page. */
export function jobLink(id, text = id.slice(0, 8)) {
  return h("a", { href: `#/jobs/${id}`, title: id }, text);
}

const LEADS = {
  401: "The API did not accept the key.",
  403: "This key may not do that.",
  404: "Not found.",
  409: "That conflicts with the current state.",
  410: "That is gone: retention removed it.",
  413: "That is too large.",
  422: "The request has a problem.",
  429: "Too many requests.",
  503: "The service is unavailable for a moment; try again.",
};

/** Return an alert that says, in plain words, what went wrong (problem+json or network). */
export function problemBox(error) {
  const problem = error?.problem;
  if (!problem) {
    const reason =
      error?.name === "TypeError" ? "Could not reach the API." : String(error?.message || error);
    return h("div", { class: "problem", role: "alert" }, h("p", {}, reason));
  }
  const lead = LEADS[problem.status] || `${problem.title || "Error"} (${problem.status}).`;
  const fields = (problem.errors || []).map((e) =>
    h("li", {}, h("code", {}, e.field), `: ${e.message}`),
  );
  const retry = error.retryAfter ? h("p", {}, `Try again in ${error.retryAfter} s.`) : null;
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("p", {}, h("strong", {}, lead), problem.detail ? ` ${capital(problem.detail)}.` : ""),
    fields.length ? h("ul", {}, fields) : null,
    retry,
  );
}

function capital(text) {
  const trimmed = text.replace(/[.\s]+$/, "");
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
}

/** Show a message to screen readers without moving focus. */
export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}
