// Apollo's BatchHttpLink (batchMax 5): three queries issued together go out
// as one HTTP request carrying the three operations, and all are answered.
// Env: URL, KEY, EMAIL (a contact that exists), TEXT (a search).
// Prints {"requests": [...], "results": {"byEmail", "segments", "search"}}.

import { ApolloClient, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { loadDevMessages, loadErrorMessages } from "@apollo/client/dev/index.js";
import { BatchHttpLink } from "@apollo/client/link/batch-http/index.js";
import { AUTHORIZATION, GRAPHQL_URL, recordingFetch, run } from "./client_setup.mjs";

loadDevMessages();
loadErrorMessages();

const BY_EMAIL = gql`
  query BatchByEmail($email: String!) {
    contactByEmail(email: $email) { id email firstName lastName }
  }
`;
const SEGMENTS = gql`
  query BatchSegments {
    segments { name builtIn }
  }
`;
const SEARCH = gql`
  query BatchSearch($text: String!) {
    contacts(first: 5, query: $text) { totalCount }
  }
`;

run(async () => {
  const recorder = recordingFetch();
  const client = new ApolloClient({
    link: new BatchHttpLink({
      uri: GRAPHQL_URL,
      headers: { authorization: AUTHORIZATION },
      batchMax: 5,
      batchInterval: 50,
      fetch: recorder.fetch,
    }),
    cache: new InMemoryCache(),
  });
  const [byEmail, segments, search] = await Promise.all([
    client.query({ query: BY_EMAIL, variables: { email: process.env.EMAIL } }),
    client.query({ query: SEGMENTS }),
    client.query({ query: SEARCH, variables: { text: process.env.TEXT } }),
  ]);
  return {
    requests: recorder.requests,
    results: { byEmail: byEmail.data, segments: segments.data, search: search.data },
  };
});
