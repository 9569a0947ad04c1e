// Every conference room, its settings and who is in it now, from the gateway, through urql's core.
//
// Rooms: one query on load, on "Refresh" and every 30 seconds. When the PBX cannot answer, the
// gateway serves each room's last known value and says so in `extensions.stale`; the page
// then shows how old the data is instead of an error.
//
// Who is in each room: one subscription, `conferenceSessions`, over plain HTTP (urql's
// `fetchSubscriptions`: the answer is a multipart/mixed stream). The gateway sends every room's
// current state first, then each change; when the stream ends the page subscribes again after
// a pause, and those first answers bring it back to the truth.
//
// Mute, unmute and remove buttons appear only for a key that holds `conferences:moderate`. The
// page learns that from the gateway, without guessing: it asks to mute with an empty input,
// which the gateway refuses before anything reaches the PBX: FORBIDDEN without the scope,
// BAD_USER_INPUT (the input) with it.
//
// Everything from the gateway is written with textContent only: names are PBX data, never
// markup. The API key the user types stays in this page's memory; nothing is stored.

import {
  Client,
  cacheExchange,
  fetchExchange,
  gql,
  onEnd,
  pipe,
  subscribe,
} from "./vendor/urql-core.js";

const ROOMS = gql`
  query Rooms {
    conferences {
      number
      name
      hasParticipantPassword
      hasModeratorPassword
      moderators
      waitForModerator
      allowInvite
      musicOnHold
      mute
      prompt
    }
  }
`;

const LIVE = gql`
  subscription Live($numbers: [String]) {
    conferenceSessions(numbers: $numbers) {
      number
      reason
      session {
        participants {
          id
          kind
          number
          fromNumber
          status
        }
      }
    }
  }
`;

const PROBE = gql`
  mutation CanModerate {
    muteParticipants(input: { number: "", operator: "" }) {
      number
    }
  }
`;

// The moderator controls: the button's words, the mutation, what the page says when done.
const ACTIONS = {
  mute: { label: "Mute", field: "muteParticipants", done: "Muted" },
  unmute: { label: "Unmute", field: "unmuteParticipants", done: "Unmuted" },
  remove: { label: "Remove", field: "removeParticipants", done: "Removed" },
};
for (const action of Object.values(ACTIONS)) {
  action.document = gql(`
    mutation Moderate($input: ConferenceParticipantsInput!) {
      ${action.field}(input: $input) { number action members }
    }
  `);
}

const REFRESH_SECONDS = 30;
const RETRY_SECONDS = [2, 5, 10, 30]; // pauses before subscribing again, the last one repeated
const PROMPTS = { DEFAULT: "Beep", EXTEN: "Announce number", NONE: "Silent" };
const KINDS = { EXTENSION: "extension", INBOUND: "caller", OUTBOUND: "called out" };
const STATUSES = { INVITED: "invited", JOINED: "joined", WAITING_FOR_MODERATOR: "waiting for a moderator" };
// What a person should read for the gateway's error codes that need words of our own; for
// every other code the gateway's message is already a sentence.
const CODES = {
  UNAUTHENTICATED: "the gateway needs a valid API key: type it above",
  FORBIDDEN: "this key is not allowed to do that",
  RATE_LIMITED: "too many requests from this key; wait a moment",
  PBX_UNAVAILABLE: "the PBX does not answer right now",
  SLOW_CONSUMER: "this page fell behind the updates",
};

let key = ""; // the API key typed in the page (memory only)
let client = makeClient();
let rooms = []; // the rooms as last listed: [{ number, name }]
const sessions = new Map(); // room number -> its participants (an empty list: nobody)
let canModerate = false;
let unwatch = null; // ends the live subscription
let generation = 0; // tells a subscription's own end from one the page asked for
let failures = 0; // streams that ended in a row, for the pause before the next one
let trouble = ""; // what the gateway said went wrong with the running subscription

// The gateway serving this page. A page served from elsewhere names the gateway's URL here
// (and the gateway lists the page's origin in GATEWAY_CORS_ORIGINS). Short queries go as
// GET, which browsers and CDNs may cache for as long as the gateway says its data is fresh.
function makeClient() {
  return new Client({
    url: "/graphql",
    exchanges: [cacheExchange, fetchExchange],
    fetchSubscriptions: true, // subscriptions over HTTP, as multipart/mixed
    fetchOptions: () => (key ? { headers: { "X-API-Key": key } } : {}),
  });
}

