stage "exec" "prep" {
  command = ["true"]
  outputs = ["result"]
}

stage "exec" "number" {
  for_each = 3
  command  = ["true"]
}

stage "exec" "numbers" {
  for_each = [1, 2]
  command  = ["true"]
}

stage "exec" "unknown" {
  for_each = exec.prep.result
  command  = ["true"]
}

stage "exec" "duplicates" {
  for_each = ["a", "b", "a"]
  command  = ["true"]
}
