#!/usr/bin/env node
// browser.js - loads a page in headless Chromium (Debian's, through playwright-core) and
// waits until its document.title says it is done; used by tests/browser.rs.
//
//   node tests/peers/browser.js URL DONE_PREFIX... [--timeout SECS] [--ignore-https-errors]
//                               [--file PATH]
//
// Waits for a title that starts with one of DONE_PREFIX or with "FAILED", then prints a
// JSON object on standard output: {"title": …, "text": <the page's body text>,
// "console": [<console messages and page errors>]}. Exit status 0 when it printed that,
// 2 when the page never got there (the same JSON, title as it stood), 1 on a usage or
// launch error (a message on stderr). --ignore-https-errors trusts any certificate in
// this browser context only: the tests' CA is made up at test time. --file chooses PATH
// in the page's file input (#file) once the page says it is ready (body[data-ready]), as
// a user choosing or dropping a file.
// CHROMIUM (environment) names the browser; default /usr/bin/chromium.

const { chromium } = require("playwright-core");

async function main() {
  const args = process.argv.slice(2);
  let timeout = 60;
  let ignoreHTTPSErrors = false;
  let file = null;
  const rest = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--timeout") timeout = Number(args[++i]);
    else if (args[i] === "--ignore-https-errors") ignoreHTTPSErrors = true;
    else if (args[i] === "--file") file = args[++i];
    else rest.push(args[i]);
  }
  const [url, ...done] = rest;
  if (!url || !done.length || !(timeout > 0)) {
    console.error("usage: browser.js URL DONE_PREFIX... [--timeout SECS] [--ignore-https-errors] [--file PATH]");
    process.exit(1);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--disable-gpu"],
  });
  const logs = [];
  let status = 0;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors });
    const page = await context.newPage();
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    await page.goto(url);
    if (file) {
      await page.waitForSelector("body[data-ready]", { timeout: timeout * 1000 });
      await page.setInputFiles("#file", file);
    }
    const prefixes = [...done, "FAILED"];
    try {
      await page.waitForFunction(
        (p) => p.some((x) => document.title.startsWith(x)),
        prefixes,
        { timeout: timeout * 1000, polling: 100 },
      );
    } catch (e) {
      logs.push(`browser.js: ${e.message.split("\n")[0]}`);
      status = 2;
    }
    const title = await page.title();
    const text = await page.evaluate(() => document.body.innerText);
    process.stdout.write(JSON.stringify({ title, text, console: logs }) + "\n");
  } finally {
    await browser.close();
  }
  process.exit(status);
}

main().catch((e) => {
  console.error(`browser.js: ${e.stack || e}`);
  process.exit(1);
});
