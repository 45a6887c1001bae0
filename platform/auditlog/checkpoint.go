package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crispy-enigma/crispy/platform/tenant"
)

// Checkpoint is a signed statement that tenant's audit log held Size events with root RootHash at
// Time. The signature is Ed25519 over Body(): a C2SP tlog-checkpoint body
// (https://c2sp.org/tlog-checkpoint) whose origin names the tenant, with the time as an extension
// line. Note is the same body with its signature line in the signed-note format
// (golang.org/x/mod/sumdb/note), so third-party checkpoint tooling can check it with VerifierKey.
type Checkpoint struct {
	Tenant    string    `json:"tenant" doc:"The tenant whose log this is"`
	Size      uint64    `json:"size" doc:"Number of events (leaves) the log held"`
	RootHash  string    `json:"rootHash" doc:"RFC 6962 root hash of the first size events, base64"`
	Time      time.Time `json:"time" doc:"When the server signed it (UTC)"`
	KeyID     string    `json:"keyId" doc:"Which signing key: 8 hex digits, the signed-note key hash"`
	Signature string    `json:"signature" doc:"Ed25519 signature over the checkpoint body, base64"`
	Note      string    `json:"note,omitempty" doc:"The body and its signature as a signed note (C2SP tlog-checkpoint + signed-note)"`
}

// SignerName names the signing key in notes and verifier keys.
const SignerName = "crispy-audit"

// Origin is the checkpoint origin line of t's log.
func Origin(t string) string { return "crispy/audit/" + t }

// Body is the signed byte string: origin, size, base64 root, then "time <RFC 3339 nanoseconds>".
func (c Checkpoint) Body() []byte {
	var b bytes.Buffer
	b.WriteString(Origin(c.Tenant) + "\n")
	b.WriteString(strconv.FormatUint(c.Size, 10) + "\n")
	b.WriteString(c.RootHash + "\n")
	b.WriteString("time " + c.Time.UTC().Format(time.RFC3339Nano) + "\n")
	return b.Bytes()
}

// Root decodes RootHash.
func (c Checkpoint) Root() ([]byte, error) {
	r, err := base64.StdEncoding.DecodeString(c.RootHash)
	if err != nil || len(r) != 32 {
		return nil, fmt.Errorf("checkpoint rootHash is not a base64 SHA-256 hash")
	}
	return r, nil
}

// KeyHash is the signed-note key hash of an Ed25519 public key under SignerName.
func KeyHash(pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(SignerName + "\n"))
	h.Write([]byte{0x01}) // the note algorithm byte of Ed25519
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

// KeyID is KeyHash as 8 hex digits.
func KeyID(pub ed25519.PublicKey) string { return fmt.Sprintf("%08x", KeyHash(pub)) }

// VerifierKey is the signed-note verifier key ("crispy-audit+<hash>+<base64(0x01 || key)>").
func VerifierKey(pub ed25519.PublicKey) string {
	return fmt.Sprintf("%s+%s+%s", SignerName, KeyID(pub), base64.StdEncoding.EncodeToString(append([]byte{0x01}, pub...)))
}

// Sign makes the checkpoint of t's log at size with root, signed now.
func Sign(key ed25519.PrivateKey, t tenant.ID, size uint64, root []byte, now time.Time) Checkpoint {
	pub := key.Public().(ed25519.PublicKey)
	c := Checkpoint{Tenant: t.String(), Size: size, RootHash: base64.StdEncoding.EncodeToString(root), Time: now.UTC(), KeyID: KeyID(pub)}
	body := c.Body()
	sig := ed25519.Sign(key, body)
	c.Signature = base64.StdEncoding.EncodeToString(sig)
	var kh [4]byte
	binary.BigEndian.PutUint32(kh[:], KeyHash(pub))
	c.Note = string(body) + "\n\u2014 " + SignerName + " " + base64.StdEncoding.EncodeToString(append(kh[:], sig...)) + "\n"
	return c
}

// Errors of Check; each wraps ErrBadCheckpoint, which callers turn into a 4xx or a CLI error.
var (
	ErrBadCheckpoint   = errors.New("checkpoint refused")
	ErrBadSignature    = fmt.Errorf("%w: bad signature", ErrBadCheckpoint)
	ErrOtherTenant     = fmt.Errorf("%w: another tenant's checkpoint", ErrBadCheckpoint)
	ErrFromTheFuture   = fmt.Errorf("%w: checkpoint from the future", ErrBadCheckpoint)
	ErrMalformed       = fmt.Errorf("%w: malformed checkpoint", ErrBadCheckpoint)
	ErrUnknownKey      = fmt.Errorf("%w: signed by another key", ErrBadCheckpoint)
	maxClockSkew       = 2 * time.Minute
	errNoSignature     = errors.New("no signature")
	errSignatureFormat = errors.New("signature is not base64 Ed25519")
)

// Check verifies c's signature with pub, that it is t's, and that it is not from the future
// (beyond a clock skew of two minutes). Every failure wraps ErrBadCheckpoint.
func (c Checkpoint) Check(pub ed25519.PublicKey, t tenant.ID, now time.Time) error {
	if c.Tenant == "" || c.Time.IsZero() {
		return fmt.Errorf("%w: tenant and time are required", ErrMalformed)
	}
	if _, err := c.Root(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Tenant != t.String() {
		return fmt.Errorf("%w: it is tenant %q's, not %q's", ErrOtherTenant, c.Tenant, t.String())
	}
	if c.Signature == "" {
		return fmt.Errorf("%w: %v", ErrBadSignature, errNoSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %v", ErrBadSignature, errSignatureFormat)
	}
	if c.KeyID != "" && !strings.EqualFold(c.KeyID, KeyID(pub)) {
		return fmt.Errorf("%w: key %s signed it, the public key given is %s (a history rebuilt with a new key, or the wrong --public-key)", ErrUnknownKey, c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, c.Body(), sig) {
		return fmt.Errorf("%w: the signature does not match the checkpoint's contents under key %s", ErrBadSignature, KeyID(pub))
	}
	if c.Time.After(now.Add(maxClockSkew)) {
		return fmt.Errorf("%w: signed at %s, after now (%s)", ErrFromTheFuture, c.Time.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// hexRoot is for messages.
func hexRoot(r []byte) string { return hex.EncodeToString(r) }
