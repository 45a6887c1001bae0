// Package tenancy is the tenants module: the tenants file recorded as events in each tenant's
// t-{id}.tenant stream, resolution of a request to a tenant (x-tenant-id, Host, x-api-key, SPEC §1)
// with constant-time key comparison, and the sliding-window rate limit per tenant and per (tenant,
// user) with the x-ratelimit-* headers (SPEC §2).
//
// Tenant state is rebuilt from events: Start records the differences between the file and the
// streams (TenantRegistered, TenantConfigChanged, ApiKeyAdded, ApiKeyRevoked, TenantRemoved) and then
// serves the tenants as recorded. A tenant that leaves the file is recorded as TenantRemoved and is
// no longer resolvable; one that comes back is registered again.
//
// Start needs no read model: it folds each of the file's tenants from its own (short) stream and
// serves them. Recording as removed the tenants that left the file needs to know which tenants were
// recorded before: that is a checkpointed read model on the bus (the "tenancy.directory"
// projection, registered by Register), and Run records the removals once it has caught up. Nothing
// reads the store's history. A command-line tool without a bus calls Start alone: the file's
// tenants are served, and the removals are left to the next server start.
//
// The tenants served follow that read model too (live.go): a change recorded on any replica (the
// admin API's, a SIGHUP's) is served by every replica within a second, without a restart.
//
// Mount adds the admin API (/admin/*, admin keys: tenants and their API keys at runtime, each change
// an event), and Middleware the per-route checks after the guard (key scopes, what an admin key may
// do, GET /metrics for admin keys). The server uses Guard(), other modules read a tenant's policy
// through Config (it satisfies tooling.TenantPolicy) and a key's through APIKey.
package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"

	"github.com/crispy-enigma/crispy/modules/tenancy/events"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/adapters"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/app"
	"github.com/crispy-enigma/crispy/modules/tenancy/internal/domain"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// DemoTenant is the one keyless tenant served when there is no tenants file.
const DemoTenant = "demo"

// Config configures the module (from `crispy serve --tenants`, `--redis` and their CRISPY_* env).
type Config struct {
	// TenantsFile is the tenants YAML file; empty serves the single keyless tenant demo.
	TenantsFile string
	// RedisURL (redis://host:6379/0) shares the rate limit between replicas; empty keeps it in
	// process memory.
	RedisURL string
	// RedisPrefix starts the limiter's keys (default "crispy:rl:").
	RedisPrefix string
	// RedisTimeout bounds one limiter decision in Redis (default 100 ms); past it the request fails
	// open onto the per-process limiter.
	RedisTimeout time.Duration
	// RedisCooldown is how long the per-process limiter decides alone after a Redis failure before
	// Redis is tried again (default 5 s).
	RedisCooldown time.Duration
	// FailClosed refuses requests (503 ratelimit_unavailable) while Redis is failing, instead of
	// failing open onto the per-process limiter.
	FailClosed bool
	// KeyUsedEvery is how often a replica records the keys used since its last record
	// (events.ApiKeysUsed; default 1 min): the key list's lastUsedAt is shared by the replicas
	// and kept across restarts to this period.
	KeyUsedEvery time.Duration
	// AdminKeySHA256 holds the admin keys' SHA-256 hashes (hex, comma-separated; CRISPY_ADMIN_KEY_SHA256).
	// Empty: the admin API refuses every request.
	AdminKeySHA256 string
}

func (c *Config) defaults() {
	if c.RedisPrefix == "" {
		c.RedisPrefix = adapters.DefaultRedisPrefix
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = 100 * time.Millisecond
	}
	if c.RedisCooldown == 0 {
		c.RedisCooldown = 5 * time.Second
	}
	if c.KeyUsedEvery <= 0 {
		c.KeyUsedEvery = time.Minute
	}
}

// Validate checks the configuration (not the tenants file itself: Start does that).
func (c Config) Validate() error {
	if c.RedisTimeout < 0 || c.RedisCooldown < 0 {
		return fmt.Errorf("tenancy: negative redis timeout %s or cooldown %s", c.RedisTimeout, c.RedisCooldown)
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return fmt.Errorf("tenancy: redis URL: %w", err)
		}
	}
	return nil
}

