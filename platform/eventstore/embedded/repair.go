package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// RepairReport says what Repair found and what it did.
type RepairReport struct {
	Path   string    // the log
	Size   int64     // its size before the repair
	Events int       // events in its valid prefix
	Torn   *TornTail // the torn tail found (nil: the log was intact)
	Kept   string    // where the cut bytes were copied (when cut)
	Cut    bool      // whether the log was truncated
}

// Repair is the operator's explicit repair of the log in dir: it cuts a torn tail after copying its
// bytes to a side file, and changes nothing else. It takes the exclusive lock (a dry run the shared
// one), so it refuses while a server uses the store, and it refuses a log that is corrupt before its
// end (that needs a backup, not a cut). With dryRun it only reports what it would cut.
func Repair(dir string, opts Options, dryRun bool) (RepairReport, error) {
	opts = opts.withDefaults()
	path := filepath.Join(dir, logName)
	rep := RepairReport{Path: path}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("no embedded event store in %s (%s not found): check --data-dir", dir, logName)
		}
		return rep, err // "stat PATH: …" already
	}
	flag := os.O_RDWR
	if dryRun {
		// A dry run writes nothing, not even the lock file (it may look at a copy on a read-only
		// mount): it takes the lock shared, which still tells it whether a server holds the store.
		flag = os.O_RDONLY
		release, live, err := sharedLock(dir)
		if err != nil {
			return rep, err
		}
		defer release()
		if live {
			return rep, lockError(dir, syscall.EWOULDBLOCK)
		}
	} else {
		lock, err := lockDir(dir)
		if err != nil {
			return rep, err
		}
		defer lock.Close()
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return rep, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	s := newStore(dir, opts, f)
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("stat %s: %w", path, err)
	}
	rep.Size = fi.Size()
	res, err := s.scan(0, fi.Size()+1, -1, 0, nil)
	if err != nil {
		return rep, err
	}
	rep.Events, rep.Torn = res.events, res.torn
	torn := res.torn
	if torn == nil || dryRun {
		return rep, nil
	}
	if rep.Kept, err = s.cutTail(torn, true); err != nil {
		return rep, err
	}
	rep.Cut = true
	return rep, nil
}
