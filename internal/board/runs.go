package board

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// activeRun is a run the board started and can cancel.
type activeRun struct {
	id       string // set once the record exists
	pipeline string // pipelineRef.ID
	cancel   context.CancelFunc
	done     chan struct{}
	finished bool // guarded by Server.mu
}

// runInfo is one line of the runs list.
type runInfo struct {
	runs.Summary
	// Duration is finished minus started, or the time so far.
	Duration float64 `json:"duration_s"`
	// Active says the board started the run and it is still going (it can
	// be cancelled here).
	Active bool `json:"active"`
}

// isActive reports whether the board started the run and it has not
// finished (its record may say so before Run has returned).
func (s *Server) isActive(sum runs.Summary) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[sum.ID] != nil && sum.Status == runs.StatusRunning
}

// maxRuns bounds the runs list: the newest ones.
const maxRuns = 200

func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return
	}
	list, err := runs.List(s.storeRoot(ref))
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	out := []runInfo{}
	for _, sum := range list {
		if sum.Pipeline != ref.Dir {
			continue
		}
		if len(out) == maxRuns {
			break
		}
		ri := runInfo{Summary: sum, Active: s.isActive(sum)}
		end := sum.Finished
		if end.IsZero() {
			end = time.Now()
		}
		ri.Duration = end.Sub(sum.Started).Seconds()
		out = append(out, ri)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	var req launchRequest
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ref, ok := s.lookup(w, req.Pipeline)
	if !ok {
		return
	}
	vars, err := req.varArgs()
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	cmd := command(ref, vars)
	resp := &planResponse{Command: shellJoin(cmd)}
	ws, diags, err := s.load(ref, vars, true)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: open store: %v", err)
		return
	}
	if diags.HasErrors() {
		resp.fail(ws, diags)
		writeJSON(w, http.StatusUnprocessableEntity, resp)
		return
	}
	id, err := s.start(ref, ws, cmd)
	if err != nil {
		resp.failErr(ws, err)
		writeJSON(w, http.StatusUnprocessableEntity, resp)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"run": id})
}

// start runs the pipeline in a goroutine and returns its run id once the
// run record exists.
func (s *Server) start(ref pipelineRef, ws *pipeline.Workspace, cmd []string) (string, error) {
	if s.ctx.Err() != nil {
		return "", errors.New("board: shutting down")
	}
	root := ws.Store.Root()
	before := dirNames(filepath.Join(root, "runs"))
	ctx, cancel := context.WithCancel(s.ctx)
	type started struct {
		id  string
		err error
	}
	found := make(chan started, 1)
	var once sync.Once
	observe := func(ev runs.Event) {
		once.Do(func() {
			id, err := findRun(root, before, ev)
			found <- started{id, err}
		})
	}
	ar := &activeRun{pipeline: ref.ID, cancel: cancel, done: make(chan struct{})}
	runErr := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ar.done)
		defer cancel()
		_, err := ws.Run(ctx, pipeline.RunOptions{Jobs: s.opt.Jobs, Observer: observe, CommandLine: cmd})
		runErr <- err
		once.Do(func() { found <- started{} })
		s.mu.Lock()
		ar.finished = true
		if ar.id != "" {
			delete(s.active, ar.id)
		}
		s.mu.Unlock()
	}()
	st := <-found
	if st.id == "" {
		if st.err == nil {
			st.err = <-runErr
		} else {
			cancel() // a run we cannot follow is not left running
		}
		if st.err == nil {
			st.err = errors.New("board: the run did not start")
		}
		return "", st.err
	}
	s.mu.Lock()
	ar.id = st.id
	if !ar.finished {
		s.active[st.id] = ar
	}
	s.mu.Unlock()
	return st.id, nil
}

// dirNames lists the names in dir (none when it does not exist).
func dirNames(dir string) map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// findRun finds the record of a run whose first event is first: among the
// run directories created since before, the one whose log starts with it.
func findRun(root string, before map[string]bool, first runs.Event) (string, error) {
	for name := range dirNames(filepath.Join(root, "runs")) {
		if before[name] {
			continue
		}
		r, err := runs.Open(root, name)
		if err != nil || r.ID() != name {
			continue
		}
		evs, err := r.Events()
		if err != nil || len(evs) == 0 {
			continue
		}
		if evs[0].Type == first.Type && evs[0].Time.Equal(first.Time) && evs[0].Message == first.Message {
			return name, nil
		}
	}
	return "", errors.New("board: cannot find the record of the run just started")
}

