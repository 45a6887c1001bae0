package sdk

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestHostPIDIsTheHostsWord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want int
	}{{"4242", 4242}, {"", 0}, {"junk", 0}, {"-3", 0}} {
		if got := hostPID(func(string) string { return tc.env }); got != tc.want {
			t.Errorf("env %q: host pid %d, want %d", tc.env, got, tc.want)
		}
	}
}

// watch runs watchParent with a parent the test moves, and returns the channel gone reports on.
func watch(t *testing.T, host int, ppid *atomic.Int64) chan int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	gone := make(chan int, 1)
	go watchParent(ctx, host, time.Millisecond, func() int { return int(ppid.Load()) }, func(pid int) { gone <- pid })
	return gone
}

func TestWatchParentNoticesTheParentIsGone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		host, parent int
	}{
		{"the host is the parent", 100, 100},
		{"a wrapper script of the host's is the parent", 100, 200},
		{"a host that is pid 1 is the parent", 1, 1},
		{"the host did not say who it is", 0, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ppid atomic.Int64
			ppid.Store(int64(tc.parent))
			gone := watch(t, tc.host, &ppid)
			select {
			case pid := <-gone:
				t.Fatalf("reported %d gone while it is there", pid)
			case <-time.After(50 * time.Millisecond):
			}
			ppid.Store(7) // re-parented to a subreaper: the parent died
			select {
			case pid := <-gone:
				if pid != tc.parent {
					t.Fatalf("reported %d gone, want %d", pid, tc.parent)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the watch never noticed the parent was gone")
			}
		})
	}
}

func TestWatchParentEndsAPluginWhoseHostWasGoneBeforeItStarted(t *testing.T) {
	t.Parallel()
	gone := make(chan int, 1)
	watchParent(context.Background(), 100, time.Hour, func() int { return 1 }, func(pid int) { gone <- pid })
	if len(gone) != 1 || <-gone != 100 {
		t.Fatal("a host gone before the watch began was not noticed")
	}
}
