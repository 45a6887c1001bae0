package tooling

import "github.com/crispy-enigma/crispy/modules/tooling/internal/host"

// LockFileName is the manifest in a plugins folder that pins each binary's SHA-256. When it exists the
// host launches only the binaries it lists, and only when their checksum matches (go-plugin's
// SecureConfig re-checks it at every launch, so a binary swapped after start-up is refused at restart).
const LockFileName = host.LockFileName

// Lock maps a binary's file name to its SHA-256.
type Lock = host.Lock

// ReadLock reads dir/plugins.lock; (nil, nil) when there is none.
func ReadLock(dir string) (Lock, error) { return host.ReadLock(dir) }

// WriteLock hashes every executable in dir and writes dir/plugins.lock (`crispy plugin lock DIR`).
func WriteLock(dir string) (Lock, error) { return host.WriteLock(dir) }
