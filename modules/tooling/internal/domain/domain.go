// Package domain holds the tooling rules without I/O: error codes, tenant permissions, the audit's
// params fingerprint, and the execution statistics read model.
package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	tenancyevents "github.com/crispy-enigma/crispy/modules/tenancy/events"
)

// Public error codes of SPEC §2.
const (
	CodeNotFound   = "TOOL_NOT_FOUND"
	CodeValidation = "VALIDATION_FAILED"
	CodeDenied     = "PERMISSION_DENIED"
	CodeTimeout    = "EXECUTION_TIMEOUT"
	CodeExecution  = "EXECUTION_ERROR"
)

// PermissionFeature is the tenant feature flag that governs a tool permission: every permission is
// granted unless the tenant's features set this key to false. For example a tenant that must not let
// tools write to its index configures `features: {tool.index.write: false}`.
func PermissionFeature(perm string) string { return "tool." + strings.ReplaceAll(perm, ":", ".") }

// Grants splits a tool's declared permissions into those the tenant grants and those it revokes.
func Grants(cfg tenancyevents.TenantConfig, declared []string) (granted, revoked []string) {
	for _, p := range declared {
		if v, set := cfg.Features[PermissionFeature(p)]; set && !v {
			revoked = append(revoked, p)
			continue
		}
		granted = append(granted, p)
	}
	return granted, revoked
}

// ParamsKeyID is the keystore id of a tenant's secret for params fingerprints, created on the
// tenant's first tool call and destroyed with the tenant's keys.
const ParamsKeyID = "tenant/hmac"

// ParamsHMAC is the audit's fingerprint of a call's params: hex HMAC-SHA256 of the bytes as received,
// keyed with the tenant's secret. An unkeyed hash let anyone who reads the audit confirm a guess of
// low-entropy params (an account number, a yes/no) by hashing it; with the key only the holder of
// the tenant's secret can, the same params hash differently in each tenant, and once the secret is
// destroyed (the tenant deleted) no guess can be confirmed at all.
func ParamsHMAC(secret, params []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(params)
	return hex.EncodeToString(m.Sum(nil))
}
