package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crispy-enigma/crispy/modules/observability/events"
	"github.com/crispy-enigma/crispy/modules/observability/internal/domain"
	"github.com/crispy-enigma/crispy/platform/bus"
	"github.com/crispy-enigma/crispy/platform/bus/codec"
	"github.com/crispy-enigma/crispy/platform/eventstore"
	"github.com/crispy-enigma/crispy/platform/request"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// ErrBlockedAddress refuses a webhook whose host resolves to a loopback, private, link-local or
// otherwise internal address: tenants choose webhook URLs, and must not reach the operator's network
// through them (SSRF). The check runs at connect time, after DNS, so rebinding does not get around it.
var ErrBlockedAddress = errors.New("webhook address is internal")

// NewClient returns the HTTP client for webhooks: no proxy from the environment (the address check
// must see the real destination), a timeout per attempt, and unless allowInternal, connections to
// internal addresses refused.
func NewClient(timeout time.Duration, allowInternal bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowInternal {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
			}
			if ip := ap.Addr().Unmap(); Internal(ip) {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, ip)
			}
			return nil
		}
	}
	tr := &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: timeout, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second}
	return &http.Client{Timeout: timeout, Transport: tr,
		// A redirect could lead anywhere; notices go to the configured URL only.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// cgnat is the carrier-grade NAT range (100.64.0.0/10), internal to providers' networks.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Internal reports whether ip is an address a tenant's webhook must not reach: loopback, private,
// link-local, multicast, unspecified or carrier-grade NAT. The dialer refuses them at connect time
// (after DNS, so rebinding does not get around it) and CheckURL at save time.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || cgnat.Contains(ip)
}

// CheckURL refuses, when the rule is saved, a webhook URL whose host is or resolves to an internal
// address (Internal), so the tenant hears it now instead of its notices being refused silently at
// delivery. A name that does not resolve now passes: the dialer still checks every connection.
func CheckURL(ctx context.Context, raw string, lookup func(ctx context.Context, host string) ([]netip.Addr, error)) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if Internal(ip) {
			return fmt.Errorf("%w: %s", ErrBlockedAddress, ip)
		}
		return nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, host)
	}
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := lookup(lctx, host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if Internal(ip) {
			return fmt.Errorf("%w: %s resolves to %s", ErrBlockedAddress, host, ip)
		}
	}
	return nil
}

// SignatureHeader carries "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)); TimestampHeader
// carries the unix seconds that were signed, so a receiver can refuse replays of old notices.
const (
	SignatureHeader = "x-crispy-signature"
	TimestampHeader = "x-crispy-timestamp"
	EventHeader     = "x-crispy-event"
	// DeliveryHeader carries the id of the recorded transition (AlertFired or AlertResolved): every
	// delivery of one transition carries the same, so a receiver drops repeats.
	DeliveryHeader = "x-crispy-delivery"
)

// Sign computes the signature header value.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Notifier POSTs notices with retries and exponential backoff.
type Notifier struct {
	Client  *http.Client
	Secret  []byte
	Retries int           // retries after the first attempt
	Backoff time.Duration // first wait; doubles each retry, capped at 30 s
	Log     *slog.Logger
	Now     func() time.Time
}

// ErrUnsigned refuses to send a notice without a signing secret: a receiver could not tell it from
// a forgery.
var ErrUnsigned = errors.New("no webhook secret is configured (CRISPY_WEBHOOK_SECRET): notices are not sent unsigned")

// Deliver POSTs one notice, retrying network errors, 429 and 5xx.
func (n *Notifier) Deliver(ctx context.Context, url string, notice Notice) error {
	if len(n.Secret) == 0 {
		return fmt.Errorf("webhook %s: %w", url, ErrUnsigned)
	}
	body, err := MarshalNotice(notice)
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(n.Now().Unix(), 10)
	sig := Sign(n.Secret, ts, body)
	wait := n.Backoff
	var last error
	for attempt := 0; attempt <= n.Retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("webhook %s: %w (last error: %v)", url, ctx.Err(), last)
			case <-t.C:
			}
			wait = min(wait*2, 30*time.Second)
		}
		retry, err := n.post(ctx, url, ts, sig, notice, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry {
			break
		}
	}
	return fmt.Errorf("webhook %s: %w", url, last)
}

func (n *Notifier) post(ctx context.Context, url, ts, sig string, notice Notice, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "crispy-alerts/1")
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(EventHeader, notice.Event)
	if notice.ID != "" {
		req.Header.Set(DeliveryHeader, notice.ID)
	}
	resp, err := n.Client.Do(req)
	if err != nil {
		return !errors.Is(err, ErrBlockedAddress), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("status %d (not retried)", resp.StatusCode)
	}
}

