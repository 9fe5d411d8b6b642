package config

import (
	"container/heap"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Resolved is a pipeline with variables assigned, locals evaluated and
// for_each expanded into stage instances, all statically validated.
type Resolved struct {
	Pipeline  *Pipeline
	Variables map[string]cty.Value
	// Locals holds the local values with every stage output unknown.
	Locals    map[string]cty.Value
	Instances []*Instance // topological order: every instance after all of its Deps; ties by source order
	// Cache is the evaluated cache block, or nil when there is none. It
	// says where results are shared and never enters a cache key.
	Cache *CacheSettings
	// Executor is the evaluated executor block, or nil when there is none.
	// It says where stages run and never enters a cache key.
	Executor *ExecutorSettings

	reg    *stage.Registry
	funcs  map[string]function.Function
	byAddr map[string]*Instance
	blocks map[*StageBlock]*blockState
	// localOrder lists the locals in dependency order; localStages tells
	// which of them depend on stage outputs and must be re-evaluated.
	localOrder  []string
	localStages map[string]bool
	// kinds lists the root names of stage references (declared kinds).
	kinds []string
}

// Instance is one instance of a stage block: the block itself, or one
// element of its for_each.
type Instance struct {
	Addr       string // `exec.prep`, `exec.train["r8"]`
	Kind       *stage.Kind
	Block      *StageBlock
	Key        cty.Value   // each.key, or cty.NilVal without for_each
	Deps       []*Instance // direct upstream instances, topological order, no duplicates
	Outputs    map[string]stage.Output
	StaticArgs cty.Value // the decoded arguments with upstream outputs unknown
	// EachValue is each.value with upstream outputs unknown, or cty.NilVal.
	EachValue cty.Value
	// Publish lists where the instance's artifacts are copied after a
	// successful run (the publish meta-argument); sorted by path.
	Publish []PublishTarget
	// Resources is what the instance asks of the machine that runs it (its
	// stage's resources block, evaluated for the instance).
	Resources Resources
}

// Instance returns the instance with the given address, or nil.
func (r *Resolved) Instance(addr string) *Instance { return r.byAddr[addr] }

// blockState is what resolution learnt about one stage block.
type blockState struct {
	kind      *stage.Kind // nil for an unknown kind
	failed    bool        // its value is unknown because of an earlier error
	done      bool
	instances []*Instance
	keys      []string // instance keys, for_each only
	keysKnown bool
	// fallback are the outputs the kind declares for unknown arguments,
	// used to check references when an instance failed to decode.
	fallback map[string]stage.Output
	// forEachStages reports whether for_each refers to stages (directly or
	// through locals), so that each.value must be recomputed in Args.
	forEachStages bool
	upstream      []*StageBlock
}

// node is a vertex of the block graph: a local value or a stage block.
type node struct {
	id    string // "local.x" or "<kind>.<name>"
	local *Local
	stage *StageBlock
	pos   hcl.Range
	edges []edge
	order int // position in source order among all nodes
	// cyclic nodes are left out of evaluation.
	cyclic bool
	refs   []ref
}

type edge struct {
	to  *node
	rng hcl.Range
}

// ref is one traversal of an expression and what it refers to.
type ref struct {
	tr     hcl.Traversal
	target *node // nil for var and each references
	// bad marks a reference that was reported as an error or that refers to
	// something that failed; errors inside it are not reported again.
	bad bool
	// inForEach marks references of a stage's for_each expression.
	inForEach bool
}

type resolver struct {
	p         *Pipeline
	reg       *stage.Registry
	res       *Resolved
	badVars   map[string]bool
	badLocals map[string]bool
	nodes     map[string]*node
	stageByKN map[string]map[string]*StageBlock
	suppress  []hcl.Range
	diags     hcl.Diagnostics
}

// Resolve evaluates variables and locals, expands for_each, decodes every
// stage instance with upstream outputs unknown and validates everything
// statically. On error the result is nil. Resolve adds the -var-file files
// it reads to p.Files, so that their diagnostics render with snippets.
func (p *Pipeline) Resolve(reg *stage.Registry, in Inputs) (*Resolved, hcl.Diagnostics) {
	r := &resolver{
		p:         p,
		reg:       reg,
		badLocals: map[string]bool{},
		nodes:     map[string]*node{},
		stageByKN: map[string]map[string]*StageBlock{},
		res: &Resolved{
			Pipeline:    p,
			Locals:      map[string]cty.Value{},
			reg:         reg,
			funcs:       functions(p.Dir),
			byAddr:      map[string]*Instance{},
			blocks:      map[*StageBlock]*blockState{},
			localStages: map[string]bool{},
		},
	}
	vars, bad, vdiags := p.assignVariables(in)
	r.diags = append(r.diags, vdiags...)
	r.res.Variables, r.badVars = vars, bad

	r.buildNodes()
	order := r.sortNodes()
	for _, n := range order {
		switch {
		case n.local != nil:
			r.evalLocal(n)
		case n.stage != nil:
			r.evalStage(n)
		}
	}
	r.checkOutputs()
	r.finish(order)
	r.checkPublish()
	r.checkResources()
	r.checkCache()
	r.checkExecutor()

	diags := tidyDiags(r.diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return r.res, diags
}

// buildNodes creates the graph vertices and reports unknown kinds and bad
// references.
func (r *resolver) buildNodes() {
	p := r.p
	var all []*node
	for _, name := range sortedLocalNames(p) {
		l := p.Locals[name]
		n := &node{id: "local." + name, local: l, pos: l.DeclRange}
		r.nodes[n.id] = n
		all = append(all, n)
		r.res.Locals[name] = cty.DynamicVal
	}
	for _, s := range p.Stages {
		if r.stageByKN[s.Kind] == nil {
			r.stageByKN[s.Kind] = map[string]*StageBlock{}
			r.res.kinds = append(r.res.kinds, s.Kind)
		}
		r.stageByKN[s.Kind][s.Name] = s
		st := &blockState{}
		r.res.blocks[s] = st
		if k, ok := r.reg.Lookup(s.Kind); ok {
			st.kind = k
		} else {
			st.failed = true
			names := r.reg.Names()
			detail := fmt.Sprintf("There is no stage kind %q.", s.Kind)
			if sug := didYouMean(s.Kind, names, ""); sug != "" {
				detail += sug
			} else {
				detail += " The stage kinds are: " + strings.Join(names, ", ") + "."
			}
			r.diags = append(r.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown stage kind",
				Detail:   detail,
				Subject:  s.KindRange.Ptr(),
			})
		}
		n := &node{id: s.Addr(), stage: s, pos: s.DeclRange}
		r.nodes[n.id] = n
		all = append(all, n)
	}
	sort.SliceStable(all, func(i, j int) bool { return rangeLess(all[i].pos, all[j].pos) })
	for i, n := range all {
		n.order = i
	}
	for _, n := range all {
		switch {
		case n.local != nil:
			for _, tr := range n.local.Expr.Variables() {
				n.refs = append(n.refs, r.checkRef(tr, "local value "+n.id, false))
			}
		case n.stage != nil:
			s := n.stage
			if s.ForEach != nil {
				for _, tr := range s.ForEach.Variables() {
					rf := r.checkRef(tr, "for_each", false)
					rf.inForEach = true
					n.refs = append(n.refs, rf)
				}
			}
			for _, tr := range bodyTraversals(s) {
				n.refs = append(n.refs, r.checkRef(tr, "stage "+s.Addr(), s.ForEach != nil))
			}
		}
		seen := map[*node]bool{}
		for _, rf := range n.refs {
			if rf.target != nil && !seen[rf.target] {
				seen[rf.target] = true
				n.edges = append(n.edges, edge{to: rf.target, rng: rf.tr.SourceRange()})
			}
		}
	}
}

func sortedLocalNames(p *Pipeline) []string {
	names := make([]string, 0, len(p.Locals))
	for n := range p.Locals {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// bodyTraversals returns the traversals of every expression in a stage
// body, nested blocks included, without the meta-arguments.
func bodyTraversals(s *StageBlock) []hcl.Traversal {
	sb, ok := s.fullBody.(*hclsyntax.Body)
	if !ok {
		return hcldec.Variables(s.Body, hcldec.ObjectSpec{})
	}
	var out []hcl.Traversal
	var walk func(b *hclsyntax.Body, top bool)
	walk = func(b *hclsyntax.Body, top bool) {
		attrs := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
		for _, a := range b.Attributes {
			if top && a.Name == "for_each" {
				continue
			}
			attrs = append(attrs, a)
		}
		sort.Slice(attrs, func(i, j int) bool { return attrs[i].SrcRange.Start.Byte < attrs[j].SrcRange.Start.Byte })
		for _, a := range attrs {
			out = append(out, a.Expr.Variables()...)
		}
		for _, blk := range b.Blocks {
			walk(blk.Body, false)
		}
	}
	walk(sb, true)
	sort.SliceStable(out, func(i, j int) bool { return rangeLess(out[i].SourceRange(), out[j].SourceRange()) })
	return out
}

func (r *resolver) refError(tr hcl.Traversal, summary, detail string) ref {
	rng := tr.SourceRange()
	r.suppress = append(r.suppress, rng)
	r.diags = append(r.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  rng.Ptr(),
	})
	return ref{tr: tr, bad: true}
}

// attrStep returns the name of the attribute step at i (or a string index
// step), if there is one.
func attrStep(tr hcl.Traversal, i int) (string, bool) {
	if i >= len(tr) {
		return "", false
	}
	switch s := tr[i].(type) {
	case hcl.TraverseAttr:
		return s.Name, true
	case hcl.TraverseIndex:
		if s.Key.Type() == cty.String && s.Key.IsKnown() && !s.Key.IsNull() {
			return s.Key.AsString(), true
		}
	}
	return "", false
}

// checkRef validates the first steps of a traversal: its root and the name
// it refers to. Instance keys and output names are checked later, once the
// referred stage is decoded (checkStageRef).
func (r *resolver) checkRef(tr hcl.Traversal, where string, eachOK bool) ref {
	root := tr.RootName()
	name, hasName := attrStep(tr, 1)
	switch root {
	case "var":
		if !hasName {
			return r.refError(tr, "Invalid reference", "A reference to an input variable needs the variable's name, as in var.name.")
		}
		if _, ok := r.p.Variables[name]; !ok {
			return r.refError(tr, "Reference to undeclared input variable",
				fmt.Sprintf("An input variable with the name %q has not been declared.%s", name, didYouMean(name, r.p.variableNames(), "var.")))
		}
		return ref{tr: tr, bad: r.badVars[name]}
	case "local":
		if !hasName {
			return r.refError(tr, "Invalid reference", "A reference to a local value needs the value's name, as in local.name.")
		}
		n, ok := r.nodes["local."+name]
		if !ok {
			return r.refError(tr, "Reference to undeclared local value",
				fmt.Sprintf("A local value with the name %q has not been declared.%s", name, didYouMean(name, sortedLocalNames(r.p), "local.")))
		}
		return ref{tr: tr, target: n}
	case "each":
		if !eachOK {
			return r.refError(tr, "Reference to \"each\" in context without for_each",
				fmt.Sprintf("The \"each\" object can be used only in the body of a stage block that has for_each, not in %s.", where))
		}
		if !hasName || (name != "key" && name != "value") {
			return r.refError(tr, "Invalid \"each\" attribute", "The \"each\" object has two attributes: each.key and each.value.")
		}
		return ref{tr: tr}
	}
	names, declared := r.stageByKN[root]
	_, registered := r.reg.Lookup(root)
	if !declared && !registered {
		kinds := append(append([]string(nil), r.reg.Names()...), r.res.kinds...)
		detail := fmt.Sprintf("There is no stage kind or other name %q. References start with var., local., each. (in a stage with for_each) or a stage kind such as %s.", root, strings.Join(r.reg.Names(), ", "))
		if s := suggest(root, append(kinds, "var", "local", "each")); s != "" {
			detail = fmt.Sprintf("There is no stage kind or other name %q. Did you mean %q?", root, s)
		}
		return r.refError(tr, "Reference to unknown name", detail)
	}
	if !hasName {
		return r.refError(tr, "Invalid stage reference",
			fmt.Sprintf("A reference to a stage needs the stage's name, as in %s.<name>.<output>.", root))
	}
	if _, ok := names[name]; !ok {
		var cands []string
		for n := range names {
			cands = append(cands, n)
		}
		sort.Strings(cands)
		detail := fmt.Sprintf("There is no stage %q %q in this pipeline.", root, name)
		if s := didYouMean(name, cands, root+"."); s != "" {
			detail += s
		} else {
			for _, other := range r.p.Stages {
				if other.Name == name {
					detail += fmt.Sprintf(" Did you mean %q?", other.Addr())
					break
				}
			}
		}
		return r.refError(tr, "Reference to undeclared stage", detail)
	}
	return ref{tr: tr, target: r.nodes[root+"."+name]}
}

// sortNodes finds cycles, reports each once, and returns the acyclic nodes
// in topological order, ties broken by source order.
func (r *resolver) sortNodes() []*node {
	all := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		all = append(all, n)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].order < all[j].order })

	// Tarjan's strongly connected components.
	index := map[*node]int{}
	low := map[*node]int{}
	onStack := map[*node]bool{}
	var stack []*node
	var sccs [][]*node
	next := 0
	var visit func(n *node)
	visit = func(n *node) {
		index[n], low[n] = next, next
		next++
		stack = append(stack, n)
		onStack[n] = true
		for _, e := range n.edges {
			if _, seen := index[e.to]; !seen {
				visit(e.to)
				low[n] = min(low[n], low[e.to])
			} else if onStack[e.to] {
				low[n] = min(low[n], index[e.to])
			}
		}
		if low[n] == index[n] {
			var scc []*node
			for {
				m := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[m] = false
				scc = append(scc, m)
				if m == n {
					break
				}
			}
			sccs = append(sccs, scc)
		}
	}
	for _, n := range all {
		if _, seen := index[n]; !seen {
			visit(n)
		}
	}
	var cycles [][]*node
	for _, scc := range sccs {
		self := false
		for _, e := range scc[0].edges {
			self = self || e.to == scc[0]
		}
		if len(scc) > 1 || self {
			sort.Slice(scc, func(i, j int) bool { return scc[i].order < scc[j].order })
			for _, m := range scc {
				m.cyclic = true
			}
			cycles = append(cycles, scc)
		}
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i][0].order < cycles[j][0].order })
	for _, scc := range cycles {
		r.reportCycle(scc)
	}

	// Kahn's algorithm over the acyclic nodes.
	indeg := map[*node]int{}
	users := map[*node][]*node{}
	for _, n := range all {
		if n.cyclic {
			continue
		}
		for _, e := range n.edges {
			if !e.to.cyclic {
				indeg[n]++
				users[e.to] = append(users[e.to], n)
			}
		}
	}
	h := &nodeHeap{}
	for _, n := range all {
		if !n.cyclic && indeg[n] == 0 {
			heap.Push(h, n)
		}
	}
	var order []*node
	for h.Len() > 0 {
		n := heap.Pop(h).(*node)
		order = append(order, n)
		for _, u := range users[n] {
			indeg[u]--
			if indeg[u] == 0 {
				heap.Push(h, u)
			}
		}
	}
	return order
}

