package retrieval_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/modules/retrieval"
	"github.com/crispy-enigma/crispy/modules/retrieval/events"
	"github.com/crispy-enigma/crispy/modules/retrieval/internal/domain"
	"github.com/crispy-enigma/crispy/platform/ai/embeddings"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/cputime"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	storeembedded "github.com/crispy-enigma/crispy/platform/eventstore/embedded"
	"github.com/crispy-enigma/crispy/platform/eventstore/eventstoretest"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres/pgtest"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/httpapi/httpapitest"
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

// BenchmarkIngestEndToEnd is issue 16's ingest target measured end to end: product-sized documents
// (~1.7 KB of English-like text and a title: 2.1 chunks each on average at the default 1,000
// characters), as many as make `vectors` chunks, POSTed to /ingest by 16 concurrent clients, in
// process (no TCP), on a node wired as serve wires it: an embedded event store, key store and index
// on disk, sealing on (a data key per document, the event and the chunks' texts sealed), the bus on
// disk with the index's own projection, the offline embedder (builtin:hashed-ngram) and the
// Snowball analyser, the index flushed every 10 s. A document counts once its POST /ingest
// answered 200, which waits until this replica's index has applied it (it is searchable). 100k
// is the size (100,000 x 384 in the index):
//
//	go test -run '^$' -bench 'IngestEndToEnd/^100k$' -benchtime=1x -timeout 1h ./modules/retrieval/
//
// docs/s and docs/cpu-s are over the whole run; the -last10% rates over the last tenth of the
// documents (the index growing from ~90,000 to 100,000 vectors): the rate at that size rather than
// on average. CPU is the whole process's (the clients' JSON encoding included); on a shared machine
// docs/cpu-s is the load-independent number, docs/s what the machine gave.
func BenchmarkIngestEndToEnd(b *testing.B) {
	for _, vectors := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", vectors/1000), func(b *testing.B) {
			docs := productDocs(vectors)
			for range b.N {
				benchIngestEndToEnd(b, docs)
			}
		})
	}
}

