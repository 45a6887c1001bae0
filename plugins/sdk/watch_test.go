package sdk

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestHostPIDPrefersTheHostsWord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want int
	}{{"4242", 4242}, {"", 7}, {"junk", 7}, {"-3", 7}} {
		got := hostPID(func(string) string { return tc.env }, func() int { return 7 })
		if got != tc.want {
			t.Errorf("env %q: host pid %d, want %d", tc.env, got, tc.want)
		}
	}
}

func TestWatchParentNoticesTheHostIsGone(t *testing.T) {
	t.Parallel()
	var ppid atomic.Int64
	ppid.Store(100)
	gone := make(chan int, 1)
	go watchParent(context.Background(), 100, time.Millisecond, func() int { return int(ppid.Load()) }, func(pid int) { gone <- pid })
	select {
	case pid := <-gone:
		t.Fatalf("reported host %d gone while it is there", pid)
	case <-time.After(20 * time.Millisecond):
	}
	ppid.Store(1) // re-parented to init: the host died
	select {
	case pid := <-gone:
		if pid != 100 {
			t.Fatalf("reported %d", pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch never noticed the host was gone")
	}
}

func TestWatchParentEndsAPluginWhoseHostWasGoneBeforeItStarted(t *testing.T) {
	t.Parallel()
	gone := make(chan int, 1)
	watchParent(context.Background(), 100, time.Hour, func() int { return 1 }, func(pid int) { gone <- pid })
	if len(gone) != 1 {
		t.Fatal("a host gone before the watch began was not noticed")
	}
}
