package sysinfo

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tree writes files (path -> content) under a new root directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo = "MemTotal:       24684096 kB\nMemFree:         1000000 kB\nMemAvailable:   23072336 kB\n"

func TestReadMemory(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    Memory
		wantErr string
	}{
		{
			name:  "no cgroup limit (v1, page-rounded MaxInt64)",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "4:memory:/a/b\n0::/\n", "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": "9223372036854771712\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10},
		},
		{
			name:  "v1 limit on the process's group",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "9:name=systemd:/\n4:memory:/a/b\n", "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": "4294967296\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10, CgroupLimit: 4 << 30},
		},
		{
			name:  "v1 combined controllers",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "4:cpu,memory:/x\n", "sys/fs/cgroup/memory/x/memory.limit_in_bytes": "1073741824"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10, CgroupLimit: 1 << 30},
		},
		{
			name:  "v2 limit on a parent group",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/user.slice/app.scope\n", "sys/fs/cgroup/user.slice/app.scope/memory.max": "max\n", "sys/fs/cgroup/user.slice/memory.max": "8589934592\n"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10, CgroupLimit: 8 << 30},
		},
		{
			name:  "v2 tightest of the path wins",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/a/b\n", "sys/fs/cgroup/a/b/memory.max": "2147483648\n", "sys/fs/cgroup/a/memory.max": "8589934592\n"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10, CgroupLimit: 2 << 30},
		},
		{
			name:  "container: the group's path is not mounted, the mount's root has the limit",
			files: map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/kubepods/pod1/ctr\n", "sys/fs/cgroup/memory.max": "536870912\n"},
			want:  Memory{Total: 24684096 << 10, Available: 23072336 << 10, CgroupLimit: 512 << 20},
		},
		{
			name:  "not Linux: nothing to read",
			files: map[string]string{},
			want:  Memory{},
		},
		{
			name:    "bad meminfo",
			files:   map[string]string{"proc/meminfo": "MemTotal: lots kB\n"},
			wantErr: "proc/meminfo:1: MemTotal: strconv.ParseInt",
		},
		{
			name:    "bad memory.max",
			files:   map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/a\n", "sys/fs/cgroup/a/memory.max": "plenty\n"},
			wantErr: `sys/fs/cgroup/a/memory.max: "plenty" is not a memory limit`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readMemory(tree(t, tt.files))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadMemoryHere(t *testing.T) {
	m, err := ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && (m.Total <= 0 || m.Available <= 0 || m.Available > m.Total) {
		t.Errorf("implausible: %+v", m)
	}
}

func TestCPUModel(t *testing.T) {
	tests := []struct {
		name, cpuinfo, want string
	}{
		{"x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9654 96-Core Processor\n", "AMD EPYC 9654 96-Core Processor"},
		{"arm with a model", "processor\t: 0\nBogoMIPS\t: 50.00\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "Raspberry Pi 4 Model B Rev 1.4"},
		{"arm without one", "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n", ""},
		{"empty model name", "model name\t:\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuModel(tree(t, map[string]string{"proc/cpuinfo": tt.cpuinfo})); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := cpuModel(t.TempDir()); got != "" {
		t.Errorf("no cpuinfo: %q", got)
	}
}

func TestCPUFeatures(t *testing.T) {
	f := CPUFeatures()
	seen := map[string]bool{}
	for _, x := range f {
		if seen[x] {
			t.Errorf("%s listed twice", x)
		}
		seen[x] = true
	}
	// FMA and AVX-512 imply AVX (the kernels rely on the hierarchy).
	if (seen["avx2"] || seen["avx512f"]) && !seen["avx"] {
		t.Errorf("features %v lack avx", f)
	}
}
