package auditlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// Sink is a witness: somewhere beyond the operator's data folder that keeps a copy of every
// checkpoint, so a rolled-back or rebuilt folder can be caught against it.
type Sink interface {
	Name() string
	Push(ctx context.Context, c Checkpoint) error
}

// FileSink appends each checkpoint as a JSON line to a file (typically on another disk or a mount
// the server's operator cannot rewrite).
type FileSink struct {
	Path string
	mu   sync.Mutex
}

func (f *FileSink) Name() string { return "file " + f.Path }

func (f *FileSink) Push(_ context.Context, c Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("checkpoint file sink: %w", err)
	}
	if _, err := fh.Write(append(b, '\n')); err != nil {
		_ = fh.Close()
		return fmt.Errorf("checkpoint file sink: %w", err)
	}
	if err := fh.Sync(); err != nil {
		_ = fh.Close()
		return fmt.Errorf("checkpoint file sink: %w", err)
	}
	return fh.Close()
}

// WebhookSink POSTs each checkpoint as JSON, retrying with a doubling wait. Client decides which
// addresses it may reach (cmd/crispy gives it the alert webhooks' client, which refuses internal
// addresses unless CRISPY_WEBHOOK_ALLOW_INTERNAL).
type WebhookSink struct {
	URL     string
	Client  *http.Client
	Retries int           // after the first attempt (default 3)
	Backoff time.Duration // first wait (default 1 s)
}

// Name is the URL without credentials or query (a witness URL may carry a token).
func (w *WebhookSink) Name() string { return "webhook " + redactURL(w.URL) }

func (w *WebhookSink) Push(ctx context.Context, c Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	retries, wait := w.Retries, w.Backoff
	if retries == 0 {
		retries = 3
	}
	if wait == 0 {
		wait = time.Second
	}
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			wait *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("checkpoint webhook %s: %w", redactURL(w.URL), redactErr(err, w.URL))
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.Client.Do(req)
		if err != nil {
			last = redactErr(err, w.URL)
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		last = fmt.Errorf("status %d", resp.StatusCode)
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
			break // the witness refuses it; retrying will not change that
		}
	}
	return fmt.Errorf("checkpoint webhook %s: %w", redactURL(w.URL), last)
}
