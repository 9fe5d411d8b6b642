package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// ExecutorBlock is the top-level executor "<type>" block: where the stages
// run (a Slurm cluster), not what they compute. Nothing in it enters a
// cache key.
type ExecutorBlock struct {
	// Type is the block's label ("slurm").
	Type      string
	TypeRange hcl.Range
	// Attrs are the block's arguments, evaluated by Resolve.
	Attrs     hcl.Attributes
	DeclRange hcl.Range
}

// ExecutorTypes are the executor block types lathe knows.
var ExecutorTypes = []string{"slurm"}

// ExecutorSettings is the evaluated executor block.
type ExecutorSettings struct {
	// Type is the executor: "slurm".
	Type string
	// Partition, Account and QOS are passed to sbatch as --partition,
	// --account and --qos; "" leaves the cluster's default.
	Partition, Account, QOS string
	// Time is the default time limit of a job (a stage's resources.time
	// overrides it); 0 leaves the partition's default.
	Time time.Duration
	// SbatchArgs are extra sbatch options, passed before the options lathe
	// derives from a stage's resources block (which therefore win).
	SbatchArgs []string
	// Store is the absolute directory of the store on a filesystem the
	// cluster's nodes share; "" keeps the usual store.
	Store string
	// Lathe is the lathe binary the jobs run, an absolute path on the
	// nodes or a bare name looked up in the job's PATH; "" means the
	// running executable.
	Lathe string
	// DeclRange is where the block is written, for messages.
	DeclRange hcl.Range
}

var executorSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "partition"}, {Name: "account"}, {Name: "qos"}, {Name: "time"},
		{Name: "sbatch_args"}, {Name: "store"}, {Name: "lathe"}, {Name: "restd"},
	},
}

// sbatchOwned are the sbatch options lathe sets itself for every job, so
// sbatch_args may not: long form, and the short form where there is one.
var sbatchOwned = map[string]string{
	"--dependency":          "lathe derives each job's dependencies from the pipeline's graph",
	"-d":                    "lathe derives each job's dependencies from the pipeline's graph",
	"--kill-on-invalid-dep": "lathe cancels the jobs downstream of a failed one",
	"--output":              "lathe writes each job's output beside its events in the run's directory, to stream it back",
	"-o":                    "lathe writes each job's output beside its events in the run's directory, to stream it back",
	"--error":               "lathe writes each job's output beside its events in the run's directory, to stream it back",
	"-e":                    "lathe writes each job's output beside its events in the run's directory, to stream it back",
	"--job-name":            "lathe names each job after its stage",
	"-J":                    "lathe names each job after its stage",
	"--chdir":               "jobs run in the pipeline's directory",
	"-D":                    "jobs run in the pipeline's directory",
	"--parsable":            "lathe reads the job id from sbatch's output",
	"--wrap":                "lathe writes each job's batch script",
	"--array":               "each stage instance is one job (use for_each for several instances)",
	"-a":                    "each stage instance is one job (use for_each for several instances)",
	"--wait":                "lathe follows the jobs itself",
	"-W":                    "lathe follows the jobs itself",
	"--test-only":           "lathe needs real jobs",
	"--hold":                "a held job would keep the run waiting forever",
	"-H":                    "a held job would keep the run waiting forever",
}

