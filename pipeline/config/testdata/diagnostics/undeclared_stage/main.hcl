stage "exec" "prep" {
  command = ["true"]
  outputs = ["result"]
}

stage "exec" "use" {
  command = ["true"]
  inputs  = { data = exec.perp.result }
}
