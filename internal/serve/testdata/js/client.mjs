// client.mjs drives a lathe serve endpoint with the official OpenAI client
// and prints what it got as one JSON object on stdout. The Go test
// (internal/serve/node_test.go) starts the server and checks the output.
//
// Environment: LATHE_SERVE_URL (base URL ending in /v1), LATHE_SERVE_KEY
// (the API key), LATHE_SERVE_MODEL (the served model id).
import OpenAI from "openai";

const baseURL = process.env.LATHE_SERVE_URL;
const apiKey = process.env.LATHE_SERVE_KEY;
const model = process.env.LATHE_SERVE_MODEL;
if (!baseURL || !apiKey || !model) {
  console.error("client.mjs: set LATHE_SERVE_URL, LATHE_SERVE_KEY and LATHE_SERVE_MODEL");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const messages = [
  { role: "system", content: "You echo." },
  { role: "user", content: "the quick brown fox" },
];

// apiError runs fn, which must fail with an OpenAI.APIError, and describes it.
async function apiError(fn) {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    return { class: e.constructor.name, status: e.status, type: e.type, param: e.param, code: e.code, message: e.message };
  }
  throw new Error("request unexpectedly succeeded");
}

const out = {};

const models = await client.models.list();
out.models = models.data.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by }));
out.model = (await client.models.retrieve(model)).id;

const chat = await client.chat.completions.create({ model, messages, max_tokens: 3, temperature: 0, seed: 1 });
out.chat = {
  id: chat.id,
  object: chat.object,
  role: chat.choices[0].message.role,
  content: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason,
  usage: chat.usage,
};

const stream = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
  stop: ["fox"],
});
out.stream = { deltas: [], roles: [], finish_reason: null, usage: null, ids: new Set() };
for await (const chunk of stream) {
  out.stream.ids.add(chunk.id);
  if (chunk.usage) out.stream.usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.role) out.stream.roles.push(c.delta.role);
    if (c.delta.content) out.stream.deltas.push(c.delta.content);
    if (c.finish_reason) out.stream.finish_reason = c.finish_reason;
  }
}
out.stream.ids = out.stream.ids.size;

const completion = await client.completions.create({ model, prompt: "once upon a time", max_tokens: 16 });
out.completion = {
  id: completion.id,
  object: completion.object,
  text: completion.choices[0].text,
  finish_reason: completion.choices[0].finish_reason,
  usage: completion.usage,
};

const cstream = await client.completions.create({ model, prompt: "once upon a time", max_tokens: 2, stream: true });
out.completion_stream = { pieces: [], finish_reason: null };
for await (const chunk of cstream) {
  for (const c of chunk.choices) {
    if (c.text) out.completion_stream.pieces.push(c.text);
    if (c.finish_reason) out.completion_stream.finish_reason = c.finish_reason;
  }
}

// A failure in mid-stream arrives as an error event after some deltas.
out.stream_failure = { deltas: [] };
const failing = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "one two BOOM three" }],
  stream: true,
});
try {
  for await (const chunk of failing) {
    for (const c of chunk.choices) if (c.delta.content) out.stream_failure.deltas.push(c.delta.content);
  }
  out.stream_failure.error = null;
} catch (e) {
  if (!(e instanceof OpenAI.APIError)) throw e;
  out.stream_failure.error = { class: e.constructor.name, type: e.type, message: e.message };
} finally {
  failing.controller.abort(); // release the connection the aborted iteration left open
}

out.bad_request = await apiError(() => client.chat.completions.create({ model, messages, temperature: 5 }));
out.wrong_model = await apiError(() => client.chat.completions.create({ model: "gpt-4o", messages }));
const stranger = new OpenAI({ baseURL, apiKey: "not-the-key", maxRetries: 0, timeout: 20000 });
out.bad_key = await apiError(() => stranger.models.list());

process.stdout.write(JSON.stringify(out) + "\n");
