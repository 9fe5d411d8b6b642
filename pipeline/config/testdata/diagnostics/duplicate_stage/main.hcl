stage "exec" "prep" {
  command = ["true"]
}

stage "exec" "prep" {
  command = ["false"]
}
