package board

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/stages"
)

// copyTree copies testdata/pipelines into a fresh directory, so that runs
// write their stores there.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "pipelines")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// testBoard serves a board over a copy of testdata/pipelines.
type testBoard struct {
	t   *testing.T
	dir string
	b   *Server
	srv *httptest.Server
}

func newTestBoard(t *testing.T, remote bool) *testBoard {
	t.Helper()
	t.Setenv("LATHE_CACHE", "")
	dir := copyTree(t)
	b, err := New(Options{Dir: dir, Registry: stages.Registry(), Remote: remote, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	return &testBoard{t: t, dir: dir, b: b, srv: srv}
}

// do sends a request; body, when not nil, is encoded as JSON and POSTed
// with the token and a same-origin Origin header.
func (tb *testBoard) do(method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	tb.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, tb.srv.URL+path, rd)
	if err != nil {
		tb.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", tb.srv.URL)
		req.Header.Set(TokenHeader, tb.b.Token())
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if h := hdr["Host"]; h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.t.Fatal(err)
	}
	return resp, b
}

// getJSON GETs path, expects 200 and decodes the body into v.
func (tb *testBoard) getJSON(path string, v any) {
	tb.t.Helper()
	resp, b := tb.do("GET", path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		tb.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

func (tb *testBoard) plan(p string, vars map[string]string) planResponse {
	tb.t.Helper()
	resp, b := tb.do("POST", "/api/plan", launchRequest{Pipeline: p, Vars: vars}, nil)
	if resp.StatusCode != http.StatusOK {
		tb.t.Fatalf("plan: %d %s", resp.StatusCode, b)
	}
	var pr planResponse
	if err := json.Unmarshal(b, &pr); err != nil {
		tb.t.Fatal(err)
	}
	return pr
}

// start starts a run and returns its id.
func (tb *testBoard) start(p string, vars map[string]string) string {
	tb.t.Helper()
	resp, b := tb.do("POST", "/api/runs", launchRequest{Pipeline: p, Vars: vars}, nil)
	if resp.StatusCode != http.StatusOK {
		tb.t.Fatalf("start: %d %s", resp.StatusCode, b)
	}
	var out struct{ Run string }
	if err := json.Unmarshal(b, &out); err != nil || out.Run == "" {
		tb.t.Fatalf("start: %v %s", err, b)
	}
	return out.Run
}

// sse reads a server-sent event stream.
type sse struct {
	resp *http.Response
	rd   *bufio.Reader
}

func (tb *testBoard) openEvents(p, run string, lastID string) *sse {
	tb.t.Helper()
	req, _ := http.NewRequest("GET", tb.srv.URL+"/api/events?"+url.Values{"p": {p}, "run": {run}}.Encode(), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		tb.t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	return &sse{resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next message: its event name ("" for plain data), id
// and data.
func (s *sse) next() (name, id, data string, err error) {
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return "", "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if data != "" {
				return name, id, data, nil
			}
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

// drain reads events until the stream's end and returns them.
func (s *sse) drain(t *testing.T) []runs.Event {
	t.Helper()
	var out []runs.Event
	for {
		name, _, data, err := s.next()
		if err != nil {
			t.Fatalf("stream ended without an end event: %v", err)
		}
		if name == "end" {
			if data != "{}" {
				t.Fatalf("end event: %s", data)
			}
			return out
		}
		var ev runs.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func TestPipelines(t *testing.T) {
	tb := newTestBoard(t, false)
	// Hidden directories and directory symlinks are not searched.
	os.MkdirAll(filepath.Join(tb.dir, ".hidden"), 0o755)
	os.WriteFile(filepath.Join(tb.dir, ".hidden", "pipeline.hcl"), nil, 0o644)
	os.Symlink(filepath.Join(tb.dir, "words"), filepath.Join(tb.dir, "link"))
	var list []pipelineSummary
	tb.getJSON("/api/pipelines", &list)
	var ids []string
	for _, p := range list {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "tiny,words" {
		t.Fatalf("pipelines %v, want tiny,words", ids)
	}
	if !strings.HasPrefix(list[1].Description, "Counts words") {
		t.Errorf("description %q", list[1].Description)
	}

	var info pipelineInfo
	tb.getJSON("/api/pipeline?p=words", &info)
	want := map[string]variableInfo{
		"title": {Name: "title", Type: "string", Description: "The report's first line.", Required: true, Input: "text"},
		"top":   {Name: "top", Type: "number", Default: "3", Input: "number", Validations: 1},
		"tags":  {Name: "tags", Type: "list(string)", Default: `["a","b"]`, Input: "expr"},
	}
	if len(info.Variables) != len(want) {
		t.Fatalf("variables %+v", info.Variables)
	}
	for _, v := range info.Variables {
		if v != want[v.Name] {
			t.Errorf("variable %s = %+v, want %+v", v.Name, v, want[v.Name])
		}
	}
	if strings.Join(info.Files, ",") != "pipeline.hcl" || info.Errors != "" {
		t.Errorf("files %v, errors %q", info.Files, info.Errors)
	}

	for _, p := range []string{"..", "../words", "/", "nope", "link", ".hidden", ""} {
		resp, _ := tb.do("GET", "/api/pipeline?p="+url.QueryEscape(p), nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("pipeline %q: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestPlan(t *testing.T) {
	tb := newTestBoard(t, false)
	wordsDir := filepath.Join(tb.dir, "words")
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		ok      bool
		varErr  map[string]string // variable -> substring of its error
		errors  string            // substring of the other errors
		command string
		actions string
	}{
		{name: "required", vars: nil, varErr: map[string]string{"title": "No value for required variable"},
			command: "lathe run " + wordsDir},
		{name: "rule", vars: map[string]string{"title": "T", "top": "0"}, varErr: map[string]string{"top": "top must be between 1 and 100"},
			command: "lathe run -var title=T -var top=0 " + wordsDir},
		{name: "type", vars: map[string]string{"title": "T", "top": "many"}, varErr: map[string]string{"top": "does not match its type number"}},
		{name: "expression", vars: map[string]string{"title": "T", "tags": "[1,"}, varErr: map[string]string{"tags": ""}},
		{name: "undeclared", vars: map[string]string{"title": "T", "topp": "1"}, errors: "declares no variable"},
		{name: "good", vars: map[string]string{"title": "My report", "top": "5"}, ok: true,
			command: "lathe run -var 'title=My report' -var top=5 " + wordsDir, actions: "exec.count=run,exec.report=pending"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := tb.plan("words", tc.vars)
			if pr.OK != tc.ok {
				t.Fatalf("ok = %v, want %v: %+v", pr.OK, tc.ok, pr)
			}
			for name, sub := range tc.varErr {
				msgs := strings.Join(pr.VarErrors[name], "\n")
				if msgs == "" || !strings.Contains(msgs, sub) {
					t.Errorf("errors of %s = %q, want %q", name, msgs, sub)
				}
			}
			if len(pr.VarErrors) != len(tc.varErr) {
				t.Errorf("variable errors %v, want only %v", pr.VarErrors, tc.varErr)
			}
			if !strings.Contains(pr.Errors, tc.errors) || (tc.errors == "") != (pr.Errors == "") {
				t.Errorf("errors %q, want %q", pr.Errors, tc.errors)
			}
			if tc.command != "" && pr.Command != tc.command {
				t.Errorf("command %q, want %q", pr.Command, tc.command)
			}
			var actions []string
			for _, s := range pr.Steps {
				actions = append(actions, s.Addr+"="+string(s.Action))
			}
			if got := strings.Join(actions, ","); got != tc.actions {
				t.Errorf("steps %s, want %s", got, tc.actions)
			}
		})
	}

	// The stage details: arguments with upstream values marked, the key text.
	pr := tb.plan("words", map[string]string{"title": "x"})
	st := pr.Steps[0]
	if !strings.Contains(st.Explain, "arg command = ") || !strings.Contains(st.Explain, "Key ") {
		t.Errorf("explain %q", st.Explain)
	}
	if args, _ := pr.Steps[1].Args.(map[string]any); args == nil || args["inputs"].(map[string]any)["counts"] != unknownArg {
		t.Errorf("args of exec.report = %v", pr.Steps[1].Args)
	}

	for _, body := range []string{`{"p":"words","vars":{"a=b":"c"}}`, `{"p":"words","bogus":1}`, `not json`} {
		req, _ := http.NewRequest("POST", tb.srv.URL+"/api/plan", strings.NewReader(body))
		req.Header.Set(TokenHeader, tb.b.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plan %s: status %d, want 400", body, resp.StatusCode)
		}
	}
}

func TestStateChangingRequestsNeedTokenAndSameOrigin(t *testing.T) {
	tb := newTestBoard(t, false)
	good := launchRequest{Pipeline: "words", Vars: map[string]string{"title": "x"}}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no token", map[string]string{TokenHeader: ""}},
		{"wrong token", map[string]string{TokenHeader: "0123"}},
		{"other origin", map[string]string{"Origin": "http://evil.example"}},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site fetch", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://sub.localhost"}},
		{"rebound host", map[string]string{"Host": "evil.example"}},
	} {
		for _, path := range []string{"/api/runs", "/api/plan", "/api/runs/cancel"} {
			resp, b := tb.do("POST", path, good, tc.hdr)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: status %d, want 403: %s", tc.name, path, resp.StatusCode, b)
			}
		}
	}
	// Reads from a rebound host name are refused too.
	if resp, _ := tb.do("GET", "/api/pipelines", nil, map[string]string{"Host": "evil.example:80"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET with a foreign Host: %d, want 403", resp.StatusCode)
	}
	var list []runInfo
	tb.getJSON("/api/runs?p=words", &list)
	if len(list) != 0 {
		t.Fatalf("a refused request started a run: %+v", list)
	}
	// The page embeds the token, and the same request with it is accepted.
	resp, page := tb.do("GET", "/", nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`content="`+tb.b.Token()+`"`)) {
		t.Fatalf("index: %d, token not embedded", resp.StatusCode)
	}
	if resp, b := tb.do("POST", "/api/plan", good, map[string]string{"Sec-Fetch-Site": "same-origin"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("same-origin plan: %d %s", resp.StatusCode, b)
	}
}

func TestRemoteNeedsTokenForReads(t *testing.T) {
	tb := newTestBoard(t, true)
	for _, path := range []string{"/", "/api/pipelines", "/assets/board.js", "/?token=wrong"} {
		if resp, _ := tb.do("GET", path, nil, map[string]string{"Host": "box.example:7860"}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s without the token: %d, want 403", path, resp.StatusCode)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(tb.srv.URL + "/?token=" + tb.b.Token())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly {
		t.Fatalf("token URL: %d, cookies %v", resp.StatusCode, cookies)
	}
	req, _ := http.NewRequest("GET", tb.srv.URL+"/api/pipelines", nil)
	req.AddCookie(cookies[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	// The cookie alone does not make a POST: the header is needed too.
	req, _ = http.NewRequest("POST", tb.srv.URL+"/api/plan", strings.NewReader(`{"p":"words"}`))
	req.AddCookie(cookies[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST with the cookie only: %d, want 403", resp.StatusCode)
	}
}

func TestPathsStayInside(t *testing.T) {
	tb := newTestBoard(t, false)
	words := filepath.Join(tb.dir, "words")
	os.WriteFile(filepath.Join(tb.dir, "secret.txt"), []byte("secret"), 0o644)
	os.Symlink("../secret.txt", filepath.Join(words, "out-link"))
	os.Symlink("words.txt", filepath.Join(words, "in-link"))
	os.Symlink(tb.dir, filepath.Join(words, "dir-link"))
	for _, tc := range []struct {
		path string
		code int
	}{
		{"pipeline.hcl", 200},
		{"in-link", 200},
		{"", 200},
		{"../secret.txt", 403},
		{"../tiny/pipeline.hcl", 403},
		{"a/../../secret.txt", 403},
		{"sub/../pipeline.hcl", 403},
		{"./pipeline.hcl", 200},
		{"..", 403},
		{"/etc/passwd", 403},
		{filepath.Join(tb.dir, "secret.txt"), 403},
		{"out-link", 403},
		{"dir-link/secret.txt", 403},
		{`..\secret.txt`, 403},
		{"nothing-here", 404},
	} {
		resp, b := tb.do("GET", "/api/source?"+url.Values{"p": {"words"}, "path": {tc.path}}.Encode(), nil, nil)
		if resp.StatusCode != tc.code {
			t.Errorf("source %q: %d, want %d: %s", tc.path, resp.StatusCode, tc.code, b)
		}
		if bytes.Contains(b, []byte("secret")) && !bytes.Contains(b, []byte("error")) {
			t.Errorf("source %q leaked the secret", tc.path)
		}
	}
	resp, b := tb.do("GET", "/api/source?p=words&path=pipeline.hcl", nil, nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || !bytes.HasPrefix(b, []byte("# Counts words")) {
		t.Errorf("pipeline.hcl: %s %q", ct, b)
	}
}

// waitRun follows a run to its end and returns its events.
func (tb *testBoard) waitRun(p, run string) []runs.Event {
	tb.t.Helper()
	return tb.openEvents(p, run, "").drain(tb.t)
}

func TestRunRecordsAndArtifacts(t *testing.T) {
	tb := newTestBoard(t, false)
	run := tb.start("words", map[string]string{"title": "Top words", "top": "2"})
	evs := tb.waitRun("words", run)
	var types []string
	keys := map[string]string{}
	for _, ev := range evs {
		types = append(types, ev.Type)
		if ev.Type == "stage-finished" {
			keys[ev.Stage] = ev.Key
		}
	}
	if types[0] != "run-started" || types[len(types)-1] != "run-finished" || evs[len(evs)-1].Status != "succeeded" || len(keys) != 2 {
		t.Fatalf("events %v", types)
	}

	var list []runInfo
	tb.getJSON("/api/runs?p=words", &list)
	if len(list) != 1 || list[0].ID != run || list[0].Status != "succeeded" || list[0].Stages.Ran != 2 || list[0].Active {
		t.Fatalf("runs %+v", list)
	}
	want := []string{"lathe", "run", "-var", "title=Top words", "-var", "top=2", filepath.Join(tb.dir, "words")}
	if strings.Join(list[0].Args, "|") != strings.Join(want, "|") {
		t.Errorf("recorded command %q, want %q", list[0].Args, want)
	}
	var detail runDetail
	tb.getJSON("/api/run?p=words&run="+run, &detail)
	if !bytes.Contains(detail.Plan, []byte(`"exec.report"`)) {
		t.Errorf("run plan %s", detail.Plan)
	}
	// A run of one pipeline is not found under another.
	if resp, _ := tb.do("GET", "/api/run?p=tiny&run="+run, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("run under the wrong pipeline: %d", resp.StatusCode)
	}
	for _, id := range []string{"../x", ".", run[:8]} {
		if resp, _ := tb.do("GET", "/api/events?p=words&run="+url.QueryEscape(id), nil, nil); resp.StatusCode/100 != 4 {
			t.Errorf("events of run %q: %d", id, resp.StatusCode)
		}
	}

	// The second plan is all cache hits.
	pr := tb.plan("words", map[string]string{"title": "Top words", "top": "2"})
	for _, s := range pr.Steps {
		if s.Action != "cached" || s.KeySum != keys[s.Addr] {
			t.Errorf("%s: %s key %s, want cached %s", s.Addr, s.Action, s.KeySum, keys[s.Addr])
		}
	}

	var rec struct {
		Address   string
		Artifacts map[string]struct{ Digest string }
	}
	tb.getJSON("/api/record?p=words&key="+keys["exec.report"], &rec)
	digest := rec.Artifacts["report"].Digest
	if rec.Address != "exec.report" || digest == "" {
		t.Fatalf("record %+v", rec)
	}
	var listing struct{ Entries []entry }
	tb.getJSON("/api/artifact?"+url.Values{"p": {"words"}, "digest": {digest}}.Encode(), &listing)
	if len(listing.Entries) != 1 || listing.Entries[0].Name != "report.txt" {
		t.Fatalf("artifact listing %+v", listing)
	}
	resp, b := tb.do("GET", "/api/artifact?"+url.Values{"p": {"words"}, "digest": {digest}, "path": {"report.txt"}, "download": {"1"}}.Encode(), nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "Top words\n") || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %d %q %s", resp.StatusCode, b, resp.Header.Get("Content-Disposition"))
	}
	for _, tc := range []struct {
		q    url.Values
		code int
	}{
		{url.Values{"digest": {"sha256:../../x"}}, 400},
		{url.Values{"digest": {"../" + digest}}, 400},
		{url.Values{"digest": {digest}, "path": {"../../records"}}, 403},
		{url.Values{"digest": {digest}, "path": {"/etc/passwd"}}, 403},
		{url.Values{"digest": {"sha256:" + strings.Repeat("0", 64)}}, 404},
		{url.Values{"key": {"../../etc"}}, 400},
	} {
		tc.q.Set("p", "words")
		path := "/api/artifact?"
		if tc.q.Has("key") {
			path = "/api/record?"
		}
		if resp, b := tb.do("GET", path+tc.q.Encode(), nil, nil); resp.StatusCode != tc.code {
			t.Errorf("%s%s: %d, want %d: %s", path, tc.q.Encode(), resp.StatusCode, tc.code, b)
		}
	}
	// A record that is not a tokenize stage's has no preview.
	if resp, _ := tb.do("GET", "/api/preview?p=words&key="+keys["exec.report"], nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("preview of an exec stage: %d", resp.StatusCode)
	}
}

func TestEventsStreamAppendedEvents(t *testing.T) {
	tb := newTestBoard(t, false)
	dir := filepath.Join(tb.dir, "words")
	rec, err := runs.Create(filepath.Join(dir, ".lathe"), runs.Meta{Pipeline: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	appendEv := func(ev runs.Event) {
		if err := rec.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	appendEv(runs.Event{Type: "run-started"})
	s := tb.openEvents("words", rec.ID(), "")
	expect := func(wantID, wantType string) runs.Event {
		t.Helper()
		type msg struct {
			name, id, data string
			err            error
		}
		got := make(chan msg, 1)
		go func() {
			n, id, d, err := s.next()
			got <- msg{n, id, d, err}
		}()
		var m msg
		select {
		case m = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event streamed", wantType)
		}
		if m.err != nil {
			t.Fatal(m.err)
		}
		var ev runs.Event
		if err := json.Unmarshal([]byte(m.data), &ev); err != nil {
			t.Fatal(err)
		}
		if m.id != wantID || ev.Type != wantType {
			t.Fatalf("event %s %s, want %s %s", m.id, ev.Type, wantID, wantType)
		}
		return ev
	}
	expect("1", "run-started")
	// Appended while the stream is open: delivered as it is written.
	appendEv(runs.Event{Type: "metrics", Stage: "pretrain.x", Step: 3, Metrics: map[string]float64{"loss": 2.5}})
	if ev := expect("2", "metrics"); ev.Metrics["loss"] != 2.5 {
		t.Fatalf("metrics %v", ev.Metrics)
	}
	appendEv(runs.Event{Type: "run-finished", Status: "succeeded"})
	expect("3", "run-finished")
	if name, _, _, err := s.next(); err != nil || name != "end" {
		t.Fatalf("after run-finished: %q %v", name, err)
	}
	// A reconnecting client resumes after the last id it saw.
	evs := tb.openEvents("words", rec.ID(), "2").drain(t)
	if len(evs) != 1 || evs[0].Type != "run-finished" {
		t.Fatalf("resumed stream %+v", evs)
	}
	var m struct {
		Stages map[string]map[string][][2]float64
	}
	tb.getJSON("/api/metrics?p=words&run="+rec.ID(), &m)
	if pts := m.Stages["pretrain.x"]["loss"]; len(pts) != 1 || pts[0] != [2]float64{3, 2.5} {
		t.Fatalf("metrics %v", m.Stages)
	}
}

func TestCancel(t *testing.T) {
	tb := newTestBoard(t, false)
	// A run nobody started here cannot be cancelled here.
	if resp, _ := tb.do("POST", "/api/runs/cancel", cancelRequest{Pipeline: "tiny", Run: "x"}, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("cancel of an unknown run: %d", resp.StatusCode)
	}
	run := tb.start("tiny", map[string]string{"steps": "1000000"})
	s := tb.openEvents("tiny", run, "")
	// Cancel once training reports progress.
	for {
		_, _, data, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(data, `"type":"metrics"`) {
			break
		}
	}
	var list []runInfo
	tb.getJSON("/api/runs?p=tiny", &list)
	if len(list) != 1 || !list[0].Active || list[0].Status != "running" {
		t.Fatalf("runs while running %+v", list)
	}
	if resp, _ := tb.do("POST", "/api/runs/cancel", cancelRequest{Pipeline: "words", Run: run}, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("cancel under the wrong pipeline: %d", resp.StatusCode)
	}
	resp, b := tb.do("POST", "/api/runs/cancel", cancelRequest{Pipeline: "tiny", Run: run}, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"stopped":true`)) {
		t.Fatalf("cancel: %d %s", resp.StatusCode, b)
	}
	evs := s.drain(t)
	last := evs[len(evs)-1]
	if last.Type != "run-finished" || last.Status != "canceled" {
		t.Fatalf("last event %+v", last)
	}
	tb.getJSON("/api/runs?p=tiny", &list)
	if list[0].Status != "canceled" || list[0].Active {
		t.Fatalf("runs after cancel %+v", list)
	}

	// The tokenize stage committed before the cancel: its dataset preview.
	pr := tb.plan("tiny", map[string]string{"steps": "1000000"})
	var key string
	for _, st := range pr.Steps {
		if st.Addr == "tokenize.corpus" && st.Action == "cached" {
			key = st.KeySum
		}
	}
	if key == "" {
		t.Fatalf("tokenize.corpus not cached after the run: %+v", pr.Steps)
	}
	var prev struct {
		Manifest data.Manifest
		Samples  []previewSample
	}
	tb.getJSON("/api/preview?p=tiny&n=3&key="+key, &prev)
	if len(prev.Samples) != 3 || prev.Manifest.CutoffLen != 32 || !prev.Manifest.Packing {
		t.Fatalf("preview %+v", prev)
	}
	for _, smp := range prev.Samples {
		var text strings.Builder
		trained := false
		for _, sp := range smp.Spans {
			text.WriteString(sp.Text)
			trained = trained || sp.Trained
		}
		if smp.Tokens == 0 || text.Len() == 0 || !trained {
			t.Errorf("sample %+v", smp)
		}
	}
}

func TestSpans(t *testing.T) {
	corpus := []string{"the user asks a question", "the assistant answers it", "questions and answers"}
	tok, err := tokenizer.Train(func(yield func(string) bool) {
		for _, c := range corpus {
			if !yield(c) {
				return
			}
		}
	}, 300, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(s string) []uint32 {
		var out []uint32
		for _, id := range tok.Encode(s, false) {
			out = append(out, uint32(id))
		}
		return out
	}
	prompt, answer := enc("the user asks"), enc(" the assistant answers")
	for _, tc := range []struct {
		name string
		mask func(i int) bool
		want []data.Span
	}{
		{"answer trained", func(i int) bool { return i >= len(prompt) },
			[]data.Span{{Text: "the user asks", Trained: false}, {Text: " the assistant answers", Trained: true}}},
		{"all trained", func(int) bool { return true },
			[]data.Span{{Text: "the user asks the assistant answers", Trained: true}}},
		{"none trained", func(int) bool { return false },
			[]data.Span{{Text: "the user asks the assistant answers", Trained: false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := data.Sample{Tokens: append(append([]uint32{}, prompt...), answer...)}
			for i := range s.Tokens {
				s.Mask = append(s.Mask, tc.mask(i))
			}
			got := data.Spans(s, func(ids []int) string { return tok.Decode(ids, false) })
			if len(got) != len(tc.want) {
				t.Fatalf("spans %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("span %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"top=5", "top=5"},
		{"title=My report", "'title=My report'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
		{"$HOME", "'$HOME'"},
	} {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:7860", true}, {"localhost:80", true}, {"LOCALHOST", true}, {"[::1]:7860", true},
		{"127.1.2.3", true}, {"evil.example:7860", false}, {"10.0.0.1:7860", false}, {"localhost.evil.example", false}, {"", false},
	} {
		if got := loopbackHost(tc.host); got != tc.want {
			t.Errorf("loopbackHost(%q) = %v", tc.host, got)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.hcl"), []byte("# First line.\n#\n// Second paragraph.\n\nvariable \"x\" {}\n# not this\n"), 0o644)
	if got := headComment(filepath.Join(dir, "p.hcl")); got != "First line.\n\nSecond paragraph." {
		t.Errorf("headComment = %q", got)
	}
}

// TestScriptsParse checks the page's scripts with node --check when node
// is installed (the Chromium test runs them for real).
func TestScriptsParse(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	for _, name := range []string{"board.js", "draw.js"} {
		if out, err := exec.Command(node, "--check", filepath.Join("assets", name)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}
