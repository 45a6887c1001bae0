// Package domain holds the tooling rules without I/O: error codes, tenant permissions, the audit's
// params hash, and the execution statistics read model.
package domain

import (
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

// ParamsHash is the audit's fingerprint of a call's params: hex SHA-256 of the bytes as received.
func ParamsHash(params []byte) string {
	s := sha256.Sum256(params)
	return hex.EncodeToString(s[:])
}
