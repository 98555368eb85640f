// Apollo's GraphQLWsLink over graphql-ws (with `ws` as Node's WebSocket): a
// contactActivity subscription; the first event it receives is the result.
// Env: URL, KEY, CONTACT_ID. Prints {"ready": true} once the socket is
// acknowledged (the test then writes notes), then {"event": {...}}.

import { ApolloClient, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { loadDevMessages, loadErrorMessages } from "@apollo/client/dev/index.js";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions/index.js";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { AUTHORIZATION, WS_URL, ready, run } from "./client_setup.mjs";

loadDevMessages();
loadErrorMessages();

const WATCH = gql`
  subscription ApolloWatch($id: ID!) {
    contactActivity(contactId: $id) { id kind text author }
  }
`;

run(async () => {
  const sockets = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: AUTHORIZATION },
    retryAttempts: 0,
    on: { connected: ready },
  });
  const client = new ApolloClient({ link: new GraphQLWsLink(sockets), cache: new InMemoryCache() });
  try {
    const result = await new Promise((resolve, reject) => {
      const subscription = client
        .subscribe({ query: WATCH, variables: { id: process.env.CONTACT_ID } })
        .subscribe({
          next: (answer) => {
            subscription.unsubscribe();
            resolve(answer);
          },
          error: reject,
          complete: () => reject(new Error("the subscription completed without an event")),
        });
    });
    if (result.errors?.length) return { errors: result.errors };
    return { event: result.data.contactActivity };
  } finally {
    await sockets.dispose();
  }
});
