// GraphQL Yoga in front of the simulated PBX: its response cache (every answer cached for
// the gateway's TTL, shared by all callers like the gateway's), fetch for the PBX API and
// a DataLoader per request. Served by node:http, as Yoga's documentation starts; it logs
// in before it listens, so answering means logged in.
import { createServer } from "node:http";
import { useResponseCache } from "@graphql-yoga/plugin-response-cache";
import { createSchema, createYoga } from "graphql-yoga";
import { conferenceLoader, resolvers, settings, Token, typeDefs, withToken } from "./common.mjs";

const API = `${settings.pbxUrl}/api/v2.0.0/`;

async function post(path, body, token) {
  const url = token === undefined ? API + path : `${API}${path}?token=${token}`;
  const reply = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return reply.json();
}

const token = new Token(post);
await token.get();
const pbx = { query: (number) => withToken(token, (value) => post("conference/query", { number }, value)) };

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: "/graphql",
  graphiql: false,
  logging: "warn",
  context: () => ({ pbx, loader: conferenceLoader(pbx) }),
  plugins: [
    useResponseCache({ session: () => null, ttl: settings.ttl * 1000, includeExtensionMetadata: false }),
  ],
});
const server = createServer(yoga);
server.listen(settings.port, "127.0.0.1", () => {
  console.log(`yoga listening on http://127.0.0.1:${server.address().port}/graphql`);
});
