// Peer check for lathe's safetensors writer: Hugging Face's own JS client
// (@huggingface/hub's parseSafetensorsMetadata, the code behind the Hub's
// safetensors viewer) parses the headers of a model directory that lathe
// wrote, served over a local HTTP server that speaks the Hub's resolve URLs
// with Range requests. Then each tensor's bytes are read at the offsets the
// peer reported and hashed.
//
// usage: node peer.mjs DIR  -> JSON on stdout:
//   {sharded, filepaths, parameterCount, metadata: {file: __metadata__},
//    tensors: {name: {file, dtype, shape, data_offsets, sha256}}}
import { parseSafetensorsMetadata } from "@huggingface/hub";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { join, basename } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node peer.mjs DIR");
  process.exit(2);
}

const server = createServer((req, res) => {
  const m = /^\/lathe\/peer\/(?:resolve|raw)\/main\/(.+)$/.exec(new URL(req.url, "http://x").pathname);
  const file = m && join(dir, basename(decodeURIComponent(m[1])));
  if (!file || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  const body = readFileSync(file);
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  const head = { "Accept-Ranges": "bytes", ETag: `"${createHash("sha256").update(body).digest("hex")}"` };
  if (range) {
    const start = Number(range[1]);
    const end = Math.min(range[2] === "" ? body.length - 1 : Number(range[2]), body.length - 1);
    const part = body.subarray(start, end + 1);
    res.writeHead(206, { ...head, "Content-Length": part.length, "Content-Range": `bytes ${start}-${end}/${body.length}` });
    res.end(req.method === "HEAD" ? undefined : part);
    return;
  }
  res.writeHead(200, { ...head, "Content-Length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const hubUrl = `http://127.0.0.1:${server.address().port}`;

try {
  const parsed = await parseSafetensorsMetadata({ repo: "lathe/peer", hubUrl, computeParametersCount: true });
  const headers = parsed.sharded ? parsed.headers : { [parsed.filepaths[0]]: parsed.header };
  const out = { sharded: parsed.sharded, filepaths: parsed.filepaths, parameterCount: parsed.parameterCount, metadata: {}, tensors: {} };
  for (const [file, header] of Object.entries(headers)) {
    const raw = readFileSync(join(dir, file));
    const n = Number(raw.readBigUInt64LE(0));
    out.metadata[file] = header.__metadata__ ?? null;
    for (const [name, info] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const [b, e] = info.data_offsets;
      const bytes = raw.subarray(8 + n + b, 8 + n + e);
      out.tensors[name] = { file, dtype: info.dtype, shape: info.shape, data_offsets: info.data_offsets, sha256: createHash("sha256").update(bytes).digest("hex") };
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
} finally {
  server.close();
}
