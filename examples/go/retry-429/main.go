// retry-429 searches the tenant's documents and, when the server answers 429 (rate limited or over
// budget), waits as long as its retry-after header asks before trying again, a few times at most.
//
//	go run ./retry-429 -url http://localhost:8080 -tenant demo "refund policy"
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	crispy "github.com/crispy-enigma/crispy/openapi/clients/go"
)

func main() {
	base := flag.String("url", "http://localhost:8080", "the server's base URL")
	tenant := flag.String("tenant", "demo", "the tenant (x-tenant-id)")
	key := flag.String("key", os.Getenv("CRISPY_API_KEY"), "the tenant's API key (default $CRISPY_API_KEY)")
	tries := flag.Int("tries", 4, "attempts before giving up")
	flag.Parse()
	c, err := crispy.NewClientWithResponses(*base, crispy.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("x-tenant-id", *tenant)
		if *key != "" {
			r.Header.Set("Authorization", "Bearer "+*key)
		}
		return nil
	}))
	if err != nil {
		fail(err)
	}
	query := strings.Join(flag.Args(), " ")
	if query == "" {
		query = "refund policy"
	}
	ctx := context.Background()
	for attempt := 1; ; attempt++ {
		res, err := c.SearchDocumentsWithResponse(ctx, &crispy.SearchDocumentsParams{}, crispy.SearchDocumentsInput{Query: query})
		if err != nil {
			fail(err)
		}
		switch {
		case res.JSON200 != nil:
			for _, s := range res.JSON200.Sources {
				fmt.Printf("%.3f %s\n", s.Score, s.Title)
			}
			return
		case res.StatusCode() == http.StatusTooManyRequests && attempt < *tries:
			wait := crispy.RetryAfter(res.HTTPResponse.Header)
			if wait == 0 {
				wait = time.Second << (attempt - 1) // no header: back off
			}
			fmt.Fprintf(os.Stderr, "429, retrying in %s\n", wait)
			time.Sleep(wait)
		default:
			fail(fmt.Errorf("%d: %s", res.StatusCode(), res.Body))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "retry-429:", err)
	os.Exit(1)
}
