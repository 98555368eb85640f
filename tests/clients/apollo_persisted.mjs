// Apollo's automatic persisted queries: createPersistedQueryLink before HttpLink.
// Two runs, each a new client (as two page loads): the first sends the hash
// alone, is told PERSISTED_QUERY_NOT_FOUND and resends with the query; the
// second sends the hash alone and is answered.
// Env: URL, KEY, TEXT (a search). Prints {"runs": [{"requests", "data"}, ...]}.

import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { loadDevMessages, loadErrorMessages } from "@apollo/client/dev/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";
import { AUTHORIZATION, GRAPHQL_URL, recordingFetch, run } from "./client_setup.mjs";

loadDevMessages();
loadErrorMessages();

const COUNT = gql`
  query PersistedCount($text: String!) {
    contacts(first: 1, query: $text) { totalCount }
  }
`;

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

async function once() {
  const recorder = recordingFetch();
  const client = new ApolloClient({
    link: createPersistedQueryLink({ sha256 }).concat(
      new HttpLink({ uri: GRAPHQL_URL, headers: { authorization: AUTHORIZATION }, fetch: recorder.fetch }),
    ),
    cache: new InMemoryCache(),
  });
  const result = await client.query({ query: COUNT, variables: { text: process.env.TEXT } });
  return { requests: recorder.requests, data: result.data };
}

run(async () => ({ runs: [await once(), await once()] }));
