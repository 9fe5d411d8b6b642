# Counts words: an exec-only pipeline with a required variable.

variable "title" {
  type        = string
  description = "The report's first line."
}

variable "top" {
  type    = number
  default = 3
  validation {
    condition     = var.top > 0 && var.top <= 100
    error_message = "top must be between 1 and 100."
  }
}

variable "tags" {
  type    = list(string)
  default = ["a", "b"]
}

stage "exec" "count" {
  command = ["sh", "-c", "sort $IN_words | uniq -c | sort -k1,1nr | head -n ${var.top} > $OUT_counts/top.txt"]
  inputs  = { words = "words.txt" }
  outputs = ["counts"]
}

stage "exec" "report" {
  command = ["sh", "-c", "{ echo \"$TITLE\"; cat $IN_counts/top.txt; } > $OUT_report/report.txt"]
  env     = { TITLE = var.title }
  inputs  = { counts = exec.count.counts }
  outputs = ["report"]
}