// cancelRequest is the body of a cancel request.
type cancelRequest struct {
	Pipeline string `json:"p"`
	Run      string `json:"run"`
}

// cancelWait bounds how long a cancel request waits for the run to stop.
const cancelWait = 30 * time.Second

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req cancelRequest
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.mu.Lock()
	ar := s.active[req.Run]
	s.mu.Unlock()
	if ar == nil || ar.pipeline != req.Pipeline {
		httpError(w, http.StatusNotFound, "board: run %q is not running in this board", req.Run)
		return
	}
	ar.cancel()
	stopped := false
	select {
	case <-ar.done:
		stopped = true
	case <-time.After(cancelWait):
	case <-r.Context().Done():
	}
	writeJSON(w, http.StatusOK, map[string]any{"run": req.Run, "stopped": stopped})
}

var runIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// openRun opens the run named by the "run" parameter, answering 404 itself
// unless it is a run of the pipeline.
func (s *Server) openRun(w http.ResponseWriter, r *http.Request) (pipelineRef, *runs.Run, bool) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return ref, nil, false
	}
	id := r.URL.Query().Get("run")
	if !runIDRE.MatchString(id) {
		httpError(w, http.StatusBadRequest, "board: bad run id %q", id)
		return ref, nil, false
	}
	run, err := runs.Open(s.storeRoot(ref), id)
	if err != nil || run.ID() != id || run.Meta().Pipeline != ref.Dir {
		httpError(w, http.StatusNotFound, "board: no run %q of pipeline %q", id, ref.ID)
		return ref, nil, false
	}
	return ref, run, true
}

// runDetail is what the run view starts from.
type runDetail struct {
	runInfo
	// Plan is the run's plan.json: the steps with their dependencies.
	Plan json.RawMessage `json:"plan,omitempty"`
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	_, run, ok := s.openRun(w, r)
	if !ok {
		return
	}
	sum, err := run.Summary()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	d := runDetail{runInfo: runInfo{Summary: sum, Active: s.isActive(sum)}}
	end := sum.Finished
	if end.IsZero() {
		end = time.Now()
	}
	d.Duration = end.Sub(sum.Started).Seconds()
	var plan json.RawMessage
	if err := run.ReadPlan(&plan); err == nil {
		d.Plan = plan
	}
	writeJSON(w, http.StatusOK, d)
}

// handleEvents streams a run's events as server-sent events: every event
// already recorded, then each new one as it is appended, until the run
// finishes (then an "end" event) or the client goes away. Each event's id
// is its 1-based position in the log, so a reconnecting EventSource
// (Last-Event-ID) resumes where it stopped.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	_, run, ok := s.openRun(w, r)
	if !ok {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "board: streaming is not supported here")
		return
	}
	skip, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	n := 0
	err := run.Follow(r.Context(), func(ev runs.Event) error {
		n++
		if n <= skip {
			return nil
		}
		clean(&ev)
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", n, b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	})
	if r.Context().Err() != nil {
		return
	}
	msg := "{}"
	if err != nil {
		b, _ := json.Marshal(apiError{Error: err.Error()})
		msg = string(b)
	}
	fmt.Fprintf(w, "event: end\ndata: %s\n\n", msg)
	flusher.Flush()
}

// clean drops metric values JSON cannot carry (NaN, ±Inf).
func clean(ev *runs.Event) {
	for k, v := range ev.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(ev.Metrics, k)
		}
	}
}

// point is one metric value: [step, value].
type point [2]float64

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	_, run, ok := s.openRun(w, r)
	if !ok {
		return
	}
	evs, err := run.Events()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: %v", err)
		return
	}
	want := r.URL.Query().Get("metric")
	stages := map[string]map[string][]point{}
	for _, ev := range evs {
		if ev.Type != "metrics" {
			continue
		}
		clean(&ev)
		for name, v := range ev.Metrics {
			if want != "" && name != want {
				continue
			}
			m := stages[ev.Stage]
			if m == nil {
				m = map[string][]point{}
				stages[ev.Stage] = m
			}
			m[name] = append(m[name], point{float64(ev.Step), v})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"run": run.ID(), "stages": stages})
}
