// Package pgbackrest drives the pgBackRest command line for Fog's agent: it renders the
// configuration file of an instance's stanza (Config), builds PostgreSQL's archive_command
// and restore_command, and runs stanza-create, check, backup, info, expire, restore and
// verify as the OS user that owns the instance's files (Driver), with typed results (Info,
// BackupInfo) and errors (*Error, with pgBackRest's error code). It also renders and starts
// the TLS server a primary's member runs so that its partner can back up the standby
// (Config.Server, Driver.ServerCommand).
//
// It imports nothing of Fog's: package postgres (which writes the configuration and starts
// the server) and the agent call it, never the other way round, as with pgtypes. It knows
// pgBackRest 2.45 (Debian 12's) and later.
//
// docs/backups.md is the design it serves: one stanza per PostgreSQL system, shared by the
// two members of a failover group; a repository per region; pgBackRest run as the
// instance's own OS user, whose configuration carries no secret that reaches beyond its
// stanza.
//
// Usage:
//
//	cfg := pgbackrest.Config{Stanza: "s1", Repos: []pgbackrest.Repo{{Path: repo}},
//		PG: pgbackrest.PG{Path: pgdata, SocketPath: sock, Port: 5432, User: "fog_backup"},
//		ArchiveAsync: true, SpoolPath: spool, LockPath: lock, ArchivePushQueueMax: 1 << 30}
//	text, err := cfg.Render() // written by the caller where the instance's user reads it
//	d := &pgbackrest.Driver{Config: confPath, Stanza: "s1", User: u}
//	archiveCommand := d.ArchivePushCommand()
//	err = d.StanzaCreate(ctx)
//	label, err := d.Backup(ctx, pgbackrest.Full, pgbackrest.BackupOptions{})
//	info, err := d.Info(ctx, "")
package pgbackrest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled means no pgbackrest executable was found.
var ErrNotInstalled = errors.New("pgbackrest: not installed (Debian: apt-get install pgbackrest)")

// FindBinary returns the pgbackrest executable: explicit if set, else the one on PATH, else
// Debian's.
func FindBinary(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
		return explicit, nil
	}
	if p, err := exec.LookPath("pgbackrest"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/pgbackrest"); err == nil {
		return "/usr/bin/pgbackrest", nil
	}
	return "", ErrNotInstalled
}

// User is the OS user pgBackRest runs as: the instance's, which owns the data directory,
// the spool and (for a posix repository) the stanza's directory.
type User struct {
	Name     string
	UID, GID uint32
}

// LookupUser returns the user named name.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}, nil
}

// Driver runs pgBackRest commands for one stanza.
type Driver struct {
	// Bin is the pgbackrest executable ("": FindBinary).
	Bin string
	// Config is the configuration file (Config.Render's text) the commands read; nothing
	// else is read, not /etc/pgbackrest.
	Config string
	Stanza string
	// User runs the commands when Fog is root (nil: Fog's own user).
	User *User
	// Timeout bounds a command that is not given one by its caller's context (default 6h:
	// a backup of a large instance is slow, and a hung one must end).
	Timeout time.Duration
}

// Error is a pgBackRest command that failed.
type Error struct {
	Command string
	// Code is pgBackRest's error code (its exit status), 0 when it did not say.
	Code    int
	Message string
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("pgbackrest %s: [%03d] %s", e.Command, e.Code, e.Message)
	}
	return fmt.Sprintf("pgbackrest %s: %s", e.Command, e.Message)
}

// pgBackRest's error codes that Fog branches on (build/error.yaml in its sources).
const (
	CodeFileInvalid     = 28 // stanza-create: the stanza's info files are another system's
	CodeArchiveMismatch = 44 // the cluster's system identifier or version is not the stanza's
	CodeLockAcquire     = 50 // another command holds the stanza's lock
	CodeFileMissing     = 55 // e.g. the stanza does not exist in the repository
	CodeDBConnect       = 56 // the cluster could not be reached, or none of them is a primary
	CodeArchiveTimeout  = 82 // WAL a backup or check needs was not archived in time
	CodeArchiveDisabled = 87 // archive_mode is off, or the stanza was stopped
)

