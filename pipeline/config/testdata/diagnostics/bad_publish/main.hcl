variable "dist" {
  default = "dist"
}

stage "exec" "prep" {
  command = ["true"]
  outputs = ["data", "report"]
  publish = {
    "${var.dist}/data" = "dta"
    "../outside"       = "report"
  }
}

stage "model-source" "base" {
  repo    = "org/base"
  publish = { "dist/base" = "model" }
}

stage "train" "sweep" {
  for_each = { a = 1, b = 2 }
  model    = model-source.base.model
  publish = {
    "dist/${each.key}" = "metrics"
    "dist/base/inner"  = "model"
  }
}
