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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
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

// SocketDirFor returns a short socket directory for an instance uid.
func SocketDirFor(uid string) string {
	h := sha256.Sum256([]byte(uid))
	return filepath.Join(os.TempDir(), fmt.Sprintf("fog-%x", h[:5]))
}

// IsStandby reports whether the data directory is set up as a standby (standby.signal); it
// holds whether or not the server runs (CloudNativePG's IsPrimary reads the same file).
func (c *Cluster) IsStandby() bool {
	_, err := os.Stat(filepath.Join(c.DataDir(), "standby.signal"))
	return err == nil
}

// Adopt gives the cluster's files to c.R's user when another user owns them: an instance an
// older Fog ran as the one shared PostgreSQL user is stopped (as that user, who alone may
// signal it) and its files handed to the instance's own user; it is started again by whoever
// reconciles it next. It reports whether it changed anything.
func (c *Cluster) Adopt(ctx context.Context) (bool, error) {
	st, err := os.Stat(c.Dir)
	if err != nil || !c.R.switchTo {
		return false, nil
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) == c.R.uid {
		return false, nil
	}
	old := *c
	old.R = c.R.owner(int(sys.Uid), int(sys.Gid))
	if _, running := old.PID(); running {
		if err := old.StopNow(ctx, false); err != nil {
			return false, fmt.Errorf("stop the instance to give it its own OS user: %w", err)
		}
	}
	err = filepath.WalkDir(c.Dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, c.R.uid, c.R.gid)
	})
	if err != nil {
		return false, fmt.Errorf("give %s to %s: %w", c.Dir, c.R.Username, err)
	}
	// The socket directory is made again at start.
	if err := os.RemoveAll(c.SocketDir); err != nil {
		return false, err
	}
	return true, nil
}

// Initialized reports whether initdb has completed in DataDir.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.DataDir(), "PG_VERSION"))
	return err == nil
}

