// graphql-inspector's core, run by scripts/check-schema (which holds the policy: what is
// allowed to break, read from CHANGELOG.md). This file only reports, as JSON on stdout:
//
//   node check.mjs diff OLD.graphql NEW.graphql
//     -> [{"criticality": "BREAKING" | "DANGEROUS" | "NON_BREAKING", "type", "message", "path"}]
//   node check.mjs validate SCHEMA.graphql FILE.js ...
//     -> {"documents": [{"file", "name"}], "errors": [{"file", "message"}]}
//        The operations are the gql`...` template literals of each file; one with a ${...}
//        interpolation is reported as an error, since it cannot be checked as written.
//
// Exit status: 0 reported (the caller judges), 2 unusable input (the message on stderr).

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { diff, validate } from "@graphql-inspector/core";
import { buildSchema, parse, Source } from "graphql";

function schemaFrom(path) {
  return buildSchema(readFileSync(path, "utf8"));
}

async function runDiff(oldPath, newPath) {
  const changes = await diff(schemaFrom(oldPath), schemaFrom(newPath));
  return changes.map((change) => ({
    criticality: change.criticality.level,
    type: change.type,
    message: change.message,
    path: change.path ?? null,
  }));
}

const GQL = /\bgql`([^`]*)`/g;

function runValidate(schemaPath, files) {
  const schema = schemaFrom(schemaPath);
  const documents = [];
  const errors = [];
  const sources = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(GQL)) {
      const body = match[1];
      if (body.includes("${")) {
        errors.push({ file, message: "a gql document with ${...} cannot be checked as written" });
        continue;
      }
      const name = parse(body).definitions.map((d) => d.name?.value ?? "(anonymous)").join(", ");
      documents.push({ file, name });
      sources.push(new Source(body, `${basename(file)}: ${name}`));
    }
  }
  for (const invalid of validate(schema, sources)) {
    for (const error of [...invalid.errors, ...invalid.deprecated]) {
      errors.push({ file: invalid.source.name, message: error.message });
    }
  }
  return { documents, errors };
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "diff" && rest.length === 2) {
    return runDiff(rest[0], rest[1]);
  }
  if (command === "validate" && rest.length >= 2) {
    return runValidate(rest[0], rest.slice(1));
  }
  throw new Error("usage: check.mjs diff OLD NEW | check.mjs validate SCHEMA FILE.js ...");
}

try {
  process.stdout.write(JSON.stringify(await main(process.argv.slice(2))) + "\n");
} catch (error) {
  process.stderr.write(`check.mjs: ${error.message}\n`);
  process.exit(2);
}
