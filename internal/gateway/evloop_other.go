//go:build !linux

package gateway

// The event-loop relay is Linux's (epoll); elsewhere sessions use relay.
type loopSet struct{}

func newLoopSet(bool) *loopSet               { return nil }
func (*loopSet) stop()                       {}
func (*loopSet) relay(*session, []byte) bool { return false }
func (*loopSet) splicedNow() int64           { return 0 }
func (*loopSet) passedUpCount() uint64       { return 0 }

// SetKernelSplice does nothing: kernel splicing is Linux's.
func SetKernelSplice(bool) {}

// KernelSplice says that sessions are not spliced in the kernel here.
func KernelSplice() (bool, string) { return false, "kernel splicing needs Linux" }
