package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	helperEnv = "LATHE_CACHE_TEST_HELPER" // root|key: run doOnce
	holdEnv   = "LATHE_CACHE_TEST_HOLD"   // root|key: take the lock and wait to be killed
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(holdEnv); spec != "" {
		root, key, _ := strings.Cut(spec, "|")
		s, err := Open(root)
		if err == nil {
			_, err = s.Lock(context.Background(), key)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		fmt.Print("locked\n")
		time.Sleep(time.Hour)
	}
	if spec := os.Getenv(helperEnv); spec != "" {
		root, key, _ := strings.Cut(spec, "|")
		if err := doOnce(root, NewKey([]string{key})); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// doOnce is what the executor does for one stage: lock the key, look it
// up, and only on a miss do the work (recorded in work.log) and commit.
func doOnce(root string, key Key) error {
	s, err := Open(root)
	if err != nil {
		return err
	}
	unlock, err := s.Lock(context.Background(), key.Sum)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := s.Lookup(key.Sum)
	if err != nil {
		return err
	}
	if rec != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(root, "work.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "work by pid %d\n", os.Getpid())
	f.Close()
	st, err := s.NewStaging()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(st.Dir, "out"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(st.Dir, "out", "result"), []byte("done"), 0o644); err != nil {
		return err
	}
	// Hold the lock a little so that the contenders really queue on it.
	time.Sleep(20 * time.Millisecond)
	_, err = s.Commit(st, []string{"out"}, Record{Key: key.Sum, KeyText: key.Text})
	return err
}

func workCount(t *testing.T, root string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "work.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

func TestSameKeyGoroutinesRunOnce(t *testing.T) {
	s := openStore(t)
	key := NewKey([]string{"goroutines"})
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = doOnce(s.Root(), key)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := workCount(t, s.Root()); n != 1 {
		t.Fatalf("work ran %d times, want 1", n)
	}
}

func TestSameKeyProcessesRunOnce(t *testing.T) {
	s := openStore(t)
	key := "processes"
	cmds := make([]*exec.Cmd, 3)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
		cmds[i].Env = append(os.Environ(), helperEnv+"="+s.Root()+"|"+key)
		cmds[i].Stderr = os.Stderr
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	if n := workCount(t, s.Root()); n != 1 {
		t.Fatalf("work ran %d times across processes, want 1", n)
	}
	if rec, err := s.Lookup(NewKey([]string{key}).Sum); rec == nil || err != nil {
		t.Fatalf("no record after the processes: %v %v", rec, err)
	}
}

func TestLockCancel(t *testing.T) {
	s := openStore(t)
	key := testKey("cancel").Sum
	unlock, err := s.Lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Lock(ctx, key)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Lock returned %v, want context.Canceled", err)
	}
	unlock()
	unlock2, err := s.Lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestLockReleasedWhenProcessDies(t *testing.T) {
	s := openStore(t)
	key := testKey("dies").Sum
	// A child process takes the lock, says so, and is killed.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+s.Root()+"|"+key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	if !isLocked(s.dir("locks", key+".lock")) {
		t.Fatal("helper holds no lock")
	}
	cmd.Process.Kill()
	cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := s.Lock(ctx, key)
	if err != nil {
		t.Fatalf("lock after holder died: %v", err)
	}
	unlock()
}
