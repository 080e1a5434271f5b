package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fogdb/fog/internal/proc"
)

// Runner runs PostgreSQL programs as the OS user that owns the clusters. PostgreSQL refuses
// to run as root, so when Fog is root the programs run as an unprivileged user (default
// "postgres"); otherwise they run as Fog's own user.
type Runner struct {
	Bin      string
	Username string
	uid, gid int
	switchTo bool
	log      *slog.Logger
	// instances caches the per-instance runners of ForInstance (shared by copies).
	instances *instanceRunners
}

type instanceRunners struct {
	mu sync.Mutex
	m  map[string]*Runner
}

// NewRunner prepares a Runner for the binaries in bin. osUser is the user to switch to when
// running as root.
func NewRunner(bin, osUser string, log *slog.Logger) (*Runner, error) {
	r := &Runner{Bin: bin, log: log, instances: &instanceRunners{m: map[string]*Runner{}}}
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("look up current user: %w", err)
		}
		r.Username, r.uid, r.gid = u.Username, os.Getuid(), os.Getgid()
		return r, nil
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return nil, fmt.Errorf("fog runs as root, so PostgreSQL must run as an unprivileged user, and user %q was not found (%v): create it (useradd --system %s) or pass --pg-user", osUser, err, osUser)
	}
	r.Username = u.Username
	r.uid, _ = strconv.Atoi(u.Uid)
	r.gid, _ = strconv.Atoi(u.Gid)
	r.switchTo = r.uid != 0
	if !r.switchTo {
		return nil, fmt.Errorf("PostgreSQL cannot run as root; pass --pg-user with an unprivileged user")
	}
	return r, nil
}

// Isolates reports whether each instance runs as an OS user of its own (fog runs as root).
func (r *Runner) Isolates() bool { return r.switchTo }

// InstanceUser is the OS user instance uid's PostgreSQL runs as when fog is root.
func InstanceUser(uid string) string {
	h := sha256.Sum256([]byte(uid))
	return fmt.Sprintf("fogpg-%x", h[:5])
}

// ForInstance returns the Runner of instance uid. When fog runs as root, every instance's
// PostgreSQL runs as an OS user of its own (InstanceUser, a system user with no home and no
// shell, created here when missing), so that one instance's server, and anything its admin
// could make it do, cannot read another instance's files, Fog's store, its CA key or its
// client configuration. When fog is not root it is r itself: every instance runs as fog's
// user.
func (r *Runner) ForInstance(uid string) (*Runner, error) {
	if !r.switchTo {
		return r, nil
	}
	r.instances.mu.Lock()
	defer r.instances.mu.Unlock()
	if ir, ok := r.instances.m[uid]; ok {
		return ir, nil
	}
	name := InstanceUser(uid)
	u, err := user.Lookup(name)
	if err != nil {
		// Ids from a range of their own: the system range (below 1000) is too small for a
		// machine's instances, and people's accounts start at 1000.
		out, err := exec.Command("useradd", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", "--user-group", "--comment", userComment(uid),
			"-K", "UID_MIN=20000", "-K", "UID_MAX=59999", "-K", "GID_MIN=20000", "-K", "GID_MAX=59999", name).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("create the OS user %s for instance %s: %v: %s", name, uid, err, strings.TrimSpace(string(out)))
		}
		if u, err = user.Lookup(name); err != nil {
			return nil, err
		}
		r.log.Info("created the instance's OS user", "user", name, "instance", uid)
	}
	ir := *r
	ir.Username = u.Username
	ir.uid, _ = strconv.Atoi(u.Uid)
	ir.gid, _ = strconv.Atoi(u.Gid)
	if ir.uid == 0 {
		return nil, fmt.Errorf("the OS user %s is root", name)
	}
	r.instances.m[uid] = &ir
	return &ir, nil
}

// userComment is the comment of instance uid's OS user, tagged as UserTagEnv says.
func userComment(uid string) string {
	c := "Fog instance " + uid
	if tag := os.Getenv(UserTagEnv); tag != "" && !strings.ContainsAny(tag, ":,\n()") {
		c += " (" + tag + ")"
	}
	return c
}

