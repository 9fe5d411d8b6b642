//go:build ignore

// gen_corpus writes corpus_generated.jsonl: simple English paragraphs
// composed from the word lists below with a seeded PCG, so the tiny
// pretraining example has a few tens of KB of text with structure a small
// model can learn (and a validation split that shares it).
//
//	go run gen_corpus.go
package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

var (
	people  = []string{"the turner", "the miller", "the baker", "the apprentice", "the old smith", "the carpenter", "the weaver", "the potter", "the gardener", "the ferryman"}
	things  = []string{"the bowl", "the spindle", "the loaf", "the wheel", "the chair", "the basket", "the jug", "the handle", "the lid", "the plank", "the rope", "the lamp"}
	woods   = []string{"oak", "ash", "maple", "walnut", "cherry", "beech", "elm", "pine"}
	places  = []string{"the workshop", "the mill", "the bakery", "the market", "the river bank", "the meadow", "the yard", "the long table", "the street", "the orchard"}
	times   = []string{"in the morning", "at noon", "in the afternoon", "in the evening", "before dawn", "after the rain", "on market day", "in the spring", "in the winter"}
	verbs   = []string{"makes", "carries", "mends", "sells", "cleans", "checks", "polishes", "measures", "wraps", "finishes"}
	adjs    = []string{"small", "heavy", "smooth", "round", "worn", "new", "dark", "pale", "warm", "dry"}
	reasons = []string{"because the weather is fine", "because the order is late", "because the wood is dry", "because the market opens soon", "because the light is good", "so that nothing is wasted", "so that the work is ready in time"}
	sayings = []string{"measure twice and cut once", "a sharp tool is a safe tool", "good work takes patience", "every tool goes back to its place", "the wood tells you how it wants to be cut", "slow hands make fine work"}
)

func pick(r *rand.Rand, xs []string) string { return xs[r.IntN(len(xs))] }

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func sentence(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0:
		return fmt.Sprintf("%s %s %s %s in %s.", capitalize(pick(r, times)), pick(r, people), pick(r, verbs), pick(r, things), pick(r, places))
	case 1:
		return fmt.Sprintf("%s %s a %s %s of %s %s.", capitalize(pick(r, people)), pick(r, verbs), pick(r, adjs), strings.TrimPrefix(pick(r, things), "the "), pick(r, woods), pick(r, reasons))
	case 2:
		return fmt.Sprintf("%s is %s, and %s is %s.", capitalize(pick(r, things)), pick(r, adjs), pick(r, things), pick(r, adjs))
	case 3:
		return fmt.Sprintf("%s says that %s.", capitalize(pick(r, people)), pick(r, sayings))
	case 4:
		return fmt.Sprintf("%s goes to %s %s and comes back with %s.", capitalize(pick(r, people)), pick(r, places), pick(r, times), pick(r, things))
	default:
		return fmt.Sprintf("%s %s is %s than %s.", capitalize(pick(r, woods)), "wood", []string{"harder", "softer", "darker", "paler", "lighter", "heavier"}[r.IntN(6)], pick(r, woods))
	}
}

func main() {
	r := rand.New(rand.NewPCG(2026, 11))
	f, err := os.Create("corpus_generated.jsonl")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for range 250 {
		n := 2 + r.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = sentence(r)
		}
		if err := enc.Encode(map[string]string{"text": strings.Join(parts, " ")}); err != nil {
			panic(err)
		}
	}
}
