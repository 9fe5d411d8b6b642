stage "exec" "a" {
  command = ["true"]
  outputs = ["out"]
}

stage "exec" "b" {
  command = ["true"]
  outputs = ["out"]
  resources {
    cpus = exec.a.out == null ? 1 : 2
  }
}