// reportCycle reports one cycle through the first node of a strongly
// connected component, naming every step and where it is made.
func (r *resolver) reportCycle(scc []*node) {
	in := map[*node]bool{}
	for _, m := range scc {
		in[m] = true
	}
	start := scc[0]
	var path []edge
	visited := map[*node]bool{}
	var dfs func(n *node) bool
	dfs = func(n *node) bool {
		visited[n] = true
		for _, e := range n.edges {
			if !in[e.to] {
				continue
			}
			path = append(path, e)
			if e.to == start {
				return true
			}
			if !visited[e.to] && dfs(e.to) {
				return true
			}
			path = path[:len(path)-1]
		}
		return false
	}
	dfs(start)
	names := []string{start.id}
	var steps []string
	from := start
	for _, e := range path {
		names = append(names, e.to.id)
		steps = append(steps, fmt.Sprintf("  %s refers to %s at %s", from.id, e.to.id, rangeString(e.rng)))
		from = e.to
	}
	subject := start.pos
	if len(path) > 0 {
		subject = path[0].rng
	}
	r.diags = append(r.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Dependency cycle",
		Detail: fmt.Sprintf("%s\n\nThese depend on each other, so none of them can be evaluated first:\n%s",
			strings.Join(names, " -> "), strings.Join(steps, "\n")),
		Subject: subject.Ptr(),
	})
	for _, m := range scc {
		if m.local != nil {
			r.badLocals[m.local.Name] = true
		}
		if m.stage != nil {
			r.res.blocks[m.stage].failed = true
		}
	}
}

