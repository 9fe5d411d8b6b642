package main

// lathe tokenizer encode|decode|train: the tokenizer on the command line.
//
//	lathe tokenizer encode --tokenizer PATH [--no-special]     text on stdin -> JSON ids
//	lathe tokenizer decode --tokenizer PATH [--skip-special]   JSON ids on stdin -> text
//	lathe tokenizer train --vocab-size N [--min-frequency F] [--special TOKEN]... -o DIR FILE...
//
// PATH is a tokenizer.json or SentencePiece tokenizer.model file, or a
// directory holding one (tokenizer.json preferred). encode reads
// stdin exactly (a trailing newline is text too: use printf or echo -n);
// decode writes the text with no newline added.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// subFlagSet is newFlagSet for a subcommand: its usage names the subcommand.
func subFlagSet(env *cliEnv, name, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("lathe "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: lathe %s\n\n%s\n\nFlags:\n", usage, summary)
		fs.PrintDefaults()
	}
	return fs
}

func cmdTokenizer(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 {
		return usageError(env, "usage: lathe tokenizer encode|decode|train [flags]")
	}
	switch args[0] {
	case "encode":
		return tokenizerEncode(env, os.Stdin, args[1:])
	case "decode":
		return tokenizerDecode(env, os.Stdin, args[1:])
	case "train":
		return tokenizerTrain(ctx, env, args[1:])
	}
	return usageError(env, "unknown tokenizer command %q (want encode, decode or train)", args[0])
}

func loadTokenizerFlag(env *cliEnv, path string) (tokenizer.Codec, int) {
	if path == "" {
		return nil, usageError(env, "--tokenizer PATH is required (a tokenizer.json or tokenizer.model file, or a directory holding one)")
	}
	t, _, err := tokenize.LoadTokenizer(path)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return nil, exitFailed
	}
	return t, exitOK
}

func tokenizerEncode(env *cliEnv, stdin io.Reader, args []string) int {
	fs := subFlagSet(env, "tokenizer encode", "tokenizer encode --tokenizer PATH [--no-special] < text",
		"encode the text on stdin; print the token ids as a JSON array")
	path := fs.String("tokenizer", "", "tokenizer.json or tokenizer.model, or a directory holding one")
	noSpecial := fs.Bool("no-special", false, "do not add the tokenizer's own special tokens (BOS, ChatGLM's [gMASK] sop, ...)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return usageError(env, "tokenizer encode reads its text on stdin; unexpected argument %q", pos[0])
	}
	t, rc := loadTokenizerFlag(env, *path)
	if t == nil {
		return rc
	}
	text, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: read stdin: %v\n", err)
		return exitFailed
	}
	ids := t.Encode(string(text), !*noSpecial)
	if ids == nil {
		ids = []int{}
	}
	b, _ := json.Marshal(ids)
	fmt.Fprintf(env.stdout, "%s\n", b)
	return exitOK
}

func tokenizerDecode(env *cliEnv, stdin io.Reader, args []string) int {
	fs := subFlagSet(env, "tokenizer decode", "tokenizer decode --tokenizer PATH [--skip-special] < ids.json",
		"decode a JSON array of token ids on stdin; print the text")
	path := fs.String("tokenizer", "", "tokenizer.json or tokenizer.model, or a directory holding one")
	skip := fs.Bool("skip-special", false, "leave special tokens out of the text")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return usageError(env, "tokenizer decode reads its ids on stdin; unexpected argument %q", pos[0])
	}
	t, rc := loadTokenizerFlag(env, *path)
	if t == nil {
		return rc
	}
	var ids []int
	dec := json.NewDecoder(stdin)
	if err := dec.Decode(&ids); err != nil {
		fmt.Fprintf(env.stderr, "lathe: stdin: want a JSON array of token ids: %v\n", err)
		return exitFailed
	}
	if _, err := dec.Token(); err != io.EOF {
		fmt.Fprintf(env.stderr, "lathe: stdin: unexpected data after the JSON array\n")
		return exitFailed
	}
	for i, id := range ids {
		if _, ok := t.IDToToken(id); !ok {
			fmt.Fprintf(env.stderr, "lathe: id %d (element %d) is not in the vocabulary (%d tokens)\n", id, i, t.VocabSize())
			return exitFailed
		}
	}
	fmt.Fprint(env.stdout, t.Decode(ids, *skip))
	return exitOK
}

func tokenizerTrain(ctx context.Context, env *cliEnv, args []string) int {
	fs := subFlagSet(env, "tokenizer train", "tokenizer train --vocab-size N [--min-frequency F] [--special TOKEN]... -o DIR FILE...",
		"train a byte-level BPE tokenizer on text files; write DIR/tokenizer.json and DIR/tokenizer_config.json")
	vocab := fs.Int("vocab-size", 0, "vocabulary size, special tokens and the 256 byte symbols included (required)")
	minFreq := fs.Int("min-frequency", 2, "stop merging when no pair occurs this often")
	var special stringList
	fs.Var(&special, "special", "a special token (repeatable; ids 0.. in order; the first is eos_token)")
	out := fs.String("o", "", "output directory (required)")
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	switch {
	case *vocab <= 0:
		return usageError(env, "--vocab-size N is required")
	case *out == "":
		return usageError(env, "-o DIR is required")
	case len(files) == 0:
		return usageError(env, "name at least one text file to train on")
	case *minFreq < 1:
		return usageError(env, "--min-frequency must be at least 1")
	}
	var readErr error
	var lines int64
	corpus := func(yield func(string) bool) {
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				readErr = err
				return
			}
			fh, err := os.Open(f)
			if err != nil {
				readErr = err
				return
			}
			br := bufio.NewReaderSize(fh, 1<<16)
			for {
				line, err := br.ReadString('\n')
				if line != "" {
					lines++
					if !yield(line) {
						fh.Close()
						return
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					readErr = fmt.Errorf("%s: %w", f, err)
					fh.Close()
					return
				}
			}
			fh.Close()
		}
	}
	t, _, err := tokenize.TrainTokenizer(corpus, *out, tokenize.TrainOptions{VocabSize: *vocab, MinFrequency: *minFreq, Special: special})
	if readErr != nil {
		err = readErr
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return exitCanceled
		}
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "Trained on %d lines of %s: %d tokens (%d special) -> %s\n",
		lines, strings.Join(files, ", "), t.VocabSize(), len(special), filepath.Join(*out, "tokenizer.json"))
	return exitOK
}
