// Drives headless Chromium for tests/test_browser.py: one scenario per run, JSON on stdout.
//
//   node run.mjs example  <url> <screenshot.png>   the web example: its rooms and banners
//   node run.mjs graphiql <url> <screenshot.png>   GraphiQL: run the editor's query, read the answer
//   node run.mjs session  <url> <screenshot.png>   steps from stdin, one JSON line each (below)
//
// The browser is Debian's Chromium (CHROMIUM, default /usr/bin/chromium) through
// playwright-core, which downloads nothing. Playwright gives it a fresh profile; background
// networking stays off, since a closed network refuses those connections. Every wait is
// bounded by WAIT and waits for something on the page, never for a time. `problems` lists
// what went wrong in the page (uncaught errors, console errors, failed requests, HTTP
// errors) so the test can require there were none; a scenario that fails reports `error`,
// and the screenshot is taken either way.

import { chromium } from "playwright-core";

const WAIT = 15_000;
const ARGS = [
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const scenarios = {
  // The rooms table, once the first answer is on the page.
  async example(page, url) {
    await page.goto(url);
    await page.waitForSelector("body[data-state]", { timeout: WAIT });
    return page.evaluate(() => {
      const banner = (id) => {
        const element = document.getElementById(id);
        return element.hidden ? null : element.textContent;
      };
      return {
        state: document.body.dataset.state,
        stale: banner("stale"),
        failure: banner("failure"),
        rows: [...document.querySelectorAll("#rooms tbody tr")].map((tr) =>
          [...tr.cells].map((td) => td.textContent),
        ),
        locks: [...document.querySelectorAll("#rooms .pin")].map((pin) => pin.title),
        text: document.body.innerText,
      };
    });
  },

  // GraphiQL with a query in its editor (the URL's `q`): press run, read the response pane.
  async graphiql(page, url) {
    await page.goto(url);
    const run = page.locator(".graphiql-execute-button");
    await run.waitFor({ timeout: WAIT });
    const editor = (await page.locator(".graphiql-query-editor").innerText()).trim();
    await run.click();
    const pane = page.locator(".graphiql-response .result-window");
    await pane.filter({ hasText: /"(data|errors)"/ }).waitFor({ timeout: WAIT });
    return { editor, result: await pane.innerText() };
  },

  // GraphiQL running a subscription (the URL's `q`): press run, wait until the result pane
  // shows data, read it while the subscription is still open.
  async "graphiql-subscription"(page, url) {
    await page.goto(url);
    const run = page.locator(".graphiql-execute-button");
    await run.waitFor({ timeout: WAIT });
    await run.click();
    const pane = page.locator(".graphiql-response .result-window");
    await pane.filter({ hasText: /"(data|errors)"/ }).waitFor({ timeout: WAIT });
    return { result: await pane.innerText() };
  },

  // A test drives the page step by step while it changes the world between steps: one JSON
  // step per stdin line, one JSON answer per stdout line, until stdin ends. Steps:
  //   {"wait": sel, "state": "attached"|"detached"|"visible"|"hidden"}   wait for it (WAIT)
  //   {"fill": sel, "value": text}   {"click": sel}   {"press": sel, "key": "Enter"}
  //   {"texts": sel}    the innerText of every match, in order
  //   {"attribute": sel, "name": n}  the first match's attribute (null when absent)
  //   {"problems": true}   what went wrong in the page so far (see `problems` below)
  // A step that fails answers {"error": message}; the session goes on.
  async session(page, url, problems) {
    await page.goto(url);
    process.stdin.setEncoding("utf8");
    process.stdout.write(JSON.stringify({ ready: true }) + "\n");
    for await (const line of lines(process.stdin)) {
      if (!line.trim()) continue;
      let answer;
      try {
        answer = await step(page, JSON.parse(line), problems);
      } catch (error) {
        answer = { error: error.message };
      }
      process.stdout.write(JSON.stringify(answer) + "\n");
    }
    return { done: true };
  },
};

async function step(page, order, problems) {
  if ("wait" in order) {
    await page.waitForSelector(order.wait, { state: order.state ?? "attached", timeout: WAIT });
    return { ok: true };
  }
  if ("fill" in order) {
    await page.fill(order.fill, order.value, { timeout: WAIT });
    return { ok: true };
  }
  if ("click" in order) {
    await page.click(order.click, { timeout: WAIT });
    return { ok: true };
  }
  if ("press" in order) {
    await page.press(order.press, order.key, { timeout: WAIT });
    return { ok: true };
  }
  if ("texts" in order) {
    return { texts: await page.locator(order.texts).allInnerTexts() };
  }
  if ("attribute" in order) {
    return { value: await page.getAttribute(order.attribute, order.name, { timeout: WAIT }) };
  }
  if ("problems" in order) {
    return { problems: [...problems] };
  }
  throw new Error(`unknown step ${JSON.stringify(order)}`);
}

async function* lines(stream) {
  let buffered = "";
  for await (const chunk of stream) {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
    }
  }
  if (buffered) yield buffered;
}

const [scenario, url, screenshot] = process.argv.slice(2);
if (!(scenario in scenarios) || !url || !screenshot) {
  console.error(`usage: node run.mjs ${Object.keys(scenarios).join("|")} <url> <screenshot.png>`);
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ARGS,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
  page.on("requestfailed", (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`),
  );
  let found;
  try {
    found = await scenarios[scenario](page, url, problems);
  } catch (error) {
    found = { error: error.message };
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...found, problems }));
} finally {
  await browser.close();
}
