// Every conference room and its settings, from the gateway, through urql's core.
//
// One query on load, on "Refresh" and every 30 seconds. When the PBX cannot answer, the
// gateway serves each room's last known value and says so in `extensions.stale`; the page
// then shows how old the data is instead of an error. Rooms are written with textContent
// only: a room's name is PBX data, never markup.

import { Client, cacheExchange, fetchExchange, gql } from "./vendor/urql-core.js";

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

// The gateway serving this page. A page served from elsewhere names the gateway's URL here
// (and the gateway lists the page's origin in GATEWAY_CORS_ORIGINS). Short queries go as
// GET, which browsers and CDNs may cache for as long as the gateway says its data is fresh.
const client = new Client({ url: "/graphql", exchanges: [cacheExchange, fetchExchange] });

const REFRESH_SECONDS = 30;
const PROMPTS = { DEFAULT: "Beep", EXTEN: "Announce number", NONE: "Silent" };

async function load() {
  const result = await client.query(ROOMS, {}, { requestPolicy: "network-only" }).toPromise();
  show("stale", staleText(result.extensions?.stale));
  show("failure", result.error && `Cannot load the rooms: ${result.error.message}`);
  if (result.data) {
    renderRooms(result.data.conferences);
    const age = result.extensions?.stale?.oldestAgeSeconds ?? 0; // stale: the oldest room's
    const time = new Date(Date.now() - age * 1000).toLocaleTimeString();
    document.getElementById("updated").textContent = `Data from ${time}`;
  }
  document.body.dataset.state = result.data ? "loaded" : "failed"; // for tests and CSS
}

// A banner only when the PBX could not answer: REVALIDATING means the data just passed the
// gateway's TTL and is being refreshed (the "Data from" line still shows its age).
function staleText(stale) {
  if (!stale || stale.code === "REVALIDATING") return "";
  const minutes = Math.floor(stale.oldestAgeSeconds / 60);
  const age =
    minutes < 1 ? "less than a minute" : minutes === 1 ? "1 minute" : `${minutes} minutes`;
  return `PBX unreachable — showing data from ${age} ago`;
}

function show(id, text) {
  const banner = document.getElementById(id);
  banner.textContent = text || "";
  banner.hidden = !text;
}

// A setting is null when the PBX does not report it (older firmware leaves some out), and a
// room is null when the gateway could not read it: left out, and result.error says why.
function renderRooms(rooms) {
  const rows = rooms
    .filter((room) => room !== null)
    .map((room) =>
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

document.getElementById("refresh").addEventListener("click", load);
setInterval(load, REFRESH_SECONDS * 1000);
load();
