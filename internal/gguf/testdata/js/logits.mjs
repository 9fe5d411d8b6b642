// Loads a GGUF file in llama.cpp (node-llama-cpp's prebuilt CPU build)
// and writes the raw logits after each of the given tokens, as a JSON
// array of {token id: logit} objects, one per position.
//
// usage: node logits.mjs <node_modules dir> <model.gguf> <ids, comma-separated> <out.json>
import path from "node:path";
import fs from "node:fs";
const [modDir, modelPath, idsArg, outPath] = process.argv.slice(2);
const {getLlama, LlamaLogLevel} = await import(path.join(modDir, "node-llama-cpp", "dist", "index.js"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.warn});
const model = await llama.loadModel({modelPath});
// F32 KV cache (the default is F16), no flash attention: llama.cpp's
// plain F32 path.
const ctx = await model.createContext({contextSize: 64, batchSize: 64, threads: 1, flashAttention: false,
  experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
const seq = ctx.getSequence();
const ids = idsArg.split(",").map(Number);
const res = await seq.controlledEvaluate(ids.map(t => [t, {generateNext: {logits: true}}]));
const out = res.map(r => {
  const m = r.next.logits; const row = {};
  for (const [k, v] of m) row[k] = v;
  return row;
});
fs.writeFileSync(outPath, JSON.stringify(out));
await ctx.dispose(); await model.dispose();
