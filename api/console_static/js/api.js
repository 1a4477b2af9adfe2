// The public API (/v1/...), called with the user's key: JSON, files, and event streams.

const KEY = "aigc.key";

/** Return the key of this tab's session: null when signed out, "" when the API wants none. */
export function currentKey() {
  return sessionStorage.getItem(KEY);
}

/** Keep the key for this tab only: it is gone when the tab closes. */
export function signIn(key) {
  sessionStorage.setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** Raised for an answer that is not a success: it carries the problem+json document. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

function headers(extra = {}) {
  const all = new Headers(extra);
  const key = currentKey();
  if (key) all.set("Authorization", `Bearer ${key}`); // EventSource could not send this header
  return all;
}

async function send(method, path, { body, signal, accept = "application/json", extra = {} } = {}) {
  const init = { method, signal, headers: headers({ Accept: accept, ...extra }) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers.set("Content-Type", "application/json");
  }
  const resp = await fetch(path, init);
  if (!resp.ok) throw await failure(resp);
  return resp;
}

async function failure(resp) {
  let problem = { status: resp.status, title: resp.statusText };
  if ((resp.headers.get("Content-Type") || "").includes("json")) problem = await resp.json();
  if (resp.status === 401) window.dispatchEvent(new CustomEvent("aigc:unauthenticated"));
  return new ApiError(resp.status, problem, resp.headers.get("Retry-After"));
}

/** GET a JSON document. */
export async function get(path, options) {
  return (await send("GET", path, options)).json();
}

/** POST a JSON body; return the JSON answer. */
export async function post(path, body, options = {}) {
  return (await send("POST", path, { ...options, body })).json();
}

/** GET a file (artifacts, results) with the key, as a Blob. */
export async function blob(path, options) {
  return (await send("GET", path, { ...options, accept: "*/*" })).blob();
}

/** Fetch a file with the key and hand it to the browser as a download called `name`. */
export async function download(path, name, options) {
  const url = URL.createObjectURL(await blob(path, options));
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // after the browser has read it
}

/**
 * Yield the events of a text/event-stream, read with fetch() so that it carries the key.
 * Each is {id, event, data}; the stream ends when the server closes it or `signal` aborts.
 */
export async function* events(path, { signal, lastEventId } = {}) {
  const extra = lastEventId ? { "Last-Event-ID": lastEventId } : {};
  const resp = await send("GET", path, { signal, accept: "text/event-stream", extra });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const message = parseEvent(buffered.slice(0, end));
      buffered = buffered.slice(end + 2);
      if (message) yield message;
    }
  }
}

function parseEvent(block) {
  const message = { id: null, event: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: the keep-alive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") data.push(value);
    else if (name === "id" || name === "event") message[name] = value;
  }
  message.data = data.join("\n");
  return data.length ? message : null;
}
