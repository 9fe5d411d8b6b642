# A pipeline run by CI: github-workflow.yml (copy it to
# .github/workflows/lathe.yml in your repository) plans it, runs it only when
# something changed, checks that a stage reproduces bit for bit and uploads the
# published report and the JSON summary.

variable "top" {
  type        = number
  default     = 10
  description = "How many of the most frequent words to list."
  validation {
    condition     = var.top > 0 && var.top <= 100
    error_message = "top must be between 1 and 100."
  }
}

stage "exec" "words" {
  command = ["sh", "-c", "tr -cs 'A-Za-z' '\\n' < $IN_corpus | tr 'A-Z' 'a-z' | sed '/^$/d' > $OUT_words/words.txt"]
  inputs  = { corpus = "corpus.txt" }
  outputs = ["words"]
}

stage "exec" "counts" {
  command = ["sh", "-c", "sort $IN_words/words.txt | uniq -c | sort -k1,1nr -k2,2 | head -n ${var.top} > $OUT_counts/top.txt; echo \"lathe:metrics 1 distinct=$(sort -u $IN_words/words.txt | wc -l)\""]
  inputs  = { words = exec.words.words }
  outputs = ["counts"]
  # Copied to dist/report after every successful run (not part of the cache key).
  publish = { "dist/report" = "counts" }
}

output "report" { value = exec.counts.counts }
