package tenancy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// adminKeys are the SHA-256 digests of the admin keys (CRISPY_ADMIN_KEY_SHA256).
type adminKeys [][32]byte

// AdminCredentialPrefix starts the actor of what an admin key did: "admin:" and the first 12 hex
// digits of its hash.
const AdminCredentialPrefix = "admin:"

func parseAdminKeys(s string) (adminKeys, error) {
	var out adminKeys
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(f)), "sha256:")
		if f == "" {
			continue
		}
		var d [32]byte
		if n, err := hex.Decode(d[:], []byte(f)); err != nil || n != 32 || len(f) != 64 {
			return nil, fmt.Errorf("tenancy: CRISPY_ADMIN_KEY_SHA256 entry %d is not 64 hex digits (a SHA-256 of the admin key); make one with crispy admin key new", i+1)
		}
		out = append(out, d)
	}
	return out, nil
}

// match reports whether key is an admin key, visiting every digest whatever the outcome, and
// names it by the start of its hash.
func (a adminKeys) match(key string) (string, bool) {
	if len(a) == 0 || key == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(key))
	hit := 0
	for i := range a {
		hit |= subtle.ConstantTimeCompare(sum[:], a[i][:])
	}
	if hit == 0 {
		return "", false
	}
	return AdminCredentialPrefix + hex.EncodeToString(sum[:6]), true
}

// NewAdminKey makes an admin key and the hex SHA-256 that CRISPY_ADMIN_KEY_SHA256 lists (for
// `crispy admin key new`). The key is never stored.
func NewAdminKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate admin key: %w", err)
	}
	key = "cea_" + hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(key))
	return key, hex.EncodeToString(sum[:]), nil
}
