// Drives Debian's firefox-esr (never a downloaded browser) for pysfu's interop
// tests, over WebDriver BiDi with puppeteer-core.
//
//   node driver.mjs /usr/bin/firefox-esr
//
// It reads one JSON command per line on stdin and writes one JSON reply per
// line on stdout ({"id", "ok", "value"} or {"id", "ok": false, "error"}):
//   {"id": 1, "op": "page"}                          -> a new page id, in its own context
//   {"id": 2, "op": "goto", "page": 0, "url": "..."}
//   {"id": 3, "op": "eval", "page": 0, "expression": "..."}  (awaited, JSON value)
//   {"id": 4, "op": "console", "page": 0}            -> the page's console lines
//   {"id": 5, "op": "version"}                       -> the browser's version
// Firefox gets a fake camera and microphone and may use loopback ICE
// candidates; pages get the init script given as the second argument (a file).
// Closing stdin closes the browser.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [executablePath, initScriptPath] = process.argv.slice(2);
const initScript = initScriptPath ? readFileSync(initScriptPath, "utf8") : null;

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  // --8<-- [start:prefs]
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true, // a fake camera (a flat colour) and a tone
    "media.navigator.permission.disabled": true, // no permission prompt
    "media.autoplay.default": 0, // play (and so decode) remote audio
    "media.autoplay.blocking_policy": 0,
    "media.peerconnection.ice.loopback": true, // candidates on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": false, // no mDNS names
    // Firefox gathers only the default route's address (none in a
    // loopback-only namespace) unless the page may use the camera.
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    // pages in background tabs keep drawing and sending
    "dom.min_background_timeout_value": 4,
    "dom.timeout.enable_budget_timer_throttling": false,
  },
  // --8<-- [end:prefs]
});

const pages = [];
const consoles = [];

async function run(command) {
  switch (command.op) {
    case "version":
      return await browser.version();
    case "page": {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      const lines = [];
      page.on("console", (m) => lines.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => lines.push(`pageerror: ${e}`));
      if (initScript) await page.evaluateOnNewDocument(initScript);
      pages.push(page);
      consoles.push(lines);
      return pages.length - 1;
    }
    case "goto":
      await pages[command.page].goto(command.url);
      return null;
    case "url":
      return pages[command.page].url();
    case "eval":
      return await pages[command.page].evaluate(command.expression);
    case "console":
      return consoles[command.page];
    case "screenshot":
      await pages[command.page].screenshot({ path: command.path });
      return null;
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

const input = createInterface({ input: process.stdin });
const pending = [];
for await (const line of input) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  // Commands run concurrently (each reply carries its id).
  pending.push(
    run(command).then(
      (value) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: true, value: value ?? null })}\n`),
      (error) => process.stdout.write(`${JSON.stringify({ id: command.id, ok: false, error: String(error && error.stack || error) })}\n`),
    ),
  );
}
await Promise.allSettled(pending);
await browser.close();