// On load and whenever the key changes: the rooms, then what this key may do, then who is in
// each room. Returns once the subscription is asked for.
async function start() {
  stopWatching();
  if (!(await load())) return;
  canModerate = await probeModeration();
  document.body.dataset.moderator = canModerate ? "yes" : "no";
  watch();
}

async function load() {
  const result = await client.query(ROOMS, {}, { requestPolicy: "network-only" }).toPromise();
  show("stale", staleText(result.extensions?.stale));
  show("failure", result.error && `Cannot load the rooms: ${describe(result.error)}`);
  if (result.data) {
    rooms = result.data.conferences.filter((room) => room !== null);
    renderRooms(rooms);
    renderLive();
    const age = result.extensions?.stale?.oldestAgeSeconds ?? 0; // stale: the oldest room's
    const time = new Date(Date.now() - age * 1000).toLocaleTimeString();
    document.getElementById("updated").textContent = `Data from ${time}`;
  }
  document.body.dataset.state = result.data ? "loaded" : "failed"; // for tests and CSS
  return Boolean(result.data);
}

async function probeModeration() {
  const result = await client.mutation(PROBE, {}).toPromise();
  const codes = (result.error?.graphQLErrors ?? []).map((error) => error.extensions?.code);
  return codes.includes("BAD_USER_INPUT");
}

// --- who is in each room, live ---------------------------------------------------------

function watch() {
  const mine = ++generation;
  const numbers = rooms.map((room) => room.number);
  trouble = "";
  if (numbers.length === 0) return setLive("on", ""); // no room to watch (the gateway refuses [])
  setLive("connecting", "Connecting to live updates…");
  ({ unsubscribe: unwatch } = pipe(
    client.subscription(LIVE, { numbers }),
    onEnd(() => mine === generation && retry()),
    subscribe((result) => mine === generation && onUpdate(result)),
  ));
}

function stopWatching() {
  generation++; // whatever the old subscription does from now on is ignored
  unwatch?.();
  unwatch = null;
}

function onUpdate(result) {
  const update = result.data?.conferenceSessions;
  if (result.error) trouble = describe(result.error); // said when the stream ends
  if (update) {
    sessions.set(update.number, update.session?.participants ?? []);
    renderLive();
    failures = 0;
    setLive("on", "");
  } else if (result.error) {
    // Refused (no stream at all: a plain JSON answer, which urql leaves open): end this
    // subscription and ask again after a pause.
    stopWatching();
    retry();
  }
}

// The stream ended (the gateway stopped, refused, or cut off a page that fell behind):
// subscribe again after a pause; the INITIAL updates bring every room back to the truth.
function retry() {
  const seconds = RETRY_SECONDS[Math.min(failures++, RETRY_SECONDS.length - 1)];
  const why = trouble ? `Live updates stopped: ${trouble}` : "Live updates stopped";
  setLive("retrying", `${why}. Trying again in ${seconds} s.`);
  const mine = generation;
  setTimeout(() => mine === generation && watch(), seconds * 1000);
}

function setLive(state, text) {
  document.body.dataset.live = state; // for tests and CSS
  show("live-status", text);
}

function renderLive() {
  const inSession = rooms.filter((room) => sessions.get(room.number)?.length);
  const cards = inSession.map((room) => {
    const card = document.createElement("article");
    card.dataset.room = room.number;
    const title = document.createElement("h3");
    title.textContent = `${room.number} · ${room.name}`;
    const list = document.createElement("ul");
    list.append(...sessions.get(room.number).map((person) => participant(room.number, person)));
    card.append(title, list);
    return card;
  });
  document.getElementById("nobody").hidden = cards.length > 0;
  document.getElementById("sessions").replaceChildren(...cards);
}

