stage "exec" "prep" {
  command = ["true"]
  outputs = ["out"]
}

executor "slurm" {
  partition   = "gpu nodes"
  account     = ""
  qos         = 3
  time        = "30s"
  sbatch_args = ["--constraint=a100", "exclusive", "--dependency=afterany:1", "-oout.txt"]
  store       = "~/lathe-store"
  lathe       = "bin/lathe"
  restd       = "http://slurm:6820"
}