// Deps are the module's collaborators.
type Deps struct {
	Config  Config
	Store   eventstore.Store
	Log     *slog.Logger
	Metrics *metrics.Set // nil: no metrics
	Now     func() time.Time
	// Erase destroys a deleted tenant's data (its data keys, its index); nil: deleting a tenant
	// only takes it out of service.
	Erase func(ctx context.Context, t tenant.ID) error
	// CheckConfig, when set, refuses a configuration the admin API or an applied file would record
	// that this server cannot serve (a model of a provider it does not configure): it names the
	// field ("models.chat") and why. Start does not call it (serve checks its file itself).
	CheckConfig func(c events.TenantConfig) (field string, err error)
}

// Module is the tenancy module.
type Module struct {
	cfg   Config
	store eventstore.Store
	codec *codec.Registry // the tenancy events: what the tenant streams are recorded and folded with
	log   *slog.Logger
	adm   *app.Admitter
	redis *redis.Client
	rl    *adapters.RedisLimiter
	tpm   *adapters.RedisTokenWindow

	dir      *adapters.TenantDirectory // nil until Register
	usage    *adapters.KeyUsage        // nil until Register
	reloaded chan struct{}             // a Start for Run to record the removals of (capacity 1)

	syncMu sync.Mutex // one sync at a time: Start, or Run's removals
	mu     sync.Mutex // guards the fields below
	last   *app.SyncTenants
	starts uint64        // Starts done
	synced uint64        // the Start whose removals are recorded (all of them without Register)
	change chan struct{} // closed and replaced when synced changes

	now    func() time.Time
	admins adminKeys // CRISPY_ADMIN_KEY_SHA256
	erase  func(context.Context, tenant.ID) error
	// checkConfig is Deps.CheckConfig (nil: none).
	checkConfig func(events.TenantConfig) (string, error)
	liveMu      sync.Mutex                // guards known; taken before mu
	known       map[string]*domain.Tenant // the latest state known of each tenant (live.go)
}

