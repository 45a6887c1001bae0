package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/eventstore/postgres"
	"github.com/crispy-enigma/crispy/platform/httpapi"
	"github.com/crispy-enigma/crispy/platform/logging"
	"github.com/crispy-enigma/crispy/platform/tracing"
)

// config is the root configuration: every knob of every command, parsed once here from flags and
// CRISPY_* variables and split per module by the wiring. Nothing else in the program reads the
// environment.
type config struct {
	Addr            string
	DataDir         string
	Tenants         string
	EventStore      string // "embedded", an esdb:// / kurrentdb:// connection string, or a postgres:// URL
	KeyStore        string // data keys: "" (the PostgreSQL event store's table, else the data folder), "embedded", or a postgres:// URL
	KeyStoreNoCache bool   // PostgreSQL key store: read every key from the table (PgBouncer transaction pooling)
	Search          string // "embedded" or an Elasticsearch URL
	Bus             string // "gochannel" or a nats:// URL
	BusPrefix       string // names the JetStream stream and durable consumers: one per deployment
	Redis           string // optional redis:// URL: shared rate limiter
	RateLimitFail   string // "open" (default) or "closed": what the limiter does while Redis fails
	PluginsDir      string
	PluginMemoryMB  int           // memory ceiling of a plugin whose tool declares none; 0: none
	PluginMaxMemMB  int           // caps the ceiling a tool declares
	SessionCacheMB  int           // fold cache of chat sessions, MiB; 0: none
	ResumeBufferMB  int           // finished chat turns kept for resumption, MiB; 0: none
	AlertInterval   time.Duration // how often alert rules are evaluated
	RetentionEvery  time.Duration // how often idle sessions are expired (sessionRetentionDays)
	MetricsAddr     string        // optional separate listener for GET /metrics
	AdminKeySHA256  string        // admin keys' SHA-256 hashes, hex, comma-separated
	LogLevel        string
	ShutdownTimeout time.Duration
	// HTTP server timeouts (httpapi.Timeouts): slow and idle clients are cut off.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration

	// Model providers and telemetry: environment only, so secrets never appear in a process list.
	OpenAIBaseURL     string
	OpenAIAPIKey      string
	CFAccountID       string
	CFAPIToken        string
	CFGatewayID       string
	CFBaseURL         string // CRISPY_CF_BASE_URL: Workers AI's API root (proxies, tests)
	ModelAliases      string // CRISPY_MODEL_ALIASES: name=provider:model,… for OpenAI clients
	ModelMaxTokens    string // CRISPY_MODEL_MAX_TOKENS: provider:model=tokens,… default max_tokens per model
	ModelFirstByte    time.Duration
	ModelIdle         time.Duration
	ModelRetries      int
	ModelRetryBackoff time.Duration
	ModelOverride     string // CRISPY_MODEL_ID: overrides every tenant's default chat model
	DefaultChatModel  string // CRISPY_DEFAULT_CHAT_MODEL
	DefaultEmbedModel string // CRISPY_DEFAULT_EMBEDDING_MODEL
	// Reranking (issue 16): the server's default reranker and the endpoints of its providers.
	RerankModel   string // CRISPY_RERANK_MODEL: provider:model, none by default
	RerankBaseURL string // CRISPY_RERANK_BASE_URL: an OpenAI-compatible /rerank server (default CRISPY_OPENAI_BASE_URL)
	RerankAPIKey  string // CRISPY_RERANK_API_KEY (default CRISPY_OPENAI_API_KEY)
	CohereBaseURL string // CRISPY_COHERE_BASE_URL (default https://api.cohere.com/v2)
	CohereAPIKey  string // CRISPY_COHERE_API_KEY
	RerankTimeout time.Duration
	UploadMaxMB   int    // POST /documents' body limit, MiB
	OTLPEndpoint  string // OTEL_EXPORTER_OTLP_ENDPOINT
	// Tracing is what the standard OTEL_* variables say (tracing.FromEnv); tracingErr a value it
	// refused, reported by validate.
	Tracing       tracing.Config
	tracingErr    error
	PricesFile    string // CRISPY_PRICES: per-model prices (YAML) for cost
	WebhookSecret string // CRISPY_WEBHOOK_SECRET: signs alert webhooks
	// CRISPY_WEBHOOK_ALLOW_INTERNAL=true lets alert webhooks reach loopback and private addresses
	// (receivers on the operator's own network; off by default, as tenants choose webhook URLs).
	WebhookAllowInternal string

	// The signed audit log (serve's --audit-* flags).
	AuditKey         string // signing key file; default <data>/audit/signing.key
	NewAuditKey      bool   // create a new key although the store has events
	NewKeyStore      bool   // start an empty embedded data key store although sealed content exists
	AuditWitnessFile string
	AuditWitnessURL  string
	AuditInterval    time.Duration
}

