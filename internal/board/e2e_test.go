package board

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns a Chromium or Chrome on PATH, or "". Without one
// the test skips, unless LATHE_REQUIRE_PEERS=1 makes that a failure.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
		t.Fatal("no chromium, chromium-browser or google-chrome on PATH (LATHE_REQUIRE_PEERS=1); on Debian: apt-get install chromium")
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH; on Debian: apt-get install chromium")
	return ""
}

// TestBoardInChromium drives the board in a real headless Chromium: the
// pipelines page, the DAG, an invalid and a valid variable edit with the
// plan and command following, a run watched to the end (stages done, loss
// chart drawn), a stage's dataset preview, a second run cancelled while it
// trains, and two runs overlaid. Screenshots go to $LATHE_SCREENSHOT_DIR,
// else to a temporary directory; the test logs where.
func TestBoardInChromium(t *testing.T) {
	browser := findChromium(t)
	shots := os.Getenv("LATHE_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	tb := newTestBoard(t, false)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.WindowSize(1440, 1000), chromedp.DisableGPU)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser; no timeout on this first call
		t.Fatalf("start %s: %v", browser, err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 60*time.Second)
	defer cancel()

	// The page's console: exceptions and CSP violations fail the test.
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()

	n := 0
	shotIn := func(ctx context.Context, name string) {
		t.Helper()
		n++
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			return
		}
		if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), buf, 0o644); err != nil {
			t.Error(err)
		}
	}
	shot := func(name string) { t.Helper(); shotIn(ctx, name) }
	// failed keeps a screenshot, logs the page's text and console, and stops.
	failed := func(format string, args ...any) {
		t.Helper()
		dctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
		defer cancel()
		shotIn(dctx, "failed")
		if text, err := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 3000)`)); err == nil {
			t.Logf("page at failure: %s", text)
		}
		mu.Lock()
		t.Logf("page console: %s", strings.Join(problems, "\n"))
		mu.Unlock()
		t.Fatalf(format, args...)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			failed("%s: %v", what, err)
		}
	}
	// wait polls a JavaScript condition in the page.
	wait := func(what, cond string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+cond+")", chromedp.WithPollingTimeout(45*time.Second))); err != nil {
			failed("waiting for %s: %v", what, err)
		}
	}
	// click clicks the first element matching selector from inside the
	// page, waiting until there is one: the page re-renders live, so a node
	// looked up by the driver can be replaced before its click lands.
	click := func(what, selector string) {
		t.Helper()
		wait(what, `(() => { const e = document.querySelector(`+strconv.Quote(selector)+`); if (!e) return false; `+
			`if (e.click) { e.click() } else { e.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window})) } return true })()`)
	}
	eval := func(expr string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		if err != nil {
			failed("%s: %v", expr, err)
		}
		return v
	}
	setVar := func(name, value string) {
		t.Helper()
		eval(fmt.Sprintf(`document.getElementById('var-%s').value = ''`, name))
		do("set "+name, chromedp.SendKeys(chromedp.ID("var-"+name), value))
	}
	node := func(addr string) string {
		return fmt.Sprintf(`document.querySelector('#dag g.node[data-addr="%s"]')`, addr)
	}
	planStep := func(addr, action string) string {
		return fmt.Sprintf(`document.querySelector('#plan li[data-addr="%s"][data-action="%s"]')`, addr, action)
	}
	command := `document.getElementById('command').textContent`
	runStatus := `(document.getElementById('run-status') || {dataset: {}}).dataset.status`
	lossPoints := `+((document.querySelector('svg.chart[data-metric="loss"]') || {dataset: {}}).dataset.points || 0)`

	// The pipelines page lists both pipelines; open the tiny one.
	do("open the board", chromedp.Navigate(tb.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`a.card[data-pipeline="tiny"]`)))
	wait("both pipelines", `document.querySelectorAll('#pipelines a.card').length === 2`)
	shot("pipelines")
	click("open tiny", `a.card[data-pipeline="tiny"]`)

	// The DAG and the plan of the defaults: everything is new.
	wait("the DAG", node("exec.hello")+" && "+node("tokenize.corpus")+" && "+node("pretrain.tiny"))
	wait("the plan", planStep("exec.hello", "run")+" && "+planStep("tokenize.corpus", "run")+" && "+planStep("pretrain.tiny", "pending"))
	if got, want := eval(command), "lathe run "+filepath.Join(tb.dir, "tiny"); got != want {
		t.Errorf("command %q, want %q", got, want)
	}
	wait("the edge into pretrain", `document.querySelector('#dag path.edge[data-from="tokenize.corpus"][data-to="pretrain.tiny"]')`)

	// A value its validation rule refuses: the error shows beside the field
	// and Start is disabled.
	setVar("steps", "0")
	wait("the inline error", `!document.getElementById('err-steps').hidden && document.getElementById('err-steps').textContent.includes('steps must be at least 1') && document.getElementById('start').disabled`)
	shot("invalid-variable")

	// A good value: the plan and the preview command follow.
	setVar("steps", "12")
	wait("the new plan", command+`.includes('-var steps=12') && document.getElementById('err-steps').hidden && !document.getElementById('start').disabled && `+planStep("pretrain.tiny", "pending"))
	shot("plan")

	// Start: the page follows the run until every stage is done and the
	// loss chart has its points.
	click("start", "#start")
	wait("the run view", `location.hash.includes("/run/") && document.getElementById("run-id")`)
	firstRun := eval(`document.getElementById('run-id').textContent`).(string)
	wait("the run to succeed", runStatus+` === 'succeeded'`)
	wait("every stage done", `[...document.querySelectorAll('#dag g.node')].map(n => n.dataset.state).join() === 'done,done,done'`)
	wait("the loss chart", lossPoints+` === 12 && document.querySelector('svg.chart[data-metric="loss"] polyline.smooth').points.numberOfItems === 12`)
	wait("the other charts", `document.querySelector('svg.chart[data-metric="lr"]') && document.querySelector('svg.chart[data-metric="eval_loss"]')`)
	shot("run-succeeded")

	// The tokenize stage's panel: artifacts and the dataset preview.
	click("select tokenize.corpus", `#dag g.node[data-addr="tokenize.corpus"]`)
	wait("the stage panel", `!document.getElementById('stage').hidden && document.querySelector('#stage-artifacts li[data-artifact="dataset"]') && document.getElementById('preview-button')`)
	click("preview", "#preview-button")
	wait("the samples", `document.querySelectorAll('#preview .sample').length === 5 && document.querySelector('#preview mark.trained')`)
	wait("the log tail", `document.getElementById('stage-log').textContent.length > 0`)
	shot("stage-preview")

	// Back to the plan: a long run, cancelled while it trains.
	click("back to the plan", `#runbar a.right`)
	wait("the plan view", `document.getElementById('runbar').dataset.mode === 'plan'`)
	setVar("steps", "1000000")
	wait("the plan of the long run", command+`.includes('-var steps=1000000') && `+planStep("tokenize.corpus", "cached")+" && "+planStep("exec.hello", "cached")+" && "+planStep("pretrain.tiny", "run"))
	click("start the long run", "#start")
	wait("the second run", fmt.Sprintf(`document.getElementById('run-id') && document.getElementById('run-id').textContent !== %q`, firstRun))
	wait("training", node("pretrain.tiny")+`.dataset.state === 'running' && `+lossPoints+` > 0`)
	shot("running")
	click("cancel", "#cancel")
	wait("the run to be cancelled", runStatus+` === 'canceled' && `+node("pretrain.tiny")+`.dataset.state === 'canceled' && `+node("tokenize.corpus")+`.dataset.state === 'cached'`)
	shot("canceled")

	// Both runs in the list; their losses overlaid.
	wait("two runs listed", `document.querySelectorAll('#runs tr[data-run]').length === 2 && document.querySelector('#runs tr[data-status="canceled"]') && document.querySelector('#runs tr[data-status="succeeded"]')`)
	eval(`document.querySelectorAll('#runs input.compare').forEach(c => c.click())`)
	wait("the comparison", `document.getElementById('compare-chart').dataset.series === '2' && document.getElementById('compare-metric').value === 'loss'`)
	do("scroll", chromedp.ScrollIntoView(chromedp.ID("compare")))
	shot("compare")

	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		if strings.Contains(p, "exception") || strings.Contains(p, "Content Security Policy") {
			t.Errorf("page console: %s", p)
		} else {
			t.Logf("page console: %s", p)
		}
	}
}
