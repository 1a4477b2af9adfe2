// What the server tells the console about itself (config.json): job types, states, defaults.

let loading = null;

/** Return the console's configuration, read once per page load. */
export function config() {
  loading ??= fetch("config.json").then((resp) => {
    if (!resp.ok) throw new Error(`config.json answered ${resp.status}`);
    return resp.json();
  });
  return loading;
}

/** Return whether a job in `status` has ended. */
export async function isTerminal(status) {
  return (await config()).terminal_statuses.includes(status);
}

/** Return the registered job type called `name` (its params' JSON Schema included). */
export async function jobType(name) {
  return (await config()).job_types.find((type) => type.name === name);
}
