package postgres

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/safedir"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SystemUser is the bootstrap superuser Fog uses, over the Unix socket only.
const SystemUser = "fog_system"

// Cluster is one PostgreSQL cluster on this machine: a data directory, a socket directory and
// a TCP address.
type Cluster struct {
	// Dir holds pgdata/ and the server log.
	Dir string
	// SocketDir is short because a Unix socket path may not exceed 107 bytes.
	SocketDir string
	Host      string
	Port      int
	R         *Runner
	// Peer is the failover-group partner that may replicate from this cluster and rewind
	// from it (nil: none may).
	Peer *Peer
}

// Peer is a replication partner as pg_hba.conf admits it: the common name of its client
// certificate (devca.ReplicationCN) and the addresses its connections come from.
type Peer struct {
	CN      string
	Sources []string
}

// DataDir is the PGDATA directory.
func (c *Cluster) DataDir() string { return filepath.Join(c.Dir, "pgdata") }

// LogFile is where the server writes its log.
func (c *Cluster) LogFile() string { return filepath.Join(c.Dir, "postgres.log") }

// SocketDirFor returns a short socket directory for an instance uid. It lies in a directory
// of fog's own user (socketBase), never directly in the shared temporary directory, where
// anyone could put a link in its place before Fog makes it.
func SocketDirFor(uid string) string {
	h := sha256.Sum256([]byte(uid))
	return filepath.Join(socketBase(), fmt.Sprintf("fog-%x", h[:5]))
}

// socketBase is the directory the instances' socket directories are made in: one per user
// fog runs as, short, because a Unix socket path may not exceed 107 bytes.
func socketBase() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("fog-sockets-%d", os.Geteuid()))
}