type nodeHeap []*node

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return h[i].order < h[j].order }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)        { *h = append(*h, x.(*node)) }
func (h *nodeHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}

// targetBad reports whether a reference's target failed to evaluate.
func (r *resolver) targetBad(rf ref) bool {
	if rf.bad {
		return true
	}
	if rf.target == nil {
		return false
	}
	if rf.target.local != nil {
		return r.badLocals[rf.target.local.Name]
	}
	return r.res.blocks[rf.target.stage].failed
}

// checkStageRef validates the instance key and output name of a reference
// to an already evaluated stage. A stage that failed to decode is still
// checked against the outputs its kind declares for any arguments.
func (r *resolver) checkStageRef(rf *ref) {
	if rf.bad || rf.target == nil || rf.target.stage == nil {
		return
	}
	s := rf.target.stage
	st := r.res.blocks[s]
	if st.failed || !st.done {
		// The stage's value is unknown: whatever is reported below, errors
		// from evaluating the reference are consequential.
		rf.bad = true
	}
	tr := rf.tr
	i := 2
	addr := s.Addr()
	var outs map[string]stage.Output
	if s.ForEach != nil {
		if i >= len(tr) {
			return
		}
		key, ok := attrStep(tr, i)
		if !ok {
			if ix, isIndex := tr[i].(hcl.TraverseIndex); isIndex {
				*rf = r.refError(tr, "Invalid instance key",
					fmt.Sprintf("The instances of %s are keyed by strings, not by a %s.", s.Addr(), ix.Key.Type().FriendlyName()))
			}
			return
		}
		if !st.keysKnown {
			return
		}
		found := false
		for _, k := range st.keys {
			found = found || k == key
		}
		if !found {
			if _, isAttr := tr[i].(hcl.TraverseAttr); isAttr && len(st.keys) > 0 {
				if _, isOutput := st.outputsFor(st.keys[0])[key]; isOutput {
					*rf = r.refError(tr, "Missing instance key",
						fmt.Sprintf("%s has for_each, so it stands for all its instances; refer to one of them, as in %s[%s].%s, or to all of them with a for expression.",
							s.Addr(), s.Addr(), hclQuote(st.keys[0]), key))
					return
				}
			}
			*rf = r.refError(tr, "No such stage instance",
				fmt.Sprintf("%s has no instance with the key %q; its keys are %s.%s", s.Addr(), key, quotedList(st.keys), didYouMean(key, st.keys, "")))
			return
		}
		outs = st.outputsFor(key)
		addr += "[" + hclQuote(key) + "]"
		i++
	} else {
		if i < len(tr) {
			if ix, isIndex := tr[i].(hcl.TraverseIndex); isIndex {
				if _, isName := attrStep(tr, i); !isName {
					*rf = r.refError(tr, "Invalid index",
						fmt.Sprintf("%s has no for_each, so it has no instances to index; refer to its outputs as %s.<output>, not with a %s index.", s.Addr(), s.Addr(), ix.Key.Type().FriendlyName()))
					return
				}
			}
		}
		outs = st.outputsFor("")
	}
	out, ok := attrStep(tr, i)
	if !ok || outs == nil {
		return
	}
	if _, exists := outs[out]; !exists {
		names := make([]string, 0, len(outs))
		for n := range outs {
			names = append(names, n)
		}
		sort.Strings(names)
		hint := didYouMean(out, names, "")
		if hint == "" {
			hint = " Its outputs are " + quotedList(names) + "."
		}
		*rf = r.refError(tr, "Unsupported stage output",
			fmt.Sprintf("%s (kind %q) has no output named %q.%s", addr, s.Kind, out, hint))
	}
}