// IsCode reports whether err is a pgBackRest error with that code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// errorLine is how pgBackRest reports its error on stderr: "ERROR: [055]: unable to ...".
var errorLine = regexp.MustCompile(`ERROR: \[(\d{3})\]: (.*)`)

func (d *Driver) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return d.commandParams(ctx, name, args, nil)
}

// commandParams is command with the command's parameters (a path, a WAL segment), which
// pgBackRest reads after the command's name.
func (d *Driver) commandParams(ctx context.Context, name string, args, params []string) *exec.Cmd {
	argv := append(append([]string{"--config=" + d.Config, "--stanza=" + d.Stanza}, args...), name)
	return d.prepare(ctx, append(argv, params...))
}

// ServerCommand is `pgbackrest server` with the driver's configuration (Config.Server), as
// the driver's user, in a process group of its own, for the caller to start and supervise;
// cancelling ctx stops it. A primary's member runs it so its partner can back up the standby.
func (d *Driver) ServerCommand(ctx context.Context) *exec.Cmd {
	return d.prepare(ctx, []string{"--config=" + d.Config, "--log-level-console=off", "--log-level-stderr=warn", "server"})
}

// prepare builds the command: the driver's user, its own process group, an empty environment.
func (d *Driver) prepare(ctx context.Context, args []string) *exec.Cmd {
	bin := d.binary()
	cmd := exec.CommandContext(ctx, bin, args...)
	// Its own process group: a cancelled command ends with the processes it forked
	// (process-max) and not a signal meant for Fog reaches it. SIGTERM lets pgBackRest
	// stop cleanly; a backup it leaves is resumed by the next one. The same SIGTERM when
	// the process that runs it dies (Pdeathsig; Go sets it after the change of user, which
	// would clear it): an agent killed with SIGKILL must not leave a backup running that
	// holds the stanza's lock (the one it asks again when it restarts fails with [050]), or
	// a restore writing into the scratch directory it restores into again.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if d.User != nil && os.Geteuid() == 0 && d.User.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: d.User.UID, Gid: d.User.GID}
	}
	// Nothing of Fog's environment: the PGBACKREST_* variables would be read as options.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/nonexistent"}
	cmd.Dir = "/"
	return cmd
}

// binary is the executable the commands run: Bin, or the one FindBinary finds, or the name
// alone (the command then fails with ErrNotInstalled).
func (d *Driver) binary() string {
	if d.Bin != "" {
		return d.Bin
	}
	if bin, err := FindBinary(""); err == nil {
		return bin
	}
	return "pgbackrest"
}

// run runs a command and returns its standard output. Its console log goes to stdout at
// the level given; errors are read from stderr.
func (d *Driver) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return d.runParams(ctx, name, args, nil)
}

// runParams is run with the command's parameters.
func (d *Driver) runParams(ctx context.Context, name string, args, params []string) ([]byte, error) {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	cmd := d.commandParams(ctx, name, args, params)
	// Bounded: the command runs as the instance's OS user and reads files that user owns.
	stdout, stderr := &capped{max: 64 << 20}, &capped{max: 1 << 20}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	e := &Error{Command: name}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 0 {
		e.Code = exit.ExitCode()
	}
	if m := errorLine.FindSubmatch(stderr.Bytes()); m != nil {
		e.Code, _ = strconv.Atoi(string(m[1]))
		e.Message = strings.TrimSpace(string(m[2]))
	} else {
		e.Message = strings.TrimSpace(lastLines(stderr.String()+stdout.String(), 3))
		if e.Message == "" || ctx.Err() != nil {
			e.Message = strings.TrimSpace(err.Error() + " " + e.Message)
		}
	}
	return stdout.Bytes(), e
}

