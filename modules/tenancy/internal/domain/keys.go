package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// HashPrefix starts every configured key hash.
const HashPrefix = "sha256:"

// KeyPrefix starts every generated API key, so a leaked key is recognisable in logs and scanners.
const KeyPrefix = "ce_"

// HashKey returns the "sha256:<hex>" form of a presented key, as configured in the tenants file.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(sum[:])
}

// ParseHash validates a configured hash and returns its normalised form and digest.
func ParseHash(s string) (string, [32]byte, error) {
	var d [32]byte
	if !strings.HasPrefix(s, HashPrefix) {
		return "", d, fmt.Errorf("must be %s followed by 64 hex digits (the hash of the key, never the key)", HashPrefix)
	}
	h := strings.ToLower(s[len(HashPrefix):])
	if len(h) != 64 {
		return "", d, fmt.Errorf("must be %s followed by 64 hex digits, got %d characters after the prefix", HashPrefix, len(h))
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return "", d, fmt.Errorf("must be %s followed by 64 hex digits: %v", HashPrefix, err)
	}
	return HashPrefix + h, d, nil
}

// KeyIDHexLen is how many hex digits of a key's SHA-256 its id keeps: 48 bits tell a tenant's keys
// apart, and the prefix is of the hash the tenants file and the ApiKeyAdded events already hold, so
// the id tells nobody more about the key than they could read there.
const KeyIDHexLen = 12

// KeyIDPrefix starts every API key's credential id.
const KeyIDPrefix = "key:"

// KeyID is the non-secret, stable id of a key given its digest: "key:" and the first KeyIDHexLen hex
// digits of its SHA-256, so an operator finds it in the tenants file by the start of its hash. It
// is what events record as their actor.
func KeyID(d *[32]byte) string {
	return KeyIDPrefix + hex.EncodeToString(d[:KeyIDHexLen/2])
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewKey generates a key from 32 random bytes (256 bits), base62-encoded behind KeyPrefix, and its
// hash. The key is shown once; only the hash goes into the tenants file.
func NewKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate api key: %w", err)
	}
	n := new(big.Int).SetBytes(b[:])
	var out []byte
	base, mod := big.NewInt(62), new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, base62[mod.Int64()])
	}
	// Fixed length (43 digits hold 2^256) so keys do not leak their magnitude.
	for len(out) < 43 {
		out = append(out, '0')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	key = KeyPrefix + string(out)
	return key, HashKey(key), nil
}