// Webhooks sends the notice of every recorded transition that has a webhook: the handlers of the
// module's bus processor, so a transition is notified once per deployment however many replicas
// run. Delivery is at least once (a crash between the POST and the processor's checkpoint repeats
// it); the notice and its x-crispy-delivery header carry the event id for the receiver to drop
// repeats.
type Webhooks struct {
	Notifier *Notifier
	// Store folds a rule's stream for transitions recorded without their rule (before AlertFired
	// carried it).
	Store eventstore.Store
	Codec *codec.Registry // the observability events, to fold the rule's stream with
	// MaxAge: a transition recorded longer ago than this is not notified (a processor started on a
	// fresh checkpoint folder is handed the whole history; a notice days late helps no one). 0: no
	// limit.
	MaxAge time.Duration
	Log    *slog.Logger
	Now    func() time.Time
}

// Fired notifies an AlertFired.
func (w *Webhooks) Fired(ctx context.Context, env bus.Envelope, ev events.AlertFired) error {
	return w.send(ctx, env, "firing", ev.RuleID, ev.Value, ev.At, ev.Rule)
}

// Resolved notifies an AlertResolved.
func (w *Webhooks) Resolved(ctx context.Context, env bus.Envelope, ev events.AlertResolved) error {
	return w.send(ctx, env, "resolved", ev.RuleID, ev.Value, ev.At, ev.Rule)
}

func (w *Webhooks) send(ctx context.Context, env bus.Envelope, state, ruleID string, value float64, at time.Time, rule *events.AlertRule) error {
	if w.MaxAge > 0 && w.Now().Sub(env.Time) > w.MaxAge {
		w.Log.WarnContext(ctx, "alert notice not sent: the transition is too old", "tenant", env.Tenant.String(), "rule", ruleID,
			"event", env.ID, "recorded", env.Time, "maxAge", w.MaxAge)
		return nil
	}
	if rule == nil {
		r, err := w.ruleAt(ctx, env)
		if err != nil {
			return err // retried by the bus
		}
		rule = &r
	}
	if rule.WebhookURL == "" {
		return nil
	}
	n := Notice{ID: env.ID, Event: "alert." + state, Tenant: env.Tenant.String(), Rule: *rule, State: state, Value: value, At: at.UTC()}
	err := w.Notifier.Deliver(ctx, rule.WebhookURL, n)
	if err != nil && ctx.Err() != nil {
		return err // stopping: the event comes again
	}
	if err != nil {
		// Retried by Deliver already; the bus retrying again would only hammer a receiver that
		// refuses it. The failure is recorded in the rule's stream, so GET /metrics/alerts shows it.
		w.Log.WarnContext(ctx, "alert webhook not delivered", "tenant", env.Tenant.String(), "rule", ruleID, "event", env.ID, "error", err)
	}
	return w.record(ctx, env, ruleID, state, err)
}

// record appends the notice's outcome (AlertDelivered or AlertDeliveryFailed) to the rule's stream.
func (w *Webhooks) record(ctx context.Context, env bus.Envelope, ruleID, state string, failure error) error {
	st, err := tenant.ParseStream(env.Stream)
	if err != nil {
		return err
	}
	typ, data := events.TypeAlertDelivered, any(events.AlertDelivered{RuleID: ruleID, Transition: env.ID, State: state, At: w.Now().UTC()})
	if failure != nil {
		msg := failure.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		typ, data = events.TypeAlertDeliveryFailed, events.AlertDeliveryFailed{RuleID: ruleID, Transition: env.ID, State: state, Error: msg, At: w.Now().UTC()}
	}
	ev, err := eventstore.NewEventData(typ, data)
	if err != nil {
		return err
	}
	ctx = request.With(ctx, request.Info{ID: request.From(ctx).ID, Actor: "system:alerts"})
	if _, err := w.Store.Append(ctx, st, eventstore.Any, ev); err != nil {
		return fmt.Errorf("record the delivery of %s in %s: %w", env.ID, st, err) // retried by the bus
	}
	return nil
}

// ruleAt folds the rule's stream up to the transition.
func (w *Webhooks) ruleAt(ctx context.Context, env bus.Envelope) (events.AlertRule, error) {
	st, err := tenant.ParseStream(env.Stream)
	if err != nil {
		return events.AlertRule{}, err
	}
	evs, err := w.Store.ReadStream(ctx, st, 0, 0)
	if err != nil {
		return events.AlertRule{}, fmt.Errorf("read %s: %w", st, err)
	}
	var rs domain.RuleState
	for i := range evs {
		if evs[i].Revision > env.Revision {
			break
		}
		v, err := decode(w.Codec, &evs[i])
		if err != nil {
			return events.AlertRule{}, err
		}
		if v != nil {
			rs.Apply(evs[i].Revision, v)
		}
	}
	return rs.Rule, nil
}