// outputsFor returns the outputs of the instance with the given key ("" for
// a stage without for_each), or the kind's fallback outputs if that instance
// failed to decode, or nil if they are not known.
func (st *blockState) outputsFor(key string) map[string]stage.Output {
	for _, inst := range st.instances {
		if inst.Key == cty.NilVal || inst.Key.AsString() == key {
			return inst.Outputs
		}
	}
	return st.fallback
}

// fallbackOutputs asks a kind for its outputs given wholly unknown
// arguments, to check references to a stage whose arguments have errors.
// Kinds whose outputs depend on their arguments report nothing.
func fallbackOutputs(k *stage.Kind) (outs map[string]stage.Output) {
	defer func() {
		if recover() != nil {
			outs = nil
		}
	}()
	o, diags := k.Outputs(cty.UnknownVal(hcldec.ImpliedType(k.Schema)))
	if diags.HasErrors() {
		return nil
	}
	return o
}

// evalCtx returns the evaluation context for the static pass.
func (r *resolver) evalCtx(each map[string]cty.Value) *hcl.EvalContext {
	return r.res.buildCtx(func(inst *Instance) cty.Value { return unknownOutputs(inst) }, r.res.Locals, each)
}

// buildCtx builds an evaluation context whose stage values come from value.
func (res *Resolved) buildCtx(value func(*Instance) cty.Value, locals map[string]cty.Value, each map[string]cty.Value) *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   cty.ObjectVal(res.Variables),
		"local": cty.ObjectVal(locals),
	}
	for _, kind := range res.kinds {
		vars[kind] = cty.EmptyObjectVal
	}
	byKind := map[string]map[string]cty.Value{}
	for _, s := range res.Pipeline.Stages {
		st := res.blocks[s]
		if byKind[s.Kind] == nil {
			byKind[s.Kind] = map[string]cty.Value{}
		}
		switch {
		case st.failed || !st.done:
			byKind[s.Kind][s.Name] = cty.DynamicVal
		case s.ForEach != nil:
			elems := map[string]cty.Value{}
			for _, inst := range st.instances {
				elems[inst.Key.AsString()] = value(inst)
			}
			byKind[s.Kind][s.Name] = cty.ObjectVal(elems)
		case len(st.instances) == 1:
			byKind[s.Kind][s.Name] = value(st.instances[0])
		default:
			byKind[s.Kind][s.Name] = cty.DynamicVal
		}
	}
	for kind, m := range byKind {
		vars[kind] = cty.ObjectVal(m)
	}
	if each != nil {
		vars["each"] = cty.ObjectVal(each)
	}
	return &hcl.EvalContext{Variables: vars, Functions: res.funcs}
}

