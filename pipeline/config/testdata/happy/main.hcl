variable "base" { default = "Qwen/Qwen2.5-0.5B-Instruct" }
variable "ranks" {
  type        = map(number)
  default     = { r8 = 8, r16 = 16 }
  description = "LoRA ranks to sweep"
  validation {
    condition     = alltrue([for r in values(var.ranks) : r > 0])
    error_message = "Every rank must be positive."
  }
}
variable "opts" { type = object({ lr = number, wd = optional(number, 0.5) }) }
variable "langs" {
  type    = set(string)
  default = ["en", "fr"]
}

locals {
  prefix = "${var.base}-x"
  cmd    = ["sh", "-c", local.script]
}
locals {
  script = "cp $IN_data $OUT_result/x # ${local.prefix}"
  greeting = templatefile("hello.tpl", { name = upper(var.base) })
  prep_out = exec.prep.result
}

stage "exec" "prep" {
  command = local.cmd
  inputs  = { data = "data/x.txt", note = file("note.txt") }
  outputs = ["result"]
}

stage "model-source" "base" {
  repo = var.base
}

stage "train" "sweep" {
  for_each      = var.ranks
  model         = model-source.base.model
  learning_rate = var.opts.lr
  method        = "lora"
  lora {
    rank  = each.value
    alpha = 2 * each.value
  }
}

stage "exec" "eval" {
  for_each = train.sweep
  command  = ["eval", each.key]
  inputs   = { model = each.value.model, data = local.prep_out }
  outputs  = ["report"]
}

stage "exec" "lang" {
  for_each = var.langs
  command  = ["echo", each.value, "${var.opts.wd}"]
  outputs  = []
}

stage "exec" "pick" {
  command = ["pick"]
  inputs  = { best = train.sweep["r8"].model, report = exec.eval["r16"].report }
  outputs = ["result"]
}

output "all" { value = { for k, t in train.sweep : k => t.metrics } }
output "picked" {
  value       = exec.pick.result
  description = "the pick"
}
output "greeting" { value = local.greeting }
