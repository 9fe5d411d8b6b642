// Package sysinfo reads what `lathe env` reports about the host: the CPU's
// model and the instruction-set features lathe's CPU backend uses, and the
// memory (total, available, and the control group's limit).
//
// It reads Linux's /proc and /sys (cgroup v1 and v2); elsewhere the values
// it cannot read are zero or empty, never an error that stops lathe. It
// does not measure anything, pick thread counts or enforce limits: the
// training stages' memory guard and the CPU backend decide for themselves.
package sysinfo
