// Runs graphql-http's GraphQL over HTTP server audit against a running server and prints
// the results as one JSON array of {id, name, status, reason} for tests/test_http_audit.py.
//
//   node audit.mjs http://127.0.0.1:8000/graphql
//
// GRAPHQL_AUDIT_HEADERS (a JSON object) adds headers to every audit request, e.g. an API
// key; it is read from the environment so that no credential shows in a process list.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql-url>');
  process.exit(2);
}
const extra = JSON.parse(process.env.GRAPHQL_AUDIT_HEADERS || '{}');

function fetchWithHeaders(input, init = {}) {
  const headers = new Headers(init.headers);
  for (const [name, value] of Object.entries(extra)) headers.set(name, value);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithHeaders });
const summary = results.map(({ id, name, status, reason }) => ({
  id,
  name,
  status,
  reason: reason ?? null,
}));
console.log(JSON.stringify(summary));
