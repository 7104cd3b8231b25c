package serve

// SetShadowHook sets a function run at the start of every shadowed frame
// and returns a function that removes it.
func SetShadowHook(f func()) func() {
	shadowHook = f
	return func() { shadowHook = nil }
}
