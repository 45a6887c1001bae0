// Package jsoncall is the one request/answer exchange of the providers' JSON APIs that are not
// chat (embeddings, rerank): send, read a bounded answer, sort failures into "try later" and
// "refused", decode. Each provider package keeps its own ErrUnavailable, so callers still tell a
// down embeddings provider from a down reranker.
package jsoncall

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Do sends req with c and decodes a 2xx JSON answer of at most maxAnswer bytes into v. Network
// failures, 429 and 5xx wrap unavailable (and the network error itself, so a caller tells its own
// deadline by context.DeadlineExceeded); other statuses carry the start of the provider's message.
func Do(c *http.Client, req *http.Request, v any, maxAnswer int64, unavailable error) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", unavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%w: read answer: %v", unavailable, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return fmt.Errorf("%w: HTTP %d: %s", unavailable, resp.StatusCode, Snippet(b))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, Snippet(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// Snippet is the start of an answer's body for an error message: enough to read the provider's
// reason, bounded so an HTML error page does not flood a log line.
func Snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
