package main

// lathe data preview: shows the first samples of a dataset as the model will
// see them, tokenized and truncated exactly as the tokenize stage does.
//
// Each sample is printed as the decoded text of its tokens. The trained part
// (the tokens the loss is computed on) is bold green on a colour terminal;
// in plain output (a pipe, a file, NO_COLOR, --color=never) it is wrapped in
// [[ and ]]. A header line gives the source row and the token counts.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

func cmdData(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 {
		return usageError(env, "usage: lathe data preview [flags] FILE")
	}
	switch args[0] {
	case "preview":
		return dataPreview(ctx, env, args[1:])
	}
	return usageError(env, "unknown data command %q (want preview)", args[0])
}

// Plain and ANSI markers of the trained spans.
const (
	plainOpen, plainClose = "[[", "]]"
	ansiOpen, ansiClose   = "\x1b[1;32m", "\x1b[0m"
)

type previewOptions struct {
	n     int
	color bool
	tok   tokenizer.Codec
	build data.BuildOptions
}

func dataPreview(ctx context.Context, env *cliEnv, args []string) int {
	fs := subFlagSet(env, "data preview", "data preview --format F --template T --tokenizer PATH [-n 3] [--cutoff-len N] FILE",
		"show the first samples of a dataset as the model sees them: trained spans marked [[...]] (green on a terminal), token counts, and the drop summary")
	format := fs.String("format", "", "dataset format: alpaca, sharegpt or text (required)")
	fileType := fs.String("file-type", "", "json, jsonl or csv (default: by extension)")
	ranking := fs.Bool("ranking", false, "preference data (chosen/rejected)")
	tplName := fs.String("template", "", "built-in chat template, or auto: the tokenizer's own (required unless --format text)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json or tokenizer.model, or a directory holding one (required)")
	n := fs.Int("n", 3, "number of samples to show")
	cutoff := fs.Int("cutoff-len", tokenize.DefaultCutoffLen, "maximum tokens per sample")
	trainOnPrompt := fs.Bool("train-on-prompt", false, "train on the prompt side too")
	maskHistory := fs.Bool("mask-history", false, "train only on the last answer")
	color := fs.String("color", "auto", "colour the trained spans: auto, always or never")
	var replace stringList
	fs.Var(&replace, "replace", "placeholder replacement OLD=NEW (repeatable)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) != 1 {
		return usageError(env, "data preview takes exactly one dataset FILE")
	}
	switch *format {
	case string(data.FormatAlpaca), string(data.FormatShareGPT), string(data.FormatText):
	case "":
		return usageError(env, "--format is required (alpaca, sharegpt or text)")
	default:
		return usageError(env, "unknown --format %q (want alpaca, sharegpt or text)", *format)
	}
	if *n < 1 || *cutoff < 1 {
		return usageError(env, "-n and --cutoff-len must be positive")
	}
	opt := previewOptions{n: *n, build: data.BuildOptions{CutoffLen: *cutoff,
		Render: data.RenderOptions{TrainOnPrompt: *trainOnPrompt, MaskHistory: *maskHistory}}}
	switch *color {
	case "always":
		opt.color = true
	case "never":
	case "auto":
		f, ok := env.stdout.(*os.File)
		opt.color = ok && isTerminal(f) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	default:
		return usageError(env, "unknown --color %q (want auto, always or never)", *color)
	}
	if *format != string(data.FormatText) {
		if *tplName == "" {
			return usageError(env, "--template is required for %s data (auto, or built-in: %s)", *format, strings.Join(data.TemplateNames(), ", "))
		}
		if err := tokenize.TemplateError(*tplName); err != nil {
			return usageError(env, "%v", err)
		}
		opt.build.Template, _ = data.LookupTemplate(*tplName)
	}
	if *tokPath == "" {
		return usageError(env, "--tokenizer PATH is required (a tokenizer.json or tokenizer.model file, or a directory holding one)")
	}
	spec := data.Spec{Path: pos[0], Format: data.Format(*format), FileType: *fileType, Ranking: *ranking}
	for _, r := range replace {
		old, nw, ok := strings.Cut(r, "=")
		if !ok || old == "" {
			return usageError(env, "--replace wants OLD=NEW, got %q", r)
		}
		if spec.Replace == nil {
			spec.Replace = map[string]string{}
		}
		spec.Replace[old] = nw
	}
	tok, cfg, err := tokenize.LoadTokenizer(*tokPath)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	opt.tok = tok
	opt.build.Encoder = tokenize.Encoder(tok)
	tokenize.ApplyTokenizerConfig(&opt.build, cfg)
	if *format != string(data.FormatText) && *tplName == tokenize.AutoTemplate {
		if opt.build.Template, err = tokenize.AutoTemplateFor(*tokPath, cfg); err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
	}
	if err := preview(ctx, env.stdout, spec, opt); err != nil {
		if errors.Is(err, context.Canceled) {
			return exitCanceled
		}
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// preview reads the whole file (for the drop summary) and tokenizes the
// first opt.n usable examples one at a time with data.Build, so what it shows
// is exactly what the tokenize stage writes.
func preview(ctx context.Context, w io.Writer, spec data.Spec, opt previewOptions) error {
	r, err := data.Open(spec)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp, err := os.MkdirTemp("", "lathe-preview-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	shown := 0
	var tokDropped int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ex, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if shown >= opt.n {
			continue // keep reading for the drop counts
		}
		shown++
		dir := filepath.Join(tmp, fmt.Sprint(shown))
		m, err := data.Build(&oneExample{ex: ex}, dir, opt.build)
		if err != nil {
			tokDropped++
			fmt.Fprintf(w, "--- sample %d (%s): dropped when tokenized: %v\n\n", shown, ex.Source, err)
			continue
		}
		if err := printSamples(w, dir, m, shown, ex.Source, opt); err != nil {
			return err
		}
	}
	st := r.Stats()
	fmt.Fprintf(w, "%d rows read, %d usable", st.RowsRead, st.Kept)
	if tokDropped > 0 {
		fmt.Fprintf(w, "; %d of the samples shown dropped when tokenized", tokDropped)
	}
	if d := st.DroppedTotal(); d > 0 {
		// Summary lists the counts by reason, then the first rows dropped.
		fmt.Fprintf(w, "; %d dropped: %s", d, st.Summary())
	}
	fmt.Fprintln(w)
	return nil
}

// oneExample is an ExampleSource of a single example.
type oneExample struct {
	ex   data.Example
	done bool
}

func (o *oneExample) Next() (data.Example, error) {
	if o.done {
		return data.Example{}, io.EOF
	}
	o.done = true
	return o.ex, nil
}

func printSamples(w io.Writer, dir string, m *data.Manifest, n int, source string, opt previewOptions) error {
	sp := m.Splits["train"]
	if sp == nil || len(sp.Shards) == 0 {
		return fmt.Errorf("preview %s: no samples written", source)
	}
	sh, err := data.OpenShard(filepath.Join(dir, sp.Shards[0].File))
	if err != nil {
		return err
	}
	defer sh.Close()
	pairs := sh.Flags()&data.FlagPairs != 0
	for i := 0; i < sh.NumSamples(); i++ {
		s := sh.Sample(i)
		label := ""
		if pairs {
			label = [2]string{" chosen", " rejected"}[i%2]
		}
		trunc := ""
		if m.Truncated > 0 {
			trunc = fmt.Sprintf(", truncated to %d", m.CutoffLen)
		}
		fmt.Fprintf(w, "--- sample %d%s (%s): %d tokens, %d trained%s\n", n, label, source, len(s.Tokens), s.Trainable(), trunc)
		fmt.Fprintf(w, "%s\n\n", renderSample(opt.tok, s, opt.color))
	}
	return nil
}

// renderSample decodes a sample and marks its trained runs (data.Spans).
func renderSample(tok tokenizer.Codec, s data.Sample, color bool) string {
	open, close := plainOpen, plainClose
	if color {
		open, close = ansiOpen, ansiClose
	}
	var b strings.Builder
	for _, sp := range data.Spans(s, func(ids []int) string { return tok.Decode(ids, false) }) {
		if sp.Trained {
			b.WriteString(open + sp.Text + close)
		} else {
			b.WriteString(sp.Text)
		}
	}
	return b.String()
}
