// Package embeddings is the port to text-embedding models and its implementations: an
// OpenAI-compatible client (POST {base}/embeddings), Cloudflare Workers AI embedding models (directly or
// through AI Gateway), and the offline default builtin:hashed-ngram, which needs no network and no
// weights. Every implementation embeds in batches and returns vectors in input order.
package embeddings

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Embedder turns texts into vectors.
type Embedder interface {
	// Embed returns one vector per text, in order. Implementations split large inputs into batches.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Model is the "provider:model" id recorded with what was embedded.
	Model() string
	// Dimension is the length of every vector (0 when unknown until the first call).
	Dimension() int
}

// ErrUnavailable marks a provider that could not be reached or answered with a server error; callers
// map it to 503.
var ErrUnavailable = errors.New("embedding provider unavailable")

// maxAnswer bounds what is read of a provider's answer (a batch of embeddings as JSON floats: 2,048 texts x 3,072 dims is ~130 MB).
const maxAnswer = 256 << 20

// ErrUnknownModel is returned by Resolve for a spec no configured provider serves.
var ErrUnknownModel = errors.New("unknown embeddings model")

// Config selects and configures the providers. Nothing in this package reads the environment:
// cmd/crispy fills this from flags and CRISPY_* variables.
type Config struct {
	// Default is the model used when a tenant names none, "provider:model" (default builtin:hashed-ngram).
	Default   string
	OpenAI    OpenAIConfig
	WorkersAI WorkersAIConfig
	Hashed    HashedConfig
}

// Resolver builds embedders from "provider:model" specs (SPEC §1 models.embeddings) and caches them.
type Resolver struct {
	cfg   Config
	cache map[string]Embedder
	mu    sync.Mutex
}

// NewResolver checks cfg and returns a resolver.
func NewResolver(cfg Config) (*Resolver, error) {
	if cfg.Default == "" {
		cfg.Default = HashedModelID
	}
	r := &Resolver{cfg: cfg, cache: map[string]Embedder{}}
	if _, err := r.Resolve(cfg.Default); err != nil {
		return nil, fmt.Errorf("default embeddings model: %w", err)
	}
	return r, nil
}

// Default returns the deployment's default embedder.
func (r *Resolver) Default() Embedder {
	e, _ := r.Resolve(r.cfg.Default)
	return e
}

// Resolve returns the embedder for spec ("" means the default). Specs: builtin:hashed-ngram,
// openai:<model> (e.g. openai:text-embedding-3-small), workers-ai:<model> (e.g.
// workers-ai:@cf/baai/bge-small-en-v1.5).
func (r *Resolver) Resolve(spec string) (Embedder, error) {
	if spec == "" {
		spec = r.cfg.Default
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.cache[spec]; ok {
		return e, nil
	}
	provider, model, ok := strings.Cut(spec, ":")
	if !ok || model == "" {
		return nil, fmt.Errorf("%w: %q is not provider:model", ErrUnknownModel, spec)
	}
	var (
		e   Embedder
		err error
	)
	switch provider {
	case "builtin":
		if model != "hashed-ngram" {
			return nil, fmt.Errorf("%w: builtin:%s (only builtin:hashed-ngram exists)", ErrUnknownModel, model)
		}
		e = NewHashed(r.cfg.Hashed)
	case "openai":
		c := r.cfg.OpenAI
		c.Model = model
		e, err = NewOpenAI(c)
	case "workers-ai":
		c := r.cfg.WorkersAI
		c.Model = model
		e, err = NewWorkersAI(c)
	default:
		return nil, fmt.Errorf("%w: provider %q", ErrUnknownModel, provider)
	}
	if err != nil {
		return nil, err
	}
	r.cache[spec] = e
	return e, nil
}

// batches splits n items into [start, end) ranges of at most size.
func batches(n, size int) [][2]int {
	if size <= 0 {
		size = n
	}
	var out [][2]int
	for s := 0; s < n; s += size {
		out = append(out, [2]int{s, min(s+size, n)})
	}
	return out
}