// capped keeps at most max bytes of what is written to it, and drops the rest.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// bound gives ctx the driver's timeout unless it has a deadline already.
func (d *Driver) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	t := d.Timeout
	if t <= 0 {
		t = 6 * time.Hour
	}
	return context.WithTimeout(ctx, t)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// shellQuote quotes s for the shell PostgreSQL runs archive_command and restore_command with.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ArchivePushCommand is archive_command for this stanza. PostgreSQL runs it through the
// shell as the instance's OS user; the configuration names everything else.
func (d *Driver) ArchivePushCommand() string {
	return fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", shellQuote(d.binary()), shellQuote(d.Config), shellQuote(d.Stanza))
}

// ArchiveGetCommand is restore_command for this stanza.
func (d *Driver) ArchiveGetCommand() string {
	return fmt.Sprintf("%s --config=%s --stanza=%s archive-get %%f \"%%p\"", shellQuote(d.binary()), shellQuote(d.Config), shellQuote(d.Stanza))
}

// StanzaCreate creates the stanza in every repository, recording the cluster's system
// identifier and version. Repeating it for the same cluster is harmless; for a cluster of
// another system identifier it fails.
func (d *Driver) StanzaCreate(ctx context.Context) error {
	_, err := d.run(ctx, "stanza-create", "--log-level-console=off")
	return err
}

// StanzaCreateOffline creates the stanza from the data directory's pg_control without
// connecting to the server: a standby's member creates the stanza in its own region's
// repository, where no primary is at hand. Repeating it is as harmless as StanzaCreate.
func (d *Driver) StanzaCreateOffline(ctx context.Context) error {
	_, err := d.run(ctx, "stanza-create", "--no-online", "--log-level-console=off")
	return err
}

// StanzaUpgrade records a new PostgreSQL major version (after pg_upgrade) in the stanza.
func (d *Driver) StanzaUpgrade(ctx context.Context) error {
	_, err := d.run(ctx, "stanza-upgrade", "--log-level-console=off")
	return err
}

// Check makes sure archiving works end to end: it switches WAL on the primary and waits
// until that segment is in every repository (archive-timeout).
func (d *Driver) Check(ctx context.Context) error {
	_, err := d.run(ctx, "check", "--log-level-console=off")
	return err
}

// BackupType is a backup's kind.
type BackupType string

// The backup types.
const (
	Full BackupType = "full"
	Diff BackupType = "diff"
	Incr BackupType = "incr"
)

// BackupOptions are a backup's settings beyond its type.
type BackupOptions struct {
	// Repo is the repository's number (0: the first).
	Repo int
	// Annotations are kept with the backup (key=value), e.g. Fog's operation id.
	Annotations map[string]string
}

// newLabel is how pgBackRest reports the label of the backup it made.
var newLabel = regexp.MustCompile(`new backup label = (\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?)`)

// Backup takes a backup and returns its label. pgBackRest expires what the repository's
// retention no longer keeps right after.
func (d *Driver) Backup(ctx context.Context, typ BackupType, o BackupOptions) (string, error) {
	args := []string{"--type=" + string(typ), "--log-level-console=info"}
	if o.Repo > 0 {
		args = append(args, "--repo="+strconv.Itoa(o.Repo))
	}
	keys := make([]string, 0, len(o.Annotations))
	for k := range o.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--annotation="+k+"="+o.Annotations[k])
	}
	out, err := d.run(ctx, "backup", args...)
	if err != nil {
		return "", err
	}
	if m := newLabel.FindSubmatch(out); m != nil {
		return string(m[1]), nil
	}
	return "", &Error{Command: "backup", Message: "no backup label in its output: " + lastLines(string(out), 3)}
}

