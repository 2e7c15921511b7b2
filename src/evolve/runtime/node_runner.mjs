// Runs a .mjs/.js tool the `oe` way: import it, call its default export with one inputs object
// (read as JSON from stdin), and print what it returns as JSON on stdout.
import { pathToFileURL } from "node:url";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const inputs = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
const mod = await import(pathToFileURL(process.argv[2]).href);
const fn = typeof mod.default === "function" ? mod.default : mod.run;
if (typeof fn !== "function") {
  console.error(`${process.argv[2]} has no default export function`);
  process.exit(2);
}
const result = await fn(inputs);
process.stdout.write(JSON.stringify(result ?? null));
