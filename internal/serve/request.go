package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// apiError is an OpenAI-style error: it becomes the HTTP status and the body
// {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int
	typ     string
	message string
	param   string // "" is sent as null
	code    string // "" is sent as null
}

func (e *apiError) Error() string { return e.message }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: fmt.Sprintf(format, args...), param: param}
}

func unsupported(param, what string) *apiError {
	e := badRequest(param, "%s is not supported by this server.", what)
	e.code = "unsupported_parameter"
	return e
}

// job is a parsed generation request.
type job struct {
	req          Request
	stream       bool
	includeUsage bool
}

// params is the top-level JSON object of a request body, with null members
// removed (OpenAI treats an explicit null as "not given").
type params map[string]json.RawMessage

func decodeParams(body []byte) (params, *apiError) {
	var p params
	if err := json.Unmarshal(body, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badRequest("", "The request body must be a JSON object.")
		}
		return nil, badRequest("", "We could not parse the JSON body of your request: %v.", err)
	}
	if p == nil {
		return nil, badRequest("", "The request body must be a JSON object.")
	}
	for k, v := range p {
		if jsonKind(v) == "null" {
			delete(p, k)
		}
	}
	return p, nil
}

// jsonKind names the JSON type of a (valid) raw value.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	default:
		return "a number"
	}
}

func typeError(param, want string, raw json.RawMessage) *apiError {
	return badRequest(param, "Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonKind(raw))
}

// parser reads typed members out of params, keeping the first error; every
// accessor is a no-op once an error is recorded.
type parser struct {
	p   params
	err *apiError
}

func (ps *parser) fail(e *apiError) {
	if ps.err == nil {
		ps.err = e
	}
}

func (ps *parser) has(name string) bool {
	_, ok := ps.p[name]
	return ok
}

func (ps *parser) str(name string) (string, bool) {
	raw, ok := ps.p[name]
	if !ok || ps.err != nil {
		return "", false
	}
	s, err := asString(name, raw)
	if err != nil {
		ps.fail(err)
		return "", false
	}
	return s, true
}

func asString(param string, raw json.RawMessage) (string, *apiError) {
	if jsonKind(raw) != "a string" {
		return "", typeError(param, "a string", raw)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", typeError(param, "a string", raw)
	}
	return s, nil
}

func (ps *parser) boolean(name string) bool {
	raw, ok := ps.p[name]
	if !ok || ps.err != nil {
		return false
	}
	if jsonKind(raw) != "a boolean" {
		ps.fail(typeError(name, "a boolean", raw))
		return false
	}
	return bytes.Equal(bytes.TrimSpace(raw), []byte("true"))
}

// number returns the member as a float64 in [lo, hi], or def when absent.
func (ps *parser) number(name string, def, lo, hi float64) float64 {
	raw, ok := ps.p[name]
	if !ok || ps.err != nil {
		return def
	}
	if jsonKind(raw) != "a number" {
		ps.fail(typeError(name, "a number", raw))
		return def
	}
	v, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil || math.IsInf(v, 0) {
		ps.fail(badRequest(name, "Invalid '%s': %s is not a representable number.", name, bytes.TrimSpace(raw)))
		return def
	}
	if v < lo || v > hi {
		ps.fail(badRequest(name, "Invalid '%s': expected a value in [%g, %g], but got %g instead.", name, lo, hi, v))
		return def
	}
	return v
}

// integer returns the member as an int64 in [lo, hi], or def when absent. An
// integral float such as 2.0 is accepted.
func (ps *parser) integer(name string, def, lo, hi int64) int64 {
	raw, ok := ps.p[name]
	if !ok || ps.err != nil {
		return def
	}
	v, err := asInteger(name, raw)
	if err != nil {
		ps.fail(err)
		return def
	}
	if v < lo || v > hi {
		ps.fail(badRequest(name, "Invalid '%s': expected an integer in [%d, %d], but got %d instead.", name, lo, hi, v))
		return def
	}
	return v
}

func asInteger(param string, raw json.RawMessage) (int64, *apiError) {
	if jsonKind(raw) != "a number" {
		return 0, typeError(param, "an integer", raw)
	}
	s := string(bytes.TrimSpace(raw))
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, badRequest(param, "Invalid type for '%s': expected an integer, but got %s instead.", param, s)
	}
	return int64(f), nil
}