// New builds the module. It serves no tenant until Start.
func New(d Deps) (*Module, error) {
	d.Config.defaults()
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, fmt.Errorf("tenancy: a Store is required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	log := d.Log.With("module", "tenancy")
	mem := adapters.NewMemoryLimiter(d.Now)
	admins, err := parseAdminKeys(d.Config.AdminKeySHA256)
	if err != nil {
		return nil, err
	}
	c := codec.New()
	events.Register(c.Add)
	m := &Module{cfg: d.Config, store: d.Store, codec: c, log: log, reloaded: make(chan struct{}, 1), change: make(chan struct{}),
		now: d.Now, admins: admins, erase: d.Erase, checkConfig: d.CheckConfig, known: map[string]*domain.Tenant{}}
	m.adm = &app.Admitter{Limiter: mem, Log: log, Metrics: d.Metrics, Now: d.Now, Admin: admins.match}
	if d.Config.RedisURL != "" {
		opts, err := redis.ParseURL(d.Config.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("tenancy: redis URL: %w", err)
		}
		// Without this, go-redis ignores the context's deadline on the socket and waits its own
		// ReadTimeout (3 s by default): a hung Redis then stalls every request 3 s, whatever
		// RedisTimeout says.
		opts.ContextTimeoutEnabled = true
		m.redis = redis.NewClient(opts)
		m.rl = adapters.NewRedisLimiter(m.redis, adapters.RedisLimiterConfig{Prefix: d.Config.RedisPrefix, Timeout: d.Config.RedisTimeout, Now: d.Now})
		m.tpm = adapters.NewRedisTokenWindow(m.redis, d.Config.RedisPrefix, d.Config.RedisTimeout)
		// Fail open onto the per-process windows: each replica still holds a tenant to its limit
		// on the requests it sees while Redis is away.
		m.adm.Limiter, m.adm.Fallback, m.adm.Cooldown, m.adm.FailClosed = m.rl, mem, d.Config.RedisCooldown, d.Config.FailClosed
	}
	return m, nil
}

// Register registers the tenancy events on the bus codec and the tenant directory read model
// ("tenancy.directory") that Run learns the recorded tenants from. Call it before the bus runs.
func (m *Module) Register(b bus.Consumers) {
	d := adapters.RegisterDirectory(b)
	m.dir = &d
	u := adapters.RegisterKeyUsage(b)
	m.usage = &u
	if m.erase != nil {
		// Finishes a deletion's erasure from the event: a key store that was down, or a crash
		// between TenantDeleted and the destruction, still ends with the tenant's keys destroyed.
		q := b.Processor(EraserProcessor)
		bus.Handle(q, m.eraseDeleted)
	}
}

// EraserProcessor is the durable name of the processor that erases deleted tenants' data.
const EraserProcessor = "tenancy.eraser"

// desired is the sync command for the tenants file, or for the demo tenant without one.
func (m *Module) desired() (app.SyncTenants, error) {
	if m.cfg.TenantsFile == "" {
		return app.SyncTenants{Source: "default", Default: DemoTenant,
			Desired: []domain.Desired{{Config: events.TenantConfig{ID: DemoTenant}}}}, nil
	}
	ds, err := adapters.LoadTenantsFile(m.cfg.TenantsFile)
	if err != nil {
		return app.SyncTenants{}, fmt.Errorf("tenancy: %w", err)
	}
	return app.SyncTenants{Source: m.cfg.TenantsFile, Desired: ds}, nil
}

// Start loads the tenants file (or the demo default), records what changed for each of its tenants
// as events, and serves them as recorded. A malformed file is an error naming file, line and field:
// the server must refuse to start. Calling Start again re-reads the file and swaps the served
// tenants atomically (a reload); requests in flight finish with the tenants they were admitted with.
//
// Start reads only the configuration streams of the file's tenants, and needs no bus: tenants that
// left the file are not served from here on, and Run records them as removed (after Register).
func (m *Module) Start(ctx context.Context) error {
	cmd, err := m.desired()
	if err != nil {
		return err
	}
	if m.cfg.TenantsFile == "" {
		m.log.InfoContext(ctx, "no tenants file: serving the single keyless tenant demo")
	}
	_, err = m.startWith(ctx, cmd)
	return err
}

// startWith records cmd's differences and serves its tenants (Start, and the admin API's apply).
func (m *Module) startWith(ctx context.Context, cmd app.SyncTenants) (app.SyncReport, error) {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	dir, rep, err := app.SyncTenantsHandler{Store: m.store, Codec: m.codec}.Handle(ctx, cmd)
	if err != nil {
		return rep, fmt.Errorf("tenancy: %w", err)
	}
	m.mu.Lock()
	m.last = &cmd
	m.mu.Unlock()
	// Serve the file's tenants as recorded, and no longer those that left it (Run records them
	// as removed), beside the admin API's.
	m.liveMu.Lock()
	m.mergeLocked(rep.Tenants)
	m.rebuildLocked(ctx)
	m.liveMu.Unlock()
	if m.adm.Directory() == nil {
		m.adm.SetDirectory(dir) // the file's tenants could not be merged (a host clash): serve them alone
	}
	m.mu.Lock()
	m.starts++
	if m.dir == nil {
		m.setSyncedLocked(m.starts) // no directory: nothing more can be done
	}
	m.mu.Unlock()
	select {
	case m.reloaded <- struct{}{}:
	default:
	}
	if len(dir.IDs()) == 0 {
		m.log.WarnContext(ctx, "the tenants file lists no tenants: every tenant-scoped request will be refused", "file", m.cfg.TenantsFile)
	}
	m.log.InfoContext(ctx, "tenants loaded", "source", cmd.Source, "tenants", len(dir.IDs()), "registered", rep.Registered,
		"changed", rep.Changed, "keysAdded", rep.KeysAdded, "keysRevoked", rep.KeysRevoked)
	if m.rl != nil {
		if err := m.rl.Ping(ctx); err != nil {
			m.log.WarnContext(ctx, "redis rate limiter unreachable: limits are per process until it answers", "error", err.Error())
		} else {
			m.log.InfoContext(ctx, "rate limits shared through redis")
		}
	}
	return rep, nil
}

func (m *Module) setSyncedLocked(n uint64) {
	m.synced = n
	close(m.change)
	m.change = make(chan struct{})
}

// WaitSynced returns once the recorded tenants match the last Start's file: after Register, once
// Run has recorded as removed the tenants that left it. It fails when ctx ends first.
func (m *Module) WaitSynced(ctx context.Context) error {
	for {
		m.mu.Lock()
		done, ch := m.starts > 0 && m.synced == m.starts, m.change
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("tenancy: waiting for the tenants to be recorded: %w", ctx.Err())
		}
	}
}

