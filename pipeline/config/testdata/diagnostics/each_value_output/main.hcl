stage "model-source" "base" {
  repo = "x"
}

stage "train" "sweep" {
  for_each = toset(["a", "b"])
  model    = model-source.base.model
}

stage "exec" "eval" {
  for_each = train.sweep
  command  = ["eval", each.key, each.valu]
  inputs   = { model = each.value.modle, other = train.sweep[each.key].metrcs }
}