func unknownOutputs(inst *Instance) cty.Value {
	attrs := map[string]cty.Value{}
	for name, o := range inst.Outputs {
		attrs[name] = cty.UnknownVal(o.Type)
	}
	return cty.ObjectVal(attrs)
}

// filter drops diagnostics inside references already reported, and adds
// did-you-mean suggestions to HCL's unsupported attribute errors.
func (r *resolver) filter(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		suggestAttr(d)
		drop := false
		if d.Subject != nil {
			for _, s := range r.suppress {
				if within(*d.Subject, s) {
					drop = true
					break
				}
			}
		}
		if !drop {
			out = append(out, d)
		}
	}
	return out
}

// checkRefs runs checkStageRef on refs and reports whether any reference is
// bad, in which case errors that follow from it are not reported.
func (r *resolver) checkRefs(refs []ref) (poisoned bool) {
	for i := range refs {
		r.checkStageRef(&refs[i])
		if r.targetBad(refs[i]) {
			poisoned = true
			r.suppress = append(r.suppress, refs[i].tr.SourceRange())
		}
	}
	return poisoned
}

func (r *resolver) evalLocal(n *node) {
	name := n.local.Name
	poisoned := r.checkRefs(n.refs)
	val, diags := n.local.Expr.Value(r.evalCtx(nil))
	diags = r.filter(diags)
	r.diags = append(r.diags, diags...)
	if diags.HasErrors() || poisoned && !val.IsWhollyKnown() {
		r.badLocals[name] = true
		val = cty.DynamicVal
	}
	r.res.Locals[name] = val
	r.res.localOrder = append(r.res.localOrder, name)
	for _, rf := range n.refs {
		if rf.target != nil && (rf.target.stage != nil || r.res.localStages[rf.target.local.Name]) {
			r.res.localStages[name] = true
		}
	}
}

