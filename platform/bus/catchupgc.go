package bus

import (
	"runtime/debug"
	"sync"
)

// catchUpGC raises the collector's GOGC to Config.CatchUpGCPercent when a shared cursor starts far
// behind the store (more than CatchUpCommitEvery events: a first start or a rebuild, not a restart
// from checkpoints), and returns what puts the previous setting back (idempotent; a no-op when
// nothing was raised). A setting already at or above it, or the collector off (GOGC=off), is left
// as it is. The read models on cursors of their own (the search index) and the processors' cursor
// catch up after the restore: the index's live heap grows with what it loads, and a higher GOGC
// would multiply it.
func (b *Bus) catchUpGC(groups []*group) (restore func()) {
	want := b.cfg.CatchUpGCPercent
	if want <= 0 {
		return func() {}
	}
	far := false
	for _, g := range groups {
		if !g.own && uint64(b.target) > g.c.pos.Load()+uint64(b.cfg.CatchUpCommitEvery) {
			far = true
		}
	}
	if !far {
		return func() {}
	}
	old := debug.SetGCPercent(want)
	if old < 0 || old >= want {
		debug.SetGCPercent(old)
		return func() {}
	}
	b.log.Info("bus: the read models catch up from far behind; the collector runs less often meanwhile", "gogc", want, "was", old)
	var once sync.Once
	return func() {
		once.Do(func() {
			debug.SetGCPercent(old)
			b.log.Info("bus: the collector's setting is back", "gogc", old)
		})
	}
}
