package board

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// pipelineFile is the file that makes a directory a pipeline for the board.
const pipelineFile = "pipeline.hcl"

// pipelineRef is one pipeline the board found.
type pipelineRef struct {
	ID   string // "." for Dir itself, else the subdirectory's name
	Dir  string // absolute
	Path string // how commands name it: Dir as given, joined with ID
}

// pipelines lists the pipelines under the board's directory, Dir's own
// first, then its subdirectories by name. Hidden directories and symbolic
// links to directories are not searched.
func (s *Server) pipelines() ([]pipelineRef, error) {
	var out []pipelineRef
	add := func(id string) {
		dir := filepath.Join(s.root, id)
		if fi, err := os.Stat(filepath.Join(dir, pipelineFile)); err == nil && fi.Mode().IsRegular() {
			out = append(out, pipelineRef{ID: id, Dir: dir, Path: filepath.Join(s.opt.Dir, id)})
		}
	}
	add(".")
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			add(e.Name())
		}
	}
	return out, nil
}

// lookup finds the pipeline with the given id (a request's "p"), answering
// 404 itself when there is none: ids are matched against the pipelines
// found, never joined into a path.
func (s *Server) lookup(w http.ResponseWriter, id string) (pipelineRef, bool) {
	list, err := s.pipelines()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: list pipelines: %v", err)
		return pipelineRef{}, false
	}
	for _, p := range list {
		if p.ID == id {
			return p, true
		}
	}
	httpError(w, http.StatusNotFound, "board: no pipeline %q", id)
	return pipelineRef{}, false
}

// storeRoot is where a pipeline's store is (it may not exist yet).
func (s *Server) storeRoot(p pipelineRef) string {
	dir := s.opt.CacheDir
	if dir == "" {
		dir = pipeline.DefaultCacheDir(p.Dir)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// pipelineSummary is one entry of the pipelines page.
type pipelineSummary struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Path        string `json:"path"`
	Description string `json:"description"`
}

func (s *Server) handlePipelines(w http.ResponseWriter, r *http.Request) {
	list, err := s.pipelines()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: list pipelines: %v", err)
		return
	}
	out := []pipelineSummary{}
	for _, p := range list {
		out = append(out, pipelineSummary{ID: p.ID, Name: filepath.Base(p.Dir), Path: p.Path, Description: headComment(filepath.Join(p.Dir, pipelineFile))})
	}
	writeJSON(w, http.StatusOK, out)
}

// headComment returns the comment block at the top of a pipeline file,
// without its markers.
func headComment(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		text, ok := strings.CutPrefix(line, "#")
		if !ok {
			text, ok = strings.CutPrefix(line, "//")
		}
		if !ok {
			break
		}
		lines = append(lines, strings.TrimPrefix(text, " "))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// variableInfo describes one variable block for the launch form.
type variableInfo struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	// Default is the default as a -var value would be written; Required
	// says there is none.
	Default  string `json:"default"`
	Required bool   `json:"required"`
	// Input is the form control: "text", "number", "bool" or "expr" (an HCL
	// expression, for collections and objects).
	Input       string `json:"input"`
	Validations int    `json:"validations"`
}

// pipelineInfo is what the pipeline page starts from.
type pipelineInfo struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Path        string         `json:"path"`
	Description string         `json:"description"`
	Files       []string       `json:"files"`
	Variables   []variableInfo `json:"variables"`
	Errors      string         `json:"errors,omitempty"`
}

func (s *Server) handlePipeline(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.lookup(w, r.URL.Query().Get("p"))
	if !ok {
		return
	}
	info := pipelineInfo{ID: ref.ID, Name: filepath.Base(ref.Dir), Path: ref.Path,
		Description: headComment(filepath.Join(ref.Dir, pipelineFile)), Files: []string{}, Variables: []variableInfo{}}
	p, diags := config.Load(ref.Dir)
	if p != nil {
		for name := range p.Files {
			if rel, err := filepath.Rel(ref.Dir, name); err == nil && filepath.IsLocal(rel) {
				info.Files = append(info.Files, filepath.ToSlash(rel))
			}
		}
		sort.Strings(info.Files)
		for _, v := range p.Variables {
			info.Variables = append(info.Variables, describeVariable(v))
		}
		sort.Slice(info.Variables, func(i, j int) bool { return info.Variables[i].Name < info.Variables[j].Name })
	}
	if diags.HasErrors() {
		info.Errors = renderDiags(p, diags)
	}
	writeJSON(w, http.StatusOK, info)
}

