// The console's shell: hash routes to pages, sign-in state, and the default-models banner.

import { currentKey, signOut } from "./api.js";
import { startBanner } from "./banner.js";
import { h, problemBox } from "./dom.js";
import * as batches from "./pages/batches.js";
import * as fleet from "./pages/fleet.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as login from "./pages/login.js";
import * as models from "./pages/models.js";
import * as submit from "./pages/submit.js";
import * as training from "./pages/training.js";

// A route is "#/page" or "#/page/id", with an optional "?query"; each page renders into <main>.
const ROUTES = {
  login: login.render,
  jobs: jobs.render,
  job: job.render,
  submit: submit.render,
  training: training.render,
  batches: batches.render,
  batch: batches.renderOne,
  models: models.render,
  fleet: fleet.render,
};
const SINGULAR = { jobs: "job", batches: "batch" };

let page = new AbortController(); // aborts the current page's requests and streams on leaving it
let banner = null;

function parse(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const [name = "", id] = path.split("/").map(decodeURIComponent);
  return { name: id ? SINGULAR[name] : name, id, query: new URLSearchParams(query) };
}

async function route() {
  const main = document.getElementById("main");
  if (location.hash === "#/main") return; // the skip link: focus, no navigation
  const where = parse(location.hash);
  const signedIn = currentKey() !== null;
  if (!signedIn && where.name !== "login")
    return go(`#/login?next=${encodeURIComponent(location.hash)}`);
  if (!ROUTES[where.name]) return go(signedIn ? "#/jobs" : "#/login");
  page.abort();
  page = new AbortController();
  showChrome(signedIn && where.name !== "login"); // the login page signs out
  markCurrent(where.name);
  main.replaceChildren();
  try {
    await ROUTES[where.name](main, { id: where.id, query: where.query, signal: page.signal });
  } catch (error) {
    if (!page.signal.aborted) main.append(problemBox(error));
  }
  document.getElementById("page-title")?.focus();
}

function go(hash) {
  location.replace(hash);
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  if (signedIn && !banner) banner = startBanner(document.getElementById("banner"));
  if (!signedIn && banner) {
    banner.abort();
    banner = null;
    document.getElementById("banner").hidden = true;
  }
}

function markCurrent(name) {
  const section = Object.keys(SINGULAR).find((plural) => SINGULAR[plural] === name) || name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function leave(reason) {
  signOut();
  const next = encodeURIComponent(location.hash);
  location.hash = `#/login?next=${next}${reason ? `&reason=${reason}` : ""}`;
}

document.getElementById("sign-out").addEventListener("click", () => leave(""));
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("page-title")?.focus();
});
window.addEventListener("aigc:unauthenticated", () => {
  if (parse(location.hash).name !== "login") leave("refused");
});
window.addEventListener("hashchange", route);
route().catch((error) =>
  document.getElementById("main").append(h("p", { role: "alert" }, String(error))),
);
