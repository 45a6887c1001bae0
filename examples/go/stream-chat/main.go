// stream-chat sends one chat message and prints the answer's tokens as they arrive.
//
//	go run ./stream-chat -url http://localhost:8080 -tenant demo "What does our refund policy say?"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
	"github.com/google/uuid"
)

func main() {
	base := flag.String("url", "http://localhost:8080", "the server's base URL")
	tenant := flag.String("tenant", "demo", "the tenant (x-tenant-id)")
	key := flag.String("key", os.Getenv("CRISPY_API_KEY"), "the tenant's API key (default $CRISPY_API_KEY)")
	flag.Parse()
	message := strings.Join(flag.Args(), " ")
	if message == "" {
		message = "Hello!"
	}
	c, err := crispy.NewClient(*base, crispy.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("x-tenant-id", *tenant)
		if *key != "" {
			r.Header.Set("Authorization", "Bearer "+*key)
		}
		return nil
	}))
	if err != nil {
		fail(err)
	}
	st, err := c.StreamChat(context.Background(), &crispy.SendChatMessageParams{}, crispy.SendChatMessageInput{SessionId: uuid.New(), Message: message})
	if err != nil {
		fail(err)
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fail(err)
		}
		switch {
		case ev.Token != nil:
			fmt.Print(ev.Token.Token)
		case ev.Citation != nil:
			fmt.Fprintf(os.Stderr, "[source: %s]\n", ev.Citation.Title)
		case ev.Done != nil:
			fmt.Printf("\n(%s, %d tokens)\n", ev.Done.Model, ev.Done.Usage.TotalTokens)
		case ev.Error != nil:
			fail(fmt.Errorf("%s: %s", ev.Error.Code, ev.Error.Message))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stream-chat:", err)
	os.Exit(1)
}
