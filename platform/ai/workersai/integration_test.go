package workersai_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/platform/ai"
	"github.com/crispy-enigma/crispy/platform/ai/workersai"
)

// TestIntegrationWorkersAI streams a short answer from Cloudflare Workers AI (through AI Gateway when
// CRISPY_CF_GATEWAY_ID is set).
func TestIntegrationWorkersAI(t *testing.T) {
	acc, tok := os.Getenv("CRISPY_CF_ACCOUNT_ID"), os.Getenv("CRISPY_CF_API_TOKEN")
	if acc == "" || tok == "" {
		t.Skip("no Workers AI account: set CRISPY_CF_ACCOUNT_ID and CRISPY_CF_API_TOKEN (and optionally CRISPY_CF_GATEWAY_ID)")
	}
	p, err := workersai.New(workersai.Config{AccountID: acc, APIToken: tok, GatewayID: os.Getenv("CRISPY_CF_GATEWAY_ID")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b strings.Builder
	_, err = p.Stream(ctx, ai.Request{Model: "@cf/meta/llama-3.1-8b-instruct", MaxTokens: 20, Messages: []ai.Message{{Role: "user", Content: "Say hello in one word."}}},
		func(d string) error { b.WriteString(d); return nil })
	if err != nil || b.Len() == 0 {
		t.Fatalf("%q %v", b.String(), err)
	}
}
