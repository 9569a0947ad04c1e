// Apollo Server 5 in front of the simulated PBX: the response-cache plugin (every answer
// cacheable for the gateway's TTL, like its response cache), a RESTDataSource for the PBX
// API and a DataLoader per request over it. Served by startStandaloneServer, as Apollo's
// documentation starts; it logs in before it listens, so answering means logged in.
import { RESTDataSource } from "@apollo/datasource-rest";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginCacheControl } from "@apollo/server/plugin/cacheControl";
import { startStandaloneServer } from "@apollo/server/standalone";
import responseCachePlugin from "@apollo/server-plugin-response-cache";
import { conferenceLoader, resolvers, settings, Token, typeDefs, withToken } from "./common.mjs";

const API = `${settings.pbxUrl}/api/v2.0.0/`;

class PbxApi extends RESTDataSource {
  baseURL = API;

  constructor(token) {
    super();
    this.token = token;
  }

  /** `conference/query` for a comma list of numbers, or "all". */
  query(number) {
    return withToken(this.token, (token) =>
      this.post("conference/query", { params: { token }, body: { number } }),
    );
  }
}

const login = async (path, body) => {
  const reply = await fetch(API + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return reply.json();
};
const token = new Token(login);
await token.get();

const server = new ApolloServer({
  typeDefs,
  resolvers,
  plugins: [ApolloServerPluginCacheControl({ defaultMaxAge: settings.ttl }), responseCachePlugin()],
});
const { url } = await startStandaloneServer(server, {
  listen: { host: "127.0.0.1", port: settings.port },
  context: async () => {
    const pbx = new PbxApi(token);
    return { pbx, loader: conferenceLoader(pbx) };
  },
});
console.log(`apollo listening on ${url}`);
