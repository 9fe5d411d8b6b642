stage "model-source" "base" {
  repo = "x"
}

stage "train" "sweep" {
  for_each = { r8 = 8, r16 = 16 }
  model    = model-source.base.model
  lora {
    rank = each.value
  }
}

stage "exec" "pick" {
  command = ["true"]
  inputs = {
    a = train.sweep["r9"].model
    b = train.sweep.model
    c = train.sweep["r8"].weights
  }
}