// upstreamOf returns the stage blocks a node depends on, through locals.
func (r *resolver) upstreamOf(n *node, refs []ref, seen map[*node]bool) []*StageBlock {
	var out []*StageBlock
	for _, rf := range refs {
		t := rf.target
		if t == nil || seen[t] {
			continue
		}
		seen[t] = true
		if t.stage != nil {
			out = append(out, t.stage)
		} else {
			out = append(out, r.upstreamOf(t, t.refs, seen)...)
		}
	}
	return out
}

func (r *resolver) evalStage(n *node) {
	s := n.stage
	st := r.res.blocks[s]
	defer func() { st.done = true }()
	poisoned := r.checkRefs(n.refs)
	st.upstream = r.upstreamOf(n, n.refs, map[*node]bool{})
	var feRefs []ref
	for _, rf := range n.refs {
		if rf.inForEach {
			feRefs = append(feRefs, rf)
		}
	}
	st.forEachStages = len(r.upstreamOf(n, feRefs, map[*node]bool{})) > 0
	if st.failed {
		return
	}

	type inst struct {
		key  string
		each map[string]cty.Value
	}
	insts := []inst{{}}
	if s.ForEach != nil {
		keys, values, ok := r.evalForEach(s, feRefs)
		if !ok {
			st.failed = true
			return
		}
		insts = insts[:0]
		for i, k := range keys {
			insts = append(insts, inst{key: k, each: map[string]cty.Value{"key": cty.StringVal(k), "value": values[i]}})
		}
		st.keys, st.keysKnown = keys, true
	}
	defer func() {
		if st.failed {
			st.fallback = fallbackOutputs(st.kind)
		}
	}()
	for _, in := range insts {
		addr := s.Addr()
		instance := &Instance{Addr: addr, Kind: st.kind, Block: s, Key: cty.NilVal, EachValue: cty.NilVal}
		if in.each != nil {
			instance.Addr = addr + "[" + hclQuote(in.key) + "]"
			instance.Key = in.each["key"]
			instance.EachValue = in.each["value"]
		}
		args, diags := hcldec.Decode(s.Body, st.kind.Schema, r.evalCtx(in.each))
		diags = r.filter(diags)
		r.diags = append(r.diags, diags...)
		if diags.HasErrors() {
			st.failed = true
			continue
		}
		outs, odiags := st.kind.Outputs(args)
		if odiags.HasErrors() && poisoned {
			st.failed = true
			continue
		}
		r.diags = append(r.diags, odiags...)
		if odiags.HasErrors() {
			st.failed = true
			continue
		}
		instance.StaticArgs = args
		instance.Outputs = outs
		st.instances = append(st.instances, instance)
	}
}

