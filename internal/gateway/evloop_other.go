//go:build !linux

package gateway

// The event-loop relay is Linux's (epoll); elsewhere sessions use relay.
type loopSet struct{}

func newLoopSet() *loopSet           { return nil }
func (*loopSet) stop()               {}
func (*loopSet) relay(*session) bool { return false }

// SetExtraProcs does nothing: there is no event loop here.
func SetExtraProcs(bool) {}
