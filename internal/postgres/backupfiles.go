package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/fogdb/fog/internal/safedir"
)

// BackupPaths are where an instance's pgBackRest keeps its files (docs/backups.md): its
// configuration, which root writes and the instance's group may read; its spool, lock and
// log directories, the instance's user's, under the instance's directory (pgBackRest's
// defaults are shared by every user of the machine); and its stanza's directory in the
// region's repository, the instance's user's alone.
type BackupPaths struct {
	Config, Spool, Lock, Log string
	// Repo is the stanza's repository directory (repo1-path).
	Repo string
	// SetAside is the name PrepareBackup gave a directory of the stanza's name that another
	// OS user owned ("" if none): see SetStanzaAside.
	SetAside string
}

// BackupPaths returns the paths of the instance's pgBackRest files for stanza in the
// repository root repoRoot.
func (c *Cluster) BackupPaths(repoRoot, stanza string) BackupPaths {
	b := filepath.Join(c.Dir, "pgbackrest")
	return BackupPaths{
		Config: filepath.Join(c.Dir, "pgbackrest.conf"),
		Spool:  filepath.Join(b, "spool"), Lock: filepath.Join(b, "lock"), Log: filepath.Join(b, "log"),
		Repo: filepath.Join(repoRoot, stanza),
	}
}

// PrepareBackup makes the directories of BackupPaths and writes the configuration conf. An
// empty repoRoot is a repository in an object store: nothing of it is on this machine. The
// repository root is root's (0711: an instance's user passes through it to its own stanza's
// directory and sees no other name); the stanza's directory is the instance's user's (0700).
// Everything is made through descriptors (package safedir): a name the instance's user
// planted is never followed.
func (c *Cluster) PrepareBackup(repoRoot, stanza string, conf []byte) (BackupPaths, error) {
	p := c.BackupPaths(repoRoot, stanza)
	d, err := c.prepareDir()
	if err != nil {
		return p, err
	}
	defer d.Close()
	o := c.owner()
	for _, rel := range []string{"pgbackrest", "pgbackrest/spool", "pgbackrest/lock", "pgbackrest/log"} {
		if err := d.Mkdir(rel, 0o700, o); err != nil {
			return p, fmt.Errorf("backup files: %w", err)
		}
	}
	if repoRoot == "" {
		return p, c.writeBackupFile(d, "pgbackrest.conf", conf)
	}
	if err := os.MkdirAll(repoRoot, 0o711); err != nil {
		return p, fmt.Errorf("backup repository: %w", err)
	}
	root, err := safedir.Open(repoRoot)
	if err != nil {
		return p, fmt.Errorf("backup repository: %w", err)
	}
	defer root.Close()
	if c.R.switchTo {
		if err := root.Set(0o711, safedir.Owner{UID: os.Geteuid(), GID: os.Getegid()}); err != nil {
			return p, err
		}
		if err := c.R.ensureTraversable(filepath.Dir(repoRoot)); err != nil {
			return p, err
		}
	}
	if c.R.switchTo {
		// A directory of the stanza's name that another instance's OS user owns (a member of
		// an earlier group of the stanza's name, in this region) is never given to this one:
		// its history is set aside, and this instance starts its own copy.
		st, ok, err := root.Lstat(stanza)
		if err != nil {
			return p, fmt.Errorf("backup repository: %w", err)
		}
		if ok && st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) != c.R.uid {
			if p.SetAside, err = setAside(root, stanza, time.Now()); err != nil {
				return p, err
			}
		}
	}
	if err := root.Mkdir(stanza, 0o700, o); err != nil {
		return p, fmt.Errorf("backup repository: %w", err)
	}
	return p, c.writeBackupFile(d, "pgbackrest.conf", conf)
}

// writeBackupFile writes a file pgBackRest reads into the instance's directory d: root's,
// readable by the instance's group, so the instance's user reads it and cannot change where
// its archive goes.
func (c *Cluster) writeBackupFile(d *safedir.Dir, name string, data []byte) error {
	fo := safedir.Keep
	if c.R.switchTo {
		fo = safedir.Owner{UID: os.Geteuid(), GID: c.R.gid}
	}
	if err := d.WriteFile(name, data, 0o640, fo); err != nil {
		return fmt.Errorf("backup configuration: %w", err)
	}
	return nil
}