// evalForEach evaluates a for_each expression into instance keys and
// each.value values.
func (r *resolver) evalForEach(s *StageBlock, refs []ref) ([]string, []cty.Value, bool) {
	poisoned := false
	for _, rf := range refs {
		poisoned = poisoned || r.targetBad(rf)
	}
	val, diags := s.ForEach.Value(r.evalCtx(nil))
	diags = r.filter(diags)
	r.diags = append(r.diags, diags...)
	if diags.HasErrors() {
		return nil, nil, false
	}
	keys, values, msg := forEachKeys(val)
	if msg == "" {
		return keys, values, true
	}
	if !poisoned {
		r.diags = append(r.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid for_each argument",
			Detail:   msg,
			Subject:  s.ForEach.Range().Ptr(),
		})
	}
	return nil, nil, false
}

// forEachKeys returns the instance keys and each.value values of a for_each
// value, or a message saying why the value is unsuitable.
func forEachKeys(val cty.Value) ([]string, []cty.Value, string) {
	ty := val.Type()
	switch {
	case !val.IsKnown():
		return nil, nil, "The for_each value depends on values that are only known when the pipeline runs, such as stage outputs. for_each may use variables, locals and the instances of other stages (their keys are known in advance), but not their outputs."
	case val.IsNull():
		return nil, nil, "The for_each value is null. It must be a map, or a set or list of strings."
	}
	var keys []string
	var values []cty.Value
	switch {
	case ty.IsMapType() || ty.IsObjectType():
		for it := val.ElementIterator(); it.Next(); {
			k, v := it.Element()
			keys = append(keys, k.AsString())
			values = append(values, v)
		}
		return keys, values, ""
	case ty.IsSetType() || ty.IsListType() || ty.IsTupleType():
		seen := map[string]bool{}
		for it := val.ElementIterator(); it.Next(); {
			_, v := it.Element()
			if !v.IsKnown() {
				return nil, nil, "The for_each value holds elements that are only known when the pipeline runs. The elements of a set or list for_each are the instance keys, so they must be known in advance."
			}
			if v.IsNull() {
				return nil, nil, "The for_each value holds a null element; the elements are the instance keys and must not be null."
			}
			if v.Type() != cty.String {
				return nil, nil, fmt.Sprintf("The for_each value is a %s holding a %s; a set or list for_each must hold strings (use a map to give other values their own keys).", collectionKind(ty), v.Type().FriendlyName())
			}
			k := v.AsString()
			if seen[k] {
				return nil, nil, fmt.Sprintf("The for_each list holds %q twice; every instance needs its own key.", k)
			}
			seen[k] = true
			keys = append(keys, k)
			values = append(values, v)
		}
		return keys, values, ""
	}
	return nil, nil, fmt.Sprintf("The for_each value is a %s. It must be a map, or a set or list of strings.", ty.FriendlyName())
}

