variable "name" { default = "from-a" }

stage "model-source" "base" {
  repo = var.name
}
