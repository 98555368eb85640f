// What every client script shares: the server from the environment, one JSON
// line of output for pytest, and a fetch that records what went over the wire.

export const SERVER_URL = required("URL").replace(/\/+$/, "");
export const KEY = required("KEY");
export const GRAPHQL_URL = `${SERVER_URL}/graphql`;
export const WS_URL = GRAPHQL_URL.replace(/^http/, "ws");
export const AUTHORIZATION = `Bearer ${KEY}`;
const TIMEOUT_MS = Number(process.env.TIMEOUT_SECONDS ?? "30") * 1000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    print({ error: `${name} is not set` });
    process.exit(2);
  }
  return value;
}

/** Prints one JSON line (what pytest reads). */
export function print(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Runs `main`, prints what it returns, or the error it threw, and exits (1 on error). */
export function run(main) {
  const timer = setTimeout(() => {
    print({ error: `no result within ${TIMEOUT_MS / 1000} s` });
    process.exit(1);
  }, TIMEOUT_MS);
  main().then(
    (result) => {
      clearTimeout(timer);
      print(result);
      process.exit(0);
    },
    (error) => {
      clearTimeout(timer);
      print({ error: describe(error) });
      process.exit(1);
    },
  );
}

/** An error as plain data, with what Apollo and graphql-ws attach to it. */
export function describe(error) {
  if (error === null || typeof error !== "object") return String(error);
  if (typeof error.code === "number" && "reason" in error) {
    return { closeCode: error.code, closeReason: error.reason }; // a CloseEvent
  }
  const described = { name: error.name, message: error.message };
  if (error.graphQLErrors?.length) described.graphQLErrors = error.graphQLErrors;
  if (error.networkError) described.networkError = describe(error.networkError);
  if (error.statusCode) described.statusCode = error.statusCode;
  if (error.result) described.result = error.result;
  if (error.errors?.length) described.errors = error.errors;
  return described;
}

/**
 * A fetch that records every request: method, the operations it carried
 * (query text or only a persisted-query hash), and the status and error codes
 * of the answer.
 */
export function recordingFetch() {
  const requests = [];
  async function fetchAndRecord(input, init = {}) {
    const method = (init.method ?? "GET").toUpperCase();
    const url = new URL(String(input));
    let body = init.body ? JSON.parse(init.body) : null;
    if (method === "GET") {
      const params = url.searchParams;
      body = {
        query: params.get("query") ?? undefined,
        extensions: params.has("extensions") ? JSON.parse(params.get("extensions")) : undefined,
      };
    }
    const operations = (Array.isArray(body) ? body : [body]).map((operation) => ({
      hasQuery: typeof operation?.query === "string",
      hash: operation?.extensions?.persistedQuery?.sha256Hash ?? null,
    }));
    const record = { method, batch: Array.isArray(body), operations };
    requests.push(record);
    const response = await fetch(input, init);
    record.status = response.status;
    try {
      const answer = await response.clone().json();
      record.errorCodes = (Array.isArray(answer) ? answer : [answer]).map((one) =>
        (one.errors ?? []).map((error) => error.extensions?.code ?? null),
      );
    } catch {
      record.errorCodes = null; // not JSON
    }
    return response;
  }
  return { fetch: fetchAndRecord, requests };
}

/** For subscription scripts: tells pytest that the subscription is being set up. */
export function ready() {
  print({ ready: true });
}