// stop reads "stop": a string or an array of up to 4 non-empty strings.
func (ps *parser) stop() []string {
	raw, ok := ps.p["stop"]
	if !ok || ps.err != nil {
		return nil
	}
	var list []string
	switch jsonKind(raw) {
	case "a string":
		s, err := asString("stop", raw)
		if err != nil {
			ps.fail(err)
			return nil
		}
		list = []string{s}
	case "an array":
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			ps.fail(typeError("stop", "a string or an array of strings", raw))
			return nil
		}
		if len(items) > 4 {
			ps.fail(badRequest("stop", "Invalid 'stop': at most 4 stop sequences are allowed, but got %d.", len(items)))
			return nil
		}
		for i, it := range items {
			s, err := asString(fmt.Sprintf("stop[%d]", i), it)
			if err != nil {
				ps.fail(err)
				return nil
			}
			list = append(list, s)
		}
	default:
		ps.fail(typeError("stop", "a string or an array of strings", raw))
		return nil
	}
	for i, s := range list {
		if s == "" {
			ps.fail(badRequest("stop", "Invalid 'stop': stop sequence %d is empty.", i))
			return nil
		}
	}
	return list
}

// object returns the member decoded as a JSON object, or nil when absent.
func (ps *parser) object(name string) params {
	raw, ok := ps.p[name]
	if !ok || ps.err != nil {
		return nil
	}
	if jsonKind(raw) != "an object" {
		ps.fail(typeError(name, "an object", raw))
		return nil
	}
	var o params
	if err := json.Unmarshal(raw, &o); err != nil {
		ps.fail(typeError(name, "an object", raw))
		return nil
	}
	return o
}

// nonEmpty reports whether the member is present and not an empty array,
// object or string.
func (ps *parser) nonEmpty(name string) bool {
	raw, ok := ps.p[name]
	if !ok {
		return false
	}
	switch s := string(bytes.TrimSpace(raw)); {
	case s == "[]", s == `""`, s == "false":
		return false
	case strings.HasPrefix(s, "{"):
		var o map[string]json.RawMessage
		return json.Unmarshal(raw, &o) != nil || len(o) > 0
	case strings.HasPrefix(s, "["):
		var a []json.RawMessage
		return json.Unmarshal(raw, &a) != nil || len(a) > 0
	}
	return true
}

// common reads the members shared by chat completions and completions:
// model, sampling knobs, stop, seed, n, penalties, streaming.
func (s *server) common(ps *parser, j *job) {
	model, ok := ps.str("model")
	if ps.err != nil {
		return
	}
	if !ok {
		ps.fail(badRequest("model", "You must provide a model parameter (this server serves %q).", s.modelID))
		return
	}
	if model != s.modelID {
		ps.fail(&apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found",
			message: fmt.Sprintf("The model '%s' does not exist; this server serves '%s'.", model, s.modelID)})
		return
	}

	r := &j.req
	r.Temperature = ps.number("temperature", 1, 0, 2)
	r.TopP = ps.number("top_p", 1, 0, 1)
	r.TopK = int(ps.integer("top_k", 0, -1, math.MaxInt32))
	if r.TopK < 0 {
		r.TopK = 0 // vLLM's "-1: all tokens"
	}
	r.RepetitionPenalty = ps.number("repetition_penalty", 1, 0, math.MaxFloat64)
	if r.RepetitionPenalty == 0 {
		ps.fail(badRequest("repetition_penalty", "Invalid 'repetition_penalty': expected a value > 0 (1 disables it), but got 0 instead."))
	}
	for _, name := range []string{"frequency_penalty", "presence_penalty"} {
		if v := ps.number(name, 0, -2, 2); v != 0 {
			ps.fail(unsupported(name, fmt.Sprintf("A non-zero '%s'", name)+" (use the 'repetition_penalty' extension instead)"))
		}
	}
	if n := ps.integer("n", 1, 1, math.MaxInt32); n != 1 {
		ps.fail(unsupported("n", "'n' other than 1"))
	}
	r.Stop = ps.stop()
	if ps.has("seed") {
		v := ps.integer("seed", 0, math.MinInt64, math.MaxInt64)
		r.Seed = &v
	}
	if ps.nonEmpty("logit_bias") {
		ps.fail(unsupported("logit_bias", "'logit_bias'"))
	}

	j.stream = ps.boolean("stream")
	if so := ps.object("stream_options"); so != nil && ps.err == nil {
		if !j.stream {
			ps.fail(badRequest("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled."))
			return
		}
		sp := &parser{p: so}
		j.includeUsage = sp.boolean("include_usage")
		if sp.err != nil {
			sp.err.message = strings.ReplaceAll(sp.err.message, "'include_usage'", "'stream_options.include_usage'")
			sp.err.param = "stream_options.include_usage"
			ps.fail(sp.err)
		}
	}
}

