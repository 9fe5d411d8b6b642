name = "lathe"

stag "exec" "x" {
  command = ["true"]
}

stage "exec" {
  command = ["true"]
}

variable "rank" {
  default = 8
  typ     = number
}

variable "rank" {}

output "o" {
  description = "no value"
}

stage "exec" "9lives" {
  command = ["true"]
}
