package alerts

// LockedStreams is how many rule streams the engine holds a write lock entry for.
func (g *Engine) LockedStreams() int {
	g.writingMu.Lock()
	defer g.writingMu.Unlock()
	return len(g.writing)
}