// recordRemovals records as removed the recorded tenants the last Start's file no longer lists.
func (m *Module) recordRemovals(ctx context.Context) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.mu.Lock()
	cmd, n, done := m.last, m.starts, m.synced == m.starts
	m.mu.Unlock()
	if cmd == nil || done {
		return nil // no Start yet (it will signal), or its removals are recorded
	}
	rep, err := app.SyncTenantsHandler{Store: m.store, Codec: m.codec, Recorded: *m.dir}.RecordRemovals(ctx, *cmd)
	if err != nil {
		return fmt.Errorf("tenancy: %w", err)
	}
	if rep.Removed > 0 {
		m.log.InfoContext(ctx, "tenants no longer in the tenants file recorded as removed", "source", cmd.Source, "removed", rep.Removed)
	}
	m.mu.Lock()
	m.setSyncedLocked(n)
	m.mu.Unlock()
	return nil
}

// Guard is the request path's tenant guard for httpapi.Deps.Guard.
func (m *Module) Guard() httpapi.Guard { return m.adm }

// Config returns a tenant's configuration (read-only: do not modify its slices or maps). An unknown
// tenant is a NotFound *apperr.Error with code tenant_not_found. It satisfies tooling.TenantPolicy.
func (m *Module) Config(_ context.Context, t tenant.ID) (events.TenantConfig, error) {
	dir := m.adm.Directory()
	if dir == nil {
		return events.TenantConfig{}, apperr.New(apperr.KindUnavailable, "tenancy_not_ready", "the server is starting; retry shortly")
	}
	e, ok := dir.Get(t)
	if !ok {
		return events.TenantConfig{}, apperr.NotFound(domain.CodeTenantNotFound, fmt.Sprintf("tenant %q does not exist", t))
	}
	return e.Config, nil
}

// Tenants lists the tenants served, in id order (nil before Start).
func (m *Module) Tenants() []tenant.ID {
	dir := m.adm.Directory()
	if dir == nil {
		return nil
	}
	return dir.IDs()
}

// TokenGrant is a tokens-per-minute reservation's answer (TokenWindow.Reserve).
type TokenGrant = adapters.TokenGrant

// TokenWindow is the tokens-per-minute log shared by the replicas through Redis (--redis): the
// conversation module books its calls' tokens there for rateLimit.tokensPerMinute and a key's
// limits.tokensPerMinute, so the ceiling holds across replicas like perMinute does.
type TokenWindow struct {
	w *adapters.RedisTokenWindow
	// failClosed (--ratelimit-fail closed): a failing Redis refuses the call (503
	// ratelimit_unavailable) instead of letting each process count its own.
	failClosed bool
}

// TokenWindow returns the shared tokens-per-minute log; nil without Redis (each process keeps its
// own then).
func (m *Module) TokenWindow() *TokenWindow {
	if m.tpm == nil {
		return nil
	}
	return &TokenWindow{w: m.tpm, failClosed: m.cfg.FailClosed}
}

// NewTokenWindow is a shared tokens-per-minute log on client (tests and benchmarks).
func NewTokenWindow(client redis.UniversalClient, prefix string) *TokenWindow {
	return &TokenWindow{w: adapters.NewRedisTokenWindow(client, prefix, time.Second)}
}

// Reserve books prompt and up to want completion tokens (at least least) of turn in scope's log of
// t, under limit tokens in any 60 s, atomically across replicas.
// When Redis fails it returns the error, for the caller to count the call in its own process,
// or, failing closed, a 503 ratelimit_unavailable *apperr.Error to answer.
func (w *TokenWindow) Reserve(ctx context.Context, t tenant.ID, scope, turn string, prompt, want, least, limit int64, now time.Time) (TokenGrant, error) {
	g, err := w.w.Reserve(ctx, t, scope, turn, prompt, want, least, limit, now)
	if err != nil && w.failClosed && ctx.Err() == nil {
		e := apperr.Wrap(err, apperr.KindUnavailable, app.CodeLimiterUnavailable,
			"the tokens-per-minute limiter is unavailable and this server refuses unmetered calls; retry shortly")
		e.RetryAfterSec = 1
		return g, e
	}
	return g, err
}

// Settle replaces turn's reservation in scope's log by the tokens it used.
func (w *TokenWindow) Settle(ctx context.Context, t tenant.ID, scope, turn string, tokens int64) error {
	return w.w.Settle(ctx, t, scope, turn, tokens)
}

// Release drops turn's reservation in scope's log.
func (w *TokenWindow) Release(ctx context.Context, t tenant.ID, scope, turn string) error {
	return w.w.Release(ctx, t, scope, turn)
}

// LimiterCheck is the /health check of the shared limiter ("ratelimit"); nil without Redis.
func (m *Module) LimiterCheck() httpapi.Check {
	if m.rl == nil {
		return nil
	}
	return m.rl.Ping
}

