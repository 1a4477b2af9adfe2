// Fleet (admin keys): workers, lanes and their queue depths, tenants' waiting work, batching.

import { ApiError, get } from "../api.js";
import { facts, h, num, pageTitle, problemBox, table, when } from "../dom.js";
import { every } from "../live.js";

const REFRESH_MS = 5000;
const UNAVAILABLE = {
  403: "The fleet is shown to keys with the admin scope only.",
  404: "This server does not report its fleet.",
};

export async function render(main, { signal }) {
  const body = h("div", {}, h("p", {}, "Loading…"));
  main.append(pageTitle("Fleet"), body);
  const stop = new AbortController();
  every(
    REFRESH_MS,
    AbortSignal.any([signal, stop.signal]),
    async () => {
      body.replaceChildren(...fleetView(await get("/v1/fleet", { signal })));
    },
    (error) => {
      const plain = error instanceof ApiError && UNAVAILABLE[error.status];
      body.replaceChildren(plain ? h("p", { class: "notice" }, plain) : problemBox(error));
      if (plain) stop.abort(); // asking again would not change the answer
    },
  );
}

// A worker's loaded models, each with the share of the last minute its device spent in passes.
function dutyCycle(models) {
  const entries = Object.entries(models || {});
  if (!entries.length) return "—";
  return entries.map(([model, share]) => `${model} ${Math.round(share * 100)}%`).join(", ");
}

function fleetView(fleet) {
  const b = fleet.batching;
  return [
    table(
      "Workers",
      {
        Name: (w) => w.name,
        Queues: (w) => w.queues.join(", "),
        PID: (w) => num(w.pid),
        Running: (w) => num(w.running),
        "Device duty (last minute)": (w) => dutyCycle(w.duty_cycle),
        "Last seen": (w) => when(w.last_seen),
      },
      fleet.workers,
    ),
    table(
      "Lanes: queue depth",
      {
        Lane: (l) => l.name,
        "Messages in the broker": (l) => num(l.broker_messages),
        "Rows waiting": (l) => num(l.waiting_rows),
      },
      fleet.lanes,
    ),
    table(
      "Tenants",
      {
        Tenant: (t) => t.tenant,
        "Rows waiting": (t) => num(t.waiting_rows),
        Running: (t) => num(t.running),
      },
      fleet.tenants,
    ),
    h("h2", {}, "Batching"),
    b
      ? facts([
          ["Model passes", num(b.passes)],
          ["Rows per pass", num(b.rows_per_pass, 3)],
          ["Wait per pass (s)", num(b.wait_s_per_pass, 3)],
          ["Compute per pass (s)", num(b.compute_s_per_pass, 3)],
        ])
      : h("p", {}, "No model pass yet."),
  ];
}