// ensureSocketBase makes socketBase if it is missing and checks that it is a directory (not a
// link) of fog's own user that nobody else may write: in /tmp anyone may have made it first.
func ensureSocketBase() (*safedir.Dir, error) {
	base := socketBase()
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	d, err := safedir.Open(base)
	if err != nil {
		return nil, fmt.Errorf("socket directory %s: %w (remove it; fog makes it anew)", base, err)
	}
	st, err := d.Stat()
	if err == nil && (int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0) {
		err = fmt.Errorf("socket directory %s belongs to uid %d or may be written by others; remove it (fog makes it anew)", base, st.Uid)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// owner is whom the instance's files belong to: its OS user when fog is root, and when it is
// not, fog's own user, which is already theirs (Keep).
func (c *Cluster) owner() safedir.Owner {
	if !c.R.switchTo {
		return safedir.Keep
	}
	return safedir.Owner{UID: c.R.uid, GID: c.R.gid}
}

// dir opens the instance's directory. Everything Fog does as root in it goes through the
// descriptor (package safedir): the data directory below it belongs to the instance's OS
// user, whom a tenant that became PostgreSQL's superuser controls.
func (c *Cluster) dir() (*safedir.Dir, error) { return safedir.Open(c.Dir) }

// prepareDir makes the instance's directory if it is missing and, when fog is root, keeps it
// root's (0711: the instance's user may pass through it to the data directory and read the
// files Fog gives it, but may not add, remove or replace a name in it). The server log, the
// TLS files of replication and the seen-epoch file therefore cannot be swapped for links by
// the instance's user. A directory an older Fog gave to the instance's user is taken back.
func (c *Cluster) prepareDir() (*safedir.Dir, error) {
	if err := os.MkdirAll(filepath.Dir(c.Dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(c.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	d, err := c.dir()
	if err != nil {
		return nil, fmt.Errorf("instance directory: %w", err)
	}
	if c.R.switchTo {
		err = d.Set(0o711, safedir.Owner{UID: os.Geteuid(), GID: os.Getegid()})
		if err == nil {
			err = c.R.ensureTraversable(filepath.Dir(c.Dir))
		}
	} else {
		err = d.Set(0o700, safedir.Keep)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// inDir runs fn with the instance's directory open.
func (c *Cluster) inDir(fn func(d *safedir.Dir) error) error {
	d, err := c.dir()
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(d)
}

// ReadFile reads the regular file name of the instance's directory (never through a link),
// at most max bytes.
func (c *Cluster) ReadFile(name string, max int64) ([]byte, error) {
	var b []byte
	err := c.inDir(func(d *safedir.Dir) (err error) {
		b, err = d.ReadFile(name, max)
		return err
	})
	return b, err
}

// WriteRootFile replaces the file name of the instance's directory with data, root's own
// (mode 0600) and durable: what only Fog may change, such as the seen epoch.
func (c *Cluster) WriteRootFile(name string, data []byte) error {
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFileSync(name, data, 0o600, safedir.Keep)
}

// IsStandby reports whether the data directory is set up as a standby (standby.signal); it
// holds whether or not the server runs (CloudNativePG's IsPrimary reads the same file).
func (c *Cluster) IsStandby() bool {
	ok := false
	_ = c.inDir(func(d *safedir.Dir) error { ok = d.IsRegular("pgdata/standby.signal"); return nil })
	return ok
}

// Adopt gives the cluster's files to c.R's user when another user owns them: an instance an
// older Fog ran as the one shared PostgreSQL user is stopped (as that user, who alone may
// signal it) and its files handed to the instance's own user; it is started again by whoever
// reconciles it next. It reports whether it changed anything.
func (c *Cluster) Adopt(ctx context.Context) (bool, error) {
	if !c.R.switchTo {
		return false, nil
	}
	d, err := c.dir()
	if err != nil {
		return false, nil
	}
	defer d.Close()
	st, ok, err := d.Lstat("pgdata")
	if err != nil || !ok || int(st.Uid) == c.R.uid {
		return false, err
	}
	old := *c
	old.R = c.R.owner(int(st.Uid), int(st.Gid))
	if _, running := old.PID(); running {
		if err := old.StopNow(ctx, false); err != nil {
			return false, fmt.Errorf("stop the instance to give it its own OS user: %w", err)
		}
	}
	if err := c.giveFiles(d); err != nil {
		return false, fmt.Errorf("give %s to %s: %w", c.Dir, c.R.Username, err)
	}
	// The socket directory is made again at start.
	if err := os.RemoveAll(c.SocketDir); err != nil {
		return false, err
	}
	return true, nil
}

// instanceFiles are the files of the instance's directory its OS user reads or writes;
// everything else there but the data directory is root's.
var instanceFiles = []string{"postgres.log", "replication.crt", "replication.key", "ca.crt"}

// giveFiles gives the data directory (all of it, links themselves and never their targets)
// and instanceFiles to the instance's OS user, and the instance's directory to root.
func (c *Cluster) giveFiles(d *safedir.Dir) error {
	pg, err := d.OpenDir("pgdata")
	if err != nil {
		return err
	}
	err = pg.ChownTree(c.owner())
	pg.Close()
	if err != nil {
		return err
	}
	for _, f := range instanceFiles {
		if d.IsRegular(f) {
			if err := d.Touch(f, 0o600, c.owner()); err != nil {
				return err
			}
		}
	}
	pd, err := c.prepareDir()
	if err != nil {
		return err
	}
	return pd.Close()
}

// Initialized reports whether initdb has completed in DataDir.
func (c *Cluster) Initialized() bool {
	ok := false
	_ = c.inDir(func(d *safedir.Dir) error { ok = d.IsRegular("pgdata/PG_VERSION"); return nil })
	return ok
}

// makeDataDir makes the (empty) data directory, the instance's user's, mode 0700.
func (c *Cluster) makeDataDir() error {
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Mkdir("pgdata", 0o700, c.owner()); err != nil {
		return fmt.Errorf("create %s: %w", c.DataDir(), err)
	}
	return nil
}

// Init runs initdb. Data checksums make pg_rewind possible later; peer authentication on the
// socket lets only Fog's OS user act as the system role.
func (c *Cluster) Init(ctx context.Context, locale string) error {
	d, err := c.prepareDir()
	if err != nil {
		return fmt.Errorf("create %s: %w", c.Dir, err)
	}
	d.Close()
	// A half-finished initdb leaves a directory it refuses to reuse. (The instance's
	// directory is root's, so the path cannot lead elsewhere; RemoveAll removes a link
	// itself, never its target.)
	if err := os.RemoveAll(c.DataDir()); err != nil {
		return err
	}
	if err := c.makeDataDir(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err = c.R.Run(ctx, "initdb", "-D", c.DataDir(), "-U", SystemUser, "--data-checksums",
		"--encoding=UTF8", "--locale="+locale, "--auth-local=peer", "--auth-host=reject")
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return c.appendInclude()
}

func (c *Cluster) appendInclude() error {
	return c.inDir(func(d *safedir.Dir) error {
		b, err := d.ReadFile("pgdata/postgresql.conf", 1<<20)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("include_if_exists = 'fog.conf'")) {
			return nil
		}
		return d.Append("pgdata/postgresql.conf", []byte("\n# Settings managed by Fog; they override the ones above.\ninclude_if_exists = 'fog.conf'\n"))
	})
}

// Config is what Fog sets in a cluster's configuration.
type Config struct {
	Name     string
	Timezone string
	CertPEM  []byte
	KeyPEM   []byte
	// FogUser is the OS user the agent connects as over the socket (peer authentication).
	FogUser string
	// CACertPEM is the CA a standby verifies its primary's certificate with.
	CACertPEM []byte
	// Standby, when set, makes the cluster a streaming standby of that upstream.
	Standby *Upstream
	// Recovery, with Standby, makes the standby replay WAL from an archive as well as
	// streaming it (a seed from the region's repository).
	Recovery *Recovery
	// MaxSlotWALKeepSize bounds the WAL a slot may hold back (default 2GB).
	MaxSlotWALKeepSize string
	// GuardLibrary is the fog_guard library's path ("" when it could not be built).
	GuardLibrary string
	// Archive, when set, archives every finished WAL segment (nil: archive_mode stays off).
	Archive *Archive
	// Scratch configures a scratch copy for a restore (scratchSettings): no TCP, no TLS,
	// little memory, no archiving, only Fog's system role over the socket. It is recovered
	// to a point in time by the settings pgBackRest wrote into postgresql.auto.conf.
	Scratch bool
}

// Recovery is a standby's replay from an archive.
type Recovery struct {
	// Command is restore_command; PostgreSQL runs it as the instance's OS user.
	Command string
	// Timeline is recovery_target_timeline (0: latest). It takes effect at a start.
	Timeline int
}

// Archive is continuous WAL archiving. archive_mode takes effect only at a restart, the
// command and the timeout at a reload.
type Archive struct {
	// Command is archive_command; PostgreSQL runs it as the instance's OS user, with %p the
	// segment's path relative to the data directory.
	Command string
	// Always archives on a standby too (archive_mode = always): a standby then keeps its own
	// region's repository complete with the WAL it receives. Every member of a group runs it
	// whatever its role, since a change of archive_mode needs a restart and a promotion must
	// not.
	Always bool
	// Timeout is archive_timeout: a segment with any WAL in it is switched and archived
	// after this long, which bounds what a restore from the repository can lose.
	Timeout time.Duration
}

// hbaConf is pg_hba.conf. The system role connects only over the socket (peer
// authentication). Replication, and the reads pg_rewind makes, are accepted only from the
// partner's addresses, over TLS, with a client certificate signed by Fog's CA whose common
// name is the partner's (cert authentication, map fogrepl): the replication role has no
// password at all. Clients connect over TLS with SCRAM from anywhere (the listeners relay
// them), and never as Fog's roles. Without a hostnossl line, plain connections are refused
// with "no encryption".
func hbaConf(drained bool, peer *Peer, host string) string {
	var b strings.Builder
	b.WriteString(`# Written by Fog.
local   all          ` + SystemUser + `                  peer map=fog
local   replication  ` + SystemUser + `                  peer map=fog
local   all          ` + MonitorUser + `                 peer map=fog
local   ` + SystemDB + `   ` + BackupUser + `                  peer map=fog
host    all          ` + SystemUser + `   0.0.0.0/0      reject
host    all          ` + SystemUser + `   ::/0           reject
host    all          ` + MonitorUser + `  0.0.0.0/0      reject
host    all          ` + MonitorUser + `  ::/0           reject
host    all          ` + BackupUser + `   0.0.0.0/0      reject
host    all          ` + BackupUser + `   ::/0           reject
`)
	if peer != nil {
		for _, src := range peer.Sources {
			ip := net.ParseIP(src)
			if ip == nil {
				continue
			}
			cidr := ip.String() + "/32"
			if ip.To4() == nil {
				cidr = ip.String() + "/128"
			}
			fmt.Fprintf(&b, "hostssl replication  %s  %-14s cert map=fogrepl\n", ReplicationUser, cidr)
			fmt.Fprintf(&b, "hostssl postgres     %s  %-14s cert map=fogrepl\n", ReplicationUser, cidr)
		}
	}
	b.WriteString(`host    all          ` + ReplicationUser + ` 0.0.0.0/0 reject
host    all          ` + ReplicationUser + ` ::/0      reject
host    all          ` + AdminRole + `       0.0.0.0/0 reject
host    all          ` + AdminRole + `       ::/0      reject
`)
	for _, n := range clientNets(host) {
		if drained {
			// A planned failover is switching the primary: clients get "pg_hba.conf rejects
			// connection" and reconnect through the listener, which holds them until the
			// new primary serves. Replication stays, so the standby receives everything.
			fmt.Fprintf(&b, "host    all          all          %-14s reject\n", n)
		} else {
			fmt.Fprintf(&b, "hostssl all          all          %-14s scram-sha-256\n", n)
		}
	}
	return b.String()
}

// clientNets are the networks clients can reach an instance listening on host from: only
// this machine for a loopback address, any address of its family otherwise.
func clientNets(host string) []string {
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return []string{"0.0.0.0/0", "::/0"}
	case ip.IsLoopback() && ip.To4() != nil:
		return []string{"127.0.0.0/8"}
	case ip.IsLoopback():
		return []string{"::1/128"}
	case ip.To4() != nil && !ip.IsUnspecified():
		return []string{"0.0.0.0/0"}
	case ip.To4() == nil && !ip.IsUnspecified():
		return []string{"::/0"}
	}
	return []string{"0.0.0.0/0", "::/0"}
}

func identConf(fogUser, instanceUser string, peer *Peer) string {
	// Only Fog's own OS user logs in as the system and monitoring roles. The instance's OS
	// user, which is the server's own, is mapped to BackupUser alone: pgBackRest runs as that
	// user (it reads the data directory) and needs no more. A connection the server makes to
	// its own socket for a tenant (postgres_fdw, dblink) cannot use the mapping: PostgreSQL
	// refuses a non-superuser's connection that used no password (2F003).
	s := "# Written by Fog.\nfog  " + fogUser + "  " + SystemUser + "\nfog  " + fogUser + "  " + MonitorUser + "\n"
	if instanceUser != "" {
		s += "fog  " + instanceUser + "  " + BackupUser + "\n"
	}
	if peer != nil && peer.CN != "" {
		s += "fogrepl  " + peer.CN + "  " + ReplicationUser + "\n"
	}
	return s
}

// WriteHBA rewrites only pg_hba.conf and pg_ident.conf (a reload applies them to new
// connections).
func (c *Cluster) WriteHBA(drained bool) error {
	return c.writeOwned("pgdata/pg_hba.conf", []byte(hbaConf(drained, c.Peer, c.Host)), 0o600)
}

// Upstream is the primary a standby streams from.
type Upstream struct {
	Host    string
	Port    int
	User    string
	Slot    string
	AppName string
	// CACertPEM verifies the upstream's certificate.
	CACertPEM []byte
	// CertPEM and KeyPEM are this instance's replication client certificate, signed by
	// Fog's CA for this instance (devca.ReplicationCN): the upstream admits nothing else.
	CertPEM, KeyPEM []byte
}

// ReplicationCertFile and ReplicationKeyFile hold the instance's replication client identity,
// for primary_conninfo, pg_basebackup and pg_rewind; only the instance's OS user reads them.
func (c *Cluster) ReplicationCertFile() string { return filepath.Join(c.Dir, "replication.crt") }

// ReplicationKeyFile is the key of ReplicationCertFile.
func (c *Cluster) ReplicationKeyFile() string { return filepath.Join(c.Dir, "replication.key") }

// CAFile is the CA certificate a standby verifies its upstream with.
func (c *Cluster) CAFile() string { return filepath.Join(c.Dir, "ca.crt") }

// ConnInfo is the libpq connection string to the upstream, TLS verified against the CA.
func (c *Cluster) ConnInfo(u *Upstream, dbname string) string {
	s := fmt.Sprintf("host=%s port=%d user=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s application_name=%s connect_timeout=5",
		u.Host, u.Port, u.User, c.CAFile(), c.ReplicationCertFile(), c.ReplicationKeyFile(), u.AppName)
	if dbname != "" {
		s += " dbname=" + dbname
	}
	return s
}

// WriteConfig writes fog.conf, pg_hba.conf, pg_ident.conf and the TLS files. It changes only
// what needs a reload or restart to take effect; the caller decides which.
func (c *Cluster) WriteConfig(cfg Config) error {
	settings := map[string]string{
		"listen_addresses":         quote(c.Host),
		"port":                     strconv.Itoa(c.Port),
		"unix_socket_directories":  quote(c.SocketDir),
		"unix_socket_permissions":  "0700",
		"cluster_name":             quote(cfg.Name),
		"ssl":                      "on",
		"ssl_cert_file":            quote("server.crt"),
		"ssl_key_file":             quote("server.key"),
		"ssl_min_protocol_version": quote("TLSv1.2"),
		"password_encryption":      quote("scram-sha-256"),
		"timezone":                 quote(cfg.Timezone),
		"log_timezone":             quote(cfg.Timezone),
		// Ready to be a replication primary or standby without a restart.
		"wal_level":             "replica",
		"hot_standby":           "on",
		"max_wal_senders":       "10",
		"max_replication_slots": "10",
		// A dead standby's slot must not fill the primary's disk: past this the slot is
		// invalidated and the standby reseeded.
		"max_slot_wal_keep_size": quote(cmp.Or(cfg.MaxSlotWALKeepSize, "2GB")),
		// Commit times feed last_commit of the replication-link view.
		"track_commit_timestamp": "on",
		"wal_log_hints":          "on",
		// Promotion otherwise waits up to 5 s when the standby's connection to a dead
		// primary already failed.
		"wal_retrieve_retry_interval": quote("100ms"),
		"log_line_prefix":             quote("%m [%p] %q%u@%d "),
		"log_connections":             "off",
		"shared_preload_libraries":    quote(PreloadLibraries(cfg.GuardLibrary)),
	}
	if len(cfg.CACertPEM) > 0 {
		// Client certificates (the partner's replication identity) are verified against
		// Fog's CA.
		settings["ssl_ca_file"] = quote(c.CAFile())
	}
	if a := cfg.Archive; a != nil {
		settings["archive_mode"] = "on"
		if a.Always {
			settings["archive_mode"] = "always"
		}
		settings["archive_command"] = quote(a.Command)
		settings["archive_timeout"] = strconv.Itoa(int(a.Timeout / time.Second))
	}
	if cfg.GuardLibrary != "" {
		settings["fog_guard.extensions"] = quote(strings.Join(GuardExtensions, ","))
	}
	if cfg.Scratch {
		for k, v := range scratchSettings {
			settings[k] = v
		}
		for _, k := range []string{"ssl_cert_file", "ssl_key_file", "ssl_min_protocol_version", "ssl_ca_file", "archive_timeout"} {
			delete(settings, k)
		}
	}
	if u := cfg.Standby; u != nil {
		settings["primary_conninfo"] = quote(c.ConnInfo(u, ""))
		settings["primary_slot_name"] = quote(u.Slot)
		settings["recovery_target_timeline"] = quote("latest")
		if r := cfg.Recovery; r != nil {
			settings["restore_command"] = quote(r.Command)
			if r.Timeline > 0 {
				settings["recovery_target_timeline"] = quote(strconv.Itoa(r.Timeline))
			}
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("# Written by Fog. Do not edit: it is rewritten on every reconcile.\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	hba := hbaConf(false, c.Peer, c.Host)
	ident := identConf(cfg.FogUser, c.R.Username, c.Peer)
	if cfg.Scratch {
		hba, ident = scratchHBA, identConf(cfg.FogUser, "", nil)
	}
	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{"fog.conf", []byte(conf.String()), 0o600},
		{"pg_hba.conf", []byte(hba), 0o600},
		{"pg_ident.conf", []byte(ident), 0o600},
	}
	if !cfg.Scratch {
		files = append(files, file{"server.crt", cfg.CertPEM, 0o600}, file{"server.key", cfg.KeyPEM, 0o600})
	}
	for _, f := range files {
		if err := c.writeOwned("pgdata/"+f.name, f.data, f.mode); err != nil {
			return err
		}
	}
	if len(cfg.CACertPEM) > 0 {
		if err := c.writeOwned("ca.crt", cfg.CACertPEM, 0o644); err != nil {
			return err
		}
	}
	if u := cfg.Standby; u != nil {
		if err := c.WriteUpstreamFiles(u); err != nil {
			return err
		}
		return c.writeOwned("pgdata/standby.signal", nil, 0o600)
	}
	return c.inDir(func(d *safedir.Dir) error { return d.Remove("pgdata/standby.signal") })
}

// WriteUpstreamFiles writes what connecting to the upstream takes: the CA that verifies it
// and this instance's replication client certificate and key. A password file an older Fog
// wrote is removed.
func (c *Cluster) WriteUpstreamFiles(u *Upstream) error {
	if len(u.CACertPEM) > 0 {
		if err := c.writeOwned("ca.crt", u.CACertPEM, 0o644); err != nil {
			return err
		}
	}
	if len(u.CertPEM) == 0 || len(u.KeyPEM) == 0 {
		return errors.New("no replication client certificate for the upstream")
	}
	if err := c.writeOwned("replication.crt", u.CertPEM, 0o600); err != nil {
		return err
	}
	if err := c.writeOwned("replication.key", u.KeyPEM, 0o600); err != nil {
		return err
	}
	return c.inDir(func(d *safedir.Dir) error { return d.Remove("replication.pgpass") })
}

// writeOwned replaces rel (beneath the instance's directory) with data, the instance's
// user's: a new file renamed into place, so a link or FIFO planted at rel is replaced, not
// followed.
func (c *Cluster) writeOwned(rel string, data []byte, mode os.FileMode) error {
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFile(rel, data, mode, c.owner())
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// PID returns the postmaster's pid if one is running for this data directory: the pid that
// postmaster.pid names, if that process is this instance's server (isServer). The file is
// the instance's user's to write, so a pid in it is never trusted alone.
func (c *Cluster) PID() (int, bool) {
	pid, ok := c.lockPID()
	if !ok {
		return 0, false
	}
	return pid, c.isServer(pid)
}

func (c *Cluster) lockPID() (int, bool) {
	var pid int
	err := c.inDir(func(d *safedir.Dir) error {
		var err error
		pid, err = readLockPID(d, "pgdata/postmaster.pid")
		return err
	})
	return pid, err == nil && pid > 0
}

// readLockPID reads the pid on the first line of a PostgreSQL lock file.
func readLockPID(d *safedir.Dir, rel string) (int, error) {
	b, err := d.ReadFile(rel, 4096)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// removeStaleLocks removes postmaster.pid and the socket lock file when the process they
// name is not this instance's server. PostgreSQL removes a stale lock itself only when
// kill(pid, 0) fails, which it does not for a zombie, nor for a pid reused by another program.
func (c *Cluster) removeStaleLocks() error {
	stale := func(d *safedir.Dir, rel string) error {
		pid, err := readLockPID(d, rel)
		if err != nil || pid <= 0 || c.isServer(pid) {
			return nil
		}
		return d.Remove(rel)
	}
	if err := c.inDir(func(d *safedir.Dir) error { return stale(d, "pgdata/postmaster.pid") }); err != nil {
		return err
	}
	sock, err := safedir.Open(c.SocketDir)
	if err != nil {
		return nil
	}
	defer sock.Close()
	return stale(sock, fmt.Sprintf(".s.PGSQL.%d.lock", c.Port))
}

// Start starts the server and waits until it accepts connections. pg_ctl's own wait polls
// only every 100 ms, so Fog starts without waiting and polls the socket itself.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.Launch(ctx); err != nil {
		return err
	}
	return c.WaitReady(ctx, 60*time.Second)
}

// Launch starts the postmaster, if none runs, and returns once its pid file names a live
// process, so that whoever fences the instance next finds it (a fence that looks before the
// pid file exists would think the server down). It does not wait for connections.
func (c *Cluster) Launch(ctx context.Context) error {
	if err := c.makeSocketDir(); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if _, ok := c.PID(); ok {
		return nil
	}
	if err := c.removeStaleLocks(); err != nil {
		return fmt.Errorf("remove stale postmaster.pid: %w", err)
	}
	// pg_ctl opens the log as the instance's user, who may not make files in the
	// instance's directory: Fog makes it, the instance's user's.
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	err = d.Touch("postgres.log", 0o600, c.owner())
	if errors.Is(err, safedir.ErrLink) || errors.Is(err, safedir.ErrNotRegular) {
		// Something else in the log's place, left from when the instance's user could write
		// the directory: it goes, and the log starts anew.
		if err = d.Remove("postgres.log"); err == nil {
			err = d.Touch("postgres.log", 0o600, c.owner())
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if _, err := c.R.Run(sctx, "pg_ctl", "start", "-W", "-s", "-D", c.DataDir(), "-l", c.LogFile()); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := c.PID(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			// The postmaster may have exited at once (a bad setting): WaitReady reports why.
			return nil
		case <-tick.C:
		}
	}
}

// WaitReady polls until the server accepts a connection, the postmaster exits, or timeout.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	started := time.Now()
	for {
		conn, err := c.Connect(ctx, "postgres")
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		// Give pg_ctl a moment to write the pid file before treating its absence as a crash.
		if _, ok := c.PID(); !ok && time.Since(started) > 2*time.Second {
			return fmt.Errorf("postgres exited during start: %s", c.LogTail(8))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within %s: %v; log: %s", timeout, err, c.LogTail(5))
		case <-tick.C:
		}
	}
}

// Stop shuts the server down. mode is "fast" or "immediate".
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	if _, ok := c.PID(); !ok {
		c.removeSocketDir()
		return nil
	}
	defer func() {
		if _, ok := c.PID(); !ok {
			c.removeSocketDir()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := c.R.Run(ctx, "pg_ctl", "stop", "-s", "-D", c.DataDir(), "-m", mode, "-w", "-t", "80"); err != nil {
		if _, ok := c.PID(); !ok {
			return nil
		}
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// makeSocketDir makes the socket directory in socketBase, the instance's user's (it creates
// its socket and lock file there), through a descriptor of the base.
func (c *Cluster) makeSocketDir() error {
	base, err := ensureSocketBase()
	if err != nil {
		return err
	}
	defer base.Close()
	if filepath.Dir(c.SocketDir) != base.Path() {
		return fmt.Errorf("socket directory %s is not in %s", c.SocketDir, base.Path())
	}
	return base.Mkdir(filepath.Base(c.SocketDir), 0o700, c.owner())
}

// Reload makes the server re-read its configuration files.
func (c *Cluster) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.R.Run(ctx, "pg_ctl", "reload", "-s", "-D", c.DataDir())
	return err
}

// removeSocketDir removes the socket directory of a stopped server: a stopped instance leaves
// nothing in /tmp. Only an empty directory goes (the server removes its socket and lock file
// when it stops).
func (c *Cluster) removeSocketDir() {
	if c.SocketDir != "" {
		_ = os.Remove(c.SocketDir)
	}
}

// Remove deletes the cluster's directories. The server must be stopped.
func (c *Cluster) Remove() error {
	if err := os.RemoveAll(c.Dir); err != nil {
		return err
	}
	return os.RemoveAll(c.SocketDir)
}

// Connect opens a connection as the system role over the Unix socket. Everything it runs
// follows the package's rule for privileged SQL (see the package doc).
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return c.connectAs(ctx, db, SystemUser)
}

// ConnectMonitor opens a connection as MonitorUser, for what only reads the server's state.
func (c *Cluster) ConnectMonitor(ctx context.Context, db string) (*pgx.Conn, error) {
	return c.connectAs(ctx, db, MonitorUser)
}

// ConnectSystem opens a connection as the system role to SystemDB, where no tenant may
// connect, let alone create anything: what Fog runs as a superuser that concerns no one
// database (roles, slots, CREATE and DROP DATABASE, CHECKPOINT, promotion) runs there. An
// instance that has no SystemDB yet (before its first observation as a primary) is reached
// in the postgres database.
func (c *Cluster) ConnectSystem(ctx context.Context) (*pgx.Conn, error) {
	conn, err := c.Connect(ctx, SystemDB)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
		return c.Connect(ctx, "postgres")
	}
	return conn, err
}

// ConnectReader connects as MonitorUser, or as the system role where MonitorUser or
// SystemDB does not exist yet (an instance made by an older Fog, before its first
// observation as a primary): what only reads. An empty db is SystemDB.
func (c *Cluster) ConnectReader(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := c.ConnectMonitor(ctx, cmp.Or(db, SystemDB))
	if err == nil {
		return conn, nil
	}
	connect := func() (*pgx.Conn, error) { return c.Connect(ctx, db) }
	if db == "" {
		connect = func() (*pgx.Conn, error) { return c.ConnectSystem(ctx) }
	}
	if conn, err2 := connect(); err2 == nil {
		return conn, nil
	}
	return nil, err
}

// pinnedSettings are sent in the startup packet of every connection Fog opens. Settings of
// the startup packet outrank the ones a database's owner attaches with ALTER DATABASE ... SET
// and the ones of ALTER ROLE (PGC_S_CLIENT is above PGC_S_DATABASE_USER, guc.h), so a tenant
// cannot steer Fog's session through them:
//   - search_path: no schema a tenant can create in is searched, so no tenant function,
//     operator, cast target or table can stand in for a catalog one; pg_temp named last keeps
//     it from being searched first (it is never searched for functions and operators).
//   - role: "ALTER DATABASE d SET role = x" would make a superuser's session in d run as x
//     (the check of membership passes for a superuser), so what Fog creates there would be
//     owned by the tenant.
//   - standard_conforming_strings: the literals Fog writes itself (a SCRAM verifier in ALTER
//     ROLE) are read with backslashes as plain characters.
//   - local_preload_libraries: a database owner's ALTER DATABASE d SET
//     local_preload_libraries would load a library of $libdir/plugins into Fog's superuser
//     session in d, or, naming none there, keep Fog from connecting to d at all.
//   - the bounds: nothing the agent runs may hang it; a lock held by a user session or a
//     stuck statement fails after these and is retried on the next reconcile.
var pinnedSettings = map[string]string{
	"search_path":                         "pg_catalog, pg_temp",
	"role":                                "none",
	"standard_conforming_strings":         "on",
	"default_transaction_read_only":       "off",
	"transform_null_equals":               "off",
	"local_preload_libraries":             "",
	"statement_timeout":                   "60s",
	"lock_timeout":                        "10s",
	"idle_in_transaction_session_timeout": "60s",
}

func (c *Cluster) connectAs(ctx context.Context, db, user string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host = c.SocketDir
	cfg.Port = uint16(c.Port)
	cfg.User = user
	cfg.Database = db
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = 5 * time.Second
	cfg.RuntimeParams = map[string]string{"application_name": "fog-agent"}
	for k, v := range pinnedSettings {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// LogTail returns the last n lines of the server log, for error messages. The log is the
// instance's user's: it is read through the instance's directory's descriptor, without
// following a link, and only its last 64 KiB.
func (c *Cluster) LogTail(n int) string {
	var b []byte
	err := c.inDir(func(d *safedir.Dir) (err error) {
		b, err = d.Tail("postgres.log", 64<<10)
		return err
	})
	if err != nil {
		return "(no log)"
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			lines = append(lines, t)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
