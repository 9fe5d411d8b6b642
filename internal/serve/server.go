package serve

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// server is the http.Handler New returns.
type server struct {
	b       Backend
	opts    Options
	modelID string
	created int64 // Unix time of New, reported as the model's "created"

	slots chan struct{} // one token per running generation
	queue chan struct{} // one token per request waiting for a slot; nil: no queue
}

// New returns the OpenAI-compatible handler serving b (see the package
// documentation for the routes and their semantics). It panics when b is nil.
func New(b Backend, o Options) http.Handler {
	if b == nil {
		panic("serve: New: nil Backend")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = defaultMaxBodyBytes
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = defaultMaxTokens
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1
	}
	if o.MaxQueue == 0 {
		o.MaxQueue = defaultMaxQueue
	}
	s := &server{
		b:       b,
		opts:    o,
		modelID: b.ModelID(),
		created: time.Now().Unix(),
		slots:   make(chan struct{}, o.MaxConcurrent),
	}
	if o.MaxQueue > 0 {
		s.queue = make(chan struct{}, o.MaxQueue)
	}
	return s
}

func (s *server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	path := r.URL.Path
	switch {
	case path == "/v1/models":
		if s.allow(w, r, http.MethodGet, http.MethodHead) {
			s.listModels(w)
		}
	case strings.HasPrefix(path, "/v1/models/"):
		if s.allow(w, r, http.MethodGet, http.MethodHead) {
			s.getModel(w, r, strings.TrimPrefix(path, "/v1/models/"))
		}
	case path == "/v1/chat/completions":
		if s.allow(w, r, http.MethodPost) {
			s.generate(w, r, s.parseChat, chatStream)
		}
	case path == "/v1/completions":
		if s.allow(w, r, http.MethodPost) {
			s.generate(w, r, s.parseCompletion, completionStream)
		}
	default:
		s.writeError(w, r, &apiError{status: http.StatusNotFound, typ: "invalid_request_error",
			message: fmt.Sprintf("Invalid URL (%s %s).", r.Method, path)})
	}
}

// authorized checks the bearer token, answering 401 when it is missing or
// wrong.
func (s *server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, key, _ := strings.Cut(h, " ")
	key = strings.TrimSpace(key)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || key == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lathe"`)
		s.writeError(w, r, &apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "missing_api_key",
			message: "You didn't provide an API key. Provide it in the Authorization header as 'Authorization: Bearer YOUR_KEY'."})
		return false
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lathe", error="invalid_token"`)
		s.writeError(w, r, &apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key",
			message: "Incorrect API key provided."})
		return false
	}
	return true
}

// allow answers 405 unless r's method is one of methods.
func (s *server) allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", code: "method_not_allowed",
		message: fmt.Sprintf("Invalid method for %s: %s (expected %s).", r.URL.Path, r.Method, strings.Join(methods, " or "))})
	return false
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *server) model() modelObject {
	return modelObject{ID: s.modelID, Object: "model", Created: s.created, OwnedBy: "lathe"}
}

func (s *server) listModels(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{"list", []modelObject{s.model()}})
}

func (s *server) getModel(w http.ResponseWriter, r *http.Request, id string) {
	if id != s.modelID {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found",
			message: fmt.Sprintf("The model '%s' does not exist; this server serves '%s'.", id, s.modelID)})
		return
	}
	writeJSON(w, http.StatusOK, s.model())
}

// writeJSON sends v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only plain structs are sent; this is a programming error
		panic(fmt.Sprintf("serve: marshal response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// errorBody is the OpenAI error envelope.
func errorBody(e *apiError) any {
	nullable := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	type inner struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	return struct {
		Error inner `json:"error"`
	}{inner{e.message, e.typ, nullable(e.param), nullable(e.code)}}
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	s.logf("serve: %s %s: %d %s", r.Method, r.URL.Path, e.status, e.message)
	writeJSON(w, e.status, errorBody(e))
}

// readBody reads the request body, answering 413 beyond MaxBodyBytes.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large",
		message: fmt.Sprintf("The request body is larger than this server's limit of %d bytes.", s.opts.MaxBodyBytes)}
	if r.ContentLength > s.opts.MaxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, badRequest("", "Could not read the request body: %v.", err)
	}
	return body, nil
}

var errBusy = &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "rate_limit_exceeded",
	message: "The server is busy with other generations; retry later."}

// acquire takes a generation slot, waiting in the queue when all are busy.
// It returns errBusy when the queue is full too, or ctx's error when the
// client goes away while waiting. release must be called after a nil error.
func (s *server) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	if s.queue == nil {
		return errBusy
	}
	select {
	case s.queue <- struct{}{}:
	default:
		return errBusy
	}
	defer func() { <-s.queue }()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *server) release() { <-s.slots }

// backendError turns a Generate error into the API error to send.
func backendError(err error) *apiError {
	if re, ok := errors.AsType[*RequestError](err); ok {
		return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: re.Message, param: re.Param, code: re.Code}
	}
	return &apiError{status: http.StatusInternalServerError, typ: "server_error", message: fmt.Sprintf("Generation failed: %v.", err)}
}

// streamFormat writes the chunks of one kind of streaming response.
type streamFormat struct {
	chunk    string // the "object" of streamed chunks
	idPrefix string
	// start is the chunk sent before the first delta (nil: none).
	start func(id string, created int64, model string) any
	// delta, finish and usage build the chunks of the stream; whole builds
	// the non-streaming response.
	delta  func(id string, created int64, model, text string) any
	finish func(id string, created int64, model, reason string) any
	whole  func(id string, created int64, model string, res Result) any
}

