// Bundles the wallboard (src/main.ts, with clients/js and socket.io-client) into one minified
// script, src/web/live/assets/live.js, which the binary embeds. The bundle is committed so that
// `cargo build` (and the Pi's cross-build) needs no node; `--check` (run by .ci/test) fails
// when the committed file is not what its sources build to.
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "src", "web", "live", "assets", "live.js");
const result = await build({
  entryPoints: [join(here, "src", "main.ts")],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  platform: "browser",
  legalComments: "eof",
  // One copy of socket.io-client, this package's, whatever clients/js has installed.
  alias: { "socket.io-client": join(here, "node_modules", "socket.io-client") },
  write: false,
  logLevel: "warning",
});
const text = result.outputFiles[0].text;
if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(out, "utf8");
  } catch {}
  if (committed !== text) {
    console.error(`${out} is out of date with clients/live and clients/js: run \`npm run build --prefix clients/live\` and commit it`);
    process.exit(1);
  }
  console.log(`live.js is up to date (${text.length} bytes)`);
} else {
  writeFileSync(out, text);
  console.log(`wrote ${out} (${text.length} bytes)`);
}
