// The graphql-ws client on its own (with `ws` as Node's WebSocket): a
// contactActivity subscription; the first event it receives is the result.
// Env: URL, KEY, CONTACT_ID. Prints {"ready": true} once the socket is
// acknowledged (the test then writes notes), then {"event": {...}}.

import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { AUTHORIZATION, WS_URL, ready, run } from "./client_setup.mjs";

const WATCH = `
  subscription GraphqlWsWatch($id: ID!) {
    contactActivity(contactId: $id) { id kind text author }
  }
`;

run(async () => {
  const client = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: AUTHORIZATION },
    retryAttempts: 0,
    on: { connected: ready },
  });
  try {
    const events = client.iterate({ query: WATCH, variables: { id: process.env.CONTACT_ID } });
    const { value, done } = await events.next();
    await events.return?.();
    if (done) throw new Error("the subscription completed without an event");
    if (value.errors?.length) return { errors: value.errors };
    return { event: value.data.contactActivity };
  } finally {
    await client.dispose();
  }
});
