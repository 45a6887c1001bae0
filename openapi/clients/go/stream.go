package crispyclient

// Hand-written, beside the generated client: reading a text/event-stream response event by event.
// The generated SendChatMessage returns the *http.Response unread; ClientWithResponses would read the
// whole stream before returning, so a streamed answer needs this.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Event is one server-sent event as it came: its id, name and data line(s).
type Event struct {
	ID   string
	Name string // "message" when the stream sent no event line
	Data []byte
}

// EventReader reads server-sent events from a stream.
type EventReader struct {
	sc  *bufio.Scanner
	err error
}

// NewEventReader reads events from r (a response body).
func NewEventReader(r io.Reader) *EventReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	return &EventReader{sc: sc}
}

// Next returns the next event, io.EOF at the end of the stream, or the read error.
func (r *EventReader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	var ev Event
	var data [][]byte
	seen := false
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if !seen {
				continue
			}
			if ev.Name == "" {
				ev.Name = "message"
			}
			ev.Data = bytes.Join(data, []byte("\n"))
			return ev, nil
		}
		if line[0] == ':' {
			continue // a comment (keep-alive)
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		seen = true
		switch string(field) {
		case "id":
			ev.ID = string(value)
		case "event":
			ev.Name = string(value)
		case "data":
			data = append(data, append([]byte(nil), value...))
		}
	}
	r.err = r.sc.Err()
	if r.err == nil {
		r.err = io.EOF
	}
	return Event{}, r.err
}

// ChatStreamEvent is one event of a chat turn, decoded: exactly one of Token, Tool, Citation, Done
// and Error is set (none for an event name this client does not know, whose Raw is kept).
type ChatStreamEvent struct {
	ID       int
	Name     string
	Token    *TokenData
	Tool     *ToolData
	Citation *CitationData
	Done     *DoneData
	Error    *ErrorData
	Raw      []byte
}

// ChatStream is a streamed chat turn (POST /chat or GET /chat/{sessionId}/stream).
type ChatStream struct {
	body io.ReadCloser
	r    *EventReader
	// RequestID is the x-request-id of the response.
	RequestID string
	// LastEventID is the id of the last event read: resume from it with ResumeChat.
	LastEventID string
}

// Next returns the next event; io.EOF after done or error ended the stream.
func (s *ChatStream) Next() (ChatStreamEvent, error) {
	ev, err := s.r.Next()
	if err != nil {
		return ChatStreamEvent{}, err
	}
	if ev.ID != "" {
		s.LastEventID = ev.ID
	}
	out := ChatStreamEvent{Name: ev.Name, Raw: ev.Data}
	out.ID, _ = strconv.Atoi(ev.ID)
	var target any
	switch ev.Name {
	case "token":
		out.Token = new(TokenData)
		target = out.Token
	case "tool":
		out.Tool = new(ToolData)
		target = out.Tool
	case "citation":
		out.Citation = new(CitationData)
		target = out.Citation
	case "done":
		out.Done = new(DoneData)
		target = out.Done
	case "error":
		out.Error = new(ErrorData)
		target = out.Error
	default:
		return out, nil
	}
	if err := json.Unmarshal(ev.Data, target); err != nil {
		return out, fmt.Errorf("crispy: decode %s event %s: %w", ev.Name, ev.ID, err)
	}
	return out, nil
}

// Close ends the stream (the turn goes on on the server; resume it with ResumeChat).
func (s *ChatStream) Close() error { return s.body.Close() }

// StreamChat sends a chat message and returns its answer as a stream of events. The body's Stream
// field is set to true. A refusal (any status but 200) is returned as a *ProblemError.
func (c *Client) StreamChat(ctx context.Context, params *SendChatMessageParams, body SendChatMessageInput, reqEditors ...RequestEditorFn) (*ChatStream, error) {
	yes := true
	body.Stream = &yes
	res, err := c.SendChatMessage(ctx, params, body, append(reqEditors, acceptEvents)...)
	if err != nil {
		return nil, err
	}
	return chatStream(res)
}

// ResumeChat reads the rest of the session's latest turn after lastEventID ("" for all of it).
func (c *Client) ResumeChat(ctx context.Context, sessionID string, lastEventID string, reqEditors ...RequestEditorFn) (*ChatStream, error) {
	params := &ResumeChatStreamParams{}
	if lastEventID != "" {
		params.LastEventID = &lastEventID
	}
	res, err := c.ResumeChatStream(ctx, sessionID, params, append(reqEditors, acceptEvents)...)
	if err != nil {
		return nil, err
	}
	return chatStream(res)
}

func acceptEvents(_ context.Context, req *http.Request) error {
	req.Header.Set("Accept", "text/event-stream")
	return nil
}

func chatStream(res *http.Response) (*ChatStream, error) {
	if res.StatusCode != http.StatusOK {
		return nil, problemError(res)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		res.Body.Close()
		return nil, fmt.Errorf("crispy: expected text/event-stream, got %q", ct)
	}
	return &ChatStream{body: res.Body, r: NewEventReader(res.Body), RequestID: res.Header.Get("x-request-id")}, nil
}

// ProblemError is a refusal of the API: its status, problem document and, for 429 and 503, how long
// to wait before trying again.
type ProblemError struct {
	StatusCode int
	Problem    Problem
	RetryAfter time.Duration
}

func (e *ProblemError) Error() string {
	detail := ""
	if e.Problem.Detail != nil {
		detail = *e.Problem.Detail
	}
	return fmt.Sprintf("crispy: %d %s: %s (request %s)", e.StatusCode, e.Problem.Code, detail, e.Problem.RequestId)
}

// AsProblem reports whether err is a refusal of the API, and which.
func AsProblem(err error) (*ProblemError, bool) {
	var p *ProblemError
	ok := errors.As(err, &p)
	return p, ok
}

// problemError reads a refusal and closes its body.
func problemError(res *http.Response) error {
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	e := &ProblemError{StatusCode: res.StatusCode, RetryAfter: RetryAfter(res.Header)}
	if err := json.Unmarshal(b, &e.Problem); err != nil {
		detail := strings.TrimSpace(string(b))
		e.Problem.Detail = &detail
	}
	return e
}

// RetryAfter is the wait a retry-after header asks for (seconds or an HTTP date); 0 without one.
func RetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
