variable "gpus" { default = 1.5 }

stage "exec" "a" {
  command = ["true"]
  outputs = ["out"]
  resources {
    gpus   = var.gpus
    cpus   = 0
    memory = "8Gb"
    time   = "10s"
  }
}

stage "exec" "b" {
  for_each = { small = "1GiB", none = "0" }
  command  = ["true"]
  outputs  = ["out"]
  resources {
    memory = each.value
    time   = 90
    gpus   = "two"
  }
}
