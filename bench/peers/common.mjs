// What the two peers share: the gateway's query schema (the part the benchmark asks for),
// the PBX's wire format decoded the way gateway/pbx/conferences.py decodes it, the input
// check of gateway/schema/numbers.py, and the DataLoader that turns the room numbers one
// request asks for into one `conference/query` call (batches of up to 100, like
// GATEWAY_BATCH_SIZE). Each peer logs in once at start-up (MD5 of the password, like the
// gateway), and on a token error logs in again and retries once.
import DataLoader from "dataloader";
import { GraphQLError } from "graphql";

export const typeDefs = /* GraphQL */ `
  enum ConferencePrompt { DEFAULT EXTEN NONE }
  type Conference {
    number: String!
    name: String!
    participantPassword: String
    moderatorPassword: String
    hasParticipantPassword: Boolean!
    hasModeratorPassword: Boolean!
    waitForModerator: Boolean!
    allowInvite: Boolean!
    moderators: [String!]!
    musicOnHold: Boolean!
    mute: Boolean
    prompt: ConferencePrompt
  }
  type Query {
    conferences(numbers: [String!]): [Conference!]!
    conference(number: String!): Conference
  }
`;

export const settings = {
  port: Number(process.env.PORT ?? 0),
  pbxUrl: required("BENCH_PBX_URL"),
  username: required("BENCH_PBX_USERNAME"),
  md5: required("BENCH_PBX_MD5"),
  ttl: Number(process.env.BENCH_CACHE_TTL ?? 30), // seconds, the gateway's GATEWAY_CACHE_TTL
};

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const YES = new Set(["yes", "true", "1", "on"]);
const NO = new Set(["no", "false", "0", "off"]);
const TOKEN_ERRNOS = new Set(["20004", "20005", "20006"]);
const NUMBER = /^[0-9]{1,15}$/;

function text(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value.trim();
  if (typeof value === "number") return String(value);
  return "";
}

function flag(value) {
  const word = text(value).toLowerCase();
  if (YES.has(word)) return true;
  if (NO.has(word)) return false;
  throw new Error(`unreadable flag ${JSON.stringify(value)}`);
}

/** One ConferenceInfo of the PBX as the GraphQL Conference type reads it. */
export function decodeConference(raw) {
  const moderators = Array.isArray(raw.moderators)
    ? raw.moderators.map(text)
    : text(raw.moderators).split(",");
  const prompt = text(raw.prompt).toLowerCase();
  return {
    number: text(raw.number),
    name: text(raw.name),
    participantPassword: text(raw.participantepassword) || null,
    moderatorPassword: text(raw.moderatorpassword) || null,
    waitForModerator: flag(raw.waitformoderator),
    allowInvite: flag(raw.allowinvite),
    moderators: moderators.map((m) => m.trim()).filter(Boolean),
    musicOnHold: flag(raw.musiconhold),
    mute: raw.mute === undefined || raw.mute === null ? null : flag(raw.mute),
    prompt: ["default", "exten", "none"].includes(prompt) ? prompt.toUpperCase() : null,
  };
}

/** The distinct numbers in first-seen order; BAD_USER_INPUT naming the first bad one. */
export function checkNumbers(numbers) {
  const distinct = [...new Set(numbers)];
  for (const number of distinct) {
    if (!NUMBER.test(number)) {
      throw new GraphQLError(`${JSON.stringify(number.slice(0, 40))} is not a conference number`, {
        extensions: { code: "BAD_USER_INPUT" },
      });
    }
  }
  return distinct;
}

export const resolvers = {
  Query: {
    async conferences(_root, { numbers }, { pbx, loader }) {
      if (numbers === undefined || numbers === null) {
        return (await pbx.query("all")).map(decodeConference);
      }
      const found = await loader.loadMany(checkNumbers(numbers));
      return found.filter((room) => room !== null);
    },
    async conference(_root, { number }, { loader }) {
      const [wanted] = checkNumbers([number]);
      return loader.load(wanted);
    },
  },
  Conference: {
    hasParticipantPassword: (room) => room.participantPassword !== null,
    hasModeratorPassword: (room) => room.moderatorPassword !== null,
  },
};

/** A DataLoader over `pbx.query(numbers)`: one PBX call per batch of room numbers. */
export function conferenceLoader(pbx) {
  return new DataLoader(
    async (numbers) => {
      const found = new Map();
      for (const raw of await pbx.query(numbers.join(","))) {
        const room = decodeConference(raw);
        found.set(room.number, room);
      }
      return numbers.map((number) => found.get(number) ?? null);
    },
    { maxBatchSize: 100 },
  );
}

/** The PBX token, shared by every request: one login at a time. */
export class Token {
  constructor(post) {
    this.post = post; // (path, body) -> parsed JSON reply; no token
    this.value = null;
    this.pending = null;
  }

  async get() {
    return this.value ?? this.renew();
  }

  renew() {
    this.value = null;
    this.pending ??= this.post("login", { username: settings.username, password: settings.md5 })
      .then((reply) => {
        if (reply.status !== "Success") throw new Error(`login failed: errno ${reply.errno}`);
        this.value = reply.token;
        return reply.token;
      })
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }
}

/** `call(token)` once, and once more with a new token if the PBX refused the first. */
export async function withToken(token, call) {
  let reply = await call(await token.get());
  if (reply.status !== "Success" && TOKEN_ERRNOS.has(String(reply.errno))) {
    reply = await call(await token.renew());
  }
  if (reply.status !== "Success") {
    throw new GraphQLError(`the PBX answered errno ${reply.errno}`, {
      extensions: { code: "PBX_ERROR" },
    });
  }
  return reply.conferences ?? [];
}
