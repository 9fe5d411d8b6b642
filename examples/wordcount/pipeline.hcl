# Word counts: a small data-preparation pipeline over a corpus that ships
# with lathe, made of exec stages only. It shows the pipeline core at work —
# a DAG of stages, a for_each sweep, cached results and outputs; run it twice
# and the second run is all cache hits.

variable "top" {
  type        = number
  default     = 10
  description = "How many of the most frequent words to list."
  validation {
    condition     = var.top > 0 && var.top <= 100
    error_message = "top must be between 1 and 100."
  }
}

locals {
  min_lengths = { short = 1, long = 6 }
}

# Split the corpus into lower-case words, one per line.
stage "exec" "words" {
  command = ["sh", "-c", "tr -cs 'A-Za-z' '\\n' < $IN_corpus | tr 'A-Z' 'a-z' | sed '/^$/d' > $OUT_words/words.txt"]
  inputs  = { corpus = "corpus.txt" }
  outputs = ["words"]
}

# Count word frequencies for two minimum word lengths, in parallel.
stage "exec" "counts" {
  for_each = local.min_lengths
  command = ["sh", "-c", join(" | ", [
    "awk 'length($0) >= ${each.value}' $IN_words/words.txt",
    "sort", "uniq -c", "sort -k1,1nr -k2,2",
    "head -n ${var.top} > $OUT_counts/top.txt",
  ])]
  inputs  = { words = exec.words.words }
  outputs = ["counts"]
}

# Put the two tables side by side in a report.
stage "exec" "report" {
  command = ["sh", "-c", "echo '== all words'; cat $IN_short/top.txt; echo '== words of 6+ letters'; cat $IN_long/top.txt; { echo '== all words'; cat $IN_short/top.txt; echo '== words of 6+ letters'; cat $IN_long/top.txt; } > $OUT_report/report.txt"]
  inputs = {
    short = exec.counts["short"].counts
    long  = exec.counts["long"].counts
  }
  outputs = ["report"]
}

output "report" {
  value       = exec.report.report
  description = "The report directory in the store."
}
