package sysinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/cpu"
)

// Memory is the host's memory as a process sees it, in bytes.
type Memory struct {
	// Total and Available are /proc/meminfo's MemTotal and MemAvailable.
	Total     int64 `json:"total"`
	Available int64 `json:"available"`
	// CgroupLimit is the tightest memory limit of this process's control
	// group and its ancestors; 0 when there is none.
	CgroupLimit int64 `json:"cgroup_limit"`
}

// ReadMemory reads the host's memory. Missing files (not Linux) leave
// their fields zero; a file that exists but cannot be parsed is an error
// naming it.
func ReadMemory() (Memory, error) { return readMemory("/") }

func readMemory(root string) (Memory, error) {
	var m Memory
	path := filepath.Join(root, "proc/meminfo")
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return m, err
	}
	for ln, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s:%d: %s: %w", path, ln+1, name, err)
		}
		if name == "MemTotal" {
			m.Total = kb << 10
		} else {
			m.Available = kb << 10
		}
	}
	m.CgroupLimit, err = cgroupMemoryLimit(root)
	return m, err
}

// cgroupMemoryLimit returns the smallest memory limit on the path from
// this process's cgroup up to the hierarchy's root, for cgroup v2
// (memory.max) and v1 (memory.limit_in_bytes); 0 when there is none.
// Inside a container the hierarchy is usually mounted at the container's
// own group, so the process's path does not exist there: levels that do
// not exist are skipped, and the mount's root is always read.
func cgroupMemoryLimit(root string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, nil
	}
	var limit int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, file = "sys/fs/cgroup", "memory.max"
		case hasController(parts[1], "memory"):
			dir, file = "sys/fs/cgroup/memory", "memory.limit_in_bytes"
		default:
			continue
		}
		l, err := smallestLimit(filepath.Join(root, dir), parts[2], file)
		if err != nil {
			return 0, err
		}
		if l > 0 && (limit == 0 || l < limit) {
			limit = l
		}
	}
	return limit, nil
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallestLimit reads file in mount/<group> and each of its ancestors.
func smallestLimit(mount, group, file string) (int64, error) {
	var limit int64
	group = filepath.Clean("/" + group)
	for {
		path := filepath.Join(mount, group, file)
		b, err := os.ReadFile(path)
		if err == nil {
			s := string(bytes.TrimSpace(b))
			if s != "max" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s: %q is not a memory limit", path, s)
				}
				// cgroup v1 writes "no limit" as a page-rounded MaxInt64.
				if n > 0 && n < math.MaxInt64/2 && (limit == 0 || n < limit) {
					limit = n
				}
			}
		}
		if group == "/" {
			return limit, nil
		}
		group = filepath.Dir(group)
	}
}

// CPUModel returns the CPU's model name from /proc/cpuinfo ("AMD EPYC
// 9654 96-Core Processor"), or "" when it cannot tell.
func CPUModel() string { return cpuModel("/") }

func cpuModel(root string) string {
	f, err := os.Open(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(name) {
		case "model name", "Model", "cpu model":
			if v := strings.TrimSpace(value); v != "" {
				return v
			}
		}
	}
	return ""
}

// CPUFeatures lists the instruction-set extensions of this CPU that
// matter to lathe's CPU backend (its matrix kernels use AVX2 with FMA, or
// AVX-512), in a fixed order.
func CPUFeatures() []string {
	var out []string
	add := func(has bool, name string) {
		if has {
			out = append(out, name)
		}
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		add(cpu.X86.HasAVX, "avx")
		add(cpu.X86.HasAVX2, "avx2")
		add(cpu.X86.HasFMA, "fma")
		add(cpu.X86.HasAVX512F, "avx512f")
		add(cpu.X86.HasAVX512BW, "avx512bw")
		add(cpu.X86.HasAVX512VL, "avx512vl")
		add(cpu.X86.HasAVX512BF16, "avx512bf16")
	case "arm64":
		add(cpu.ARM64.HasASIMD, "asimd")
		add(cpu.ARM64.HasASIMDHP, "asimdhp")
		add(cpu.ARM64.HasSVE, "sve")
	}
	return out
}
