package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/internal/infer"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/serve"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// modelFlags choose the model chat and serve load.
type modelFlags struct {
	pf       pipelineFlags
	adapter  string
	template string
}

func (mf *modelFlags) register(fs *flag.FlagSet) {
	mf.pf.register(fs)
	fs.StringVar(&mf.adapter, "adapter", "", "a LoRA adapter: a directory or an output address such as sft.identity.adapter")
	fs.StringVar(&mf.template, "template", "", "chat template: a built-in name or \"auto\" (default: the model's own, else \"default\")")
}

// genFlags are the sampling knobs.
type genFlags struct {
	maxTokens   int
	temperature float64
	topP        float64
	topK        int
	repetition  float64
	seed        uint64
}

func (g *genFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&g.maxTokens, "max-tokens", 256, "most tokens per reply")
	fs.Float64Var(&g.temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fs.Float64Var(&g.topP, "top-p", 1, "nucleus sampling mass")
	fs.IntVar(&g.topK, "top-k", 0, "sample from the k most likely tokens (0: all)")
	fs.Float64Var(&g.repetition, "repetition-penalty", 1, "penalty for tokens already present (1: none)")
	fs.Uint64Var(&g.seed, "seed", 0, "sampling seed")
}

func (g *genFlags) options() infer.Options {
	return infer.Options{MaxNewTokens: g.maxTokens, Temperature: g.temperature, TopP: g.topP, TopK: g.topK,
		RepetitionPenalty: g.repetition, Seed: g.seed}
}

// resolveModel turns MODEL (and -adapter) into directories: a directory is
// used as is; an output address is looked up in the pipeline's current plan
// (it must be cached). An adapter given as MODEL brings its base model
// from the store (base_model_name_or_path "lathe-artifact:sha256:…").
func (mf *modelFlags) resolve(ctx context.Context, env *cliEnv, model string, rest []string) (modelDir, adapterDir string, code int) {
	var ws *pipeline.Workspace
	lookup := func(ref string) (string, string, int) {
		if st, err := os.Stat(ref); err == nil && st.IsDir() {
			kind := stage.ModelArtifact
			if _, err := os.Stat(filepath.Join(ref, lora.ConfigFile)); err == nil {
				kind = stage.AdapterArtifact
			}
			return ref, kind, exitOK
		}
		addr, output, err := pipeline.ParseOutputAddr(ref)
		if err != nil {
			return "", "", usageError(env, "%s is neither a directory nor an output address (%v)", ref, err)
		}
		if ws == nil {
			if ws, code = mf.pf.load(env, rest, true); ws == nil {
				return "", "", code
			}
		}
		a, err := ws.CachedArtifact(ctx, addr, output)
		if err != nil {
			return "", "", reportError(env, ws, err)
		}
		return a.Path, a.Kind, exitOK
	}
	dir, kind, code := lookup(model)
	if code != exitOK {
		return "", "", code
	}
	switch kind {
	case stage.ModelArtifact:
		modelDir = dir
	case stage.AdapterArtifact:
		adapterDir = dir
	default:
		return "", "", usageError(env, "%s is a %s artifact; give a model or an adapter", model, kind)
	}
	if mf.adapter != "" {
		if adapterDir != "" {
			return "", "", usageError(env, "MODEL is already an adapter; -adapter adds a second one")
		}
		if adapterDir, kind, code = lookup(mf.adapter); code != exitOK {
			return "", "", code
		}
		if kind != stage.AdapterArtifact {
			return "", "", usageError(env, "-adapter %s is a %s, not an adapter", mf.adapter, kind)
		}
	}
	if modelDir == "" {
		base, err := adapterBase(adapterDir)
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return "", "", exitFailed
		}
		modelDir = base
	}
	return modelDir, adapterDir, exitOK
}

// modelID names the model for the API and the chat banner: an output
// address as written, or a directory's base name.
func modelID(ref string) string {
	if st, err := os.Stat(ref); err == nil && st.IsDir() {
		return filepath.Base(filepath.Clean(ref))
	}
	return ref
}

