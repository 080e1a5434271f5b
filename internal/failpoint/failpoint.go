// Package failpoint injects faults at named points of Fog's role-changing protocols, in the
// spirit of etcd's gofail: a site calls Hit("name"), which does nothing unless the process was
// started with FOG_FAILPOINTS naming that point. Tests start the real fog binary with, for
// example,
//
//	FOG_FAILPOINTS='planned/fenced=kill'
//
// and the process SIGKILLs itself right after the old primary's fence was recorded, exactly
// as a kill -9 from outside at that moment would. Terms are separated by ';'; each is
// name=action with one of:
//
//	kill       SIGKILL this process (no deferred code runs, nothing is flushed)
//	panic      panic at the site
//	sleep(MS)  sleep MS milliseconds, to widen a race
//	mark       write FOG_FAILPOINT_DIR/<name with / as _>.hit and go on
//	mark+sleep(MS)  both, in that order: a test waits for the mark, then acts
//
// A point fires once unless its action is prefixed with '*'. Every point a site may hit is
// listed in Points, so a test can check that its matrix covers them all. When FOG_FAILPOINTS
// is unset, Hit costs one atomic load.
package failpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Points of the planned failover, in the order they are reached.
const (
	PlannedAccepted   = "planned/accepted"   // the operation is recorded, nothing done yet
	PlannedCheckpoint = "planned/checkpoint" // CHECKPOINT ran on the old primary
	PlannedFenced     = "planned/fenced"     // epoch bumped, old primary told to shut down (recorded)
	PlannedStopped    = "planned/stopped"    // old primary confirmed shut down with its shutdown LSN
	PlannedPromoting  = "planned/promoting"  // the secondary told to promote past that LSN (recorded)
	PlannedPromoted   = "planned/promoted"   // the secondary confirmed primary of the new epoch
	PlannedRouted     = "planned/routed"     // the group names the new primary (recorded)
	PlannedRejoining  = "planned/rejoining"  // the old primary told to follow (recorded)
)

// Points of the forced failover.
const (
	ForcedAccepted  = "forced/accepted"
	ForcedFenced    = "forced/fenced"    // epoch bumped, old primary told to stop at once (recorded)
	ForcedConfirmed = "forced/confirmed" // old primary confirmed stopped, or its lease expired
	ForcedPromoting = "forced/promoting" // the secondary told to promote (recorded)
	ForcedPromoted  = "forced/promoted"  // the secondary confirmed primary of the new epoch
	ForcedRouted    = "forced/routed"    // the group names the new primary (recorded)
	ForcedRejoining = "forced/rejoining" // the old primary told to rewind and follow (recorded)
)

// Points in the agent.
const (
	AgentPromote = "agent/promote" // just before pg_promote() on the new primary
	AgentFence   = "agent/fence"   // just before the old primary is shut down
)

// AgentStall is the point an agent of region passes before each lease renewal and each
// reconcile: a hook that blocks there makes the agent stop answering while its PostgreSQL
// keeps running (the benchmark of a forced failover whose old primary's agent is silent).
func AgentStall(region string) string { return "agent/" + region + "/stall" }

// Points lists every point above.
var Points = []string{
	PlannedAccepted, PlannedCheckpoint, PlannedFenced, PlannedStopped, PlannedPromoting, PlannedPromoted, PlannedRouted, PlannedRejoining,
	ForcedAccepted, ForcedFenced, ForcedConfirmed, ForcedPromoting, ForcedPromoted, ForcedRouted, ForcedRejoining,
	AgentPromote, AgentFence,
}

// Env is the environment variable that arms failpoints.
const Env = "FOG_FAILPOINTS"

// DirEnv names the directory "mark" writes to.
const DirEnv = "FOG_FAILPOINT_DIR"

type term struct {
	kill, panic, mark, repeat bool
	sleep                     time.Duration
	fired                     atomic.Bool
}

var (
	hook  atomic.Pointer[func(string)]
	armed atomic.Pointer[map[string]*term]
	mu    sync.Mutex
	dir   string
)

// FromEnv arms the points named in FOG_FAILPOINTS, if it is set; the fog binary calls it
// once at start.
func FromEnv() error {
	s := os.Getenv(Env)
	if s == "" {
		return nil
	}
	SetDir(os.Getenv(DirEnv))
	return Enable(s)
}

// Enable arms the points in spec (the FOG_FAILPOINTS syntax), replacing what was armed.
func Enable(spec string) error {
	m := map[string]*term{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, action, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("failpoint term %q: want name=action", part)
		}
		t, err := parse(action)
		if err != nil {
			return fmt.Errorf("failpoint %s: %w", name, err)
		}
		m[strings.TrimSpace(name)] = t
	}
	armed.Store(&m)
	return nil
}

// Disable disarms every point.
func Disable() { armed.Store(nil) }

func parse(action string) (*term, error) {
	t := &term{}
	action = strings.TrimSpace(action)
	if strings.HasPrefix(action, "*") {
		t.repeat, action = true, action[1:]
	}
	for _, a := range strings.Split(action, "+") {
		switch {
		case a == "kill":
			t.kill = true
		case a == "panic":
			t.panic = true
		case a == "mark":
			t.mark = true
		case strings.HasPrefix(a, "sleep(") && strings.HasSuffix(a, ")"):
			ms, err := strconv.Atoi(a[len("sleep(") : len(a)-1])
			if err != nil || ms < 0 {
				return nil, fmt.Errorf("bad sleep %q", a)
			}
			t.sleep = time.Duration(ms) * time.Millisecond
		default:
			return nil, fmt.Errorf("unknown action %q (want kill, panic, mark, sleep(MS))", a)
		}
	}
	return t, nil
}

// SetHook makes every Hit call fn first (nil removes it): in-process tests use it to stop a
// goroutine at a point, as a crash would, with runtime.Goexit.
func SetHook(fn func(name string)) {
	if fn == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&fn)
}

// Hit fires the point if it is armed.
func Hit(name string) {
	if h := hook.Load(); h != nil {
		(*h)(name)
	}
	m := armed.Load()
	if m == nil {
		return
	}
	t, ok := (*m)[name]
	if !ok || (!t.repeat && !t.fired.CompareAndSwap(false, true)) {
		return
	}
	if t.mark {
		mu.Lock()
		if dir != "" {
			_ = os.WriteFile(filepath.Join(dir, MarkFile(name)), []byte(name+"\n"), 0o644)
		}
		mu.Unlock()
	}
	if t.sleep > 0 {
		time.Sleep(t.sleep)
	}
	if t.kill {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	if t.panic {
		panic("failpoint " + name)
	}
}

// MarkFile is the file name "mark" writes for point name.
func MarkFile(name string) string { return strings.ReplaceAll(name, "/", "_") + ".hit" }

// SetDir sets where "mark" writes (tests in the same process).
func SetDir(d string) {
	mu.Lock()
	dir = d
	mu.Unlock()
}