// maxTokens reads the first of names that is present, capped by the server.
func (s *server) maxTokens(ps *parser, names ...string) int {
	for _, name := range names {
		if ps.has(name) {
			v := ps.integer(name, 0, 1, math.MaxInt32)
			if ps.err == nil && v > int64(s.opts.MaxTokens) {
				ps.fail(badRequest(name, "Invalid '%s': %d is above this server's limit of %d tokens.", name, v, s.opts.MaxTokens))
			}
			return int(v)
		}
	}
	return 0
}

// parseChat validates a /v1/chat/completions body.
func (s *server) parseChat(body []byte) (*job, *apiError) {
	p, err := decodeParams(body)
	if err != nil {
		return nil, err
	}
	ps := &parser{p: p}
	j := &job{}
	// messages first: a request without them is malformed whatever the model.
	j.req.Messages = parseMessages(ps)
	s.common(ps, j)
	j.req.MaxTokens = s.maxTokens(ps, "max_completion_tokens", "max_tokens")
	if ps.boolean("logprobs") {
		ps.fail(unsupported("logprobs", "'logprobs'"))
	}
	if ps.integer("top_logprobs", 0, 0, 20) > 0 {
		ps.fail(unsupported("top_logprobs", "'top_logprobs'"))
	}
	for _, name := range []string{"tools", "functions"} {
		if ps.nonEmpty(name) {
			ps.fail(unsupported(name, "Tool and function calling"))
		}
	}
	if rf := ps.object("response_format"); rf != nil {
		rp := &parser{p: rf}
		if t, _ := rp.str("type"); t != "text" {
			ps.fail(unsupported("response_format", fmt.Sprintf("'response_format' of type %q", t)))
		}
	}
	if ps.err != nil {
		return nil, ps.err
	}
	return j, nil
}

var roles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

