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
let result;
try {
  result = await fn(inputs);
} catch (error) {
  // the error itself, not a stack frame of this runner, is what the user needs to see
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  process.exit(1);
}
process.stdout.write(JSON.stringify(result ?? null));
