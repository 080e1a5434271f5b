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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fogdb/fog/internal/lease"
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
				pid, running := postmaster(e.DataDir)
				if !running {
					continue
				}
				busy = true
				if now < e.Deadline {
					continue
				}
				log.Error("the agent did not renew its lease in time: fencing the primary (immediate shutdown)",
					"dataDir", e.DataDir, "pid", pid, "late", time.Duration(now-e.Deadline).Round(time.Millisecond))
				if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
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

// postmaster returns the pid in dataDir's postmaster.pid and whether it is a live postgres.
func postmaster(dataDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		_, rest, _ := strings.Cut(string(stat), ") ")
		if strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X") {
			return 0, false
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return pid, err != nil || strings.Contains(string(cmdline), "postgres")
}
