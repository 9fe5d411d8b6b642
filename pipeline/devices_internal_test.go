package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

func TestStageKeyBackend(t *testing.T) {
	kind := &stage.Kind{Name: "train", Version: "7"}
	args := cty.ObjectVal(map[string]cty.Value{"epochs": cty.NumberIntVal(3)})
	keyOf := func(gpus int) string {
		inst := &config.Instance{Addr: "train.x", Kind: kind, Resources: config.Resources{GPUs: gpus}}
		k, err := stageKey(inst, args, fakeKeyContext{})
		if err != nil {
			t.Fatal(err)
		}
		return k.Text
	}
	head := "lathe-key v1\nkind train\nkind-version 7\nengine " + EngineVersion + "\n"
	tests := []struct {
		gpus int
		want string
	}{
		// A CPU stage's key is what it was before GPUs existed.
		{0, head + "arg epochs = 3\n"},
		{1, head + "backend cuda\narg epochs = 3\n"},
		// The number of devices does not enter the key, the backend does.
		{4, head + "backend cuda\narg epochs = 3\n"},
	}
	for _, tt := range tests {
		if got := keyOf(tt.gpus); got != tt.want {
			t.Errorf("gpus=%d key:\n%s\nwant:\n%s", tt.gpus, got, tt.want)
		}
	}
	if got := strings.Join(changedLabels(keyOf(0), keyOf(1)), ", "); got != "backend" {
		t.Errorf("changedLabels cpu -> cuda = %q, want backend", got)
	}
}

func TestBackendOf(t *testing.T) {
	for gpus, want := range map[int]string{0: "cpu", 1: "cuda", 8: "cuda"} {
		if got := BackendOf(&config.Instance{Resources: config.Resources{GPUs: gpus}}); got != want {
			t.Errorf("BackendOf(gpus=%d) = %q, want %q", gpus, got, want)
		}
	}
}

func TestDevicePoolLowestFirst(t *testing.T) {
	p := newDevicePool([]int{0, 1, 2, 3})
	ctx := context.Background()
	a, _ := p.acquire(ctx, 1, nil)
	b, _ := p.acquire(ctx, 2, nil)
	if !equal(a, []int{0}) || !equal(b, []int{1, 2}) {
		t.Fatalf("got %v and %v, want [0] and [1 2]", a, b)
	}
	p.release(a)
	c, _ := p.acquire(ctx, 2, nil)
	if !equal(c, []int{0, 3}) {
		t.Errorf("after releasing 0: got %v, want [0 3]", c)
	}
}

// TestDevicePoolFIFO: a request for two devices queued before requests for
// one is served first, and nobody gets a device another holds.
func TestDevicePoolFIFO(t *testing.T) {
	p := newDevicePool([]int{0, 1})
	ctx := context.Background()
	first, _ := p.acquire(ctx, 1, nil)

	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	queued := make(chan struct{})
	start := func(name string, n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := p.acquire(ctx, n, func(int) { queued <- struct{}{} })
			if err != nil || len(got) != n {
				t.Errorf("%s: got %v, %v", name, got, err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			p.release(got)
		}()
		select {
		case <-queued:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not have to wait", name)
		}
	}
	start("two", 2) // waits: one device is held
	start("one", 1) // waits behind "two" although a device is free
	mu.Lock()
	if len(order) != 0 {
		t.Fatalf("served while the first holder still holds: %v", order)
	}
	mu.Unlock()
	p.release(first)
	wg.Wait()
	if strings.Join(order, ",") != "two,one" {
		t.Errorf("served in order %v, want two,one", order)
	}
	if len(p.busy) != 0 || len(p.q.waiters) != 0 {
		t.Errorf("pool not empty at the end: busy %v, %d waiting", p.busy, len(p.q.waiters))
	}
}

func TestDevicePoolCancel(t *testing.T) {
	p := newDevicePool([]int{0, 1})
	held, _ := p.acquire(context.Background(), 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.acquire(ctx, 2, func(int) { cancel() })
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait returned %v", err)
	}
	// The canceled request no longer blocks a request for the free device.
	got, err := p.acquire(context.Background(), 1, func(int) { t.Error("had to wait for a free device") })
	if err != nil || !equal(got, []int{1}) {
		t.Errorf("got %v, %v; want [1]", got, err)
	}
	p.release(held)
	p.release(got)
	if len(p.busy) != 0 {
		t.Errorf("busy after release: %v", p.busy)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
