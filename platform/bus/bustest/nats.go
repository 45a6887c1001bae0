package bustest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is the NATS JetStream server of CRISPY_NATS_URL with a bus prefix of the test's own
// ("crispytest-<name>-<nanoseconds>"), whose stream is deleted after the test, so tests sharing the
// server never consume each other's events. It skips the test when CRISPY_NATS_URL is unset.
func NATS(t testing.TB, name string) (url, prefix string) {
	t.Helper()
	url = os.Getenv("CRISPY_NATS_URL")
	if url == "" {
		t.Skip("NATS JetStream transport not tested: set CRISPY_NATS_URL=nats://127.0.0.1:4222")
	}
	prefix = fmt.Sprintf("crispytest-%s-%d", name, time.Now().UnixNano())
	t.Cleanup(func() { deleteStream(t, url, prefix+"-events") })
	return url, prefix
}

func deleteStream(t testing.TB, url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Logf("cleanup: delete stream %s: %v", stream, err)
	}
}
