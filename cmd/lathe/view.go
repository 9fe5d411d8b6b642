package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lathe-ml/lathe/pipeline/runs"
)

// runView shows a run as it happens. On a terminal it keeps one live line per
// running stage (elapsed time, progress bar, last log line) below the lines
// of stages that finished; elsewhere (CI, pipes) it prints plain prefixed
// lines, one per event worth reading.
type runView struct {
	env  *cliEnv
	live bool

	mu       sync.Mutex
	running  map[string]*stageLine
	drawn    int // live lines currently on screen
	ticker   *time.Ticker
	done     chan struct{}
	stopOnce sync.Once
}

type stageLine struct {
	addr    string
	started time.Time
	done    int64
	total   int64
	unit    string
	lastLog string
	lastPct int
}

// newRunView starts a view; ci forces plain lines (as does CI set in the
// environment, or no terminal).
func newRunView(env *cliEnv, ci bool) *runView {
	v := &runView{
		env:     env,
		live:    !ci && env.isTTY && os.Getenv("CI") == "" && os.Getenv("TERM") != "dumb",
		running: map[string]*stageLine{},
		done:    make(chan struct{}),
	}
	if v.live {
		v.ticker = time.NewTicker(150 * time.Millisecond)
		go func() {
			for {
				select {
				case <-v.ticker.C:
					v.mu.Lock()
					v.redraw()
					v.mu.Unlock()
				case <-v.done:
					return
				}
			}
		}()
	}
	return v
}

func (v *runView) stop() {
	v.stopOnce.Do(func() {
		if v.ticker != nil {
			v.ticker.Stop()
		}
		close(v.done)
		v.mu.Lock()
		v.clear()
		v.mu.Unlock()
	})
}

// observe receives every event of the run.
func (v *runView) observe(ev runs.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Type {
	case "stage-started":
		v.running[ev.Stage] = &stageLine{addr: ev.Stage, started: time.Now(), lastPct: -1}
		v.println("%s: started%s", ev.Stage, onJob(ev))
	case "stage-cached":
		v.println("%s: cached", ev.Stage)
	case "stage-finished":
		delete(v.running, ev.Stage)
		v.println("%s: done in %s%s", ev.Stage, ev.Duration.Round(time.Millisecond), onJob(ev))
	case "stage-failed":
		delete(v.running, ev.Stage)
		v.println("%s: FAILED: %s", ev.Stage, firstLine(ev.Message))
	case "stage-canceled":
		delete(v.running, ev.Stage)
		v.println("%s: canceled", ev.Stage)
	case "progress":
		if l := v.running[ev.Stage]; l != nil {
			l.done, l.total, l.unit = ev.Done, ev.Total, ev.Unit
			if !v.live && ev.Total > 0 {
				// Plain output: a line every 10%.
				pct := int(100 * ev.Done / ev.Total)
				if pct/10 != l.lastPct/10 {
					l.lastPct = pct
					v.println("%s: %d/%d %s (%d%%)", ev.Stage, ev.Done, ev.Total, ev.Unit, pct)
				}
			}
		}
	case "metrics":
		var parts []string
		for _, k := range sortedKeys(ev.Metrics) {
			parts = append(parts, fmt.Sprintf("%s=%.4g", k, ev.Metrics[k]))
		}
		if !v.live {
			v.println("%s: step %d %s", ev.Stage, ev.Step, strings.Join(parts, " "))
		} else if l := v.running[ev.Stage]; l != nil {
			l.lastLog = fmt.Sprintf("step %d %s", ev.Step, strings.Join(parts, " "))
		}
	case "log":
		if ev.Stage == "" {
			v.println("%s", ev.Message)
			return
		}
		if l := v.running[ev.Stage]; l != nil && v.live {
			l.lastLog = ev.Message
			return
		}
		v.println("%s | %s", ev.Stage, ev.Message)
	}
}

// onJob names the cluster job of a stage event, if any.
func onJob(ev runs.Event) string {
	if ev.Job == "" {
		return ""
	}
	return " (job " + ev.Job + ")"
}

// println prints a permanent line above the live area.
func (v *runView) println(format string, args ...any) {
	v.clear()
	fmt.Fprintf(v.env.stderr, format+"\n", args...)
	v.redraw()
}

func (v *runView) clear() {
	if !v.live || v.drawn == 0 {
		return
	}
	// Move up over the live lines and erase them.
	fmt.Fprintf(v.env.stderr, "\x1b[%dA\x1b[J", v.drawn)
	v.drawn = 0
}

func (v *runView) redraw() {
	if !v.live {
		return
	}
	v.clear()
	addrs := make([]string, 0, len(v.running))
	for a := range v.running {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		l := v.running[a]
		line := fmt.Sprintf("  %s %s %s", spinner(l.started), a, time.Since(l.started).Round(time.Second))
		if l.total > 0 {
			line += " " + bar(l.done, l.total, 20) + fmt.Sprintf(" %d/%d %s", l.done, l.total, l.unit)
		} else if l.done > 0 {
			line += fmt.Sprintf(" %d %s", l.done, l.unit)
		}
		if l.lastLog != "" {
			line += "  " + l.lastLog
		}
		fmt.Fprintln(v.env.stderr, truncate(line, 120))
		v.drawn++
	}
}

func spinner(since time.Time) string {
	frames := `|/-\`
	i := int(time.Since(since)/(150*time.Millisecond)) % len(frames)
	return frames[i : i+1]
}

func bar(done, total int64, width int) string {
	filled := int(int64(width) * done / total)
	filled = max(0, min(width, filled))
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "~"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
