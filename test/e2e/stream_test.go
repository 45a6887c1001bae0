package e2e

import (
	"errors"
	"io"
	"testing"

	"github.com/google/uuid"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
)

// TestGoClientStreamsTypedChatEvents drives the Go client's streaming helper against the real binary:
// a chat answer arrives as typed token events and ends with done, the stream resumes from an event
// id without a second model call, and a refusal comes back as a problem with its status.
func TestGoClientStreamsTypedChatEvents(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := as(t, srv.BaseURL, "demo", "").ClientInterface.(*crispy.Client)
	sid := uuid.New()
	st, err := c.StreamChat(ctx(t), &crispy.SendChatMessageParams{}, crispy.SendChatMessageInput{SessionId: sid, Message: "Stream me an answer"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var text string
	var done *crispy.DoneData
	firstID := ""
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Token != nil:
			if firstID == "" {
				firstID = st.LastEventID
			}
			text += ev.Token.Token
		case ev.Done != nil:
			done = ev.Done
		case ev.Error != nil:
			t.Fatalf("error event: %+v", *ev.Error)
		}
	}
	if text == "" || done == nil || done.Model == "" || done.RequestId != st.RequestID {
		t.Fatalf("streamed %q, done %+v, request id %q", text, done, st.RequestID)
	}

	// The rest of the turn after the first token, from the resume window.
	rest, err := c.ResumeChat(ctx(t), sid.String(), firstID)
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	var resumed string
	for {
		ev, err := rest.Next()
		if err != nil {
			break
		}
		if ev.Token != nil {
			resumed += ev.Token.Token
		}
	}
	if resumed == "" || len(resumed) >= len(text) || text[len(text)-len(resumed):] != resumed {
		t.Fatalf("resumed %q, which is not the end of %q", resumed, text)
	}

	_, err = c.StreamChat(ctx(t), &crispy.SendChatMessageParams{}, crispy.SendChatMessageInput{SessionId: uuid.New(), Message: "hi", ModelId: ptr("nosuch:model")})
	p, ok := crispy.AsProblem(err)
	if !ok || p.StatusCode < 400 || p.StatusCode >= 500 || p.Problem.RequestId == "" {
		t.Fatalf("a refused model: %v", err)
	}
}