// generate serves one generation request: parse, wait for a slot, run the
// backend, answer (as one JSON object or as server-sent events).
func (s *server) generate(w http.ResponseWriter, r *http.Request, parse func([]byte) (*job, *apiError), f *streamFormat) {
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		s.writeError(w, r, aerr)
		return
	}
	j, aerr := parse(body)
	if aerr != nil {
		s.writeError(w, r, aerr)
		return
	}
	ctx := r.Context()
	if err := s.acquire(ctx); err != nil {
		if e, ok := err.(*apiError); ok {
			w.Header().Set("Retry-After", "1")
			s.writeError(w, r, e)
		} else {
			s.logf("serve: %s %s: client went away while queued: %v", r.Method, r.URL.Path, err)
		}
		return
	}
	defer s.release()

	id := f.idPrefix + rand.Text()
	created := time.Now().Unix()
	start := time.Now()
	var (
		res Result
		err error
		st  *sse
	)
	if !j.stream {
		res, err = s.b.Generate(ctx, j.req, nil)
	} else {
		st = &sse{w: w, rc: http.NewResponseController(w)}
		res, err = s.b.Generate(ctx, j.req, func(text string) error {
			if text == "" {
				return nil
			}
			if !st.started {
				st.begin()
				if f.start != nil {
					st.send(f.start(id, created, s.modelID), j.includeUsage)
				}
			}
			return st.send(f.delta(id, created, s.modelID, text), j.includeUsage)
		})
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			s.logf("serve: %s %s: client went away: %v", r.Method, r.URL.Path, err)
		case st != nil && st.started:
			// Headers are out: report the failure in the stream, as OpenAI
			// does, and leave out [DONE] so that no client takes the text
			// for complete.
			e := backendError(err)
			s.logf("serve: %s %s: %d (in stream) %s", r.Method, r.URL.Path, e.status, e.message)
			st.send(errorBody(e), false)
		default:
			s.writeError(w, r, backendError(err))
		}
		return
	}
	if res.FinishReason == "" {
		res.FinishReason = FinishStop
	}
	s.logf("serve: %s %s: %s prompt=%d completion=%d finish=%s stream=%v in %s", r.Method, r.URL.Path,
		id, res.PromptTokens, res.CompletionTokens, res.FinishReason, j.stream, time.Since(start).Round(time.Millisecond))
	if !j.stream {
		writeJSON(w, http.StatusOK, f.whole(id, created, s.modelID, res))
		return
	}
	if !st.started {
		st.begin()
		if f.start != nil {
			st.send(f.start(id, created, s.modelID), j.includeUsage)
		}
	}
	st.send(f.finish(id, created, s.modelID, res.FinishReason), j.includeUsage)
	if j.includeUsage {
		st.send(usageChunk{ID: id, Object: f.chunk, Created: created, Model: s.modelID, Choices: []struct{}{}, Usage: usageOf(res)}, false)
	}
	st.done()
}

// sse writes server-sent events, flushing after each.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	err     error // first write error; later sends are dropped
}

func (s *sse) begin() {
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sse) write(data []byte) error {
	if s.err != nil {
		return s.err
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", data); err != nil {
		s.err = fmt.Errorf("serve: write event: %w", err)
		return s.err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = fmt.Errorf("serve: flush event: %w", err)
	}
	return s.err
}

// send writes v as one event. With nullUsage, v must be a chunk struct whose
// "usage" member is then sent as null (OpenAI's include_usage contract:
// every chunk but the last has "usage": null).
func (s *sse) send(v any, nullUsage bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("serve: marshal chunk: %v", err))
	}
	if nullUsage {
		data = append(data[:len(data)-1], `,"usage":null}`...)
	}
	return s.write(data)
}

func (s *sse) done() { s.write([]byte("[DONE]")) }

// Response bodies.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(r Result) usage {
	return usage{r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens}
}

type usageChunk struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []struct{} `json:"choices"`
	Usage   usage      `json:"usage"`
}

type chatMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
}

var chatStream = &streamFormat{
	chunk:    "chat.completion.chunk",
	idPrefix: "chatcmpl-",
	start: func(id string, created int64, model string) any {
		empty := ""
		return chatChunk{id, "chat.completion.chunk", created, model, []chatChunkChoice{{Delta: chatDelta{Role: "assistant", Content: &empty}}}}
	},
	delta: func(id string, created int64, model, text string) any {
		return chatChunk{id, "chat.completion.chunk", created, model, []chatChunkChoice{{Delta: chatDelta{Content: &text}}}}
	},
	finish: func(id string, created int64, model, reason string) any {
		return chatChunk{id, "chat.completion.chunk", created, model, []chatChunkChoice{{FinishReason: &reason}}}
	},
	whole: func(id string, created int64, model string, res Result) any {
		return chatCompletion{id, "chat.completion", created, model,
			[]chatChoice{{Message: chatMessage{Role: "assistant", Content: res.Text}, FinishReason: res.FinishReason}}, usageOf(res)}
	},
}

type completionChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type completionChunk struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   usage              `json:"usage"`
}

var completionStream = &streamFormat{
	chunk:    "text_completion",
	idPrefix: "cmpl-",
	delta: func(id string, created int64, model, text string) any {
		return completionChunk{id, "text_completion", created, model, []completionChoice{{Text: text}}}
	},
	finish: func(id string, created int64, model, reason string) any {
		return completionChunk{id, "text_completion", created, model, []completionChoice{{FinishReason: &reason}}}
	},
	whole: func(id string, created int64, model string, res Result) any {
		return completionResponse{id, "text_completion", created, model,
			[]completionChoice{{Text: res.Text, FinishReason: &res.FinishReason}}, usageOf(res)}
	},
}