// Run records as removed the tenants that left the tenants file, once the tenant directory read
// model has caught up (after Register; again after each Start), then blocks until ctx ends and closes
// the Redis connection. A bus that stops before the directory caught up is left to say why itself.
func (m *Module) Run(ctx context.Context) error {
	used := make(chan struct{})
	go func() { defer close(used); m.recordUsed(ctx) }()
	err := m.keepRecorded(ctx)
	<-used
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

func (m *Module) keepRecorded(ctx context.Context) error {
	go m.follow(ctx)
	if m.dir == nil {
		<-ctx.Done()
		return nil
	}
	if m.dir.Projection.Ready() != nil {
		m.log.InfoContext(ctx, "tenants that left the tenants file are recorded as removed once the tenant directory has caught up with the event store")
	}
	if err := m.dir.Projection.WaitCaughtUp(ctx); err != nil {
		<-ctx.Done()
		return nil
	}
	var backoff time.Duration
	for {
		if err := m.recordRemovals(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !bus.Unavailable(err) && !errors.Is(err, eventstore.ErrConflict) {
				return err
			}
			// The store is down or another writer keeps winning: that heals, so wait and try again
			// rather than end Run (which ends the server). WaitSynced waits meanwhile.
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			m.log.WarnContext(ctx, "recording the tenants that left the tenants file failed; retrying", "error", err.Error(), "retryIn", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return nil
		case <-m.reloaded:
		}
	}
}

// KeyUseActor is the actor of the events.ApiKeysUsed a replica records.
const KeyUseActor = "system:tenancy-key-use"

// recordUsed records every KeyUsedEvery the keys used here since the last record, and once more
// when ctx ends (so a restart loses none).
func (m *Module) recordUsed(ctx context.Context) {
	t := time.NewTicker(m.cfg.KeyUsedEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			m.flushUsed(fctx)
			cancel()
			return
		case <-t.C:
			m.flushUsed(ctx)
		}
	}
}

// flushUsed appends one events.ApiKeysUsed per tenant whose keys were used since the last flush, to
// its key-use stream of the day. A failed append gives its keys back for the next flush.
func (m *Module) flushUsed(ctx context.Context) {
	ctx = request.With(ctx, request.Info{ID: request.From(ctx).ID, Actor: KeyUseActor})
	for t, keys := range m.adm.TakeUsed() {
		err := func() error {
			st, err := tenant.NewStream(t, events.KeyUseCategory, m.now().UTC().Format("20060102"))
			if err != nil {
				return err
			}
			ev, err := eventstore.NewEventData(events.TypeApiKeysUsed, events.ApiKeysUsed{Keys: keys})
			if err != nil {
				return err
			}
			if _, err := m.store.Append(ctx, st, eventstore.Any, ev); err != nil {
				return fmt.Errorf("append to %s: %w", st, err)
			}
			return nil
		}()
		if err != nil {
			m.adm.Untake(t, keys)
			m.log.WarnContext(ctx, "recording the API keys' last use failed; retried at the next record", "tenant", t.String(), "error", err.Error())
		}
	}
}

// recordedUse is the latest use recorded by any replica of each of t's keys (none without
// Register). It fails while the read model catches up (503 catching_up) or cannot be read.
func (m *Module) recordedUse(ctx context.Context, t tenant.ID, keys []domain.Key) (map[string]time.Time, error) {
	if m.usage == nil || len(keys) == 0 {
		return nil, nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	out, err := m.usage.LastUsed(ctx, t, ids)
	if err != nil {
		return nil, fmt.Errorf("tenancy: read the keys' last use: %w", err)
	}
	return out, nil
}

// Close releases the Redis connection (for callers that do not use Run).
func (m *Module) Close() error {
	if m.redis == nil {
		return nil
	}
	if err := m.redis.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("tenancy: close redis: %w", err)
	}
	return nil
}

// NewAPIKey generates an API key and its "sha256:<hex>" hash, for `crispy tenant key new`: print the
// key once, and the hash for the tenant's apiKeys list in the tenants file. The key is never stored.
func NewAPIKey() (key, hash string, err error) { return domain.NewKey() }

// HashAPIKey returns the "sha256:<hex>" form of a key, as the tenants file lists it.
func HashAPIKey(key string) string { return domain.HashKey(key) }

// ValidateTenantsFile checks a tenants file without recording anything; problems are reported as
// "file:line: field: message", one per line.
func ValidateTenantsFile(path string) error {
	_, err := adapters.LoadTenantsFile(path)
	return err
}