// WriteBackupFile writes name into the instance's directory as PrepareBackup writes the
// configuration (root's, 0640, the instance's group): a file the configuration names, such as
// an object store's CA certificate.
func (c *Cluster) WriteBackupFile(name string, data []byte) error {
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	return c.writeBackupFile(d, name, data)
}

// SetStanzaAside renames stanza's directory in the repository root repoRoot to
// "<stanza>.aside-<UTC time>" and returns that name: the directory holds another system's
// history under the stanza's name (a member of an earlier group of the same name wrote it),
// which pgBackRest will not mix with this one's. Nothing is deleted, and the directory keeps
// its owner: the old backups stay for a restore, and go to root with their instance's other
// stanzas when it is deleted (DisownBackups).
func (c *Cluster) SetStanzaAside(repoRoot, stanza string, now time.Time) (string, error) {
	root, err := safedir.Open(repoRoot)
	if err != nil {
		return "", err
	}
	defer root.Close()
	return setAside(root, stanza, now)
}

func setAside(root *safedir.Dir, stanza string, now time.Time) (string, error) {
	aside := stanza + ".aside-" + now.UTC().Format("20060102T150405.000Z")
	if err := root.Rename(stanza, aside); err != nil {
		return "", fmt.Errorf("set the stanza's old history aside: %w", err)
	}
	return aside, nil
}

// Archiver is what pg_stat_archiver says of WAL archiving.
type Archiver struct {
	LastArchivedWAL string
	LastArchivedAt  time.Time
	LastFailedWAL   string
	LastFailedAt    time.Time
}

// ArchiverState reads pg_stat_archiver (any role may).
func ArchiverState(ctx context.Context, conn *pgx.Conn) (Archiver, error) {
	var a Archiver
	var archivedAt, failedAt *time.Time
	err := conn.QueryRow(ctx, `SELECT coalesce(last_archived_wal, ''), last_archived_time,
		coalesce(last_failed_wal, ''), last_failed_time FROM pg_catalog.pg_stat_archiver`).
		Scan(&a.LastArchivedWAL, &archivedAt, &a.LastFailedWAL, &failedAt)
	if archivedAt != nil {
		a.LastArchivedAt = archivedAt.UTC()
	}
	if failedAt != nil {
		a.LastFailedAt = failedAt.UTC()
	}
	return a, err
}

