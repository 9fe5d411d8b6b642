package serve

// The peer test: the official OpenAI JavaScript client (npm "openai") talks
// to the server. It needs node and the package:
//
//	cd internal/serve/testdata/js && npm ci --ignore-scripts
//
// Without them it skips, unless LATHE_REQUIRE_PEERS=1, in which case it
// fails.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const jsDir = "testdata/js"

func skipOrFail(t testing.TB, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	const install = "install: cd internal/serve/testdata/js && npm ci --ignore-scripts"
	if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
		t.Fatalf("LATHE_REQUIRE_PEERS=1 but %s (%s)", msg, install)
	}
	t.Skipf("%s; skipping (%s)", msg, install)
}

// needNode returns the node binary, skipping (or failing) when node or the
// openai package is missing.
func needNode(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "openai", "package.json")); err != nil {
		skipOrFail(t, "npm package openai is not installed")
	}
	return node
}

type nodeAPIError struct {
	Class  string  `json:"class"`
	Status int     `json:"status"`
	Type   string  `json:"type"`
	Param  *string `json:"param"`
	Code   *string `json:"code"`
}

type nodeOutput struct {
	Models []struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		OwnedBy string `json:"owned_by"`
	} `json:"models"`
	Model string `json:"model"`
	Chat  struct {
		ID           string `json:"id"`
		Object       string `json:"object"`
		Role         string `json:"role"`
		Content      string `json:"content"`
		FinishReason string `json:"finish_reason"`
		Usage        usage  `json:"usage"`
	} `json:"chat"`
	Stream struct {
		Deltas       []string `json:"deltas"`
		Roles        []string `json:"roles"`
		FinishReason string   `json:"finish_reason"`
		Usage        *usage   `json:"usage"`
		IDs          int      `json:"ids"`
	} `json:"stream"`
	Completion struct {
		ID           string `json:"id"`
		Object       string `json:"object"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
		Usage        usage  `json:"usage"`
	} `json:"completion"`
	CompletionStream struct {
		Pieces       []string `json:"pieces"`
		FinishReason string   `json:"finish_reason"`
	} `json:"completion_stream"`
	StreamFailure struct {
		Deltas []string `json:"deltas"`
		Error  *struct {
			Class   string `json:"class"`
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"stream_failure"`
	BadRequest nodeAPIError `json:"bad_request"`
	WrongModel nodeAPIError `json:"wrong_model"`
	BadKey     nodeAPIError `json:"bad_key"`
}

func TestNodeOpenAIClient(t *testing.T) {
	node := needNode(t)
	const key = "sk-lathe-test"
	fake := newFake()
	srv := httptest.NewServer(New(fake, Options{APIKey: key}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(), "LATHE_SERVE_URL="+srv.URL+"/v1", "LATHE_SERVE_KEY="+key, "LATHE_SERVE_MODEL="+fakeModel)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.Bytes(), stdout.Bytes())
	}
	defer func() {
		if t.Failed() {
			t.Logf("client output:\n%s", stdout.Bytes())
		}
	}()
	var out nodeOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client output: %v\n%s", err, stdout.Bytes())
	}

	if len(out.Models) != 1 || out.Models[0].ID != fakeModel || out.Models[0].Object != "model" || out.Models[0].OwnedBy != "lathe" || out.Model != fakeModel {
		t.Errorf("models: %+v, retrieve: %q", out.Models, out.Model)
	}

	// "the quick brown fox" echoed, cut by max_tokens 3; the system
	// message counts in the prompt (2 + 4 words).
	c := out.Chat
	if c.Object != "chat.completion" || c.Role != "assistant" || c.Content != "the quick brown" || c.FinishReason != "length" || c.Usage != (usage{6, 3, 9}) {
		t.Errorf("chat: %+v", c)
	}
	if r := fake.request(0); r.Temperature != 0 || r.Seed == nil || *r.Seed != 1 || r.MaxTokens != 3 {
		t.Errorf("chat request reached the backend as %+v", r)
	}

	s := out.Stream
	if !reflect.DeepEqual(s.Deltas, []string{"the", " quick", " brown"}) || !reflect.DeepEqual(s.Roles, []string{"assistant"}) ||
		s.FinishReason != "stop" || s.Usage == nil || *s.Usage != (usage{6, 3, 9}) || s.IDs != 1 {
		t.Errorf("stream: %+v (usage %v)", s, s.Usage)
	}

	cp := out.Completion
	if cp.Object != "text_completion" || cp.Text != "once upon a time" || cp.FinishReason != "stop" || cp.Usage != (usage{4, 4, 8}) {
		t.Errorf("completion: %+v", cp)
	}
	if cs := out.CompletionStream; !reflect.DeepEqual(cs.Pieces, []string{"once", " upon"}) || cs.FinishReason != "length" {
		t.Errorf("completion stream: %+v", cs)
	}

	if sf := out.StreamFailure; !reflect.DeepEqual(sf.Deltas, []string{"one", " two"}) || sf.Error == nil ||
		sf.Error.Class != "APIError" || sf.Error.Type != "server_error" || !strings.Contains(sf.Error.Message, "fell over") {
		t.Errorf("stream failure: %+v (error %+v)", sf, sf.Error)
	}

	str := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return *p
	}
	for _, tc := range []struct {
		name             string
		got              nodeAPIError
		class            string
		status           int
		typ, param, code string
	}{
		{"bad request", out.BadRequest, "BadRequestError", 400, "invalid_request_error", "temperature", "<null>"},
		{"wrong model", out.WrongModel, "NotFoundError", 404, "invalid_request_error", "model", "model_not_found"},
		{"bad key", out.BadKey, "AuthenticationError", 401, "invalid_request_error", "<null>", "invalid_api_key"},
	} {
		g := tc.got
		if g.Class != tc.class || g.Status != tc.status || g.Type != tc.typ || str(g.Param) != tc.param || str(g.Code) != tc.code {
			t.Errorf("%s: client saw %+v (param %s, code %s)", tc.name, g, str(g.Param), str(g.Code))
		}
	}
}
