package serve

import (
	"context"
	"fmt"
)

// Message is one turn of a chat, as the client sent it. Role is "system",
// "user" or "assistant" (the OpenAI "developer" role arrives as "system");
// Content is the text (text parts of an array content are concatenated).
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one generation request, validated and with OpenAI's defaults
// filled in. Exactly one of Messages (chat completions, to be rendered by the
// backend with the model's chat template) and Prompt (completions, raw text)
// is used: Messages is non-empty for chat requests and nil for completions.
type Request struct {
	Messages []Message
	Prompt   string

	// MaxTokens bounds the number of generated tokens; 0 means the
	// backend's default (the client did not say).
	MaxTokens int

	// Temperature is in [0, 2] (OpenAI's default 1 when the client omits
	// it); 0 means greedy. TopP is in [0, 1] (default 1: no nucleus
	// cut). TopK is 0 when disabled (the vLLM-style extension "top_k").
	// RepetitionPenalty is > 0, 1 when disabled (the vLLM-style extension
	// "repetition_penalty").
	Temperature       float64
	TopP              float64
	TopK              int
	RepetitionPenalty float64

	// Stop lists strings that end generation; the stop string itself is not
	// part of the returned text (OpenAI semantics).
	Stop []string

	// Seed, when non-nil, asks for reproducible sampling.
	Seed *int64
}

// Finish reasons a Backend reports in Result.FinishReason.
const (
	FinishStop   = "stop"   // end of sequence or a stop string
	FinishLength = "length" // MaxTokens (or the context) reached
)

// Result is the outcome of one generation.
type Result struct {
	Text             string
	FinishReason     string // FinishStop or FinishLength; "" is taken as FinishStop
	PromptTokens     int
	CompletionTokens int
}

// Backend generates text. The server calls Generate from one goroutine per
// HTTP request, at most Options.MaxConcurrent at a time.
type Backend interface {
	// ModelID is the model name clients must send in "model" and that
	// GET /v1/models lists.
	ModelID() string

	// Generate produces text for req. When onDelta is non-nil it is called
	// with each new piece of text as it is generated (the pieces concatenate
	// to Result.Text), from Generate's own goroutine and never after
	// Generate has returned; when onDelta returns an error (the client went
	// away) Generate must stop and return an error (it may wrap that one). Generate must honour
	// ctx cancellation (the client disconnected). To refuse a request the
	// model cannot serve (a prompt longer than the context, say) return a
	// *RequestError, possibly wrapped: the client gets a 400 with its
	// message instead of a 500.
	Generate(ctx context.Context, req Request, onDelta func(string) error) (Result, error)
}

// RequestError is an error a Backend returns for a request that is well
// formed but that it cannot serve. The server answers it with HTTP 400 and an
// OpenAI error body {"message": Message, "param": Param, "code": Code}.
type RequestError struct {
	Message string
	Param   string // the request field at fault ("messages", "max_tokens"), or ""
	Code    string // e.g. "context_length_exceeded", or ""
}

func (e *RequestError) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("invalid request: %s: %s", e.Param, e.Message)
	}
	return "invalid request: " + e.Message
}

// Options configures the server. The zero value is usable.
type Options struct {
	// APIKey, when non-empty, is required on every request as
	// "Authorization: Bearer <key>"; other requests get 401.
	APIKey string

	// MaxBodyBytes caps the request body; larger bodies get 413.
	// <= 0 means 1 MiB.
	MaxBodyBytes int64

	// MaxTokens caps max_tokens / max_completion_tokens; a request asking
	// for more gets 400. <= 0 means 2048. Requests that do not set
	// max_tokens get the backend's default (Request.MaxTokens == 0).
	MaxTokens int

	// MaxConcurrent is the number of generations run at the same time.
	// <= 0 means 1.
	MaxConcurrent int

	// MaxQueue is the number of requests that may wait for a free
	// generation slot (first come, first served is not guaranteed); a
	// request arriving when all slots are busy and the queue is full gets
	// 429 at once. A waiting request whose client disconnects leaves the
	// queue. 0 means 64; < 0 means no queue (429 whenever all slots are
	// busy).
	MaxQueue int

	// Logf, when non-nil, receives one line per request and per failure.
	Logf func(format string, args ...any)
}

const (
	defaultMaxBodyBytes = 1 << 20
	defaultMaxTokens    = 2048
	defaultMaxQueue     = 64
)
