package embedded

// linksFoldAtClose is the links log a partition may keep across a clean Close: past it, Close
// writes the layer-0 links whole to a new base with an empty log (a var for the tests).
//
// Why: an open reads the base and replays the log edit by edit (applyLinkEdits), and the log may
// grow to twice the base (or linksLogFloor) between rewrites, which keeps the writes of an ingest
// low. At 1M events the largest tenant's log held 785,000 edits (7.8 MB) and replaying it was a
// quarter of a restart's server CPU. Written at Close instead, a restart replays at most this
// much: a clean shutdown pays one write of the links (196 bytes per node at M=24) once per
// shutdown that follows ingests.
var linksFoldAtClose int64 = 256 << 10

// foldLinksForClose marks the partitions whose links log is past linksFoldAtClose so that the
// flush of Close writes their links whole (the path a flush that lost edits takes: rewriteLinks).
func (ix *Index) foldLinksForClose() {
	for _, p := range ix.partitionList() {
		p.mu.Lock()
		if p.dir != "" && !p.gone && p.files != nil && p.files.links != nil &&
			p.files.links.size+int64(len(p.g.linkEdits)) > linksFoldAtClose {
			p.linksLost, p.dirty = true, true
		}
		p.mu.Unlock()
	}
}