func collectionKind(ty cty.Type) string {
	switch {
	case ty.IsSetType():
		return "set"
	case ty.IsListType():
		return "list"
	}
	return "tuple"
}

// checkOutputs validates the output blocks statically.
func (r *resolver) checkOutputs() {
	names := make([]string, 0, len(r.p.Outputs))
	for n := range r.p.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		o := r.p.Outputs[name]
		var refs []ref
		for _, tr := range o.Expr.Variables() {
			refs = append(refs, r.checkRef(tr, "output "+name, false))
		}
		r.checkRefs(refs)
		_, diags := o.Expr.Value(r.evalCtx(nil))
		r.diags = append(r.diags, r.filter(diags)...)
	}
}

// finish orders the instances and computes their dependencies.
func (r *resolver) finish(order []*node) {
	pos := map[*Instance]int{}
	for _, n := range order {
		if n.stage == nil {
			continue
		}
		for _, inst := range r.res.blocks[n.stage].instances {
			pos[inst] = len(r.res.Instances)
			r.res.Instances = append(r.res.Instances, inst)
			r.res.byAddr[inst.Addr] = inst
		}
	}
	for _, n := range order {
		if n.stage == nil {
			continue
		}
		st := r.res.blocks[n.stage]
		var deps []*Instance
		for _, up := range st.upstream {
			deps = append(deps, r.res.blocks[up].instances...)
		}
		sort.Slice(deps, func(i, j int) bool { return pos[deps[i]] < pos[deps[j]] })
		for _, inst := range st.instances {
			inst.Deps = append([]*Instance(nil), deps...)
		}
	}
}

// suggestAttr adds a did-you-mean to HCL's "Unsupported attribute" error
// (as in each.value.modle) by looking up the attributes of the object the
// traversal reached.
func suggestAttr(d *hcl.Diagnostic) {
	if d.Summary != "Unsupported attribute" || d.Expression == nil || d.EvalContext == nil || d.Subject == nil {
		return
	}
	var steps hcl.Traversal
	var base cty.Value
	abs := false
	switch e := d.Expression.(type) {
	case *hclsyntax.ScopeTraversalExpr:
		steps, abs = e.Traversal, true
	case *hclsyntax.RelativeTraversalExpr:
		v, diags := e.Source.Value(d.EvalContext)
		if diags.HasErrors() {
			return
		}
		steps, base = e.Traversal, v
	default:
		return
	}
	for i, step := range steps {
		attr, ok := step.(hcl.TraverseAttr)
		if !ok || attr.SrcRange != *d.Subject {
			continue
		}
		var v cty.Value
		var diags hcl.Diagnostics
		if abs {
			v, diags = steps[:i].TraverseAbs(d.EvalContext)
		} else {
			v, diags = steps[:i].TraverseRel(base)
		}
		if diags.HasErrors() || !v.Type().IsObjectType() {
			return
		}
		var names []string
		for n := range v.Type().AttributeTypes() {
			names = append(names, n)
		}
		sort.Strings(names)
		if hint := didYouMean(attr.Name, names, ""); hint != "" {
			d.Detail += hint
		}
		return
	}
}
