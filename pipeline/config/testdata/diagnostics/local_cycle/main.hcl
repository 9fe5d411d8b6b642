locals {
  a = local.b
  b = "${local.a}-x"
  c = local.undefined
}

stage "exec" "prep" {
  command = [local.a]
}
