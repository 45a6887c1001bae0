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
	"strconv"
	"sync"
	"syscall"
	"time"
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
			ip := ap.Addr().Unmap()
			if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
				ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || cgnat.Contains(ip) {
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

// SignatureHeader carries "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)); TimestampHeader
// carries the unix seconds that were signed, so a receiver can refuse replays of old notices.
const (
	SignatureHeader = "x-crispy-signature"
	TimestampHeader = "x-crispy-timestamp"
	EventHeader     = "x-crispy-event"
)

// Sign computes the signature header value.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Notifier POSTs notices with retries and exponential backoff. Deliveries run in the background;
// Wait blocks until those in flight are done (at shutdown).
type Notifier struct {
	Client  *http.Client
	Secret  []byte
	Retries int           // retries after the first attempt
	Backoff time.Duration // first wait; doubles each retry, capped at 30 s
	Log     *slog.Logger
	Now     func() time.Time

	ctx context.Context
	wg  sync.WaitGroup
}

// Start sets the context deliveries run under (they stop retrying when it ends).
func (n *Notifier) Start(ctx context.Context) { n.ctx = ctx }

// Send delivers a notice in the background.
func (n *Notifier) Send(url string, notice Notice) {
	ctx := n.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.Deliver(ctx, url, notice); err != nil {
			n.Log.WarnContext(ctx, "alert webhook not delivered", "tenant", notice.Tenant, "rule", notice.Rule.ID, "error", err)
		}
	}()
}

// Wait blocks until background deliveries end.
func (n *Notifier) Wait() { n.wg.Wait() }

// Deliver POSTs one notice, retrying network errors, 429 and 5xx.
func (n *Notifier) Deliver(ctx context.Context, url string, notice Notice) error {
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
		retry, err := n.post(ctx, url, ts, sig, notice.Event, body)
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

func (n *Notifier) post(ctx context.Context, url, ts, sig, event string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "crispy-alerts/1")
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(EventHeader, event)
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
