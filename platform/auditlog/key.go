package auditlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crispy-enigma/crispy/platform/atomicfile"
)

// DefaultKeyFile is the signing key's place under the data folder: outside the event log (and its
// folder), so copying or rewriting the log alone cannot re-sign history.
func DefaultKeyFile(dataDir string) string { return filepath.Join(dataDir, "audit", "signing.key") }

// ErrNoKey is returned by LoadKey when the key file does not exist.
var ErrNoKey = errors.New("audit signing key not found")

// LoadKey reads an Ed25519 private key (PKCS #8 PEM, as CreateKey writes and openssl genpkey
// -algorithm ed25519 makes).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read audit signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s is not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s is not an Ed25519 key", path)
	}
	return ek, nil
}

// CreateKey generates a new key and writes it to path (mode 0600), refusing to overwrite one.
func CreateKey(path string) (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate audit signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode audit signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit key folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	// The folder too: else a power cut after a first start can lose the key file's entry, and
	// the next start finds a store with events and no key.
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	return k, nil
}

// PublicKey describes the signing key for GET /audit/public-key and crispy audit public-key.
type PublicKey struct {
	Algorithm   string `json:"algorithm" example:"Ed25519"`
	KeyID       string `json:"keyId" doc:"8 hex digits; checkpoints name the key that signed them"`
	PublicKey   string `json:"publicKey" doc:"The raw 32-byte Ed25519 public key, base64"`
	PEM         string `json:"pem" doc:"The same key as a PEM PUBLIC KEY (crispy verify --public-key takes this file)"`
	VerifierKey string `json:"verifierKey" doc:"The signed-note verifier key (golang.org/x/mod/sumdb/note) for the checkpoint notes"`
}

// Describe is pub as a PublicKey.
func Describe(pub ed25519.PublicKey) PublicKey {
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for an Ed25519 key
	return PublicKey{Algorithm: "Ed25519", KeyID: KeyID(pub), PublicKey: base64.StdEncoding.EncodeToString(pub),
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), VerifierKey: VerifierKey(pub)}
}

// ParsePublicKey reads a public key: a PEM PUBLIC KEY, the JSON of GET /audit/public-key, a raw base64
// key, or a private key file (its public half).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			if ek, ok := k.(ed25519.PublicKey); ok {
				return ek, nil
			}
			return nil, errors.New("public key is not Ed25519")
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("key: %w", err)
			}
			if ek, ok := k.(ed25519.PrivateKey); ok {
				return ek.Public().(ed25519.PublicKey), nil
			}
			return nil, errors.New("key is not Ed25519")
		}
	}
	var desc PublicKey
	if err := jsonUnmarshal(b, &desc); err == nil && desc.PublicKey != "" {
		b = []byte(desc.PublicKey)
	}
	raw, err := base64.StdEncoding.DecodeString(string(trimSpace(b)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key (PEM, base64, or the JSON of GET /audit/public-key)")
	}
	return ed25519.PublicKey(raw), nil
}