func parseMessages(ps *parser) []Message {
	raw, ok := ps.p["messages"]
	if !ok {
		ps.fail(badRequest("messages", "Missing required parameter: 'messages'."))
		return nil
	}
	if jsonKind(raw) != "an array" {
		ps.fail(typeError("messages", "an array", raw))
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		ps.fail(typeError("messages", "an array", raw))
		return nil
	}
	if len(items) == 0 {
		ps.fail(badRequest("messages", "Invalid 'messages': empty array. Expected an array with at least one message."))
		return nil
	}
	msgs := make([]Message, 0, len(items))
	for i, it := range items {
		m, err := parseMessage(fmt.Sprintf("messages[%d]", i), it)
		if err != nil {
			ps.fail(err)
			return nil
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func parseMessage(param string, raw json.RawMessage) (Message, *apiError) {
	if jsonKind(raw) != "an object" {
		return Message{}, typeError(param, "an object", raw)
	}
	var o params
	if err := json.Unmarshal(raw, &o); err != nil {
		return Message{}, typeError(param, "an object", raw)
	}
	rraw, ok := o["role"]
	if !ok || jsonKind(rraw) == "null" {
		return Message{}, badRequest(param+".role", "Missing required parameter: '%s.role'.", param)
	}
	role, err := asString(param+".role", rraw)
	if err != nil {
		return Message{}, err
	}
	mapped, ok := roles[role]
	if !ok {
		return Message{}, badRequest(param+".role", "Invalid value for '%s.role': %q. Supported values are: 'system', 'developer', 'user' and 'assistant'.", param, role)
	}
	craw, ok := o["content"]
	if !ok || jsonKind(craw) == "null" {
		return Message{}, badRequest(param+".content", "Missing required parameter: '%s.content'.", param)
	}
	content, err := parseContent(param+".content", craw)
	if err != nil {
		return Message{}, err
	}
	return Message{Role: mapped, Content: content}, nil
}

// parseContent reads a message content: a string, or an array of
// {"type": "text", "text": ...} parts, which are concatenated.
func parseContent(param string, raw json.RawMessage) (string, *apiError) {
	switch jsonKind(raw) {
	case "a string":
		return asString(param, raw)
	case "an array":
	default:
		return "", typeError(param, "a string or an array of content parts", raw)
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", typeError(param, "a string or an array of content parts", raw)
	}
	var sb strings.Builder
	for i, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		if jsonKind(part) != "an object" {
			return "", typeError(pp, "an object", part)
		}
		var o params
		if err := json.Unmarshal(part, &o); err != nil {
			return "", typeError(pp, "an object", part)
		}
		traw, ok := o["type"]
		if !ok {
			return "", badRequest(pp+".type", "Missing required parameter: '%s.type'.", pp)
		}
		typ, err := asString(pp+".type", traw)
		if err != nil {
			return "", err
		}
		if typ != "text" {
			e := badRequest(pp+".type", "Content parts of type %q are not supported by this server; only \"text\" is.", typ)
			e.code = "unsupported_content_type"
			return "", e
		}
		xraw, ok := o["text"]
		if !ok {
			return "", badRequest(pp+".text", "Missing required parameter: '%s.text'.", pp)
		}
		text, err := asString(pp+".text", xraw)
		if err != nil {
			return "", err
		}
		sb.WriteString(text)
	}
	return sb.String(), nil
}

// parseCompletion validates a /v1/completions body.
func (s *server) parseCompletion(body []byte) (*job, *apiError) {
	p, err := decodeParams(body)
	if err != nil {
		return nil, err
	}
	ps := &parser{p: p}
	j := &job{}
	j.req.Prompt = parsePrompt(ps)
	s.common(ps, j)
	j.req.MaxTokens = s.maxTokens(ps, "max_tokens")
	if ps.has("logprobs") && ps.err == nil {
		if ps.integer("logprobs", 0, 0, 5); ps.err == nil {
			ps.fail(unsupported("logprobs", "'logprobs'"))
		}
	}
	if ps.boolean("echo") {
		ps.fail(unsupported("echo", "'echo'"))
	}
	if ps.integer("best_of", 1, 1, 20) > 1 {
		ps.fail(unsupported("best_of", "'best_of' other than 1"))
	}
	if suffix, _ := ps.str("suffix"); suffix != "" {
		ps.fail(unsupported("suffix", "'suffix'"))
	}
	if ps.err != nil {
		return nil, ps.err
	}
	return j, nil
}

// parsePrompt reads "prompt": a string, or an array holding one string.
func parsePrompt(ps *parser) string {
	raw, ok := ps.p["prompt"]
	if !ok {
		ps.fail(badRequest("prompt", "Missing required parameter: 'prompt'."))
		return ""
	}
	switch jsonKind(raw) {
	case "a string":
		s, err := asString("prompt", raw)
		ps.fail(err)
		return s
	case "an array":
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			ps.fail(typeError("prompt", "a string or an array of one string", raw))
			return ""
		}
		if len(items) != 1 {
			ps.fail(unsupported("prompt", fmt.Sprintf("A 'prompt' array of %d prompts (only one prompt per request)", len(items))))
			return ""
		}
		if k := jsonKind(items[0]); k != "a string" {
			if k == "a number" || k == "an array" {
				ps.fail(unsupported("prompt", "A 'prompt' of token ids"))
				return ""
			}
			ps.fail(typeError("prompt[0]", "a string", items[0]))
			return ""
		}
		s, err := asString("prompt[0]", items[0])
		ps.fail(err)
		return s
	}
	ps.fail(typeError("prompt", "a string or an array of one string", raw))
	return ""
}
