// Apollo Client: the first page of contacts, then fetchMore with pageInfo.endCursor
// until the last page, merged in the cache by relayStylePagination.
// Env: URL, KEY, TEXT (the search that finds the seeded contacts).
// Prints {"pages": [[emails after each request]], "hasNextPage", "requests"}.

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { loadDevMessages, loadErrorMessages } from "@apollo/client/dev/index.js";
import { relayStylePagination } from "@apollo/client/utilities/index.js";
import { AUTHORIZATION, GRAPHQL_URL, recordingFetch, run } from "./client_setup.mjs";

const PAGE = gql`
  query Page($text: String!, $after: String) {
    contacts(first: 2, after: $after, query: $text) {
      edges { cursor node { id email } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

loadDevMessages();
loadErrorMessages();

/** The first complete result of a watched query (the subscription stays open). */
function firstResult(watched) {
  return new Promise((resolve, reject) => {
    watched.subscribe({ next: (result) => result.loading || resolve(result), error: reject });
  });
}

run(async () => {
  const recorder = recordingFetch();
  const client = new ApolloClient({
    link: new HttpLink({ uri: GRAPHQL_URL, headers: { authorization: AUTHORIZATION }, fetch: recorder.fetch }),
    cache: new InMemoryCache({
      typePolicies: {
        Query: { fields: { contacts: relayStylePagination(["query", "filter", "sortKey", "reverse"]) } },
      },
    }),
  });
  const variables = { text: process.env.TEXT };
  const watched = client.watchQuery({ query: PAGE, variables });
  const first = await firstResult(watched);
  if (first.errors?.length) throw Object.assign(new Error("first page"), { errors: first.errors });
  const emails = () => {
    const { contacts } = client.readQuery({ query: PAGE, variables });
    return { emails: contacts.edges.map((edge) => edge.node.email), pageInfo: contacts.pageInfo };
  };
  const pages = [emails().emails];
  for (let more = 0; emails().pageInfo.hasNextPage && more < 10; more += 1) {
    await watched.fetchMore({ variables: { after: emails().pageInfo.endCursor } });
    pages.push(emails().emails);
  }
  return { pages, hasNextPage: emails().pageInfo.hasNextPage, requests: recorder.requests.length };
});
