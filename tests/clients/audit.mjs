// graphql-http's GraphQL-over-HTTP audit against a running contactgraph.
// Environment: URL (the server's base URL) and KEY (an API key).
// Prints one JSON line: [{id, name, status, reason?}, ...], status "ok" when
// the audit passed ("error" for a failed MUST, "warn" SHOULD, "notice" MAY).
import { serverAudits } from "graphql-http";

const url = `${(process.env.URL ?? "").replace(/\/+$/, "")}/graphql`;
const key = process.env.KEY;
if (!process.env.URL || !key) {
  process.stdout.write(`${JSON.stringify({ error: "URL and KEY must be set" })}\n`);
  process.exit(2);
}

// Every request the audit makes carries the key, as a real client's would.
function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const { fn } of serverAudits({ url, fetchFn: fetchWithKey })) {
  const { id, name, status, reason } = await fn();
  results.push({ id, name, status, ...(reason ? { reason } : {}) });
}
process.stdout.write(`${JSON.stringify(results)}\n`);