// DisownBackups gives root every stanza directory of the repository root repoRoot that the
// instance's OS user owns, before that user is removed: the next OS user made may get the
// same uid, and must not own another tenant's backups. The backups stay for restores.
func (c *Cluster) DisownBackups(repoRoot string) error {
	if !c.R.switchTo {
		return nil
	}
	root, err := safedir.Open(repoRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer root.Close()
	names, err := root.Names()
	if err != nil {
		return err
	}
	rootOwner := safedir.Owner{UID: os.Geteuid(), GID: os.Getegid()}
	for _, n := range names {
		st, ok, err := root.Lstat(n)
		if err != nil || !ok || int(st.Uid) != c.R.uid || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		d, err := root.OpenDir(n)
		if err != nil {
			return err
		}
		err = d.ChownTree(rootOwner)
		if err == nil {
			err = d.Set(0o700, rootOwner)
		}
		d.Close()
		if err != nil {
			return fmt.Errorf("give root the backups in %s: %w", n, err)
		}
	}
	return nil
}

// dropLine is pgBackRest's warning when its bounded archive queue dropped WAL: PostgreSQL was
// told the segments were archived, and the repository never got them.
var dropLine = regexp.MustCompile(`(?m)^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*dropped WAL file '([0-9A-F]{24})' because archive queue exceeded`)

// LastArchiveDrop returns when pgBackRest last dropped WAL of stanza's push queue (zero if
// its log shows none) and the segment it dropped. The log is the instance's user's: it is
// read through descriptors, its last MiB only, and what it says concerns that instance alone.
func (c *Cluster) LastArchiveDrop(stanza string) (time.Time, string, error) {
	var b []byte
	err := c.inDir(func(d *safedir.Dir) (err error) {
		b, err = d.Tail("pgbackrest/log/"+stanza+"-archive-push-async.log", 1<<20)
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, "", nil
	}
	if err != nil {
		return time.Time{}, "", err
	}
	m := dropLine.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return time.Time{}, "", nil
	}
	last := m[len(m)-1]
	// pgBackRest writes its log in the machine's local time.
	at, err := time.ParseInLocation("2006-01-02 15:04:05.000", string(last[1]), time.Local)
	if err != nil {
		return time.Time{}, "", err
	}
	return at.UTC(), string(last[2]), nil
}

// ServedBackupPaths are the files of the pgBackRest TLS server a group's primary runs for its
// partner's backups (docs/backups.md): its configuration (root's, readable by the instance's
// group), a lock directory of its own (a standby's backup takes the stanza's backup lock on
// the primary's side too, which must not be the primary's own backup's), and its TLS
// certificate and key, the instance's user's.
type ServedBackupPaths struct {
	Config, Lock, Cert, Key string
}

// ServedBackupPaths returns where the served configuration and its files are.
func (c *Cluster) ServedBackupPaths() ServedBackupPaths {
	b := filepath.Join(c.Dir, "pgbackrest")
	return ServedBackupPaths{
		Config: filepath.Join(c.Dir, "pgbackrest-served.conf"),
		Lock:   filepath.Join(b, "lock-served"),
		Cert:   filepath.Join(b, "tls", "server.crt"), Key: filepath.Join(b, "tls", "server.key"),
	}
}

// PrepareServedBackup writes the TLS server's certificate and key (the instance's user's,
// 0600) and its configuration conf, and makes its lock directory, through the instance's
// directory's descriptor as PrepareBackup does.
func (c *Cluster) PrepareServedBackup(conf, certPEM, keyPEM []byte) (ServedBackupPaths, error) {
	p := c.ServedBackupPaths()
	d, err := c.prepareDir()
	if err != nil {
		return p, err
	}
	defer d.Close()
	o := c.owner()
	for _, rel := range []string{"pgbackrest", "pgbackrest/lock-served", "pgbackrest/tls"} {
		if err := d.Mkdir(rel, 0o700, o); err != nil {
			return p, fmt.Errorf("backup server files: %w", err)
		}
	}
	if err := d.WriteFile("pgbackrest/tls/server.crt", certPEM, 0o600, o); err != nil {
		return p, fmt.Errorf("backup server certificate: %w", err)
	}
	if err := d.WriteFile("pgbackrest/tls/server.key", keyPEM, 0o600, o); err != nil {
		return p, fmt.Errorf("backup server key: %w", err)
	}
	if err := d.WriteFile("pgbackrest-served.conf", conf, 0o640, c.confOwner()); err != nil {
		return p, fmt.Errorf("backup server configuration: %w", err)
	}
	return p, nil
}

// StandbyBackupConfig is the configuration a standby's backups run with: pg1 its primary,
// through the primary's TLS server, and pg2 itself.
func (c *Cluster) StandbyBackupConfig() string {
	return filepath.Join(c.Dir, "pgbackrest-standby.conf")
}

// WriteStandbyBackupConfig writes that configuration, root's and readable by the instance's
// group as pgbackrest.conf is.
func (c *Cluster) WriteStandbyBackupConfig(conf []byte) error {
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFile("pgbackrest-standby.conf", conf, 0o640, c.confOwner())
}

// confOwner owns a pgBackRest configuration: root, with the instance's group, when fog runs
// as root (the instance's user reads it and cannot change it).
func (c *Cluster) confOwner() safedir.Owner {
	if c.R.switchTo {
		return safedir.Owner{UID: os.Geteuid(), GID: c.R.gid}
	}
	return safedir.Keep
}
