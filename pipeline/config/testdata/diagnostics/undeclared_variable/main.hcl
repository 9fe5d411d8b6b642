variable "base" { default = "Qwen/Qwen2.5-0.5B" }

stage "model-source" "base" {
  repo = var.bsae
}
