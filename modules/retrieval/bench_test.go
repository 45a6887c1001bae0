package retrieval_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	storeembedded "github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	"github.com/crispy-enigma/crispy/platform/keystore"
	keysembedded "github.com/crispy-enigma/crispy/platform/keystore/embedded"
	"github.com/crispy-enigma/crispy/platform/keystore/keystoretest"
	keyspostgres "github.com/crispy-enigma/crispy/platform/keystore/postgres"
	"github.com/crispy-enigma/crispy/platform/sealing"
	"github.com/crispy-enigma/crispy/platform/search/embedded"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// BenchmarkSearchPipeline measures POST /search's work without HTTP: embed the query with the offline
// embedder and search 5,000 chunks of one tenant (cache disabled), sources only and with the
// extractive answer. sealed is the same with issue 12's sealing on (in-memory key store): the five
// hits' texts are opened (AES-GCM) after the index's search.
// sealed-pgkeys has the keys in PostgreSQL (CRISPY_POSTGRES_URL; skipped without), as replicas share
// them: every key read is a round trip.
func BenchmarkSearchPipeline(b *testing.B) {
	b.Run("retrieve-top5", func(b *testing.B) { benchSearch(b, nil) })
	b.Run("sealed-retrieve-top5", func(b *testing.B) { benchSearch(b, keystoretest.NewMemory()) })
	b.Run("sealed-pgkeys-retrieve-top5", func(b *testing.B) { benchSearch(b, pgKeys(b)) })
}

// pgKeys is a PostgreSQL key store in a schema of the benchmark's own.
func pgKeys(b *testing.B) keystore.Store {
	url := pgtest.URL(b)
	k, err := keyspostgres.Open(context.Background(), url, pgtest.Schema(b, url), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	return k
}

func benchSearch(b *testing.B, keys keystore.Store) {
	ctx := context.Background()
	ix, _ := embedded.Open(embedded.Config{})
	res, _ := embeddings.NewResolver(embeddings.Config{})
	deps := retrieval.Deps{Store: eventstoretest.NewMemory(), Index: ix, Embedders: res, Config: retrieval.Config{CacheTTL: -1}}
	if keys != nil {
		deps.Sealer = sealing.New(keys)
		deps.Store = sealing.NewStore(deps.Store, deps.Sealer, retrieval.SealingPolicy)
	}
	mod, err := retrieval.New(deps)
	if err != nil {
		b.Fatal(err)
	}
	acme := tenant.MustParse("acme")
	words := strings.Fields(vacation + " " + parking + " " + secretA + " " + notesB)
	for i := range 500 {
		var sb strings.Builder
		for j := range 1500 {
			sb.WriteString(words[(i*7+j*13)%len(words)])
			sb.WriteString(fmt.Sprintf(" w%d ", (i+j)%97))
			if j%15 == 14 {
				sb.WriteString(". ")
			}
		}
		if _, err := mod.Ingest(ctx, acme, retrieval.Document{DocID: fmt.Sprintf("doc-%d", i), Text: sb.String()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := mod.Retrieve(ctx, acme, fmt.Sprintf("vacation days garage w%d", i%97), 5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest measures one ingest of a 6 KB document (6 chunks) without HTTP, as crispy ingest
// runs it: validation, chunking, the offline embedder, an fsync'd append to an embedded event store
// in a temporary folder, and the write to an in-memory index. With parallel writers (-cpu) the
// store's group commit shares fsyncs. plain is the store as it was; sealed adds issue 12's sealing:
// a data key created (fsync'd in the embedded key store) per ingest, the event and each chunk's
// text AES-GCM sealed. The memory pair runs the same on the in-memory store and key store: the
// CPU that sealing adds, without the disk.
func BenchmarkIngest(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchIngest(b, true, false) })
	b.Run("sealed", func(b *testing.B) { benchIngest(b, true, true) })
	b.Run("memory-plain", func(b *testing.B) { benchIngest(b, false, false) })
	b.Run("memory-sealed", func(b *testing.B) { benchIngest(b, false, true) })
}

func benchIngest(b *testing.B, disk, sealed bool) {
	ctx := context.Background()
	dir := b.TempDir()
	var raw eventstore.Store = eventstoretest.NewMemory()
	var keys keystore.Store = keystoretest.NewMemory()
	if disk {
		s, err := storeembedded.Open(filepath.Join(dir, "events"), storeembedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		k, err := keysembedded.Open(filepath.Join(dir, "keys", "keys.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer k.Close()
		raw, keys = s, k
	}
	deps := retrieval.Deps{Store: raw}
	if sealed {
		deps.Sealer = sealing.New(keys)
		deps.Store = sealing.NewStore(raw, deps.Sealer, retrieval.SealingPolicy)
	}
	deps.Index, _ = embedded.Open(embedded.Config{})
	deps.Embedders, _ = embeddings.NewResolver(embeddings.Config{})
	mod, err := retrieval.New(deps)
	if err != nil {
		b.Fatal(err)
	}
	acme := tenant.MustParse("acme")
	words := strings.Fields(vacation + " " + parking + " " + secretA + " " + notesB)
	var sb strings.Builder
	for j := 0; sb.Len() < 6000; j++ {
		sb.WriteString(words[(j*13)%len(words)])
		sb.WriteString(" ")
	}
	text := sb.String()
	var n atomic.Int64
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := mod.Ingest(ctx, acme, retrieval.Document{DocID: fmt.Sprintf("doc-%d", i), Text: text}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDocumentAppend isolates what sealing adds to an ingest's write path, without the
// embedding and index work that dominate BenchmarkIngest: appending one 6 KB DocumentIngested to an
// fsync'd embedded store, plain, or sealed (its data key created and fsync'd in the embedded key
// store, the event sealed by the store decorator, and its 6 chunks' texts sealed for the index).
// Run with -cpu 1,64 for one writer and 64.
func BenchmarkDocumentAppend(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "sealed"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			raw, err := storeembedded.Open(filepath.Join(dir, "events"), storeembedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var store eventstore.Store = raw
			var sealer *sealing.Sealer
			if sealed {
				keys, err := keysembedded.Open(filepath.Join(dir, "keys", "keys.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer keys.Close()
				sealer = sealing.New(keys)
				store = sealing.NewStore(raw, sealer, retrieval.SealingPolicy)
			}
			acme := tenant.MustParse("acme")
			text := strings.Repeat("Employees get 25 days of paid vacation per year. ", 123) // 6 KB
			var n atomic.Int64
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("doc-%d", n.Add(1))
					ev := events.DocumentIngested{DocID: id, Text: text, ContentHash: "sha256:x", MaxChunkSize: 1000, EmbeddingModel: "builtin:x"}
					for c := range 6 {
						ev.Chunks = append(ev.Chunks, events.Chunk{ID: fmt.Sprintf("%s#%d", id, c), Start: c * 1000, End: (c + 1) * 1000})
					}
					if sealed {
						ev.Key = events.NewDocumentKey(id)
					}
					data, _ := eventstore.NewEventData(events.TypeDocumentIngested, ev)
					st := tenant.MustStream(acme, events.DocCategory, events.DocStreamKey(id))
					if _, err := store.Append(ctx, st, eventstore.Any, data); err != nil {
						b.Error(err)
						return
					}
					if sealed {
						for _, c := range ev.Chunks {
							if _, err := sealer.Seal(ctx, acme, ev.Key, []byte(text[c.Start:c.End])); err != nil {
								b.Error(err)
								return
							}
						}
					}
				}
			})
		})
	}
}
