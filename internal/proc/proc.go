// Package proc checks and signals processes that Fog did not start itself: a PostgreSQL
// postmaster that pg_ctl daemonised, whose pid Fog reads from postmaster.pid, a file the
// instance's OS user writes (a tenant who became the instance's superuser can put any pid
// there). A pid is trusted only when /proc says the process runs as the expected user and
// executes the expected binary, and it is signalled through a pidfd opened before that check,
// so that a pid reused in between is never hit.
package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotExpected means a pid is not the process it was expected to be.
var ErrNotExpected = errors.New("proc: not the expected process")

// Want is what a process must be: its real and effective uid, and its executable's real
// path (see Exe).
type Want struct {
	UID int
	Exe string
}

// Exe is the real path of the binary p, as /proc/<pid>/exe names it.
func Exe(p string) string {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return p
}

// Is reports whether pid is a live process that is what w describes. A zombie is not live:
// a postmaster orphaned by a kill -9 of fog belongs to init, and an init that does not reap
// (as in some containers) leaves it a zombie forever after it dies.
func Is(pid int, w Want) bool {
	if pid <= 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid)
	state, _, ok := statFields(dir)
	if !ok || state == "Z" || state == "X" {
		return false
	}
	if !hasUID(dir, w.UID) {
		return false
	}
	exe, err := os.Readlink(dir + "/exe")
	if err != nil {
		return false
	}
	// A binary replaced by a package upgrade while it runs reads "... (deleted)".
	return strings.TrimSuffix(exe, " (deleted)") == w.Exe
}

// Parent returns pid's parent pid.
func Parent(pid int) (int, bool) {
	_, ppid, ok := statFields("/proc/" + strconv.Itoa(pid))
	return ppid, ok
}

// statFields reads a process's state and parent from /proc/<pid>/stat.
func statFields(dir string) (string, int, bool) {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return "", 0, false
	}
	// The command name may hold spaces and parentheses: the fields start after the last ")".
	i := strings.LastIndex(string(b), ") ")
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

func hasUID(dir string, uid int) bool {
	status, err := os.ReadFile(dir + "/status")
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

// Signal sends sig to pid if check(pid) holds, through a pidfd: the check runs after the
// pidfd is open, so if pid was reused between the two the pidfd names the process that
// exited and the signal goes nowhere (ESRCH) rather than to the newcomer. A process that is
// gone already is no error.
func Signal(pid int, sig unix.Signal, check func(int) bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS):
		// Kernels before 5.3 have no pidfd: the check and the kill, as close as they go.
		if !check(pid) {
			return fmt.Errorf("signal %d: %w", pid, ErrNotExpected)
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
		return fmt.Errorf("signal %d: %w", pid, ErrNotExpected)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// FindIn looks through /proc for a process that is what w describes, whose working
// directory is dir and whose parent is not such a process: a PostgreSQL postmaster changes
// into its data directory (postmaster.c's ChangeToDataDir), and its children are its own.
func FindIn(dir string, w Want) (int, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !hasUID("/proc/"+e.Name(), w.UID) {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err != nil || cwd != dir {
			continue
		}
		if !Is(pid, w) {
			continue
		}
		if ppid, ok := Parent(pid); ok && !Is(ppid, w) {
			return pid, true
		}
	}
	return 0, false
}

// KillUser sends SIGKILL to every process whose real and effective uid is uid (never uid 0)
// and returns how many it found: what is left of an instance's OS user (pgBackRest's async
// archiver, which detaches from the server) before the user is removed, which userdel
// refuses while any of them runs.
func KillUser(uid int) int {
	if uid == 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !hasUID("/proc/"+e.Name(), uid) {
			continue
		}
		n++
		_ = Signal(pid, unix.SIGKILL, func(pid int) bool { return hasUID("/proc/"+strconv.Itoa(pid), uid) })
	}
	return n
}