func benchIngestEndToEnd(b *testing.B, docs []map[string]any) {
	b.StopTimer()
	n := len(docs)
	dir := b.TempDir()
	raw, err := storeembedded.Open(filepath.Join(dir, "events"), storeembedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	keys, err := keysembedded.Open(filepath.Join(dir, "keys", "keys.db"))
	if err != nil {
		b.Fatal(err)
	}
	ix, err := embedded.Open(embedded.Config{Dir: filepath.Join(dir, "index")})
	if err != nil {
		b.Fatal(err)
	}
	res, err := embeddings.NewResolver(embeddings.Config{})
	if err != nil {
		b.Fatal(err)
	}
	sealer := sealing.New(keys)
	store := sealing.NewStore(raw, sealer, retrieval.SealingPolicy)
	mod, err := retrieval.New(retrieval.Deps{Store: store, Index: ix, Embedders: res, Sealer: sealer, Config: retrieval.Config{IndexWait: 5 * time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Guard: httpapitest.HeaderGuard{}})
	if err != nil {
		b.Fatal(err)
	}
	bs, err := bus.New(bus.Config{CheckpointDir: filepath.Join(dir, "bus"), ReadModelDir: filepath.Join(dir, "readmodels"),
		CatchUpGCPercent: 400, CatchUpCommitEvery: 16384}, bus.Deps{Store: raw, Open: sealer.OpenEvent})
	if err != nil {
		b.Fatal(err)
	}
	mod.Register(srv.API, bs)
	ctx, cancel := context.WithCancel(context.Background())
	busDone, modDone := make(chan error, 1), make(chan error, 1)
	go func() { busDone <- bs.Run(ctx) }()
	go func() { modDone <- mod.Run(ctx) }()
	defer func() {
		cancel()
		<-modDone
		<-busDone
		ix.Close()
		keys.Close()
		raw.Close()
	}()
	h := srv.Handler()
	for i := 0; ; i++ {
		if r, _ := serveJSON(h, "POST", "/search", "acme", map[string]any{"query": "ready", "answer": false}); r.status == 200 {
			break
		}
		if i > 60_000 {
			b.Fatal("the node never got ready")
		}
		time.Sleep(time.Millisecond)
	}

	const clients = 16
	var next, acked atomic.Int64
	type mark struct {
		at  time.Time
		cpu time.Duration
	}
	marks := make([]mark, 11) // at every tenth of the documents acknowledged
	var marksMu sync.Mutex
	tenth := int64(n / 10)
	b.StartTimer()
	marks[0] = mark{time.Now(), cputime.Used()}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if r, _ := serveJSON(h, "POST", "/ingest", "acme", docs[i]); r.status != 200 {
					b.Errorf("ingest %d: %d %s", i, r.status, r.raw)
					return
				}
				if k := acked.Add(1); k%tenth == 0 && k/tenth <= 10 {
					m := mark{time.Now(), cputime.Used()}
					marksMu.Lock()
					marks[k/tenth] = m
					marksMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if b.Failed() {
		return
	}
	vectors, err := ix.Count(context.Background(), tenant.MustParse("acme"))
	if err != nil {
		b.Fatal(err)
	}
	rate := func(from, to int) (perSec, perCPU float64) {
		d := float64(int64(to-from) * tenth)
		return d / marks[to].at.Sub(marks[from].at).Seconds(), d / (marks[to].cpu - marks[from].cpu).Seconds()
	}
	for k := 1; k <= 10; k++ {
		s, c := rate(k-1, k)
		b.Logf("documents %6d-%6d: %6.0f docs/s, %6.0f docs/cpu-s", int64(k-1)*tenth, int64(k)*tenth, s, c)
	}
	s, c := rate(0, 10)
	b.ReportMetric(s, "docs/s")
	b.ReportMetric(c, "docs/cpu-s")
	s, c = rate(9, 10)
	b.ReportMetric(s, "docs/s-last10%")
	b.ReportMetric(c, "docs/cpu-s-last10%")
	b.ReportMetric(1000/c, "cpu-ms/doc-last10%")
	b.ReportMetric(float64(vectors), "vectors")
}

// productDocs are POST /ingest bodies of ~1.7 KB, as many as make `vectors` chunks: English-like sentences drawn (Zipf) from a
// vocabulary of inflected English stems and stopwords in their usual share, each document leaning
// to one of 200 topics (a shifted vocabulary), so its vectors cluster as real documents' do.
func productDocs(vectors int) []map[string]any {
	stems := strings.Fields(`account action address agree allow answer apply approve archive assign audit balance
bill block board book branch budget build cache call card care carry change charge check claim clean clear client
close code collect comment compare complete connect contract control copy cost count cover create credit custom
cycle damage data date deal debit decide define delay deliver demand deploy design detail develop device direct
display document draft drive edit email employ enable end enter equip error estimate event exchange expect expense
export fail feature fee file filter finance fix flow follow form forward fund grant group guide handle help hire hold
host import improve include income index inform insure install invest invoice issue item join keep label launch lead
learn lease level license limit link list load loan lock log maintain manage market match measure meet merge message
meter migrate model monitor move network note notice notify offer office open operate order own package page park
pay permit place plan point policy post price print process produce product profile project promote protect provide
publish purchase quote rate read receive record reduce refund register release remove renew rent repair replace
report request require reserve reset resolve restore return review reward rule run sale save scan schedule score
search secure select sell send serve service set share ship sign sort source staff start state station status
store submit supply support switch sync system target task tax team test ticket time track trade train transfer
travel trust update upgrade upload use user value vendor verify view visit wait warn watch work write`)
	suffixes := []string{"", "s", "ed", "ing", "er", "ers", "ation", "ations", "ment", "ments", "able", "ly"}
	var vocab []string
	for _, s := range stems {
		for _, x := range suffixes {
			vocab = append(vocab, s+x)
		}
	}
	stop := strings.Fields("the of and to a in is for that on with as by at from it be this are or an was will not can has have")
	r := rand.New(rand.NewPCG(16, 1000))
	z := rand.NewZipf(r, 1.07, 2, uint64(len(vocab)-1))
	word := func(topic int) string {
		if r.IntN(10) < 4 {
			return stop[r.IntN(len(stop))]
		}
		return vocab[(int(z.Uint64())+topic*53)%len(vocab)]
	}
	var out []map[string]any
	for chunks := 0; chunks < vectors; {
		topic := r.IntN(200)
		var sb strings.Builder
		for sb.Len() < 1650 {
			for s := 8 + r.IntN(5); s > 0 && sb.Len() < 1650; s-- {
				words := 8 + r.IntN(13)
				for w := range words {
					x := word(topic)
					if w == 0 {
						x = strings.ToUpper(x[:1]) + x[1:]
					}
					sb.WriteString(x)
					if w < words-1 {
						sb.WriteByte(' ')
					}
				}
				sb.WriteString(". ")
			}
			sb.WriteString("\n\n")
		}
		title := word(topic) + " " + word(topic) + " " + vocab[r.IntN(len(vocab))]
		text := strings.TrimSpace(sb.String())
		chunks += len(domain.ChunkText("x", text, domain.DefaultChunkSize, domain.DefaultOverlap))
		out = append(out, map[string]any{"docId": fmt.Sprintf("docs/%06d.md", len(out)), "title": title, "text": text})
	}
	return out
}