// adapterBase finds an adapter's base model in the store it lives in.
func adapterBase(adapterDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(adapterDir, lora.ConfigFile))
	if err != nil {
		return "", err
	}
	var c struct {
		Base string `json:"base_model_name_or_path"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", lora.ConfigFile, err)
	}
	hex, ok := strings.CutPrefix(c.Base, "lathe-artifact:sha256:")
	if !ok {
		return "", fmt.Errorf("the adapter's base model is %q; give the base model directory as MODEL and the adapter with -adapter", c.Base)
	}
	dir := filepath.Join(filepath.Dir(filepath.Clean(adapterDir)), hex)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return "", fmt.Errorf("the adapter's base model (sha256:%s) is not in the store beside it; give it as MODEL with -adapter", hex[:12])
	}
	return dir, nil
}

// cmdChat is `lathe chat`: an interactive chat, or one reply with -p.
func cmdChat(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "chat")
	var mf modelFlags
	var gf genFlags
	mf.register(fs)
	gf.register(fs)
	system := fs.String("system", "", "system prompt")
	prompt := fs.String("p", "", "answer this one message and exit (no interactive session)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) == 0 {
		return usageError(env, "usage: lathe chat [flags] MODEL [PIPELINE]  (MODEL: a model or adapter directory, or an address such as sft.identity.adapter)")
	}
	modelDir, adapterDir, code := mf.resolve(ctx, env, pos[0], pos[1:])
	if code != exitOK {
		return code
	}
	eng, err := infer.Open(infer.Config{Model: modelDir, Adapter: adapterDir, Template: mf.template, ID: modelID(pos[0])})
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	defer eng.Close()
	reply := func(turns []infer.Message) (string, error) {
		res, err := eng.Chat(ctx, *system, turns, gf.options(), func(s string) error {
			_, err := fmt.Fprint(env.stdout, s)
			return err
		})
		fmt.Fprintln(env.stdout)
		return res.Text, err
	}
	if *prompt != "" {
		if _, err := reply([]infer.Message{{Role: "user", Content: *prompt}}); err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	fmt.Fprintf(env.stderr, "chatting with %s (template %s); type 'clear' to forget the conversation, 'exit' to quit\n", eng.ID, eng.Template.Name)
	var turns []infer.Message
	in := bufio.NewScanner(env.stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for {
		fmt.Fprint(env.stderr, "> ")
		if !in.Scan() {
			fmt.Fprintln(env.stderr)
			return exitOK
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "exit", "quit":
			return exitOK
		case "clear":
			turns = nil
			fmt.Fprintln(env.stderr, "(history cleared)")
			continue
		}
		turns = append(turns, infer.Message{Role: "user", Content: line})
		text, err := reply(turns)
		if errors.Is(err, context.Canceled) {
			return exitCanceled
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			turns = turns[:len(turns)-1]
			continue
		}
		turns = append(turns, infer.Message{Role: "assistant", Content: text})
	}
}

// cmdServe is `lathe serve`: the OpenAI-compatible API.
func cmdServe(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "serve")
	var mf modelFlags
	mf.register(fs)
	listen := fs.String("listen", "127.0.0.1:8000", "address to listen on")
	apiKey := fs.String("api-key", "", "require this bearer token (default $LATHE_API_KEY; none when empty)")
	id := fs.String("id", "", "the model id clients use (default: the model directory's name)")
	maxTokens := fs.Int("max-tokens", 2048, "largest max_tokens a request may ask for")
	maxConc := fs.Int("max-concurrent", 1, "generations at once (more wait in a short queue)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) == 0 {
		return usageError(env, "usage: lathe serve [flags] MODEL [PIPELINE]")
	}
	if *apiKey == "" {
		*apiKey = lookupEnv(env, "LATHE_API_KEY")
	}
	modelDir, adapterDir, code := mf.resolve(ctx, env, pos[0], pos[1:])
	if code != exitOK {
		return code
	}
	if *id == "" {
		*id = modelID(pos[0])
	}
	eng, err := infer.Open(infer.Config{Model: modelDir, Adapter: adapterDir, Template: mf.template, ID: *id})
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	defer eng.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	h := serve.New(eng.Backend(), serve.Options{APIKey: *apiKey, MaxTokens: *maxTokens, MaxConcurrent: *maxConc,
		Logf: func(f string, a ...any) { fmt.Fprintf(env.stderr, f+"\n", a...) }})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(env.stderr, "serving %s (template %s) at http://%s/v1\n", eng.ID, eng.Template.Name, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return exitOK
	}
}

func lookupEnv(env *cliEnv, name string) string {
	for _, kv := range env.environ {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
