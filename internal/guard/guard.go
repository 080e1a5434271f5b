// Package guard is the process that fences a primary when its agent is gone. A lease that
// only the agent enforces fails exactly when the agent dies with its PostgreSQL still
// running (Patroni's reason for its watchdog, docs/watchdog.rst). The agent therefore starts
// `fog guard` in a session of its own and, after every lease renewal, writes the deadline by
// which the guard must stop each primary unless the agent renews again. The guard outlives a
// kill -9 of the agent; when a deadline passes it sends the postmaster SIGQUIT, PostgreSQL's
// immediate shutdown, which ends every session at once. An agent that comes back renews
// before the deadline and the guard does nothing; one that comes back later finds its
// primary stopped and starts it again only through its lease gate.
//
// The deadlines are CLOCK_MONOTONIC readings of this machine, where both processes run.
package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/proc"
	"github.com/fogdb/fog/internal/safedir"
)

// idleExit is how long the guard stays once nothing it guards is running.
const idleExit = 30 * time.Second

// Run guards the primaries listed in file until the agent disarms it, or nothing is left to
// guard for a while. It returns at once, successfully, if another guard holds the lock.
func Run(ctx context.Context, file string, log *slog.Logger) error {
	lf, err := os.OpenFile(lease.LockFile(file), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("guard: open lock: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		log.Info("another guard is running", "file", file)
		return nil
	}
	log.Info("guard running", "file", file, "pid", os.Getpid())
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	idleSince := time.Now()
	for {
		gs, err := read(file)
		switch {
		case errors.Is(err, os.ErrNotExist):
			log.Info("guard file removed; exiting")
			return nil
		case err != nil:
			log.Warn("read guard file", "err", err)
		case !gs.Armed:
			log.Info("agent stopped on purpose; guard exiting")
			return nil
		default:
			busy := false
			now := lease.Monotonic()
			for _, e := range gs.Entries {
				pid, running := postmaster(e)
				if !running {
					continue
				}
				busy = true
				if now < e.Deadline {
					continue
				}
				log.Error("the agent did not renew its lease in time: fencing the primary (immediate shutdown)",
					"dataDir", e.DataDir, "pid", pid, "late", time.Duration(now-e.Deadline).Round(time.Millisecond))
				if err := proc.Signal(pid, unix.SIGQUIT, func(pid int) bool { return proc.Is(pid, want(e)) }); err != nil {
					log.Error("signal postmaster", "pid", pid, "err", err)
				}
			}
			if busy {
				idleSince = time.Now()
			} else if time.Since(idleSince) > idleExit {
				log.Info("nothing left to guard; exiting")
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func read(file string) (lease.GuardState, error) {
	var gs lease.GuardState
	b, err := os.ReadFile(file)
	if err != nil {
		return gs, err
	}
	return gs, json.Unmarshal(b, &gs)
}

func want(e lease.GuardEntry) proc.Want { return proc.Want{UID: e.UID, Exe: e.Exe} }

// postmaster returns the postmaster of e's data directory and whether it runs: the pid
// postmaster.pid names if that process runs as e's user and executes e's binary, or else the
// one /proc shows running as it in the data directory. The file is the instance's OS user's:
// it is read without following a link (a FIFO or a link there cannot hang or steer the
// guard), and a pid in it is never trusted alone.
func postmaster(e lease.GuardEntry) (int, bool) {
	w := want(e)
	if w.Exe == "" {
		return 0, false // written by an older agent: it rewrites the file within a renewal
	}
	d, err := safedir.Open(e.DataDir)
	if err != nil {
		return 0, false
	}
	b, err := d.ReadFile("postmaster.pid", 4096)
	d.Close()
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && proc.Is(pid, w) {
		return pid, true
	}
	return proc.FindIn(e.DataDir, w)
}