// WaitArchived waits until the repository holds WAL segment (a name such as
// 000000020000000000000005) or a later one: what makes a backup taken with NoArchiveCheck
// consistent once its stop segment is there. It asks every poll.
func (d *Driver) WaitArchived(ctx context.Context, segment string, poll time.Duration) error {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		info, err := d.Info(ctx, "")
		if err != nil {
			return err
		}
		for _, a := range info.Archive {
			if a.Max != "" && a.Max >= segment {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgbackrest: WAL segment %s not in the repository: %w", segment, ctx.Err())
		case <-tick.C:
		}
	}
}

// Expire removes backups and WAL beyond the retention; set removes one backup (with the
// ones that depend on it) whatever the retention says.
func (d *Driver) Expire(ctx context.Context, set string) error {
	args := []string{"--log-level-console=off"}
	if set != "" {
		args = append(args, "--set="+set)
	}
	_, err := d.run(ctx, "expire", args...)
	return err
}

// ExpireOptions are an expire run's own retention, given on its command line over the
// configuration's.
type ExpireOptions struct {
	// Set expires that backup and the backups that depend on it, whatever the retention.
	Set string
	// Repo is the repository's number (0: the first).
	Repo int
	// ArchiveFulls, when above zero, keeps every WAL segment from the start of the newest
	// ArchiveFulls full backups on (repo-retention-archive-type=full); an older backup keeps
	// only the WAL that makes it consistent.
	ArchiveFulls int
}

// ExpireWith runs expire with opts: Fog's own expiry (long-term retention) in a repository
// whose configuration never expires a full backup by itself.
func (d *Driver) ExpireWith(ctx context.Context, opts ExpireOptions) error {
	repo := max(opts.Repo, 1)
	args := []string{"--log-level-console=off", "--repo=" + strconv.Itoa(repo)}
	if opts.Set != "" {
		if !labelRe.MatchString(opts.Set) {
			return fmt.Errorf("%w: backup label %q", ErrInvalidRestore, opts.Set)
		}
		args = append(args, "--set="+opts.Set)
	}
	if opts.ArchiveFulls > 0 {
		p := "--repo" + strconv.Itoa(repo) + "-"
		args = append(args, p+"retention-archive-type=full", p+"retention-archive="+strconv.Itoa(opts.ArchiveFulls))
	}
	_, err := d.run(ctx, "expire", args...)
	return err
}

