stage "exec" "a" {
  command = ["true"]
  inputs  = { x = exec.c.out }
  outputs = ["out"]
}

stage "exec" "b" {
  command = ["true"]
  inputs  = { x = exec.a.out }
  outputs = ["out"]
}

stage "exec" "c" {
  command = ["true"]
  inputs  = { x = local.via_b }
  outputs = ["out"]
}

locals {
  via_b = exec.b.out
}
