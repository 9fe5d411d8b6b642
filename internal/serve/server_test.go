package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, b Backend, o Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(b, o))
	t.Cleanup(srv.Close)
	return srv
}

type call struct {
	method  string
	path    string
	body    string
	header  map[string]string
	chunked bool // send the body without a Content-Length
}

func doCtx(ctx context.Context, t *testing.T, srv *httptest.Server, c call) (*http.Response, []byte, error) {
	t.Helper()
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(strings.NewReader(c.body)) // unknown length
	}
	if c.method == "" {
		c.method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, c.method, srv.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func do(t *testing.T, srv *httptest.Server, c call) (*http.Response, []byte) {
	t.Helper()
	resp, data, err := doCtx(context.Background(), t, srv, c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return resp, data
}

// errorEnvelope is OpenAI's error body; pointers tell null from "".
type errorEnvelope struct {
	Error *struct {
		Message *string `json:"message"`
		Type    *string `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, data []byte) (typ, param, code string) {
	t.Helper()
	var e errorEnvelope
	if err := json.Unmarshal(data, &e); err != nil || e.Error == nil || e.Error.Message == nil || e.Error.Type == nil {
		t.Fatalf("not an OpenAI error body: %s (%v)", data, err)
	}
	if *e.Error.Message == "" {
		t.Errorf("error with an empty message: %s", data)
	}
	str := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return *p
	}
	// "param" and "code" must be present (null or a string).
	var raw map[string]map[string]json.RawMessage
	json.Unmarshal(data, &raw)
	for _, k := range []string{"param", "code"} {
		if _, ok := raw["error"][k]; !ok {
			t.Errorf("error body lacks %q: %s", k, data)
		}
	}
	return *e.Error.Type, str(e.Error.Param), str(e.Error.Code)
}

func chatBody(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"model":"` + fakeModel + `","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]` + extra + `}`
}

func TestModels(t *testing.T) {
	srv := newTestServer(t, newFake(), Options{})
	tests := []struct {
		method, path string
		status       int
		want         string // expected JSON, with "created" removed
	}{
		{"GET", "/v1/models", 200, `{"object":"list","data":[{"id":"lathe/echo-tiny","object":"model","owned_by":"lathe"}]}`},
		{"GET", "/v1/models/lathe/echo-tiny", 200, `{"id":"lathe/echo-tiny","object":"model","owned_by":"lathe"}`},
		{"GET", "/v1/models/gpt-4o", 404, ``},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, data := do(t, srv, call{method: tc.method, path: tc.path})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.status != 200 {
				if typ, param, code := decodeError(t, data); typ != "invalid_request_error" || param != "model" || code != "model_not_found" {
					t.Errorf("error %s/%s/%s: %s", typ, param, code, data)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			models := []any{got}
			if d, ok := got["data"].([]any); ok {
				models = d
			}
			for _, m := range models {
				m := m.(map[string]any)
				if c, ok := m["created"].(float64); !ok || c <= 0 {
					t.Errorf("created = %v", m["created"])
				}
				delete(m, "created")
			}
			var want map[string]any
			json.Unmarshal([]byte(tc.want), &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         string          `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason string          `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name, path, body string
		text, finish     string
		prompt, compl    int
	}{
		{"chat", "/v1/chat/completions", chatBody(""), "hello there world", "stop", 5, 3},
		{"chat max_tokens", "/v1/chat/completions", chatBody(`"max_tokens":2`), "hello there", "length", 5, 2},
		{"chat max_completion_tokens wins", "/v1/chat/completions", chatBody(`"max_tokens":3,"max_completion_tokens":1`), "hello", "length", 5, 1},
		{"chat stop", "/v1/chat/completions", chatBody(`"stop":"there"`), "hello", "stop", 5, 1},
		{"chat parts", "/v1/chat/completions", `{"model":"lathe/echo-tiny","messages":[{"role":"user","content":[{"type":"text","text":"one "},{"type":"text","text":"two"}]}]}`, "one two", "stop", 2, 2},
		{"completion", "/v1/completions", `{"model":"lathe/echo-tiny","prompt":"once upon a time"}`, "once upon a time", "stop", 4, 4},
		{"completion array", "/v1/completions", `{"model":"lathe/echo-tiny","prompt":["once upon"],"max_tokens":1}`, "once", "length", 2, 1},
	}
	srv := newTestServer(t, newFake(), Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, data := do(t, srv, call{path: tc.path, body: tc.body})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, data)
			}
			var r chatResponse
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatal(err)
			}
			chat := strings.Contains(tc.path, "chat")
			wantObject, wantPrefix := "text_completion", "cmpl-"
			if chat {
				wantObject, wantPrefix = "chat.completion", "chatcmpl-"
			}
			if r.Object != wantObject || !strings.HasPrefix(r.ID, wantPrefix) || len(r.ID) < len(wantPrefix)+8 || r.Model != fakeModel || r.Created <= 0 {
				t.Errorf("envelope: object %q id %q model %q created %d", r.Object, r.ID, r.Model, r.Created)
			}
			if len(r.Choices) != 1 {
				t.Fatalf("%d choices", len(r.Choices))
			}
			c := r.Choices[0]
			text := c.Text
			if chat {
				text = c.Message.Content
				if c.Message.Role != "assistant" {
					t.Errorf("role %q", c.Message.Role)
				}
			}
			if text != tc.text || c.FinishReason != tc.finish || c.Index != 0 || string(c.Logprobs) != "null" {
				t.Errorf("choice: text %q finish %q index %d logprobs %s; want %q %q", text, c.FinishReason, c.Index, c.Logprobs, tc.text, tc.finish)
			}
			if r.Usage == nil || *r.Usage != (usage{tc.prompt, tc.compl, tc.prompt + tc.compl}) {
				t.Errorf("usage %+v, want %d+%d", r.Usage, tc.prompt, tc.compl)
			}
		})
	}
}

func TestRequestMapping(t *testing.T) {
	seed := func(v int64) *int64 { return &v }
	user := func(s string) []Message { return []Message{{Role: "user", Content: s}} }
	tests := []struct {
		name, path, body string
		want             Request
	}{
		{"chat defaults", "/v1/chat/completions",
			`{"model":"lathe/echo-tiny","messages":[{"role":"user","content":"a"}]}`,
			Request{Messages: user("a"), Temperature: 1, TopP: 1, RepetitionPenalty: 1}},
		{"chat knobs", "/v1/chat/completions",
			`{"model":"lathe/echo-tiny","messages":[{"role":"user","content":"a","name":"bob"}],"temperature":0.5,"top_p":0.9,"top_k":40,
			  "repetition_penalty":1.1,"stop":["x","y"],"seed":7,"max_tokens":5,"frequency_penalty":0,"presence_penalty":0.0,"n":1,
			  "user":"u","metadata":{"k":"v"},"stream":false,"logprobs":false,"tools":[],"response_format":{"type":"text"}}`,
			Request{Messages: user("a"), MaxTokens: 5, Temperature: 0.5, TopP: 0.9, TopK: 40, RepetitionPenalty: 1.1, Stop: []string{"x", "y"}, Seed: seed(7)}},
		{"chat nulls are absent", "/v1/chat/completions",
			`{"model":"lathe/echo-tiny","messages":[{"role":"user","content":"a"}],"temperature":null,"max_tokens":null,"stop":null,"seed":null,"stream_options":null}`,
			Request{Messages: user("a"), Temperature: 1, TopP: 1, RepetitionPenalty: 1}},
		{"chat roles and parts", "/v1/chat/completions",
			`{"model":"lathe/echo-tiny","messages":[{"role":"developer","content":"sys"},{"role":"user","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]},{"role":"assistant","content":"z"},{"role":"user","content":""}],
			  "temperature":0,"top_k":-1,"seed":-3,"max_completion_tokens":2.0}`,
			Request{Messages: []Message{{"system", "sys"}, {"user", "xy"}, {"assistant", "z"}, {"user", ""}}, MaxTokens: 2, Temperature: 0, TopP: 1, RepetitionPenalty: 1, Seed: seed(-3)}},
		{"completion", "/v1/completions",
			`{"model":"lathe/echo-tiny","prompt":["p q"],"stop":"s","max_tokens":16,"top_p":0,"echo":false,"best_of":1,"suffix":"","logprobs":null}`,
			Request{Prompt: "p q", MaxTokens: 16, Temperature: 1, TopP: 0, RepetitionPenalty: 1, Stop: []string{"s"}}},
		{"completion empty prompt", "/v1/completions",
			`{"model":"lathe/echo-tiny","prompt":""}`,
			Request{Temperature: 1, TopP: 1, RepetitionPenalty: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake()
			srv := newTestServer(t, fake, Options{})
			resp, data := do(t, srv, call{path: tc.path, body: tc.body})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, data)
			}
			if got := fake.last(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("backend got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	m := `"model":"lathe/echo-tiny",`
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	chat := func(s string) string { return `{` + m + msgs + s + `}` }
	prompt := func(s string) string { return `{` + m + s + `}` }
	const chatPath, complPath = "/v1/chat/completions", "/v1/completions"
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": k} }
	tests := []struct {
		name   string
		opts   Options
		c      call
		status int
		typ    string // "" means invalid_request_error
		param  string // "<null>" for null
		code   string // "<null>" for null
	}{
		{"bad json", Options{}, call{path: chatPath, body: `{"model":`}, 400, "", "<null>", "<null>"},
		{"json array", Options{}, call{path: chatPath, body: `[1]`}, 400, "", "<null>", "<null>"},
		{"json null", Options{}, call{path: chatPath, body: `null`}, 400, "", "<null>", "<null>"},
		{"empty body", Options{}, call{path: chatPath}, 400, "", "<null>", "<null>"},
		{"trailing garbage", Options{}, call{path: chatPath, body: chat("") + "x"}, 400, "", "<null>", "<null>"},
		{"missing messages", Options{}, call{path: chatPath, body: `{"model":"lathe/echo-tiny"}`}, 400, "", "messages", "<null>"},
		{"empty messages", Options{}, call{path: chatPath, body: `{` + m + `"messages":[]}`}, 400, "", "messages", "<null>"},
		{"messages string", Options{}, call{path: chatPath, body: `{` + m + `"messages":"hi"}`}, 400, "", "messages", "<null>"},
		{"message not object", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user","content":"a"},"b"]}`}, 400, "", "messages[1]", "<null>"},
		{"bad role", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"wizard","content":"a"}]}`}, 400, "", "messages[0].role", "<null>"},
		{"tool role", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"tool","content":"a"}]}`}, 400, "", "messages[0].role", "<null>"},
		{"missing role", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"content":"a"}]}`}, 400, "", "messages[0].role", "<null>"},
		{"role type", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":1,"content":"a"}]}`}, 400, "", "messages[0].role", "<null>"},
		{"missing content", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user"}]}`}, 400, "", "messages[0].content", "<null>"},
		{"content number", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user","content":3}]}`}, 400, "", "messages[0].content", "<null>"},
		{"image part", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`}, 400, "", "messages[0].content[0].type", "unsupported_content_type"},
		{"part without text", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user","content":[{"type":"text"}]}]}`}, 400, "", "messages[0].content[0].text", "<null>"},
		{"part not object", Options{}, call{path: chatPath, body: `{` + m + `"messages":[{"role":"user","content":["a"]}]}`}, 400, "", "messages[0].content[0]", "<null>"},
		{"n=2", Options{}, call{path: chatPath, body: chat(`,"n":2`)}, 400, "", "n", "unsupported_parameter"},
		{"n=0", Options{}, call{path: chatPath, body: chat(`,"n":0`)}, 400, "", "n", "<null>"},
		{"temperature 5", Options{}, call{path: chatPath, body: chat(`,"temperature":5`)}, 400, "", "temperature", "<null>"},
		{"temperature negative", Options{}, call{path: chatPath, body: chat(`,"temperature":-0.1`)}, 400, "", "temperature", "<null>"},
		{"temperature string", Options{}, call{path: chatPath, body: chat(`,"temperature":"hot"`)}, 400, "", "temperature", "<null>"},
		{"top_p 1.5", Options{}, call{path: chatPath, body: chat(`,"top_p":1.5`)}, 400, "", "top_p", "<null>"},
		{"top_k float", Options{}, call{path: chatPath, body: chat(`,"top_k":4.5`)}, 400, "", "top_k", "<null>"},
		{"repetition_penalty 0", Options{}, call{path: chatPath, body: chat(`,"repetition_penalty":0`)}, 400, "", "repetition_penalty", "<null>"},
		{"max_tokens over cap", Options{MaxTokens: 16}, call{path: chatPath, body: chat(`,"max_tokens":17`)}, 400, "", "max_tokens", "<null>"},
		{"max_tokens over default cap", Options{}, call{path: chatPath, body: chat(`,"max_tokens":2049`)}, 400, "", "max_tokens", "<null>"},
		{"max_completion_tokens over cap", Options{MaxTokens: 16}, call{path: chatPath, body: chat(`,"max_completion_tokens":100`)}, 400, "", "max_completion_tokens", "<null>"},
		{"max_tokens 0", Options{}, call{path: chatPath, body: chat(`,"max_tokens":0`)}, 400, "", "max_tokens", "<null>"},
		{"max_tokens fraction", Options{}, call{path: chatPath, body: chat(`,"max_tokens":1.5`)}, 400, "", "max_tokens", "<null>"},
		{"max_completion_tokens string", Options{}, call{path: chatPath, body: chat(`,"max_completion_tokens":"many"`)}, 400, "", "max_completion_tokens", "<null>"},
		{"stop too many", Options{}, call{path: chatPath, body: chat(`,"stop":["a","b","c","d","e"]`)}, 400, "", "stop", "<null>"},
		{"stop item type", Options{}, call{path: chatPath, body: chat(`,"stop":["a",1]`)}, 400, "", "stop[1]", "<null>"},
		{"stop empty", Options{}, call{path: chatPath, body: chat(`,"stop":""`)}, 400, "", "stop", "<null>"},
		{"stop object", Options{}, call{path: chatPath, body: chat(`,"stop":{}`)}, 400, "", "stop", "<null>"},
		{"seed string", Options{}, call{path: chatPath, body: chat(`,"seed":"x"`)}, 400, "", "seed", "<null>"},
		{"stream string", Options{}, call{path: chatPath, body: chat(`,"stream":"yes"`)}, 400, "", "stream", "<null>"},
		{"stream_options without stream", Options{}, call{path: chatPath, body: chat(`,"stream_options":{"include_usage":true}`)}, 400, "", "stream_options", "<null>"},
		{"stream_options type", Options{}, call{path: chatPath, body: chat(`,"stream":true,"stream_options":true`)}, 400, "", "stream_options", "<null>"},
		{"include_usage type", Options{}, call{path: chatPath, body: chat(`,"stream":true,"stream_options":{"include_usage":"yes"}`)}, 400, "", "stream_options.include_usage", "<null>"},
		{"frequency_penalty", Options{}, call{path: chatPath, body: chat(`,"frequency_penalty":0.5`)}, 400, "", "frequency_penalty", "unsupported_parameter"},
		{"presence_penalty range", Options{}, call{path: chatPath, body: chat(`,"presence_penalty":3`)}, 400, "", "presence_penalty", "<null>"},
		{"logprobs", Options{}, call{path: chatPath, body: chat(`,"logprobs":true`)}, 400, "", "logprobs", "unsupported_parameter"},
		{"tools", Options{}, call{path: chatPath, body: chat(`,"tools":[{"type":"function","function":{"name":"f"}}]`)}, 400, "", "tools", "unsupported_parameter"},
		{"response_format", Options{}, call{path: chatPath, body: chat(`,"response_format":{"type":"json_object"}`)}, 400, "", "response_format", "unsupported_parameter"},
		{"logit_bias", Options{}, call{path: chatPath, body: chat(`,"logit_bias":{"50256":-100}`)}, 400, "", "logit_bias", "unsupported_parameter"},
		{"missing model", Options{}, call{path: chatPath, body: `{` + msgs + `}`}, 400, "", "model", "<null>"},
		{"model type", Options{}, call{path: chatPath, body: `{"model":5,` + msgs + `}`}, 400, "", "model", "<null>"},
		{"wrong model", Options{}, call{path: chatPath, body: `{"model":"gpt-4o",` + msgs + `}`}, 404, "", "model", "model_not_found"},
		{"missing prompt", Options{}, call{path: complPath, body: `{"model":"lathe/echo-tiny"}`}, 400, "", "prompt", "<null>"},
		{"prompt tokens", Options{}, call{path: complPath, body: prompt(`"prompt":[1,2,3]`)}, 400, "", "prompt", "unsupported_parameter"},
		{"prompt batch", Options{}, call{path: complPath, body: prompt(`"prompt":["a","b"]`)}, 400, "", "prompt", "unsupported_parameter"},
		{"prompt number", Options{}, call{path: complPath, body: prompt(`"prompt":5`)}, 400, "", "prompt", "<null>"},
		{"prompt item type", Options{}, call{path: complPath, body: prompt(`"prompt":[true]`)}, 400, "", "prompt[0]", "<null>"},
		{"echo", Options{}, call{path: complPath, body: prompt(`"prompt":"a","echo":true`)}, 400, "", "echo", "unsupported_parameter"},
		{"completion logprobs", Options{}, call{path: complPath, body: prompt(`"prompt":"a","logprobs":1`)}, 400, "", "logprobs", "unsupported_parameter"},
		{"best_of", Options{}, call{path: complPath, body: prompt(`"prompt":"a","best_of":2`)}, 400, "", "best_of", "unsupported_parameter"},
		{"suffix", Options{}, call{path: complPath, body: prompt(`"prompt":"a","suffix":"z"`)}, 400, "", "suffix", "unsupported_parameter"},
		{"completion max_tokens over cap", Options{MaxTokens: 8}, call{path: complPath, body: prompt(`"prompt":"a","max_tokens":9`)}, 400, "", "max_tokens", "<null>"},
		{"completion wrong model", Options{}, call{path: complPath, body: `{"model":"davinci","prompt":"a"}`}, 404, "", "model", "model_not_found"},
		{"missing key", Options{APIKey: "k1"}, call{path: chatPath, body: chat("")}, 401, "", "<null>", "missing_api_key"},
		{"wrong key", Options{APIKey: "k1"}, call{path: chatPath, body: chat(""), header: bearer("Bearer k2")}, 401, "", "<null>", "invalid_api_key"},
		{"key prefix", Options{APIKey: "k1"}, call{path: chatPath, body: chat(""), header: bearer("Bearer k")}, 401, "", "<null>", "invalid_api_key"},
		{"basic auth", Options{APIKey: "k1"}, call{path: chatPath, body: chat(""), header: bearer("Basic k1")}, 401, "", "<null>", "missing_api_key"},
		{"models without key", Options{APIKey: "k1"}, call{method: "GET", path: "/v1/models"}, 401, "", "<null>", "missing_api_key"},
		{"oversize body", Options{MaxBodyBytes: 64}, call{path: chatPath, body: chat(`,"user":"` + strings.Repeat("x", 100) + `"`)}, 413, "", "<null>", "request_too_large"},
		{"oversize chunked body", Options{MaxBodyBytes: 64}, call{path: chatPath, body: chat(`,"user":"` + strings.Repeat("x", 100) + `"`), chunked: true}, 413, "", "<null>", "request_too_large"},
		{"GET chat", Options{}, call{method: "GET", path: chatPath}, 405, "", "<null>", "method_not_allowed"},
		{"PUT completions", Options{}, call{method: "PUT", path: complPath, body: prompt(`"prompt":"a"`)}, 405, "", "<null>", "method_not_allowed"},
		{"POST models", Options{}, call{method: "POST", path: "/v1/models", body: `{}`}, 405, "", "<null>", "method_not_allowed"},
		{"unknown URL", Options{}, call{path: "/v1/embeddings", body: `{}`}, 404, "", "<null>", "<null>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake()
			srv := newTestServer(t, fake, tc.opts)
			resp, data := do(t, srv, tc.c)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			wantType := tc.typ
			if wantType == "" {
				wantType = "invalid_request_error"
			}
			typ, param, code := decodeError(t, data)
			if typ != wantType || param != tc.param || code != tc.code {
				t.Errorf("error type/param/code = %s/%s/%s, want %s/%s/%s: %s", typ, param, code, wantType, tc.param, tc.code, data)
			}
			if n := fake.count(); n != 0 {
				t.Errorf("backend called %d times for a refused request", n)
			}
			switch tc.status {
			case 401:
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case 405:
				if resp.Header.Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			}
		})
	}
}