// flags binds command-line flags whose defaults come from CRISPY_* variables.
type flags struct {
	fs   *flag.FlagSet
	env  lookupEnv
	err  error
	name string
	help io.Writer // where -h prints the flags
}

func newFlags(name string, env lookupEnv, out io.Writer) *flags {
	fs := flag.NewFlagSet("crispy "+name, flag.ContinueOnError)
	// The flag package prints an error and the whole flag list on a bad flag; parse reports it as
	// one line instead, and prints the list only when asked (-h).
	fs.SetOutput(io.Discard)
	return &flags{fs: fs, env: env, name: name, help: out}
}

func envName(flagName string) string {
	return "CRISPY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flags) str(p *string, name, def, help string) {
	if v, ok := f.env(envName(name)); ok && v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", help, envName(name)))
}

func (f *flags) dur(p *time.Duration, name string, def time.Duration, help string) {
	if v, ok := f.env(envName(name)); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s=%q: %v", envName(name), v, err)
		}
		if err == nil {
			def = d
		}
	}
	f.fs.DurationVar(p, name, def, fmt.Sprintf("%s (env %s)", help, envName(name)))
}

func (f *flags) num(p *int, name string, def int, help string) {
	if v, ok := f.env(envName(name)); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("%s=%q: want a whole number", envName(name), v)
		}
		if err == nil {
			def = n
		}
	}
	f.fs.IntVar(p, name, def, fmt.Sprintf("%s (env %s)", help, envName(name)))
}

func (f *flags) parse(args []string) error {
	if f.err != nil {
		return exitError{code: 2, msg: f.err.Error()}
	}
	pos, err := parseInterspersed(f.fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			f.fs.SetOutput(f.help)
			f.fs.Usage()
			f.fs.SetOutput(io.Discard)
			return exitError{code: 0}
		}
		return usageError("%s: %v; run 'crispy %s -h' for its flags", f.name, err, f.name)
	}
	// Leave the positional arguments where every command reads them (fs.Args, fs.NArg): a final
	// parse of "--" followed by them sets them without touching the flags already set.
	if err := f.fs.Parse(append([]string{"--"}, pos...)); err != nil {
		return usageError("%s: %v", f.name, err)
	}
	return nil
}

// parseInterspersed parses flags wherever they stand among the positional arguments, which it
// returns in order: "crispy ingest a.txt --tenant demo" and "crispy ingest --tenant demo a.txt" are
// the same command (the flag package alone stops at the first non-flag). "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// storeFlags are the flags of every command that opens the event store. The operator commands log
// only warnings by default: their output is the report, not the log.
func (f *flags) storeFlags(c *config) { f.storeFlagsLevel(c, "warn") }

func (f *flags) storeFlagsLevel(c *config, level string) {
	f.str(&c.DataDir, "data-dir", "data", "folder for the embedded event store, index and checkpoints")
	f.str(&c.EventStore, "eventstore", "embedded", "event store: embedded, an EventStoreDB/KurrentDB connection string (esdb://host:2113?tls=false), or a PostgreSQL URL (postgres://user@host:5432/db?sslmode=disable&schema=crispy)")
	f.str(&c.LogLevel, "log-level", level, "debug, info, warn or error")
	f.str(&c.KeyStore, "keystore", "", "where the data keys that erase sealed content live: embedded (<data-dir>/keys/keys.db, one process), or a PostgreSQL URL (postgres://user@host:5432/db?sslmode=disable&schema=crispy) shared by replicas whatever the event store; EventStoreDB replicas must share one (default: the PostgreSQL event store's data_keys table, else embedded)")
	f.fs.BoolVar(&c.KeyStoreNoCache, "keystore-no-cache", false, "PostgreSQL key store: read every key from the table instead of caching keys while destruction notifications arrive (set it behind PgBouncer in transaction pooling mode, where LISTEN/NOTIFY does not work)")
}

