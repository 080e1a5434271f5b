package postgres

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// errNotServer means a pid that should be this instance's server is another process.
var errNotServer = errors.New("not this instance's PostgreSQL server")

// isServer reports whether pid is a live PostgreSQL process of this cluster: its real and
// effective uid are the instance's OS user and its executable is the postgres binary Fog
// runs. A pid read from postmaster.pid is the instance's user's to write (a tenant who
// became its superuser can put any pid there), and a pid file can outlive a crash and its
// pid be reused by another program: neither may have Fog's root signal a foreign process.
// A zombie is not live: a postmaster orphaned by a kill -9 of fog belongs to init, and an
// init that does not reap (as in some containers) leaves it a zombie forever after it dies.
func (c *Cluster) isServer(pid int) bool {
	if pid <= 0 {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	if strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X") {
		return false
	}
	if !procUID(proc, c.R.uid) {
		return false
	}
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return false
	}
	// A binary replaced by a package upgrade while the server runs reads "... (deleted)".
	exe = strings.TrimSuffix(exe, " (deleted)")
	return exe == c.R.serverExe()
}

// procUID reports whether the process at proc (a /proc/<pid> path) runs with real and
// effective uid uid.
func procUID(proc string, uid int) bool {
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			return len(f) >= 2 && f[0] == strconv.Itoa(uid) && f[1] == strconv.Itoa(uid)
		}
	}
	return false
}

// serverExe is the postgres binary's real path, as /proc/<pid>/exe names it.
func (r *Runner) serverExe() string {
	p := filepath.Join(r.Bin, "postgres")
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return p
}

// signal sends sig to pid if check(pid) holds, through a pidfd: the check runs after the
// pidfd is open, so if pid was reused between the two the pidfd names the process that
// exited and the signal goes nowhere (ESRCH) rather than to the newcomer. A process that is
// gone already is no error.
func signal(pid int, sig unix.Signal, check func(int) bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS):
		// Kernels before 5.3 have no pidfd: the check and the kill, as close as they go.
		if !check(pid) {
			return fmt.Errorf("signal %d: %w", pid, errNotServer)
		}
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d: %w", pid, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !check(pid) {
		return fmt.Errorf("signal %d: %w", pid, errNotServer)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// isChildOf reports whether pid is a server process of this cluster whose parent is pm.
func (c *Cluster) isChildOf(pid, pm int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	return len(f) >= 2 && f[1] == strconv.Itoa(pm) && c.isServer(pid)
}

// findPostmaster looks through /proc for this cluster's postmaster when postmaster.pid does
// not name it (the instance's user rewrote the file): a server process of the instance's
// user whose working directory is the data directory (the postmaster changes into it,
// postmaster.c's ChangeToDataDir) and whose parent is not such a process. Fencing must not
// depend on a file the tenant writes.
func (c *Cluster) findPostmaster() (int, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	data, err := filepath.EvalSymlinks(c.DataDir())
	if err != nil {
		data = c.DataDir()
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !procUID("/proc/"+e.Name(), c.R.uid) {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err != nil || cwd != data {
			continue
		}
		if !c.isServer(pid) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && !c.isServer(ppid) {
			return pid, true
		}
	}
	return 0, false
}
