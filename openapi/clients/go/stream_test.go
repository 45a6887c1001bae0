package crispyclient

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestEventReaderSplitsEventsAndSkipsComments(t *testing.T) {
	r := NewEventReader(strings.NewReader(": keep-alive\n\nid: 1\nevent: token\ndata: {\"token\":\"Hi\"}\n\n" +
		"data: {\"a\":1}\ndata: {\"b\":2}\n\nid: 3\nevent: done\ndata: {}\n\n"))
	want := []Event{{ID: "1", Name: "token", Data: []byte(`{"token":"Hi"}`)}, {Name: "message", Data: []byte("{\"a\":1}\n{\"b\":2}")}, {ID: "3", Name: "done", Data: []byte("{}")}}
	for i, w := range want {
		ev, err := r.Next()
		if err != nil || ev.ID != w.ID || ev.Name != w.Name || string(ev.Data) != string(w.Data) {
			t.Fatalf("event %d = %+v %v, want %+v", i, ev, err, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want io.EOF", err)
	}
}

func TestChatStreamDecodesTypedEvents(t *testing.T) {
	body := "id: 1\nevent: token\ndata: {\"token\":\"Hel\"}\n\nid: 2\nevent: done\ndata: {\"model\":\"builtin:offline\",\"requestId\":\"r1\",\"usage\":{\"promptTokens\":1,\"completionTokens\":2,\"totalTokens\":3}}\n\n"
	s := &ChatStream{body: io.NopCloser(strings.NewReader(body)), r: NewEventReader(strings.NewReader(body))}
	ev, err := s.Next()
	if err != nil || ev.Token == nil || ev.Token.Token != "Hel" || ev.ID != 1 {
		t.Fatalf("first event %+v %v", ev, err)
	}
	ev, err = s.Next()
	if err != nil || ev.Done == nil || ev.Done.Model != "builtin:offline" || ev.Done.Usage.TotalTokens != 3 || s.LastEventID != "2" {
		t.Fatalf("second event %+v %v", ev, err)
	}
}

func TestRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "soon": 0} {
		if got := RetryAfter(http.Header{"Retry-After": {v}}); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
}