func decodeExecutor(block *hcl.Block) (*ExecutorBlock, hcl.Diagnostics) {
	e := &ExecutorBlock{Type: block.Labels[0], TypeRange: block.LabelRanges[0], DeclRange: block.DefRange}
	var diags hcl.Diagnostics
	known := false
	for _, t := range ExecutorTypes {
		known = known || t == e.Type
	}
	if !known {
		detail := fmt.Sprintf("lathe can hand stages to %s; %q is not one of them.", strings.Join(quoteAll(ExecutorTypes), ", "), e.Type)
		if e.Type == "local" {
			detail = "Stages run on this machine when the pipeline has no executor block (or with lathe run -executor local); a local executor needs no block."
		} else if s := suggest(e.Type, ExecutorTypes); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unknown executor type",
			Detail:   detail,
			Subject:  e.TypeRange.Ptr(),
		})
	}
	content, cdiags := block.Body.Content(executorSchema)
	diags = append(diags, cdiags...)
	if content != nil {
		e.Attrs = content.Attributes
	}
	return e, diags
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// checkExecutor evaluates and validates the executor block, setting
// r.res.Executor.
func (r *resolver) checkExecutor() {
	e := r.p.Executor
	if e == nil {
		return
	}
	set := &ExecutorSettings{Type: e.Type, DeclRange: e.DeclRange}
	bad := func(a *hcl.Attribute, summary, detail string) {
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   detail,
			Subject:  a.Expr.Range().Ptr(),
		})
	}
	str := func(name string) (*hcl.Attribute, string, bool) {
		a, ok := e.Attrs[name]
		if !ok {
			return nil, "", false
		}
		v, ok := r.executorValue(a, cty.String)
		if !ok || v.IsNull() {
			return a, "", false
		}
		return a, v.AsString(), true
	}
	// Slurm names: a partition may be a comma-separated list.
	for _, n := range []struct {
		name   string
		dst    *string
		commas bool
	}{{"partition", &set.Partition, true}, {"account", &set.Account, false}, {"qos", &set.QOS, false}} {
		a, s, ok := str(n.name)
		if !ok {
			continue
		}
		switch {
		case s == "":
			bad(a, "Invalid executor setting", fmt.Sprintf("The %s must not be empty: leave it out to use the cluster's default.", n.name))
		case strings.HasPrefix(s, "-") || strings.ContainsAny(s, " \t\n\"'") || (!n.commas && strings.Contains(s, ",")):
			rule := "a name has no spaces, commas, quotes or leading dash"
			if n.commas {
				rule = "a name has no spaces, quotes or leading dash (several partitions are separated by commas)"
			}
			bad(a, "Invalid executor setting", fmt.Sprintf("%q is not a Slurm %s name: %s.", s, n.name, rule))
		default:
			*n.dst = s
		}
	}
	if a, s, ok := str("time"); ok {
		if d, err := time.ParseDuration(s); err != nil || d < time.Minute {
			bad(a, "Invalid executor setting", fmt.Sprintf("The time limit must be a duration of at least one minute such as \"45m\" or \"2h30m\", not %q.", s))
		} else {
			set.Time = d
		}
	}
	if a, ok := e.Attrs["sbatch_args"]; ok {
		if v, ok := r.executorValue(a, cty.List(cty.String)); ok && !v.IsNull() {
			elems := v.AsValueSlice()
			// Point at the element when the list is written out.
			at := func(i int) *hcl.Attribute { return a }
			if tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && len(tuple.Exprs) == len(elems) {
				at = func(i int) *hcl.Attribute {
					return &hcl.Attribute{Name: a.Name, Expr: tuple.Exprs[i], Range: a.Range, NameRange: a.NameRange}
				}
			}
			for i, el := range elems {
				if el.IsNull() {
					bad(at(i), "Invalid executor setting", fmt.Sprintf("sbatch_args[%d] is null.", i))
					continue
				}
				arg := el.AsString()
				opt, _, _ := strings.Cut(arg, "=")
				if !strings.HasPrefix(arg, "--") && len(arg) > 2 {
					opt = arg[:2] // a short option with its value attached: -ofile
				}
				switch {
				case !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--":
					bad(at(i), "Invalid executor setting", fmt.Sprintf("sbatch_args[%d] is %q, which is not an option: write each option as one element with its value after \"=\", as in \"--constraint=a100\".", i, arg))
				case sbatchOwned[opt] != "":
					bad(at(i), "Invalid executor setting", fmt.Sprintf("sbatch_args[%d] sets %s, which lathe sets itself: %s.", i, opt, sbatchOwned[opt]))
				default:
					set.SbatchArgs = append(set.SbatchArgs, arg)
				}
			}
		}
	}
	if a, s, ok := str("store"); ok {
		switch {
		case s == "":
			bad(a, "Invalid executor setting", "The store must not be empty: leave it out to keep the usual store (.lathe beside the pipeline).")
		case strings.HasPrefix(s, "~"):
			bad(a, "Invalid executor setting", fmt.Sprintf("The store %q starts with ~, which lathe does not expand: write the absolute directory.", s))
		case filepath.IsAbs(s):
			set.Store = filepath.Clean(s)
		default:
			set.Store = filepath.Join(r.p.Dir, s)
		}
	}
	if a, s, ok := str("lathe"); ok {
		switch {
		case s == "":
			bad(a, "Invalid executor setting", "The lathe binary must not be empty: leave it out to run the binary that submits the jobs.")
		case strings.Contains(s, "/") && !filepath.IsAbs(s):
			bad(a, "Invalid executor setting", fmt.Sprintf("The lathe binary %q is a relative path: write its absolute path on the nodes, or a bare name to look it up in the job's PATH.", s))
		case strings.ContainsAny(s, "\n\x00"):
			bad(a, "Invalid executor setting", fmt.Sprintf("The lathe binary %q is not a usable path.", s))
		default:
			set.Lathe = s
		}
	}
	if a, ok := e.Attrs["restd"]; ok {
		if _, ok := r.executorValue(a, cty.String); ok {
			bad(a, "Unsupported executor setting", "Submitting through slurmrestd is not supported yet: lathe submits with sbatch, which must be on the PATH of the machine that runs lathe. Remove restd.")
		}
	}
	r.res.Executor = set
}

// executorValue evaluates one argument of the executor block, which may
// refer to variables and locals known before any stage runs, and converts
// it to ty. It reports false after an error.
func (r *resolver) executorValue(a *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	var refs []ref
	bad := false
	for _, tr := range a.Expr.Variables() {
		switch tr.RootName() {
		case "var", "local":
			refs = append(refs, r.checkRef(tr, "the executor block", false))
		default:
			r.refError(tr, "Invalid reference in executor block",
				fmt.Sprintf("The executor block is read before any stage runs, so its %s argument can refer only to variables (var.<name>) and local values (local.<name>), not to %q.", a.Name, tr.RootName()))
			bad = true
		}
	}
	if r.checkRefs(refs) {
		bad = true
	}
	val, diags := a.Expr.Value(r.evalCtx(nil))
	diags = r.filter(diags)
	r.diags = append(r.diags, diags...)
	if bad || diags.HasErrors() {
		return cty.NilVal, false
	}
	if !val.IsWhollyKnown() {
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Executor setting not known before the run",
			Detail:   fmt.Sprintf("The %s argument of the executor block depends on a stage output (through a local value), but it is needed before any stage runs. Use variables and local values that do not refer to stages.", a.Name),
			Subject:  a.Expr.Range().Ptr(),
		})
		return cty.NilVal, false
	}
	conv, err := convert.Convert(val, ty)
	if err != nil {
		want := "a string"
		if ty.IsListType() {
			want = "a list of strings"
		}
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid executor setting",
			Detail:   fmt.Sprintf("The %s argument of the executor block must be %s, not %s.", a.Name, want, val.Type().FriendlyName()),
			Subject:  a.Expr.Range().Ptr(),
		})
		return cty.NilVal, false
	}
	return conv, true
}
