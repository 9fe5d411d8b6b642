package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

const fakeModel = "lathe/echo-tiny"

// fakeBackend echoes the words of the last user message (or of the prompt),
// one word per delta: deterministic, honours MaxTokens and Stop (a stop word
// ends generation and is not returned), fails with errFakeBroken on the word
// "BOOM", and records the requests it got.
type fakeBackend struct {
	// failAfter >= 0 makes Generate fail with err after that many deltas.
	failAfter int
	err       error
	// started, when non-nil, receives one value as each Generate begins.
	started chan struct{}
	// release, when non-nil, makes Generate wait for a value (or for ctx)
	// before generating.
	release chan struct{}
	// cancelled, when non-nil, receives ctx.Err() when Generate stops
	// because of ctx.
	cancelled chan error

	mu   sync.Mutex
	reqs []Request
}

func newFake() *fakeBackend { return &fakeBackend{failAfter: -1} }

func (f *fakeBackend) ModelID() string { return fakeModel }

func (f *fakeBackend) last() Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return Request{}
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeBackend) request(i int) Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[i]
}

func (f *fakeBackend) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// echoSource is the text the fake repeats, and the prompt's word count.
func echoSource(req Request) (string, int) {
	if req.Messages == nil {
		return req.Prompt, len(strings.Fields(req.Prompt))
	}
	src, n := "", 0
	for _, m := range req.Messages {
		n += len(strings.Fields(m.Content))
		if m.Role == "user" {
			src = m.Content
		}
	}
	return src, n
}

func (f *fakeBackend) Generate(ctx context.Context, req Request, onDelta func(string) error) (Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	stop := func() (Result, error) {
		if f.cancelled != nil {
			f.cancelled <- ctx.Err()
		}
		return Result{}, fmt.Errorf("fake: generate: %w", ctx.Err())
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return stop()
		}
	}
	src, promptTokens := echoSource(req)
	res := Result{FinishReason: FinishStop, PromptTokens: promptTokens}
	for i, w := range strings.Fields(src) {
		if ctx.Err() != nil {
			return stop()
		}
		if i == f.failAfter {
			return Result{}, f.err
		}
		if w == "BOOM" {
			return Result{}, errFakeBroken
		}
		if slices.Contains(req.Stop, w) {
			break
		}
		if req.MaxTokens > 0 && i == req.MaxTokens {
			res.FinishReason = FinishLength
			break
		}
		piece := w
		if i > 0 {
			piece = " " + w
		}
		if onDelta != nil {
			if err := onDelta(piece); err != nil {
				return Result{}, fmt.Errorf("fake: send delta: %w", err)
			}
		}
		res.Text += piece
		res.CompletionTokens++
	}
	if f.failAfter >= 0 && f.err != nil && res.CompletionTokens <= f.failAfter {
		return Result{}, f.err
	}
	return res, nil
}

var errFakeBroken = errors.New("fake: the device fell over")
