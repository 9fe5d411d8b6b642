// Package serve is an OpenAI-compatible HTTP API over a text generation
// Backend: New returns an http.Handler that official OpenAI clients (the
// openai npm and Python packages, curl scripts written for api.openai.com)
// can talk to by pointing their base URL at it.
//
// Routes:
//
//	GET  /v1/models              {"object":"list","data":[{id, object:"model", created, owned_by:"lathe"}]}
//	GET  /v1/models/{id}         the model object, or 404 model_not_found
//	POST /v1/chat/completions    chat: "messages" rendered by the backend with the model's chat template
//	POST /v1/completions         raw text: "prompt"
//
// Both POST routes answer one JSON object (object "chat.completion" with id
// "chatcmpl-…", or "text_completion" with id "cmpl-…", with "usage"), or,
// with "stream": true, server-sent events "data: {chunk}" flushed one by
// one and ended by "data: [DONE]". A chat stream starts with a chunk whose
// delta holds the role, then one chunk per text piece, then a chunk with an
// empty delta and the finish_reason ("stop" or "length");
// "stream_options": {"include_usage": true} adds a last chunk with empty
// "choices" and the usage, and "usage": null on every other chunk. The
// stream begins at the first generated piece, so a backend that refuses a
// request before generating still gets a proper HTTP error status; a failure
// after that is sent as a "data: {"error": …}" event with no [DONE].
//
// Request fields, with OpenAI's semantics:
//
//   - model is required and must equal Backend.ModelID (else 404
//     model_not_found).
//   - messages: roles "system", "user", "assistant", and "developer"
//     (passed on as "system"); content a string or an array of
//     {"type":"text","text":…} parts, concatenated without separator.
//     Other roles (tool, function) and other part types (images, audio) get
//     400. prompt (completions): a string or an array of one string.
//   - max_completion_tokens (preferred) or max_tokens: 1 up to
//     Options.MaxTokens, else 400; absent means the backend's default.
//   - temperature in [0, 2] (default 1), top_p in [0, 1] (default 1), stop
//     (a string or up to 4 non-empty strings), seed, and the vLLM-style
//     extensions top_k (-1 or 0: off) and repetition_penalty (> 0, default 1).
//   - frequency_penalty and presence_penalty are accepted when 0 and
//     rejected with 400 otherwise: OpenAI's additive penalties are not the
//     multiplicative repetition penalty the engine implements, and silently
//     substituting one for the other would change results; clients that
//     want a penalty send repetition_penalty.
//   - n (and best_of) other than 1, logprobs, tools/functions, a
//     response_format other than "text", echo, suffix, a non-empty
//     logit_bias and prompts of token ids are rejected with 400
//     (unsupported_parameter) rather than silently ignored. Other unknown
//     members (user, metadata, store, …) are ignored. A member sent as
//     null counts as absent. A member of the wrong type gets 400 naming it
//     ("param": "messages[1].role").
//
// Errors use OpenAI's body {"error":{"message","type","param","code"}}:
// 400 invalid request, 401 missing or wrong API key (when Options.APIKey is
// set), 404 unknown model or URL, 405 wrong method, 413 body over
// Options.MaxBodyBytes, 429 busy, 500 backend failure. A Backend may return a
// *RequestError to have a request refused with 400 (a prompt longer than
// the context, say).
//
// Concurrency: at most Options.MaxConcurrent generations run at once
// (default 1, as one model instance usually saturates the machine).
// Requests beyond that wait in a queue of Options.MaxQueue (default 64);
// when the queue is full the request is answered 429 with Retry-After at
// once, rather than after a timeout, so the outcome depends only on load.
// Requests are validated before they queue. A client that disconnects
// while queued leaves the queue; one that disconnects while generating
// cancels the context passed to Generate.
//
// It does not: load models, tokenize, render chat templates or sample (the
// Backend does), batch requests, return log probabilities, call tools,
// produce more than one choice, serve embeddings, images or audio, handle
// CORS preflights, or listen on a socket (the caller runs an http.Server).
package serve