// labelRe is a pgBackRest backup label: a full one, or a differential or incremental one
// after its full one's.
var labelRe = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$`)

// ValidLabel reports whether s is a pgBackRest backup label.
func ValidLabel(s string) bool { return labelRe.MatchString(s) }

// Verify checks every file of the repositories against its checksum and that the WAL of each
// backup is complete, and returns pgBackRest's report.
func (d *Driver) Verify(ctx context.Context) (string, error) {
	out, err := d.run(ctx, "verify", "--log-level-console=info")
	if err == nil && strings.Contains(string(out), "status: error") {
		// pgBackRest 2.45 reports invalid backups and missing WAL with a zero exit status.
		err = &Error{Command: "verify", Message: strings.Join(strings.Fields(lastLines(string(out), 5)), " ")}
	}
	return string(out), err
}

// Info reads the stanza's backups and WAL archive from the repositories; with set, only that
// backup, with the databases it holds (DatabaseRef). A stanza that does not exist yet is an
// Info with a non-zero Status.Code, not an error.
func (d *Driver) Info(ctx context.Context, set string) (*Info, error) {
	args := []string{"--output=json", "--log-level-console=off"}
	if set != "" {
		args = append(args, "--set="+set)
	}
	out, err := d.run(ctx, "info", args...)
	if err != nil {
		return nil, err
	}
	return ParseInfo(out, d.Stanza)
}

// Archived reports whether the stanza's WAL archive in the repository holds a file of that
// name (a segment or a timeline's history file, such as "00000002.history"), under any of
// the stanza's database systems.
func (d *Driver) Archived(ctx context.Context, name string) (bool, error) {
	// A segment is stored as <name>-<sha1>[.<compression>], a history file as its name.
	stored := regexp.QuoteMeta(name) + `(-[0-9a-f]{40}(\.[a-z0-9]+)?)?`
	out, err := d.runParams(ctx, "repo-ls", []string{"--log-level-console=off", "--recurse", "--filter=(^|/)" + stored + "$"},
		[]string{"archive/" + d.Stanza})
	if err != nil {
		return false, err
	}
	match := regexp.MustCompile(`(^|/)` + stored + `$`)
	for _, l := range strings.Split(string(out), "\n") {
		if match.MatchString(strings.TrimSpace(l)) {
			return true, nil
		}
	}
	return false, nil
}

// ParseInfo parses `pgbackrest info --output=json` and returns the stanza's entry.
func ParseInfo(b []byte, stanza string) (*Info, error) {
	var all []Info
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("pgbackrest info: %w", err)
	}
	for i := range all {
		if all[i].Name == stanza {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("pgbackrest info: stanza %s not in the output", stanza)
}

// RestoreOptions say what to restore where.
type RestoreOptions struct {
	// Path is the data directory to restore into (default: the configuration's pg1-path).
	// It must be empty unless Delta is set.
	Path string
	// Set is the backup to start from (default: the latest one that can reach Target).
	Set string
	// Type is the recovery target's kind: "time", "lsn", "xid", "name", "immediate" (end of
	// the backup's consistency), "default" (the end of the WAL), "none", or "standby" (a
	// standby.signal: replay the archive and go on following a primary).
	Type string
	// Target is the point for Type time ("2006-01-02 15:04:05.999999+00"), lsn, xid or name.
	Target string
	// TargetExclusive stops just before Target instead of just after.
	TargetExclusive bool
	// TargetAction is what the server does at the target: "pause" (stay a read-only
	// standby: nothing is written, no new timeline), "promote" or "shutdown".
	TargetAction string
	// TargetTimeline is the timeline to follow ("" : the latest, PostgreSQL's default).
	TargetTimeline string
	// DBInclude restores only these databases' files (and the catalog's); the others are
	// restored as sparse, empty files PostgreSQL cannot open.
	DBInclude []string
	// Delta rewrites only the files that differ from the backup in a non-empty Path.
	Delta bool
	// ArchiveOff writes archive_mode=off into the restored cluster, so a scratch copy can
	// never push WAL into the stanza it came from.
	ArchiveOff bool
	// Repo is the repository's number (0: the first that has the backup).
	Repo int
	// Progress, when set, gets the share restored (0..1) as pgBackRest reports each file.
	Progress func(float64)
}

var (
	targetLSN      = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)
	targetDigits   = regexp.MustCompile(`^[0-9]{1,10}$`)
	targetTimeline = regexp.MustCompile(`^([0-9]{1,10}|latest|current)$`)
	// ErrInvalidRestore is returned by Restore for options it will not pass on.
	ErrInvalidRestore = errors.New("pgbackrest: invalid restore options")
)

// validate refuses what pgBackRest would write into postgresql.auto.conf unescaped
// ("recovery_target_name = '%s'"): a quote or a line break in a target would add settings of
// the caller's choosing, restore_command among them, run by the restored server.
func (o RestoreOptions) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRestore, fmt.Sprintf(format, a...))
	}
	switch o.Type {
	case "", "default", "immediate", "none", "standby":
		if o.Target != "" {
			return bad("type %q takes no target", o.Type)
		}
	case "time":
		if _, err := time.Parse(RestoreTimeLayout, o.Target); err != nil {
			return bad("time target %q: want %s", o.Target, RestoreTimeLayout)
		}
	case "lsn":
		if !targetLSN.MatchString(o.Target) {
			return bad("lsn target %q", o.Target)
		}
	case "xid":
		if !targetDigits.MatchString(o.Target) {
			return bad("xid target %q", o.Target)
		}
	case "name":
		if o.Target == "" || strings.ContainsAny(o.Target, "'\\\r\n\x00") || len(o.Target) > 63 {
			return bad("name target %q: no quote, backslash or line break, at most 63 bytes", o.Target)
		}
	default:
		return bad("type %q", o.Type)
	}
	if o.TargetTimeline != "" && !targetTimeline.MatchString(o.TargetTimeline) {
		return bad("timeline %q", o.TargetTimeline)
	}
	switch o.TargetAction {
	case "", "pause", "promote", "shutdown":
	default:
		return bad("target action %q", o.TargetAction)
	}
	if o.Set != "" && !setLabel.MatchString(o.Set) {
		return bad("backup set %q", o.Set)
	}
	for _, db := range o.DBInclude {
		if db == "" || strings.ContainsAny(db, "\r\n\x00") {
			return bad("database %q", db)
		}
	}
	return nil
}

// RestoreTimeLayout is the layout of a time target (RestoreOptions.Target with Type time).
const RestoreTimeLayout = "2006-01-02 15:04:05.999999-07"

// setLabel is a backup's label.
var setLabel = regexp.MustCompile(`^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$`)

// restoredFile is how pgBackRest reports a restored file at level detail:
// "restore file /path/base/1/1259 (8KB, 45.12%) checksum ...".
var restoredFile = regexp.MustCompile(`restore file .* \([^,]*, (\d+(?:\.\d+)?)%\)`)

// Restore restores a backup and writes the recovery settings (postgresql.auto.conf and
// recovery.signal) that make the server recover to the target when it starts.
func (d *Driver) Restore(ctx context.Context, o RestoreOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	args := []string{"--log-level-console=detail"}
	if o.Path != "" {
		args = append(args, "--pg1-path="+o.Path)
	}
	if o.Set != "" {
		args = append(args, "--set="+o.Set)
	}
	if o.Type != "" {
		args = append(args, "--type="+o.Type)
	}
	if o.Target != "" {
		args = append(args, "--target="+o.Target)
	}
	if o.TargetExclusive {
		args = append(args, "--target-exclusive")
	}
	if o.TargetAction != "" {
		args = append(args, "--target-action="+o.TargetAction)
	}
	if o.TargetTimeline != "" {
		args = append(args, "--target-timeline="+o.TargetTimeline)
	}
	for _, db := range o.DBInclude {
		args = append(args, "--db-include="+db)
	}
	if o.Delta {
		args = append(args, "--delta")
	}
	if o.ArchiveOff {
		args = append(args, "--archive-mode=off")
	}
	if o.Repo > 0 {
		args = append(args, "--repo="+strconv.Itoa(o.Repo))
	}
	if o.Progress == nil {
		_, err := d.run(ctx, "restore", args...)
		return err
	}
	return d.runProgress(ctx, "restore", o.Progress, args...)
}

// runProgress runs a command whose detail log reports a percentage per file, and hands each
// to progress as it comes.
func (d *Driver) runProgress(ctx context.Context, name string, progress func(float64), args ...string) error {
	ctx, cancel := d.bound(ctx)
	defer cancel()
	cmd := d.command(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
		return &Error{Command: name, Message: err.Error()}
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var tail []string
	for sc.Scan() {
		line := sc.Text()
		if m := restoredFile.FindStringSubmatch(line); m != nil {
			if pct, err := strconv.ParseFloat(m[1], 64); err == nil {
				progress(pct / 100)
			}
		}
		if tail = append(tail, line); len(tail) > 3 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		e := &Error{Command: name}
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			e.Code = exit.ExitCode()
		}
		if m := errorLine.FindSubmatch(stderr.Bytes()); m != nil {
			e.Code, _ = strconv.Atoi(string(m[1]))
			e.Message = strings.TrimSpace(string(m[2]))
		} else {
			e.Message = strings.TrimSpace(err.Error() + " " + strings.Join(tail, " | "))
		}
		return e
	}
	return nil
}