func TestAPIKeyAccepted(t *testing.T) {
	srv := newTestServer(t, newFake(), Options{APIKey: "sekrit"})
	for _, h := range []string{"Bearer sekrit", "bearer sekrit", "Bearer  sekrit "} {
		resp, data := do(t, srv, call{path: "/v1/chat/completions", body: chatBody(""), header: map[string]string{"Authorization": h}})
		if resp.StatusCode != 200 {
			t.Errorf("Authorization %q: status %d: %s", h, resp.StatusCode, data)
		}
	}
}

// parseSSE splits a text/event-stream body into its data payloads, checking
// the framing: every event is one "data: " line followed by a blank line.
func parseSSE(t *testing.T, body []byte) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	expectBlank := false
	for sc.Scan() {
		line := sc.Text()
		if expectBlank {
			if line != "" {
				t.Fatalf("event not followed by a blank line: %q", line)
			}
			expectBlank = false
			continue
		}
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not a data line: %q", line)
		}
		events = append(events, payload)
		expectBlank = true
	}
	if expectBlank {
		t.Fatal("stream ends without the blank line closing the last event")
	}
	return events
}

type streamChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string         `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func TestStreaming(t *testing.T) {
	tests := []struct {
		name, path, body string
		includeUsage     bool
		pieces           []string
		finish           string
		prompt           int
	}{
		{"chat", "/v1/chat/completions", chatBody(`"stream":true`), false, []string{"hello", " there", " world"}, "stop", 5},
		{"chat usage", "/v1/chat/completions", chatBody(`"stream":true,"stream_options":{"include_usage":true},"max_tokens":2`), true, []string{"hello", " there"}, "length", 5},
		{"chat no usage", "/v1/chat/completions", chatBody(`"stream":true,"stream_options":{"include_usage":false}`), false, []string{"hello", " there", " world"}, "stop", 5},
		{"chat nothing generated", "/v1/chat/completions", `{"model":"lathe/echo-tiny","stream":true,"messages":[{"role":"user","content":""}]}`, false, nil, "stop", 0},
		{"completion", "/v1/completions", `{"model":"lathe/echo-tiny","prompt":"a b c","stream":true}`, false, []string{"a", " b", " c"}, "stop", 3},
		{"completion usage", "/v1/completions", `{"model":"lathe/echo-tiny","prompt":"a b c","stream":true,"stop":["c"],"stream_options":{"include_usage":true}}`, true, []string{"a", " b"}, "stop", 3},
	}
	srv := newTestServer(t, newFake(), Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chat := strings.Contains(tc.path, "chat")
			resp, data := do(t, srv, call{path: tc.path, body: tc.body})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			events := parseSSE(t, data)
			if len(events) == 0 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("stream does not end with [DONE]: %q", events)
			}
			events = events[:len(events)-1]
			var chunks []streamChunk
			for _, e := range events {
				var c streamChunk
				if err := json.Unmarshal([]byte(e), &c); err != nil {
					t.Fatalf("chunk %q: %v", e, err)
				}
				chunks = append(chunks, c)
				var raw map[string]json.RawMessage
				json.Unmarshal([]byte(e), &raw)
				if _, has := raw["usage"]; has != tc.includeUsage {
					t.Errorf("chunk %s: has usage %v, want %v", e, has, tc.includeUsage)
				}
			}
			wantObject, wantPrefix := "text_completion", "cmpl-"
			if chat {
				wantObject, wantPrefix = "chat.completion.chunk", "chatcmpl-"
			}
			for i, c := range chunks {
				if c.ID != chunks[0].ID || !strings.HasPrefix(c.ID, wantPrefix) || c.Object != wantObject || c.Model != fakeModel || c.Created != chunks[0].Created || c.Created <= 0 {
					t.Errorf("chunk %d envelope: %s", i, events[i])
				}
			}
			if tc.includeUsage {
				last := chunks[len(chunks)-1]
				var u usage
				if last.Choices == nil || len(last.Choices) != 0 || json.Unmarshal(last.Usage, &u) != nil || u != (usage{tc.prompt, len(tc.pieces), tc.prompt + len(tc.pieces)}) {
					t.Errorf("usage chunk %s", events[len(events)-1])
				}
				for i, c := range chunks[:len(chunks)-1] {
					if string(c.Usage) != "null" {
						t.Errorf("chunk %d: usage %s, want null", i, c.Usage)
					}
				}
				chunks = chunks[:len(chunks)-1]
				events = events[:len(events)-1]
			}
			if chat {
				// The role chunk.
				if len(chunks) == 0 || len(chunks[0].Choices) != 1 || chunks[0].Choices[0].Delta == nil ||
					chunks[0].Choices[0].Delta.Role == nil || *chunks[0].Choices[0].Delta.Role != "assistant" ||
					chunks[0].Choices[0].FinishReason != nil {
					t.Fatalf("first chunk %s is not the role chunk", events[0])
				}
				chunks, events = chunks[1:], events[1:]
			}
			var pieces []string
			for i, c := range chunks[:len(chunks)-1] {
				if len(c.Choices) != 1 || c.Choices[0].FinishReason != nil || string(c.Choices[0].Logprobs) != "null" {
					t.Fatalf("delta chunk %s", events[i])
				}
				if chat {
					if c.Choices[0].Delta == nil || c.Choices[0].Delta.Role != nil || c.Choices[0].Delta.Content == nil {
						t.Fatalf("delta chunk %s", events[i])
					}
					pieces = append(pieces, *c.Choices[0].Delta.Content)
				} else {
					pieces = append(pieces, *c.Choices[0].Text)
				}
			}
			if !reflect.DeepEqual(pieces, tc.pieces) {
				t.Errorf("pieces %q, want %q", pieces, tc.pieces)
			}
			last := chunks[len(chunks)-1]
			if len(last.Choices) != 1 || last.Choices[0].FinishReason == nil || *last.Choices[0].FinishReason != tc.finish {
				t.Errorf("final chunk %s, want finish_reason %q", events[len(events)-1], tc.finish)
			}
			if chat && (last.Choices[0].Delta == nil || last.Choices[0].Delta.Content != nil || last.Choices[0].Delta.Role != nil) {
				t.Errorf("final chunk delta is not empty: %s", events[len(events)-1])
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	reqErr := fmt.Errorf("llama: generate: %w", &RequestError{Message: "the prompt has 9000 tokens; the context holds 4096", Param: "messages", Code: "context_length_exceeded"})
	tests := []struct {
		name      string
		failAfter int
		err       error
		stream    bool
		status    int
		typ       string
		param     string
		code      string
		pieces    int // streamed deltas before the error event (stream after headers)
	}{
		{"failure", 0, errFakeBroken, false, 500, "server_error", "<null>", "<null>", 0},
		{"failure late", 2, errFakeBroken, false, 500, "server_error", "<null>", "<null>", 0},
		{"refusal", 0, reqErr, false, 400, "invalid_request_error", "messages", "context_length_exceeded", 0},
		{"stream failure before first piece", 0, errFakeBroken, true, 500, "server_error", "<null>", "<null>", 0},
		{"stream refusal", 0, reqErr, true, 400, "invalid_request_error", "messages", "context_length_exceeded", 0},
		{"stream failure mid-stream", 2, errFakeBroken, true, 200, "server_error", "<null>", "<null>", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake()
			fake.failAfter, fake.err = tc.failAfter, tc.err
			srv := newTestServer(t, fake, Options{})
			body := chatBody("")
			if tc.stream {
				body = chatBody(`"stream":true`)
			}
			resp, data := do(t, srv, call{path: "/v1/chat/completions", body: body})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, data)
			}
			errData := data
			if tc.status == 200 {
				events := parseSSE(t, data)
				// role chunk, pieces, error event; no [DONE].
				if len(events) != 1+tc.pieces+1 {
					t.Fatalf("events %q", events)
				}
				errData = []byte(events[len(events)-1])
			} else if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			typ, param, code := decodeError(t, errData)
			if typ != tc.typ || param != tc.param || code != tc.code {
				t.Errorf("error %s/%s/%s, want %s/%s/%s: %s", typ, param, code, tc.typ, tc.param, tc.code, errData)
			}
			if tc.err == errFakeBroken && !bytes.Contains(errData, []byte("fell over")) {
				t.Errorf("error message does not carry the backend's: %s", errData)
			}
		})
	}
}

// blockingFake is a fake whose Generate announces itself on started and
// waits for release.
func blockingFake() *fakeBackend {
	f := newFake()
	f.started = make(chan struct{}, 8)
	f.release = make(chan struct{})
	f.cancelled = make(chan error, 8)
	return f
}

type outcome struct {
	status int
	body   []byte
	err    error
}

func goDo(ctx context.Context, t *testing.T, srv *httptest.Server, c call) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		resp, data, err := doCtx(ctx, t, srv, c)
		o := outcome{body: data, err: err}
		if resp != nil {
			o.status = resp.StatusCode
		}
		ch <- o
	}()
	return ch
}

// waitFor polls cond; the test's own deadline bounds it.
func waitFor(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

func TestBusy(t *testing.T) {
	fake := blockingFake()
	h := New(fake, Options{MaxQueue: -1})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := call{path: "/v1/chat/completions", body: chatBody("")}

	first := goDo(context.Background(), t, srv, c)
	<-fake.started
	resp, data := do(t, srv, c)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second request while busy: status %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	if typ, _, code := decodeError(t, data); typ != "rate_limit_error" || code != "rate_limit_exceeded" {
		t.Errorf("429 body %s", data)
	}
	fake.release <- struct{}{}
	if o := <-first; o.err != nil || o.status != 200 {
		t.Fatalf("first request: %d %v %s", o.status, o.err, o.body)
	}
	close(fake.release)
	if resp, data := do(t, srv, c); resp.StatusCode != 200 {
		t.Fatalf("request after the slot freed: %d %s", resp.StatusCode, data)
	}
}

func TestQueue(t *testing.T) {
	fake := blockingFake()
	s := New(fake, Options{MaxConcurrent: 1, MaxQueue: 1}).(*server)
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := call{path: "/v1/chat/completions", body: chatBody("")}

	first := goDo(context.Background(), t, srv, c)
	<-fake.started
	second := goDo(context.Background(), t, srv, c)
	waitFor(func() bool { return len(s.queue) == 1 })
	// The queue is full: a third request is refused at once.
	if resp, data := do(t, srv, c); resp.StatusCode != 429 {
		t.Fatalf("third request: %d %s", resp.StatusCode, data)
	}
	// Invalid requests are refused before they queue.
	if resp, data := do(t, srv, call{path: c.path, body: chatBody(`"n":3`)}); resp.StatusCode != 400 {
		t.Fatalf("invalid request while busy: %d %s", resp.StatusCode, data)
	}
	fake.release <- struct{}{}
	if o := <-first; o.status != 200 {
		t.Fatalf("first: %d %v %s", o.status, o.err, o.body)
	}
	<-fake.started // the queued request runs
	fake.release <- struct{}{}
	if o := <-second; o.status != 200 {
		t.Fatalf("second: %d %v %s", o.status, o.err, o.body)
	}
	if n := fake.count(); n != 2 {
		t.Errorf("backend ran %d generations, want 2", n)
	}
}

func TestClientDisconnect(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			fake := blockingFake()
			s := New(fake, Options{}).(*server)
			srv := httptest.NewServer(s)
			defer srv.Close()
			body := chatBody("")
			if stream {
				body = chatBody(`"stream":true`)
			}
			c := call{path: "/v1/chat/completions", body: body}

			// Disconnect while generating: Generate's ctx is cancelled.
			ctx, cancel := context.WithCancel(context.Background())
			first := goDo(ctx, t, srv, c)
			<-fake.started
			// Disconnect while queued: the request leaves the queue.
			qctx, qcancel := context.WithCancel(context.Background())
			queued := goDo(qctx, t, srv, c)
			waitFor(func() bool { return len(s.queue) == 1 })
			qcancel()
			if o := <-queued; !errors.Is(o.err, context.Canceled) {
				t.Errorf("queued request: %v", o.err)
			}
			waitFor(func() bool { return len(s.queue) == 0 })

			cancel()
			if err := <-fake.cancelled; !errors.Is(err, context.Canceled) {
				t.Errorf("backend saw %v, want context.Canceled", err)
			}
			if o := <-first; !errors.Is(o.err, context.Canceled) {
				t.Errorf("client: %v", o.err)
			}
			// The slot is free again and the queued request never ran.
			close(fake.release)
			if resp, data := do(t, srv, call{path: c.path, body: chatBody("")}); resp.StatusCode != 200 {
				t.Fatalf("after disconnect: %d %s", resp.StatusCode, data)
			}
			if n := fake.count(); n != 2 {
				t.Errorf("backend ran %d generations, want 2", n)
			}
		})
	}
}

func TestLogf(t *testing.T) {
	var lines []string
	srv := newTestServer(t, newFake(), Options{Logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }})
	do(t, srv, call{path: "/v1/chat/completions", body: chatBody("")})
	do(t, srv, call{path: "/v1/chat/completions", body: chatBody(`"n":2`)})
	if len(lines) != 2 || !strings.Contains(lines[0], "completion=3") || !strings.Contains(lines[1], "400") {
		t.Errorf("log lines %q", lines)
	}
}

func TestNewNilBackend(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	New(nil, Options{})
}

// FuzzParse checks that no body makes the parsers panic and that what they
// accept satisfies the Request invariants.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		chatBody(""), chatBody(`"stream":true,"stream_options":{"include_usage":true},"stop":["a"],"seed":1`),
		`{"model":"lathe/echo-tiny","prompt":["x"],"max_tokens":3}`,
		`{"model":"lathe/echo-tiny","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		`{"messages":[{"role":1}]}`, `[`, `null`, `{"temperature":1e400}`, `{"model":"lathe/echo-tiny","prompt":"a","max_tokens":1e20}`,
	} {
		f.Add([]byte(s))
	}
	s := New(newFake(), Options{MaxTokens: 100}).(*server)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte) (*job, *apiError){s.parseChat, s.parseCompletion} {
			j, err := parse(body)
			if err != nil {
				if j != nil || err.status < 400 || err.message == "" {
					t.Fatalf("bad error %+v", err)
				}
				continue
			}
			r := j.req
			if r.MaxTokens < 0 || r.MaxTokens > 100 || r.Temperature < 0 || r.Temperature > 2 || r.TopP < 0 || r.TopP > 1 ||
				r.TopK < 0 || r.RepetitionPenalty <= 0 || len(r.Stop) > 4 || (j.includeUsage && !j.stream) {
				t.Fatalf("accepted out-of-range request %+v", r)
			}
			for _, m := range r.Messages {
				if roles[m.Role] != m.Role {
					t.Fatalf("accepted role %q", m.Role)
				}
			}
		}
	})
}