// serveFlags are serve's flags (SPEC §6).
func (f *flags) serveFlags(c *config) {
	f.storeFlagsLevel(c, "info")
	f.str(&c.Addr, "addr", ":8080", "listen address")
	f.str(&c.Tenants, "tenants", "", "tenants YAML file (none: one keyless tenant, demo)")
	f.str(&c.Search, "search", "embedded", "vector index: embedded, or an Elasticsearch URL")
	f.str(&c.Bus, "bus", "gochannel", "event bus: gochannel, or a NATS JetStream URL (nats://127.0.0.1:4222)")
	f.str(&c.BusPrefix, "bus-prefix", "crispy", "with --bus nats://: names the JetStream stream (<prefix>-events) and durable consumers; every replica of a deployment uses the same, deployments sharing a NATS server each their own")
	f.str(&c.Redis, "redis", "", "Redis URL for the rate limiter shared by replicas (none: in-process)")
	f.str(&c.RateLimitFail, "ratelimit-fail", "open", "while Redis fails: open (per-process limits apply) or closed (refuse with 503)")
	f.str(&c.PluginsDir, "plugins-dir", filepath.Join("bin", "plugins"), "folder of tool plugin binaries (task build puts them there)")
	f.num(&c.PluginMemoryMB, "plugin-memory-mb", 512, "memory ceiling of a tool plugin whose tool declares none, MiB (0: none); a plugin above it is replaced")
	f.num(&c.PluginMaxMemMB, "plugin-max-memory-mb", 2048, "the most memory a tool plugin may declare for itself, MiB")
	f.num(&c.SessionCacheMB, "session-cache-mb", 64, "memory for folded chat sessions, least recently used out first, MiB (0: none kept)")
	f.num(&c.ResumeBufferMB, "resume-buffer-mb", 64, "memory for finished chat turns kept for resumption, oldest out first, MiB (0: none kept)")
	f.str(&c.MetricsAddr, "metrics-addr", "", "serve GET /metrics on this address too (none: only on --addr)")
	f.str(&c.AdminKeySHA256, "admin-key-sha256", "", "SHA-256 hashes (hex, comma-separated) of the admin keys that authorise /admin and GET /metrics on --addr (crispy admin key new makes one)")
	f.dur(&c.AlertInterval, "alert-interval", 30*time.Second, "how often alert rules are evaluated")
	f.dur(&c.RetentionEvery, "retention-interval", time.Hour, "how often sessions idle past their tenant's sessionRetentionDays are expired")
	f.dur(&c.ModelFirstByte, "model-first-byte-timeout", 20*time.Second, "a model that has sent nothing by then is left for the next one (a non-streamed call: no answer by then)")
	f.dur(&c.ModelIdle, "model-idle-timeout", time.Minute, "a streamed answer whose model sends nothing for this long ends with an error event (0: no limit)")
	f.num(&c.ModelRetries, "model-retries", 2, "retries of one model on 429, 5xx or a refused connection before its first token, before the next model (a tenant's models.retry wins)")
	f.dur(&c.ModelRetryBackoff, "model-retry-backoff", 250*time.Millisecond, "the first wait between retries, doubled each retry, jittered; a retry-after up to 10 s wins")
	f.dur(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight requests may finish after SIGTERM")
	f.dur(&c.RerankTimeout, "rerank-timeout", 2*time.Second, "how long a search waits for the tenant's reranker before it keeps the fused order (logged and counted)")
	f.num(&c.UploadMaxMB, "upload-max-mb", 20, "the largest POST /documents upload, MiB (streamed to a temporary file; JSON requests keep 1 MiB)")
	f.dur(&c.ReadHeaderTimeout, "read-header-timeout", httpapi.DefaultTimeouts.ReadHeader, "how long a client may take to send a request's headers")
	f.dur(&c.ReadTimeout, "read-timeout", httpapi.DefaultTimeouts.Read, "how long a client may take to send a whole request, headers and body")
	f.dur(&c.WriteTimeout, "write-timeout", httpapi.DefaultTimeouts.Write, "how long a client may take to read a response from its first byte (an SSE stream: each of its events)")
	f.dur(&c.IdleTimeout, "idle-timeout", httpapi.DefaultTimeouts.Idle, "how long a keep-alive connection may wait for its next request")
	f.auditFlags(c)
	f.keyGuardFlags(c)
}

// httpTimeouts are the HTTP server's timeouts (zero, for commands without serve's flags: the
// defaults).
func (c *config) httpTimeouts() httpapi.Timeouts {
	return httpapi.Timeouts{ReadHeader: c.ReadHeaderTimeout, Read: c.ReadTimeout, Write: c.WriteTimeout, Idle: c.IdleTimeout}
}

// validateHTTPTimeouts checks serve's timeout flags: zero or less would mean no timeout, which is
// what they are there to prevent (and a shutdown deadline already past would cut every open stream
// without the error event and outcome it is there to give them).
func (c *config) validateHTTPTimeouts() error {
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{{"read-header-timeout", c.ReadHeaderTimeout}, {"read-timeout", c.ReadTimeout}, {"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout},
		{"shutdown-timeout", c.ShutdownTimeout}} {
		if f.d <= 0 {
			return fmt.Errorf("--%s %s: want a positive duration, such as 30s", f.flag, f.d)
		}
	}
	return nil
}

// providerEnv reads the model-provider and telemetry variables.
func (c *config) providerEnv(env lookupEnv) {
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	c.OpenAIBaseURL = get("CRISPY_OPENAI_BASE_URL")
	c.OpenAIAPIKey = get("CRISPY_OPENAI_API_KEY")
	c.CFAccountID = get("CRISPY_CF_ACCOUNT_ID")
	c.CFAPIToken = get("CRISPY_CF_API_TOKEN")
	c.CFGatewayID = get("CRISPY_CF_GATEWAY_ID")
	c.CFBaseURL = get("CRISPY_CF_BASE_URL")
	c.ModelAliases = get("CRISPY_MODEL_ALIASES")
	c.ModelMaxTokens = get("CRISPY_MODEL_MAX_TOKENS")
	c.ModelOverride = get("CRISPY_MODEL_ID")
	c.DefaultChatModel = get("CRISPY_DEFAULT_CHAT_MODEL")
	c.DefaultEmbedModel = get("CRISPY_DEFAULT_EMBEDDING_MODEL")
	c.RerankModel = get("CRISPY_RERANK_MODEL")
	c.RerankBaseURL = get("CRISPY_RERANK_BASE_URL")
	c.RerankAPIKey = get("CRISPY_RERANK_API_KEY")
	c.CohereBaseURL = get("CRISPY_COHERE_BASE_URL")
	c.CohereAPIKey = get("CRISPY_COHERE_API_KEY")
	c.OTLPEndpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT")
	c.Tracing, c.tracingErr = tracing.FromEnv(get)
	c.PricesFile = get("CRISPY_PRICES")
	c.WebhookSecret = get("CRISPY_WEBHOOK_SECRET")
	c.WebhookAllowInternal = get("CRISPY_WEBHOOK_ALLOW_INTERNAL")
}

// validate checks what can be checked before anything is opened.
func (c *config) validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	if c.tracingErr != nil {
		return c.tracingErr
	}
	if c.EventStore != "embedded" && !strings.HasPrefix(c.EventStore, "esdb://") && !strings.HasPrefix(c.EventStore, "esdb+discover://") &&
		!strings.HasPrefix(c.EventStore, "kurrentdb://") && !strings.HasPrefix(c.EventStore, "kurrentdb+discover://") && !isPostgres(c.EventStore) {
		return fmt.Errorf("--eventstore %q: want embedded, an esdb:// / kurrentdb:// connection string or a postgres:// URL", redactURL(c.EventStore))
	}
	if isPostgres(c.EventStore) {
		if err := checkURL("--eventstore", c.EventStore, "postgres://crispy@127.0.0.1:5432/crispy?sslmode=disable"); err != nil {
			return err
		}
		if err := (postgres.Config{URL: c.EventStore}).Validate(); err != nil {
			return fmt.Errorf("--eventstore %s: %v", redactURL(c.EventStore), strings.TrimPrefix(err.Error(), "postgres: "))
		}
	} else if c.EventStore != "embedded" {
		if err := checkURL("--eventstore", c.EventStore, "esdb://host:2113?tls=false"); err != nil {
			return err
		}
	}
	if c.KeyStore != "" && c.KeyStore != "embedded" {
		if !isPostgres(c.KeyStore) {
			return fmt.Errorf("--keystore %q: want embedded or a postgres:// URL", redactURL(c.KeyStore))
		}
		if err := checkURL("--keystore", c.KeyStore, "postgres://crispy@127.0.0.1:5432/crispy?sslmode=disable&schema=crispy"); err != nil {
			return err
		}
		if err := (postgres.Config{URL: c.KeyStore}).Validate(); err != nil {
			return fmt.Errorf("--keystore %s: %v", redactURL(c.KeyStore), strings.TrimPrefix(err.Error(), "postgres: "))
		}
	}
	if c.Search != "" && c.Search != "embedded" {
		if u, err := url.Parse(c.Search); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--search %q: want embedded or an http(s) Elasticsearch URL", c.Search)
		}
	}
	if c.Bus != "" && c.Bus != "gochannel" && !strings.HasPrefix(c.Bus, "nats://") {
		return fmt.Errorf("--bus %q: want gochannel or a nats:// URL", c.Bus)
	}
	if strings.HasPrefix(c.Bus, "nats://") {
		if err := checkURL("--bus", c.Bus, "nats://127.0.0.1:4222"); err != nil {
			return err
		}
	}
	if c.BusPrefix != "" {
		if err := (bus.Config{Prefix: c.BusPrefix}).WithDefaults().Validate(); err != nil {
			return fmt.Errorf("--bus-prefix %q: want 1 to 64 letters, digits, '-' or '_'", c.BusPrefix)
		}
	}
	if c.UploadMaxMB < 0 || c.UploadMaxMB > 4096 || c.RerankTimeout < 0 {
		return fmt.Errorf("--upload-max-mb %d / --rerank-timeout %s: want 1 to 4096 MiB and a positive duration, such as 2s", c.UploadMaxMB, c.RerankTimeout)
	}
	if c.AlertInterval < 0 || c.RetentionEvery < 0 {
		return fmt.Errorf("--alert-interval %s / --retention-interval %s: want a positive duration, such as 30s", c.AlertInterval, c.RetentionEvery)
	}
	if _, err := c.webhookAllowInternal(); err != nil {
		return err
	}
	if c.AuditInterval < 0 {
		return fmt.Errorf("--audit-interval %s: want a positive duration, such as 30s", c.AuditInterval)
	}
	if c.AuditWitnessURL != "" {
		if u, err := url.Parse(c.AuditWitnessURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--audit-witness-url %q: want an http(s) URL", c.AuditWitnessURL)
		}
	}
	if c.Redis != "" && !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://") {
		return fmt.Errorf("--redis %q: want a redis:// or rediss:// URL", c.Redis)
	}
	if c.Redis != "" {
		if err := checkURL("--redis", c.Redis, "redis://127.0.0.1:6379/0"); err != nil {
			return err
		}
	}
	if c.RateLimitFail != "" && c.RateLimitFail != "open" && c.RateLimitFail != "closed" {
		return fmt.Errorf("--ratelimit-fail %q: want open or closed", c.RateLimitFail)
	}
	if c.PluginMemoryMB < 0 || c.PluginMaxMemMB < 0 {
		return fmt.Errorf("--plugin-memory-mb %d / --plugin-max-memory-mb %d: want MiB, not negative (0 turns the ceiling off)", c.PluginMemoryMB, c.PluginMaxMemMB)
	}
	if c.SessionCacheMB < 0 || c.ResumeBufferMB < 0 {
		return fmt.Errorf("--session-cache-mb %d / --resume-buffer-mb %d: want MiB, not negative (0 keeps nothing)", c.SessionCacheMB, c.ResumeBufferMB)
	}
	if c.PluginMemoryMB > c.PluginMaxMemMB {
		return fmt.Errorf("--plugin-memory-mb %d is above --plugin-max-memory-mb %d: lower the one or raise the other", c.PluginMemoryMB, c.PluginMaxMemMB)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

// webhookAllowInternal is CRISPY_WEBHOOK_ALLOW_INTERNAL (unset: false).
func (c *config) webhookAllowInternal() (bool, error) {
	if c.WebhookAllowInternal == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(c.WebhookAllowInternal)
	if err != nil {
		return false, fmt.Errorf("CRISPY_WEBHOOK_ALLOW_INTERNAL=%q: want true or false", c.WebhookAllowInternal)
	}
	return v, nil
}

// mibOrNone is a memory budget flag in bytes, for a module config where 0 means its default:
// the flag's 0 keeps nothing.
func mibOrNone(mb int) int64 {
	if mb <= 0 {
		return -1
	}
	return int64(mb) << 20
}

// checkURL refuses a URL that does not parse or names no host, before any client sees it: clients
// report such URLs in ways that hide which flag is at fault.
func checkURL(flag, raw, example string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		shown := raw
		if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
			shown = raw[:i+3] + "xxxxx" + raw[j:] // it may carry a password, and does not parse to redact it
		}
		return fmt.Errorf("%s %s is not a valid URL (%v); want something like %s", flag, shown, err, example)
	}
	if u.Host == "" {
		return fmt.Errorf("%s %s names no host; want something like %s", flag, redactURL(raw), example)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger is the process logger: JSON lines on w, each record logged with a request's context
// carrying its requestId and tenant (platform/logging).
func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := parseLevel(level)
	return logging.New(w, l)
}

// isPostgres reports whether --eventstore names a PostgreSQL database.
func isPostgres(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// redactURL drops credentials from a URL before it is logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
