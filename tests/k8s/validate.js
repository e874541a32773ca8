#!/usr/bin/env node
// Validate Kubernetes objects (a YAML stream on stdin, e.g. `kubectl kustomize DIR`) against
// the Kubernetes API schemas that kubernetes-models generates from the Kubernetes OpenAPI
// spec: types, enums, formats and required fields. Those schemas allow fields they do not
// declare (as the OpenAPI spec does), so a misspelled or misplaced field (hostPid,
// a probe under the pod instead of the container) would pass; this script also rejects
// every field the schema has no rule for, the way `kubectl apply` with strict field
// validation does: a field is declared when the schema rejects a wrong-typed value in it.
// Prints the objects as a JSON array on success; on failure, one line per error on stderr
// and exit status 1. Needs NODE_PATH to hold kubernetes-models and yaml
// (tests/k8s/package-lock.json).
"use strict";

const fs = require("fs");
const YAML = require("yaml");

// apiVersion "group/version" or "version" -> the model's module path in kubernetes-models
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
  const path = group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
  try {
    return require(path)[kind];
  } catch (e) {
    return null;
  }
}

// the schema's own validate function, with ajv's error list (instancePath per error)
function schemaValidator(model) {
  return (obj) => {
    try {
      new model(obj).validate();
      return [];
    } catch (e) {
      if (Array.isArray(e.errors)) return e.errors;
      throw e;
    }
  };
}

function pointer(path) {
  return path.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

function setAt(obj, path, value) {
  let o = obj;
  for (const p of path.slice(0, -1)) o = o[p];
  o[path[path.length - 1]] = value;
}

// true when the schema has a rule for the field at path: some wrong-typed value there fails
// with an error at that very place (a boolean for strings, numbers, objects and arrays;
// a string for booleans)
function declared(validate, obj, path) {
  const at = pointer(path);
  for (const sentinel of [true, "not-a-valid-value"]) {
    const copy = JSON.parse(JSON.stringify(obj));
    setAt(copy, path, sentinel);
    if (validate(copy).some((e) => e.instancePath === at)) return true;
  }
  return false;
}

// every field path of the object, depth first (array elements by index)
function fieldPaths(value, path, out) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => fieldPaths(v, [...path, i], out));
  } else if (value && typeof value === "object") {
    for (const k of Object.keys(value)) {
      out.push([...path, k]);
      fieldPaths(value[k], [...path, k], out);
    }
  }
  return out;
}

function check(obj, index) {
  const errors = [];
  const name = obj && obj.metadata && obj.metadata.name;
  const where = `object ${index} (${obj && obj.kind}/${name})`;
  if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
    return [`${where}: not a Kubernetes object (apiVersion and kind are required)`];
  }
  const model = modelFor(obj.apiVersion, obj.kind);
  if (!model) return [`${where}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`];
  const validate = schemaValidator(model);
  for (const e of validate(obj)) {
    errors.push(`${where}: ${e.instancePath || "/"}: ${e.message || e.keyword}` +
                (e.params ? ` ${JSON.stringify(e.params)}` : ""));
  }
  if (errors.length) return errors;
  for (const path of fieldPaths(obj, [], [])) {
    if (!declared(validate, obj, path)) {
      errors.push(`${where}: ${pointer(path)}: unknown field "${path[path.length - 1]}"`);
    }
  }
  return errors;
}

function main() {
  const text = fs.readFileSync(0, "utf8");
  const docs = YAML.parseAllDocuments(text);
  const objects = [];
  const errors = [];
  docs.forEach((doc, i) => {
    if (doc.errors.length) {
      doc.errors.forEach((e) => errors.push(`document ${i}: YAML: ${e.message}`));
      return;
    }
    const obj = doc.toJS();
    if (obj === null) return; // an empty document between separators
    objects.push(obj);
    errors.push(...check(obj, i));
  });
  if (!objects.length) errors.push("no Kubernetes object in the input");
  if (errors.length) {
    errors.forEach((e) => console.error(e));
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(objects) + "\n");
}

main();
