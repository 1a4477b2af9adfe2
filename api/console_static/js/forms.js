// Form controls built from a job type's params JSON Schema (bounds and defaults from the server).

import { h } from "./dom.js";

function property(params, name) {
  const prop = params.properties[name];
  const present = (prop.anyOf || []).filter((p) => p.type !== "null");
  // An optional value (`x | None`) is one schema and null: describe the schema, not the null.
  return present.length === 1 ? { ...prop, ...present[0], optional: true } : prop;
}

/** Return the control for the param `name`: a select for a choice, else a bounded input. */
export function schemaInput(params, name, attrs = {}) {
  const prop = property(params, name);
  const required = (params.required || []).includes(name);
  if (prop.enum) {
    return h(
      "select",
      { name, ...attrs },
      prop.enum.map((v) => h("option", { value: v, selected: v === prop.default }, String(v))),
    );
  }
  if (prop.type === "integer" || prop.type === "number") {
    return h("input", {
      type: "number",
      name,
      required,
      inputmode: prop.type === "integer" ? "numeric" : "decimal",
      min: prop.minimum ?? prop.exclusiveMinimum,
      max: prop.maximum ?? prop.exclusiveMaximum,
      step: prop.type === "integer" ? "1" : "any",
      value: prop.default ?? "",
      ...attrs,
    });
  }
  const long = (prop.maxLength || 0) > 200;
  return h(long ? "textarea" : "input", {
    name,
    required,
    maxlength: prop.maxLength,
    rows: long ? 4 : null,
    value: prop.default ?? "",
    ...attrs,
  });
}

/** Return the params a form's controls hold: numbers as numbers; empty optional ones left out. */
export function readParams(form, params) {
  const values = {};
  for (const name of Object.keys(params.properties)) {
    const control = form.elements.namedItem(name);
    if (!control || control.value === "") continue;
    const prop = property(params, name);
    const numeric = prop.type === "integer" || prop.type === "number";
    values[name] = numeric ? Number(control.value) : control.value;
  }
  return values;
}

/** Return a textarea for more params as a JSON object, and a function that reads it. */
export function extraParams(label) {
  const area = h("textarea", {
    name: "extra",
    rows: 3,
    spellcheck: "false",
    placeholder: '{"seq_len": 32}',
  });
  const read = () => {
    if (!area.value.trim()) return {};
    let value;
    try {
      value = JSON.parse(area.value);
    } catch {
      throw new Error(`${label} is not JSON: write an object such as {"seq_len": 32}.`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new Error(`${label} must be a JSON object.`);
    return value;
  };
  return { area, read };
}
