stage "exec" "b" {
  command = ["true"]
  outputs = ["out"]
  resources {
    memory = "1GiB"
    disk   = "1GiB"
  }
  resources {
    gpus = 1
  }
}
