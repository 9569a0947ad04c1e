// Drives headless Chromium for tests/test_browser.py: one scenario per run, JSON on stdout.
//
//   node run.mjs example  <url> <screenshot.png>   the web example: its rooms and banners
//   node run.mjs graphiql <url> <screenshot.png>   GraphiQL: run the editor's query, read the answer
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
};

const [scenario, url, screenshot] = process.argv.slice(2);
if (!(scenario in scenarios) || !url || !screenshot) {
  console.error("usage: node run.mjs example|graphiql <url> <screenshot.png>");
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
    found = await scenarios[scenario](page, url);
  } catch (error) {
    found = { error: error.message };
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...found, problems }));
} finally {
  await browser.close();
}
