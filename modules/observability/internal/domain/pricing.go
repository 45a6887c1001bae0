package domain

import (
	"fmt"
	"sort"
	"strings"
)

// Price is what a model costs, in USD per million tokens, as providers publish it. Providers report
// cached prompt tokens as part of the prompt tokens and reasoning tokens as part of the completion
// tokens (OpenAI's usage shape), so cost bills the cached share of the prompt at CachedInput and the
// reasoning share of the completion at Reasoning, the rest at Input and Output. A zero CachedInput or
// Reasoning price means "no separate price": those tokens are billed at Input or Output.
type Price struct {
	Input       float64 `json:"input" yaml:"input"`
	CachedInput float64 `json:"cachedInput,omitempty" yaml:"cachedInput,omitempty"`
	Output      float64 `json:"output" yaml:"output"`
	Reasoning   float64 `json:"reasoning,omitempty" yaml:"reasoning,omitempty"`
}

// Validate refuses negative prices.
func (p Price) Validate() error {
	if p.Input < 0 || p.CachedInput < 0 || p.Output < 0 || p.Reasoning < 0 {
		return fmt.Errorf("prices must not be negative: %+v", p)
	}
	return nil
}

// Tokens are the token counts that cost is computed from.
type Tokens struct {
	Input     int64 // prompt tokens, cached ones included
	Cached    int64 // cached prompt tokens
	Output    int64 // completion tokens, reasoning ones included
	Reasoning int64 // reasoning tokens
}

// Cost is the USD cost of tok at p.
func (p Price) Cost(tok Tokens) float64 {
	cached := min(max(tok.Cached, 0), tok.Input)
	reasoning := min(max(tok.Reasoning, 0), tok.Output)
	cachedPrice := p.CachedInput
	if cachedPrice == 0 {
		cachedPrice = p.Input
	}
	reasoningPrice := p.Reasoning
	if reasoningPrice == 0 {
		reasoningPrice = p.Output
	}
	usd := float64(tok.Input-cached)*p.Input + float64(cached)*cachedPrice +
		float64(tok.Output-reasoning)*p.Output + float64(reasoning)*reasoningPrice
	return usd / 1e6
}

// PriceTable maps model ids to prices. Keys are "provider:model" ("openai:gpt-4o-mini") or a bare
// model name that matches under any provider ("gpt-4o-mini").
type PriceTable map[string]Price

// DefaultPrices are list prices of well-known models (USD per million tokens, as published by the
// providers in 2025; override them with a price file). The built-in offline model and embedder cost
// nothing.
// Workers AI bills in neurons; its entries are the per-token equivalents Cloudflare publishes.
func DefaultPrices() PriceTable {
	return PriceTable{
		"builtin:offline":                           {},
		"builtin:hashed-ngram":                      {},
		"openai:gpt-4o":                             {Input: 2.50, CachedInput: 1.25, Output: 10.00},
		"openai:gpt-4o-mini":                        {Input: 0.15, CachedInput: 0.075, Output: 0.60},
		"openai:gpt-4.1":                            {Input: 2.00, CachedInput: 0.50, Output: 8.00},
		"openai:gpt-4.1-mini":                       {Input: 0.40, CachedInput: 0.10, Output: 1.60},
		"openai:gpt-4.1-nano":                       {Input: 0.10, CachedInput: 0.025, Output: 0.40},
		"openai:o3-mini":                            {Input: 1.10, CachedInput: 0.55, Output: 4.40},
		"openai:o4-mini":                            {Input: 1.10, CachedInput: 0.275, Output: 4.40},
		"openai:o3":                                 {Input: 2.00, CachedInput: 0.50, Output: 8.00},
		"openai:gpt-3.5-turbo":                      {Input: 0.50, Output: 1.50},
		"openai:text-embedding-3-small":             {Input: 0.02},
		"openai:text-embedding-3-large":             {Input: 0.13},
		"workers-ai:@cf/meta/llama-3.1-8b-instruct": {Input: 0.282, Output: 0.827},
		"workers-ai:@cf/meta/llama-3.3-70b-instruct-fp8-fast": {Input: 0.293, Output: 2.253},
		"workers-ai:@cf/baai/bge-base-en-v1.5":                {Input: 0.067},
	}
}

// Merge returns a copy of p with over's entries added or replacing.
func (p PriceTable) Merge(over PriceTable) PriceTable {
	out := make(PriceTable, len(p)+len(over))
	for k, v := range p {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// Validate checks every entry.
func (p PriceTable) Validate() error {
	for k, v := range p {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("price table has an empty model id")
		}
		if err := v.Validate(); err != nil {
			return fmt.Errorf("price of %s: %w", k, err)
		}
	}
	return nil
}

// Lookup finds the price of model ("provider:model"): an exact entry, else the bare model name, else
// the longest entry the model id extends at a '-' (dated snapshots such as gpt-4o-mini-2024-07-18
// cost what gpt-4o-mini costs). ok is false for a model the table does not price; its cost is then 0
// and the API says it is unpriced.
func (p PriceTable) Lookup(model string) (Price, bool) {
	if pr, ok := p[model]; ok {
		return pr, true
	}
	bare := model
	if i := strings.IndexByte(model, ':'); i > 0 {
		bare = model[i+1:]
	}
	if pr, ok := p[bare]; ok {
		return pr, true
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) }) // longest first
	for _, k := range keys {
		for _, cand := range []string{model, bare} {
			if strings.HasPrefix(cand, k) && len(cand) > len(k) && cand[len(k)] == '-' {
				return p[k], true
			}
		}
	}
	return Price{}, false
}
