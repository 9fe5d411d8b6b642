variable "account" { default = "ml" }

stage "exec" "prep" {
  command = ["true"]
  outputs = ["out"]
}

locals {
  out = exec.prep.out
}

executor "slurm" {
  account     = var.acount
  partition   = exec.prep.out
  store       = local.out
  sbatch_args = "--exclusive"
}