function participant(room, person) {
  const item = document.createElement("li");
  const who = person.number ?? person.fromNumber ?? "unknown number";
  item.dataset.number = who;
  const number = document.createElement("span");
  number.className = "who";
  number.textContent = who;
  const about = document.createElement("span");
  about.className = "about";
  about.textContent = [KINDS[person.kind], STATUSES[person.status]].filter(Boolean).join(", ");
  item.append(number, about);
  if (canModerate && person.number) {
    for (const [id, action] of Object.entries(ACTIONS)) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = id;
      button.textContent = action.label;
      button.setAttribute("aria-label", `${action.label} ${person.number}`);
      button.addEventListener("click", () => moderate(action, room, person.number, item));
      item.append(button);
    }
  }
  return item;
}

// --- moderator controls ----------------------------------------------------------------

// One click, one request: the participant's buttons wait for the answer (the gateway never
// resends an action, and neither does the page).
async function moderate(action, room, member, item) {
  const operator = document.getElementById("operator").value.trim();
  if (!operator) {
    show("moderation", "Type your moderator extension first: the PBX acts only for a moderator in the room.");
    return;
  }
  show("moderation", `${action.label}: ${member} in ${room}…`);
  const buttons = [...item.querySelectorAll("button")];
  buttons.forEach((button) => (button.disabled = true));
  const input = { number: room, operator, members: [member] };
  const result = await client.mutation(action.document, { input }).toPromise();
  buttons.forEach((button) => (button.disabled = false));
  show(
    "moderation",
    result.error
      ? `Could not ${action.label.toLowerCase()} ${member} in ${room}: ${describe(result.error)}`
      : `${action.done} ${member} in ${room}.`,
  );
}

// --- the rooms table -------------------------------------------------------------------

// A banner only when the PBX could not answer: REVALIDATING means the data just passed the
// gateway's TTL and is being refreshed (the "Data from" line still shows its age).
function staleText(stale) {
  if (!stale || stale.code === "REVALIDATING") return "";
  const minutes = Math.floor(stale.oldestAgeSeconds / 60);
  const age =
    minutes < 1 ? "less than a minute" : minutes === 1 ? "1 minute" : `${minutes} minutes`;
  return `PBX unreachable — showing data from ${age} ago`;
}

// An error in words: the gateway's messages (or ours for a few codes), never raw JSON.
function describe(error) {
  const said = (error.graphQLErrors ?? []).map(
    (one) => CODES[one.extensions?.code] ?? one.message,
  );
  if (said.length) return [...new Set(said)].join("; ");
  return "the gateway did not answer (is it running, and is this page allowed to reach it?)";
}

function show(id, text) {
  const banner = document.getElementById(id);
  banner.textContent = text || "";
  banner.hidden = !text;
}

// A setting is null when the PBX does not report it (older firmware leaves some out), and a
// room is null when the gateway could not read it: left out, and result.error says why.
function renderRooms(list) {
  const rows = list.map((room) =>
    row([
      room.number,
      room.name,
      pin(room),
      room.moderators === null ? "—" : room.moderators.join(", ") || "—",
      yesNo(room.waitForModerator),
      yesNo(room.allowInvite),
      yesNo(room.musicOnHold),
      yesNo(room.mute),
      room.prompt === null ? "—" : PROMPTS[room.prompt],
    ]),
  );
  document.querySelector("#rooms tbody").replaceChildren(...rows);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell);
    tr.append(td);
  }
  return tr;
}

// A lock when the room has a PIN, saying whose: members', the moderator's, or both.
function pin(room) {
  const whose = [
    room.hasParticipantPassword && "members",
    room.hasModeratorPassword && "moderator",
  ].filter(Boolean);
  const span = document.createElement("span");
  if (whose.length === 0) {
    span.textContent = "—";
    return span;
  }
  span.className = "pin";
  span.title = `A PIN for ${whose.join(" and ")}`;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", "#lock");
  svg.setAttribute("class", "lock");
  svg.setAttribute("aria-hidden", "true");
  svg.append(use);
  span.append(svg, whose.join(" + "));
  return span;
}

function yesNo(value) {
  return value === null ? "—" : value ? "yes" : "no";
}

// A new key: a new client (nothing cached under the old key), and everything asked again.
document.getElementById("access").addEventListener("submit", (event) => {
  event.preventDefault();
  key = document.getElementById("key").value.trim();
  client = makeClient();
  sessions.clear();
  start();
});
document.getElementById("refresh").addEventListener("click", load);
setInterval(load, REFRESH_SECONDS * 1000);
start();