// Init runs initdb. Data checksums make pg_rewind possible later; peer authentication on the
// socket lets only Fog's OS user act as the system role.
func (c *Cluster) Init(ctx context.Context, locale string) error {
	if err := c.R.MkdirOwned(c.Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.Dir, err)
	}
	// A half-finished initdb leaves a directory it refuses to reuse.
	if err := os.RemoveAll(c.DataDir()); err != nil {
		return err
	}
	if err := c.R.MkdirOwned(c.DataDir(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.DataDir(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := c.R.Run(ctx, "initdb", "-D", c.DataDir(), "-U", SystemUser, "--data-checksums",
		"--encoding=UTF8", "--locale="+locale, "--auth-local=peer", "--auth-host=reject")
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return c.appendInclude()
}

func (c *Cluster) appendInclude() error {
	p := filepath.Join(c.DataDir(), "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if bytes.Contains(b, []byte("include_if_exists = 'fog.conf'")) {
		return nil
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString("\n# Settings managed by Fog; they override the ones above.\ninclude_if_exists = 'fog.conf'\n")
	return err
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
	// MaxSlotWALKeepSize bounds the WAL a slot may hold back (default 2GB).
	MaxSlotWALKeepSize string
	// GuardLibrary is the fog_guard library's path ("" when it could not be built).
	GuardLibrary string
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
host    all          ` + SystemUser + `   0.0.0.0/0      reject
host    all          ` + SystemUser + `   ::/0           reject
host    all          ` + MonitorUser + `  0.0.0.0/0      reject
host    all          ` + MonitorUser + `  ::/0           reject
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

func identConf(fogUser, ownerUser string, peer *Peer) string {
	s := "# Written by Fog.\nfog  " + fogUser + "  " + SystemUser + "\nfog  " + ownerUser + "  " + SystemUser + "\n" +
		"fog  " + fogUser + "  " + MonitorUser + "\n"
	if peer != nil && peer.CN != "" {
		s += "fogrepl  " + peer.CN + "  " + ReplicationUser + "\n"
	}
	return s
}

// WriteHBA rewrites only pg_hba.conf and pg_ident.conf (a reload applies them to new
// connections).
func (c *Cluster) WriteHBA(drained bool) error {
	return c.writeOwned(filepath.Join(c.DataDir(), "pg_hba.conf"), []byte(hbaConf(drained, c.Peer, c.Host)), 0o600)
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
	if cfg.GuardLibrary != "" {
		settings["fog_guard.extensions"] = quote(strings.Join(GuardExtensions, ","))
	}
	if u := cfg.Standby; u != nil {
		settings["primary_conninfo"] = quote(c.ConnInfo(u, ""))
		settings["primary_slot_name"] = quote(u.Slot)
		settings["recovery_target_timeline"] = quote("latest")
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
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"fog.conf", []byte(conf.String()), 0o600},
		{"pg_hba.conf", []byte(hba), 0o600},
		{"pg_ident.conf", []byte(ident), 0o600},
		{"server.crt", cfg.CertPEM, 0o600},
		{"server.key", cfg.KeyPEM, 0o600},
	}
	for _, f := range files {
		if err := c.writeOwned(filepath.Join(c.DataDir(), f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	if len(cfg.CACertPEM) > 0 {
		if err := c.writeOwned(c.CAFile(), cfg.CACertPEM, 0o644); err != nil {
			return err
		}
	}
	if u := cfg.Standby; u != nil {
		if err := c.WriteUpstreamFiles(u); err != nil {
			return err
		}
		return c.writeOwned(filepath.Join(c.DataDir(), "standby.signal"), nil, 0o600)
	}
	if err := os.Remove(filepath.Join(c.DataDir(), "standby.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// WriteUpstreamFiles writes what connecting to the upstream takes: the CA that verifies it
// and this instance's replication client certificate and key. A password file an older Fog
// wrote is removed.
func (c *Cluster) WriteUpstreamFiles(u *Upstream) error {
	if len(u.CACertPEM) > 0 {
		if err := c.writeOwned(c.CAFile(), u.CACertPEM, 0o644); err != nil {
			return err
		}
	}
	if len(u.CertPEM) == 0 || len(u.KeyPEM) == 0 {
		return errors.New("no replication client certificate for the upstream")
	}
	if err := c.writeOwned(c.ReplicationCertFile(), u.CertPEM, 0o600); err != nil {
		return err
	}
	if err := c.writeOwned(c.ReplicationKeyFile(), u.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.Dir, "replication.pgpass")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (c *Cluster) writeOwned(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := c.R.Chown(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// PID returns the postmaster's pid if one is running for this data directory.
func (c *Cluster) PID() (int, bool) {
	pid, ok := c.lockPID()
	if !ok {
		return 0, false
	}
	return pid, running(pid)
}

func (c *Cluster) lockPID() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return pid, err == nil && pid > 0
}

// running reports whether pid is a live postgres process. A zombie is not: a postmaster
// orphaned by a kill -9 of fog belongs to init, and an init that does not reap (as in some
// containers) leaves it a zombie forever after it dies. The pid file can also outlive a crash
// and its pid be reused by another program.
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	if strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X") {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err != nil || bytes.Contains(cmdline, []byte("postgres"))
}

// removeStaleLocks removes postmaster.pid and the socket lock file when the process they
// name is gone. PostgreSQL removes a stale lock itself only when kill(pid, 0) fails, which it
// does not for a zombie.
func (c *Cluster) removeStaleLocks() error {
	for _, p := range []string{
		filepath.Join(c.DataDir(), "postmaster.pid"),
		filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil || pid <= 0 || running(pid) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
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
	if err := c.R.MkdirOwned(c.SocketDir, 0o700); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if _, ok := c.PID(); ok {
		return nil
	}
	if err := c.removeStaleLocks(); err != nil {
		return fmt.Errorf("remove stale postmaster.pid: %w", err)
	}
	if err := c.R.Chown(c.LogFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
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
//   - the bounds: nothing the agent runs may hang it; a lock held by a user session or a
//     stuck statement fails after these and is retried on the next reconcile.
var pinnedSettings = map[string]string{
	"search_path":                         "pg_catalog, pg_temp",
	"role":                                "none",
	"standard_conforming_strings":         "on",
	"default_transaction_read_only":       "off",
	"transform_null_equals":               "off",
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

// LogTail returns the last n lines of the server log, for error messages.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.LogFile())
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
