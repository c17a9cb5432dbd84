package headless

// Ready implements the ready plugin's Readiness: true once every informer has
// listed its objects and the index holds them all.
func (h *Headless) Ready() bool { return h.synced.Load() }