// RemoveInstanceUser deletes the OS user ForInstance made for uid (after its files are gone).
func (r *Runner) RemoveInstanceUser(uid string) {
	if !r.switchTo {
		return
	}
	r.instances.mu.Lock()
	delete(r.instances.m, uid)
	r.instances.mu.Unlock()
	name := InstanceUser(uid)
	u, err := user.Lookup(name)
	if err != nil {
		return
	}
	// Its server is stopped; what it left running (pgBackRest's async archiver) goes too, or
	// userdel refuses.
	if id, err := strconv.Atoi(u.Uid); err == nil {
		for i := 0; i < 50 && proc.KillUser(id) > 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
		r.log.Warn("remove the instance's OS user", "user", name, "err", err, "out", strings.TrimSpace(string(out)))
	}
}

// InstanceUsers lists the OS users ForInstance has made on this machine (from /etc/passwd),
// for tests and benchmarks that clean up after themselves. With tag, only those made while
// UserTagEnv was tag.
func InstanceUsers(tag ...string) map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 5 || !strings.HasPrefix(f[0], "fogpg-") {
			continue
		}
		if len(tag) > 0 && !strings.HasSuffix(f[4], " ("+tag[0]+")") {
			continue
		}
		out[f[0]] = true
	}
	return out
}

// UserTagEnv, when set in the environment of the process that makes an instance's OS user,
// is written into the user's comment: a test run tags the users its Fog processes make, and
// removes those alone when it ends, never the users of a run beside it on the machine.
const UserTagEnv = "FOG_TEST_USER_TAG"

// RemoveTaggedUsers deletes the instance users made under tag (UserTagEnv).
func RemoveTaggedUsers(tag string) {
	for name := range InstanceUsers(tag) {
		_ = exec.Command("userdel", name).Run()
	}
}

// owner returns a copy of r acting as the user and group with ids uid and gid.
func (r *Runner) owner(uid, gid int) *Runner {
	o := *r
	o.uid, o.gid, o.Username = uid, gid, strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		o.Username = u.Username
	}
	return &o
}

// Command builds a command for a PostgreSQL program, run as the cluster owner in its own
// process group (so a Ctrl-C meant for fog does not reach it).
func (r *Runner) Command(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, program), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.switchTo {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=" + os.TempDir()}
	cmd.Dir = os.TempDir()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a program and returns its combined output in the error when it fails.
func (r *Runner) Run(ctx context.Context, program string, args ...string) ([]byte, error) {
	out, err := r.Command(ctx, program, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", program, err, lastLines(string(out), 5))
	}
	return out, nil
}

// MkdirOwned creates dir (and parents) owned by the cluster owner with the given mode, and
// makes sure the owner can traverse every ancestor: t.TempDir() and /root are 0700 and
// owned by root, and initdb fails there with a bare "permission denied".
func (r *Runner) MkdirOwned(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	if !r.switchTo {
		return nil
	}
	if err := os.Chown(dir, r.uid, r.gid); err != nil {
		return err
	}
	return r.ensureTraversable(filepath.Dir(dir))
}

// Chown gives path to the cluster owner (a no-op when not root).
func (r *Runner) Chown(path string) error {
	if !r.switchTo {
		return nil
	}
	return os.Chown(path, r.uid, r.gid)
}

// EnsureTraversable lets the cluster owner reach dir through its ancestors (a no-op when not
// root).
func (r *Runner) EnsureTraversable(dir string) error {
	if !r.switchTo {
		return nil
	}
	return r.ensureTraversable(dir)
}

func (r *Runner) ensureTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		ok := (int(sys.Uid) == r.uid && mode&0o100 != 0) ||
			(int(sys.Gid) == r.gid && mode&0o010 != 0) || mode&0o001 != 0
		if !ok {
			r.log.Info("allowing the PostgreSQL user to traverse a parent directory (adding o+x)", "dir", d, "user", r.Username)
			if err := os.Chmod(d, mode|0o001); err != nil {
				return fmt.Errorf("let %s traverse %s: %w", r.Username, d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
