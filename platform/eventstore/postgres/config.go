package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says where the database is and how the store uses it.
type Config struct {
	// URL is a PostgreSQL connection URL: postgres:// or postgresql:// (for example
	// "postgres://crispy@db:5432/crispy?sslmode=disable"). Every libpq/pgx parameter works, as do the
	// pool's (pool_max_conns, …). One parameter is the store's own and is removed before connecting:
	// schema=NAME, the same as Config.Schema.
	URL string
	// Schema holds the store's tables (default "crispy"), so several deployments or test runs can
	// share one database without seeing each other's events. Created on first use.
	Schema string
	// MaxBatch bounds how many concurrent appends one transaction carries (default 256). 1 turns the
	// grouping off: every append is then its own transaction (and its own WAL flush).
	MaxBatch int
	// WriteTimeout bounds one append transaction, from its first statement to its commit (default
	// 10s): a database that stops answering fails the appends waiting on it with storage_unavailable
	// instead of holding them forever.
	WriteTimeout time.Duration
	// PollInterval is how often a live subscription reads the table even without a notification: the
	// safety net under LISTEN/NOTIFY, which loses notifications while its connection is down (default 1s).
	PollInterval time.Duration
	// PageSize is how many events a subscription reads per query (default 512).
	PageSize int
}

// DefaultSchema is where the tables live when neither Config.Schema nor the URL names a schema.
const DefaultSchema = "crispy"

// schemaPattern keeps schema names plain identifiers, short enough that "<schema>.events" fits a
// notification channel name (63 bytes).
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// Validate reports a configuration that cannot work, without connecting.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

// resolved is a validated configuration with its defaults and the pool settings.
type resolved struct {
	Config
	pool *pgxpool.Config
}

func (c Config) resolve() (resolved, error) {
	if c.URL == "" {
		return resolved{}, errors.New("postgres: URL is empty")
	}
	if !strings.HasPrefix(c.URL, "postgres://") && !strings.HasPrefix(c.URL, "postgresql://") {
		return resolved{}, fmt.Errorf("postgres: URL %s must start with postgres:// or postgresql://", Redact(c.URL))
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return resolved{}, fmt.Errorf("postgres: URL %s does not parse", Redact(c.URL))
	}
	q := u.Query()
	if s := q.Get("schema"); s != "" {
		if c.Schema != "" && c.Schema != s {
			return resolved{}, fmt.Errorf("postgres: the URL names schema %q and the configuration %q; name one", s, c.Schema)
		}
		c.Schema = s
	}
	q.Del("schema")
	u.RawQuery = q.Encode()
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if !schemaPattern.MatchString(c.Schema) {
		return resolved{}, fmt.Errorf("postgres: schema %q must match %s", c.Schema, schemaPattern)
	}
	if c.MaxBatch < 0 || c.WriteTimeout < 0 || c.PollInterval < 0 || c.PageSize < 0 {
		return resolved{}, errors.New("postgres: MaxBatch, WriteTimeout, PollInterval and PageSize must not be negative")
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 512
	}
	pc, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return resolved{}, fmt.Errorf("postgres: URL %s: %s", Redact(c.URL), redactIn(err.Error(), c.URL))
	}
	rp := pc.ConnConfig.RuntimeParams
	// An acknowledged append must be durable. "off" acknowledges before the WAL is flushed, so a
	// crash of the server loses acknowledged events: refuse it rather than lie. "local" flushes
	// locally but does not wait for synchronous standbys; it is the operator's explicit choice.
	switch sc := strings.ToLower(rp["synchronous_commit"]); sc {
	case "":
		rp["synchronous_commit"] = "on" // whatever the server's default, our sessions wait for the flush
	case "off", "false", "no", "0":
		return resolved{}, fmt.Errorf("postgres: synchronous_commit=%s would acknowledge appends before they are durable; use on (or remote_apply with synchronous standbys)", sc)
	}
	if rp["application_name"] == "" {
		rp["application_name"] = "crispy"
	}
	// A server that swallows packets would otherwise hold a connection attempt as long as the
	// caller's context allows; an append waits for at most WriteTimeout in all.
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	return resolved{Config: c, pool: pc}, nil
}

// Redact hides the password of a connection URL for messages and logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: show the scheme only when there may be credentials.
		if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
			return raw[:i+3] + "xxxxx" + raw[j:]
		}
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactIn removes the URL's password from a message that may quote it.
func redactIn(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	if pw := u.Query().Get("password"); pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}
