// Sign in: paste an API key; it is checked against the API, then kept for this tab only.

import { ApiError, get, signIn, signOut } from "../api.js";
import { field, h, pageTitle, problemBox } from "../dom.js";

const REASONS = {
  refused: "The API refused the key this tab had (revoked, or the server changed). Sign in again.",
};

export async function render(main, { query }) {
  signOut();
  const input = h("input", {
    type: "password",
    name: "key",
    autocomplete: "off",
    spellcheck: "false",
    id: "api-key",
  });
  const status = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card narrow", novalidate: true },
    field(
      "API key",
      input,
      "Shown once by `aigc keys create`; after `make run`, the local admin key is in " +
        "var/admin.key. Leave it empty if the API runs without keys (AIGC_AUTH_REQUIRED=false).",
    ),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren(h("p", {}, "Checking the key…"));
    const key = input.value.trim();
    signIn(key);
    try {
      await get("/v1/jobs?limit=1"); // any read proves the key: 401 if it is unknown or revoked
    } catch (error) {
      signOut();
      status.replaceChildren(problemBox(error));
      if (error instanceof ApiError && error.status === 401) input.focus();
      return;
    }
    const next = query.get("next") || "";
    location.hash = next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/jobs";
  });
  const reason = REASONS[query.get("reason")];
  main.append(pageTitle("Sign in"));
  if (reason) main.append(h("p", { class: "problem", role: "alert" }, reason));
  main.append(form);
}
