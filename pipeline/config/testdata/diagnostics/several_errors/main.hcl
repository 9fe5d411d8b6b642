variable "base" { default = "Qwen/Qwen2.5-0.5B" }

stage "model-source" "base" {
  repo = var.bsae
}

stage "train" "sft" {
  model         = model-source.base.modle
  learning_rate = "fast"
  method        = "lora"
  epochs        = 3
}

stage "exec" "report" {
  command = ["report", each.key]
  inputs  = { m = train.sft.model }
  outputs = ["out"]
}

output "scores" { value = train.sft.metrix }
