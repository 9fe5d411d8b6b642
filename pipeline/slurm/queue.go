package slurm

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// queueEntry is one job as squeue lists it.
type queueEntry struct {
	ID     string
	State  string // PENDING, RUNNING, COMPLETED, ...
	Reason string // why pending, or why it ended; "" for None
	Node   string // where it runs or ran; ""
}

// squeueFormat is the -o format parseQueue reads.
const squeueFormat = "%i|%T|%r|%N"

// parseQueue reads `squeue -h -o '%i|%T|%r|%N'` output.
func parseQueue(out string) (map[string]queueEntry, error) {
	m := map[string]queueEntry{}
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 4 {
			return nil, fmt.Errorf("squeue output line %d: %q: want 4 fields separated by |", n+1, line)
		}
		e := queueEntry{ID: f[0], State: f[1], Reason: f[2], Node: f[3]}
		if !validJobID(e.ID) || e.State == "" || strings.IndexFunc(e.State, func(r rune) bool { return !unicode.IsUpper(r) && r != '_' }) >= 0 {
			return nil, fmt.Errorf("squeue output line %d: %q: not a job id and state", n+1, line)
		}
		if e.Reason == "None" || e.Reason == "(null)" {
			e.Reason = ""
		}
		if e.Node == "(null)" || e.Node == "n/a" {
			e.Node = ""
		}
		m[e.ID] = e
	}
	return m, nil
}

// validJobID accepts a plain Slurm job id.
func validJobID(id string) bool {
	if id == "" || len(id) > 20 {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseSubmit reads the job id from `sbatch --parsable` output:
// "<id>" or "<id>;<cluster>".
func parseSubmit(out string) (string, error) {
	line := strings.TrimSpace(out)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = strings.TrimSpace(line[i+1:]) // warnings come first
	}
	id, _, _ := strings.Cut(line, ";")
	if !validJobID(id) {
		return "", fmt.Errorf("sbatch printed %q, not a job id", strings.TrimSpace(out))
	}
	return id, nil
}

// parseShowJob reads the Key=Value pairs of `scontrol show job -o <id>`.
// Values do not contain spaces except the last ones on the line
// (Command, WorkDir, StdOut), which it does not need.
func parseShowJob(out string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
	return m
}

// active reports whether a job in this state may still start or run
// (its processes may still be on a node).
func active(state string) bool {
	switch state {
	case "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
		"REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE":
		return true
	}
	return false
}

// endReason says how a job that ended in state ended, as the end of a
// sentence that begins with the job; exitCode is scontrol's ExitCode
// ("1:0": status and signal; "" when unknown).
func endReason(state, reason, exitCode, timeLimit string) string {
	status, signal := -1, 0
	if a, b, ok := strings.Cut(exitCode, ":"); ok {
		if n, err := strconv.Atoi(a); err == nil {
			status = n
		}
		if n, err := strconv.Atoi(b); err == nil {
			signal = n
		}
	}
	switch state {
	case "COMPLETED":
		return "completed"
	case "FAILED":
		switch {
		case signal > 0:
			return fmt.Sprintf("was killed by signal %d", signal)
		case status >= 0:
			return fmt.Sprintf("failed with exit code %d", status)
		}
		return "failed"
	case "CANCELLED":
		if reason != "" && reason != "DependencyNeverSatisfied" {
			return "was canceled (" + reason + ")"
		}
		return "was canceled"
	case "TIMEOUT":
		if timeLimit != "" && timeLimit != "UNLIMITED" {
			return "hit its time limit (" + timeLimit + ")"
		}
		return "hit its time limit"
	case "NODE_FAIL":
		return "was lost: its node failed"
	case "BOOT_FAIL":
		return "was lost: its node failed to boot"
	case "OUT_OF_MEMORY":
		return "ran out of memory"
	case "PREEMPTED":
		return "was preempted"
	case "DEADLINE":
		return "passed its deadline"
	case "REVOKED":
		return "was revoked (it runs on another cluster)"
	case stateVanished:
		return "vanished from the Slurm queue without a final state (the cluster lost it)"
	}
	return "ended in state " + state
}

// stateVanished is the state of a job that left the queue unseen.
const stateVanished = "VANISHED"
