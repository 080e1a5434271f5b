package postgres

import (
	"path/filepath"

	"github.com/fogdb/fog/internal/proc"
)

// Server is what a process of this runner's PostgreSQL must be: its OS user and the postgres
// binary (package proc checks pids against it before Fog signals them).
func (r *Runner) Server() proc.Want {
	return proc.Want{UID: r.uid, Exe: proc.Exe(filepath.Join(r.Bin, "postgres"))}
}

// isServer reports whether pid is a live PostgreSQL process of this cluster: its real and
// effective uid are the instance's OS user and its executable is the postgres binary Fog
// runs. A pid read from postmaster.pid is the instance's user's to write, and a pid file can
// outlive a crash and its pid be reused by another program: neither may have Fog's root
// signal a foreign process.
func (c *Cluster) isServer(pid int) bool { return proc.Is(pid, c.R.Server()) }

// isChildOf reports whether pid is a server process of this cluster whose parent is pm.
func (c *Cluster) isChildOf(pid, pm int) bool {
	ppid, ok := proc.Parent(pid)
	return ok && ppid == pm && c.isServer(pid)
}

// findPostmaster looks through /proc for this cluster's postmaster when postmaster.pid does
// not name it (the instance's user rewrote the file): fencing must not depend on a file the
// tenant writes.
func (c *Cluster) findPostmaster() (int, bool) { return proc.FindIn(c.DataDir(), c.R.Server()) }