func describeVariable(v *config.Variable) variableInfo {
	vi := variableInfo{Name: v.Name, Description: v.Description, Type: v.TypeText, Input: "text", Validations: len(v.Validations)}
	if vi.Type == "" {
		vi.Type = typeexpr.TypeString(v.Type)
	}
	switch {
	case v.Type == cty.Bool:
		vi.Input = "bool"
	case v.Type == cty.Number:
		vi.Input = "number"
	case v.TypeGiven && !v.Type.IsPrimitiveType():
		vi.Input = "expr"
	}
	if v.Default == cty.NilVal {
		vi.Required = true
		return vi
	}
	vi.Default = rawValue(v.Default)
	return vi
}

// rawValue writes a value as a -var option would give it: primitives as
// their text, anything else as an HCL (JSON-syntax) expression.
func rawValue(v cty.Value) string {
	switch {
	case v.IsNull():
		return ""
	case !v.IsWhollyKnown():
		return ""
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('g', -1)
	case v.Type() == cty.Bool:
		if v.True() {
			return "true"
		}
		return "false"
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return ""
	}
	return string(b)
}

// launchRequest is the body of plan and start requests.
type launchRequest struct {
	Pipeline string `json:"p"`
	// Vars maps variable names to -var values; variables left at their
	// default are absent.
	Vars map[string]string `json:"vars"`
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// varArgs turns the request's variables into -var arguments, sorted by
// name.
func (lr *launchRequest) varArgs() ([]string, error) {
	names := make([]string, 0, len(lr.Vars))
	for n := range lr.Vars {
		if !identRE.MatchString(n) {
			return nil, errors.New("board: bad variable name " + strconv.Quote(n))
		}
		names = append(names, n)
	}
	sort.Strings(names)
	args := make([]string, len(names))
	for i, n := range names {
		args[i] = n + "=" + lr.Vars[n]
	}
	return args, nil
}

// command is the `lathe run` command line that does what the board would.
func command(p pipelineRef, vars []string) []string {
	cmd := []string{"lathe", "run"}
	for _, v := range vars {
		cmd = append(cmd, "-var", v)
	}
	if p.Path != "." {
		cmd = append(cmd, p.Path)
	}
	return cmd
}

// shellJoin quotes a command line for a POSIX shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// load loads a pipeline with the given -var arguments and, when it loads
// without errors and withStore is set, opens its store.
func (s *Server) load(p pipelineRef, vars []string, withStore bool) (*pipeline.Workspace, hcl.Diagnostics, error) {
	ws, diags := pipeline.Load(p.Dir, s.opt.Registry, config.Inputs{Vars: vars, Env: s.opt.Env})
	if ws != nil {
		ws.GPUs = s.opt.GPUs
	}
	if diags.HasErrors() || !withStore {
		return ws, diags, nil
	}
	if err := ws.OpenStore(s.opt.CacheDir); err != nil {
		return ws, diags, err
	}
	return ws, diags, nil
}

// planResponse answers plan and, when the variables are wrong, start.
type planResponse struct {
	OK bool `json:"ok"`
	// VarErrors are the errors that belong to one variable, shown beside
	// its field; Errors is every other error, rendered with source.
	VarErrors map[string][]string `json:"var_errors,omitempty"`
	Errors    string              `json:"errors,omitempty"`
	Command   string              `json:"command"`
	Steps     []stepInfo          `json:"steps,omitempty"`
	Counts    map[string]int      `json:"counts,omitempty"`
}

// stepInfo is a plan step with what the stage panel shows.
type stepInfo struct {
	*pipeline.Step
	// Explain is the key text behind the decision (a diff against the last
	// result when the stage changed).
	Explain string `json:"explain,omitempty"`
	// Args are the stage's arguments as far as they are known before any
	// upstream stage runs.
	Args any `json:"args,omitempty"`
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) {
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
	resp := &planResponse{Command: shellJoin(command(ref, vars))}
	ws, diags, err := s.load(ref, vars, true)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "board: open store: %v", err)
		return
	}
	if diags.HasErrors() {
		resp.fail(ws, diags)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	plan, err := ws.Plan(r.Context(), pipeline.Selection{})
	if err != nil {
		resp.failErr(ws, err)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	resp.OK = true
	resp.Counts = map[string]int{}
	for a, n := range plan.Counts() {
		resp.Counts[string(a)] = n
	}
	for _, st := range plan.Steps {
		si := stepInfo{Step: st}
		if text, err := ws.Explain(plan, st.Addr); err == nil {
			si.Explain = text
		}
		if inst := ws.Resolved.Instance(st.Addr); inst != nil {
			si.Args = argsValue(inst.StaticArgs)
		}
		resp.Steps = append(resp.Steps, si)
	}
	writeJSON(w, http.StatusOK, resp)
}

// fail fills the response's errors from diagnostics.
func (resp *planResponse) fail(ws *pipeline.Workspace, diags hcl.Diagnostics) {
	resp.OK = false
	var rest hcl.Diagnostics
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if name := variableOf(d); name != "" {
			if resp.VarErrors == nil {
				resp.VarErrors = map[string][]string{}
			}
			// The first paragraph: the rest names the CLI's sources and
			// the rule's position, which the form makes plain.
			msg := d.Summary
			if first, _, _ := strings.Cut(d.Detail, "\n\n"); first != "" {
				msg += ": " + first
			}
			resp.VarErrors[name] = append(resp.VarErrors[name], msg)
			continue
		}
		rest = append(rest, d)
	}
	if len(rest) > 0 {
		var p *config.Pipeline
		if ws != nil {
			p = ws.Pipeline
		}
		resp.Errors = renderDiags(p, rest)
	}
}

