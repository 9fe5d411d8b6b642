stage "exec" "prep" {
  command = ["true"]
  outputs = ["out"]
}

executor "slrum" {
  partiton = "gpu"
}

executor "slurm" {
  partition = "gpu"
}