// failErr reports an error from planning.
func (resp *planResponse) failErr(ws *pipeline.Workspace, err error) {
	var de *pipeline.DiagnosticsError
	if errors.As(err, &de) {
		resp.fail(ws, de.Diags)
		return
	}
	resp.OK = false
	resp.Errors = err.Error()
}

var (
	varValueFile  = regexp.MustCompile(`^<value for var\.([A-Za-z0-9_-]+)(?: from [A-Za-z0-9_]+)?>$`)
	varNameDetail = regexp.MustCompile(`variable "?([A-Za-z0-9_-]+)"?`)
)

// variableOf names the variable a diagnostic is about, or "".
func variableOf(d *hcl.Diagnostic) string {
	if v, ok := d.Extra.(config.ValidationRuleFailed); ok {
		return v.Variable
	}
	if d.Subject != nil {
		if m := varValueFile.FindStringSubmatch(d.Subject.Filename); m != nil {
			return m[1]
		}
	}
	switch d.Summary {
	case "No value for required variable", "Invalid value for variable":
		if m := varNameDetail.FindStringSubmatch(d.Detail); m != nil {
			return m[1]
		}
	}
	return ""
}

// renderDiags renders diagnostics with their source snippets, as the CLI
// does without colour.
func renderDiags(p *config.Pipeline, diags hcl.Diagnostics) string {
	var b bytes.Buffer
	if p != nil {
		if err := p.WriteDiagnostics(&b, diags, 100, false); err == nil {
			return b.String()
		}
		b.Reset()
	}
	for _, d := range diags {
		b.WriteString(d.Error() + "\n")
	}
	return b.String()
}

// unknownArg stands for an argument that depends on an upstream result.
const unknownArg = "(known after upstream stages run)"

// argsValue turns a stage's static arguments into JSON data: unknown
// values (upstream outputs) are marked, null optional arguments left out.
func argsValue(v cty.Value) any {
	if v == cty.NilVal {
		return nil
	}
	if _, ok := stage.ArtifactOf(v); ok {
		return pipeline.JSONValue(v)
	}
	if !v.IsKnown() {
		return unknownArg
	}
	if v.IsNull() {
		return nil
	}
	t := v.Type()
	switch {
	case t.IsObjectType() || t.IsMapType():
		m := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if e.IsKnown() && e.IsNull() {
				continue
			}
			m[k.AsString()] = argsValue(e)
		}
		return m
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		l := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			l = append(l, argsValue(e))
		}
		return l
	}
	return pipeline.JSONValue(v)
}
