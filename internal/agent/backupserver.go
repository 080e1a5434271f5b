package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
)

// Backups from the standby (docs/backups.md): the standby's region takes its backups from the
// standby, into its own repository. pgBackRest copies the standby's files and asks the primary
// only to start and stop the backup, through a pgBackRest TLS server that the primary's member
// runs as the instance's OS user, on the instance's address and BackupServerPort, admitting
// the partner's replication certificate (Fog's CA) for the group's stanza and nothing else.

// backupServers are the pgBackRest TLS servers this agent runs, by instance UID.
type backupServers struct {
	mu    sync.Mutex
	procs map[string]*servedProc
	// ending are the servers stopped and not yet ended, by instance UID: a stop does not
	// wait (it is on the path of a fence), the next start does.
	ending map[string]*servedProc
}

// servedProc is one running server: what it was started for (key), and how to end it.
type servedProc struct {
	key    string
	served instance.BackupServed
	cancel context.CancelFunc
	done   chan struct{}
}

func newBackupServers() *backupServers {
	return &backupServers{procs: map[string]*servedProc{}, ending: map[string]*servedProc{}}
}

// running returns what uid's server serves, if one runs that was started for key.
func (b *backupServers) running(uid, key string) (instance.BackupServed, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.procs[uid]
	if !ok || p.key != key {
		return instance.BackupServed{}, false
	}
	select {
	case <-p.done:
		return instance.BackupServed{}, false
	default:
		return p.served, true
	}
}

// start runs cmd as uid's server for key, after ending the one it had (and waiting, at most
// 30 s, until it has ended: it holds the port).
func (b *backupServers) start(uid, key string, served instance.BackupServed, cmd *exec.Cmd, cancel context.CancelFunc) error {
	b.stop(uid)
	b.mu.Lock()
	old := b.ending[uid]
	b.mu.Unlock()
	if old != nil {
		select {
		case <-old.done:
		case <-time.After(30 * time.Second):
		}
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	p := &servedProc{key: key, served: served, cancel: cancel, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.mu.Lock()
	b.procs[uid] = p
	b.mu.Unlock()
	return nil
}

// stop ends uid's server, if it has one (SIGTERM to its process group), without waiting.
func (b *backupServers) stop(uid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.procs[uid]
	if !ok {
		return
	}
	delete(b.procs, uid)
	p.cancel()
	b.ending[uid] = p
	go func() {
		<-p.done
		b.mu.Lock()
		if b.ending[uid] == p {
			delete(b.ending, uid)
		}
		b.mu.Unlock()
	}()
}

// stopAll ends every server and waits (at most 30 s) until they have ended.
func (b *backupServers) stopAll() {
	b.mu.Lock()
	var all []*servedProc
	for uid, p := range b.procs {
		delete(b.procs, uid)
		p.cancel()
		all = append(all, p)
	}
	for _, p := range b.ending {
		all = append(all, p)
	}
	b.mu.Unlock()
	deadline := time.After(30 * time.Second)
	for _, p := range all {
		select {
		case <-p.done:
		case <-deadline:
			return
		}
	}
}

// servesBackups reports whether instance s serves its partner's backups: it has backups, is
// its group's primary, and runs.
func servesBackups(p *pass) bool {
	s := p.s
	return p.backups && s.Role == instance.RolePrimary && s.Peer != nil && !s.Paused && !s.Deleted
}

// serveRow runs the instance's pgBackRest TLS server for its partner, or starts it again if
// it ended, and publishes what the partner needs.
func (w *worker) serveRow(ctx context.Context, p *pass) error {
	if _, running := p.srv.PID(); !running {
		return nil
	}
	served, err := p.srv.ServeBackups(ctx, p.s.Peer.UID)
	if err != nil {
		// The instance itself is fine: its partner's region takes no backup until it serves.
		w.log.Warn("serve the partner's backups", "instance", p.s.Name, "err", err)
		p.st.Backup.Served = nil
		return nil
	}
	if p.prev.Backup == nil || p.prev.Backup.Served == nil {
		w.log.Info("serving the partner's backups", "instance", p.s.Name, "port", served.Port)
	}
	p.st.Backup.Served = served
	return nil
}

// ServeBackups runs the instance's pgBackRest TLS server for partner (an instance UID), as
// the instance's OS user, unless it runs already as asked.
func (p *pgServer) ServeBackups(ctx context.Context, partner string) (*instance.BackupServed, error) {
	if p.backup == nil {
		return nil, errors.New("the instance has no backups")
	}
	sp := p.Cluster.ServedBackupPaths()
	served := instance.BackupServed{Host: p.Host, Port: instance.BackupServerPort(p.Port), PGPort: p.Port,
		Stanza: p.backup.Stanza, DataDir: p.DataDir(), SocketDir: p.SocketDir, Config: sp.Config}
	cn := devca.ReplicationCN(partner)
	key := fmt.Sprintf("%s %s %d %s", served.Stanza, served.Host, served.Port, cn)
	if s, ok := p.a.served.running(p.uid, key); ok {
		return &s, nil
	}
	// pgBackRest 2.45 matches the host its client dials against the certificate's DNS
	// names only: the address goes in as a DNS name too.
	var ips []net.IP
	if ip := net.ParseIP(p.Host); ip != nil {
		ips = append(ips, ip)
	}
	crt, key2, err := p.a.ca.Issue([]string{p.Host}, ips)
	if err != nil {
		return nil, fmt.Errorf("the backup server's certificate: %w", err)
	}
	cfg := p.a.backupConfig(p.Cluster, *p.backup)
	cfg.LockPath = sp.Lock
	cfg.Server = &pgbackrest.Server{Address: p.Host, Port: served.Port, CAFile: p.CAFile(),
		CertFile: sp.Cert, KeyFile: sp.Key, Auth: map[string][]string{cn: {served.Stanza}}}
	text, err := cfg.Render()
	if err != nil {
		return nil, err
	}
	if _, err := p.Cluster.PrepareServedBackup(text, crt, key2); err != nil {
		return nil, err
	}
	d, err := p.a.driver(p.Cluster, served.Stanza)
	if err != nil {
		return nil, err
	}
	d.Config = sp.Config
	sctx, cancel := context.WithCancel(context.Background())
	if err := p.a.served.start(p.uid, key, served, d.ServerCommand(sctx), cancel); err != nil {
		return nil, fmt.Errorf("start pgBackRest's server: %w", err)
	}
	addr := net.JoinHostPort(served.Host, strconv.Itoa(served.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return &served, nil
		}
		if _, ok := p.a.served.running(p.uid, key); !ok {
			return nil, fmt.Errorf("pgBackRest's server on %s ended at once (its log is in the instance's pgbackrest/log)", addr)
		}
		if time.Now().After(deadline) {
			p.a.served.stop(p.uid)
			return nil, fmt.Errorf("pgBackRest's server does not accept connections on %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopServingBackups ends the instance's pgBackRest TLS server, if it runs.
func (p *pgServer) StopServingBackups() { p.a.served.stop(p.uid) }

// standbyDriver writes the configuration of a backup of this standby, with its primary as
// from says, and returns the driver that runs it: pg1 the primary through its TLS server
// (its paths, its PostgreSQL port), with this instance's replication certificate as its
// identity; pg2 this standby, whose files are copied.
func (p *pgServer) standbyDriver(ctx context.Context, from instance.BackupServed) (*pgbackrest.Driver, error) {
	if p.backup == nil {
		return nil, errors.New("the instance has no backups")
	}
	if from.Stanza != p.backup.Stanza {
		return nil, fmt.Errorf("the group's primary serves stanza %s, not this instance's %s", from.Stanza, p.backup.Stanza)
	}
	// The region's repository as the instance's own configuration has it (for Azure, its
	// container with a SAS written afresh for each backup).
	cfg, err := p.repoConfig(ctx, p.Cluster, *p.backup)
	if err != nil {
		return nil, err
	}
	local := cfg.PG
	cfg.ArchiveAsync = false // this configuration only backs up; archive-push uses the other
	cfg.PG = pgbackrest.PG{Path: from.DataDir, SocketPath: from.SocketDir, Port: from.PGPort,
		User: postgres.BackupUser, Database: postgres.SystemDB,
		Remote: &pgbackrest.Remote{Host: from.Host, Port: from.Port, CAFile: p.CAFile(),
			CertFile: p.ReplicationCertFile(), KeyFile: p.ReplicationKeyFile(), Config: from.Config}}
	cfg.Standby, cfg.BackupStandby = &local, true
	text, err := cfg.Render()
	if err != nil {
		return nil, err
	}
	if err := p.Cluster.WriteStandbyBackupConfig(text); err != nil {
		return nil, fmt.Errorf("the standby's backup configuration: %w", err)
	}
	d, err := p.a.driver(p.Cluster, p.backup.Stanza)
	if err != nil {
		return nil, err
	}
	d.Config = p.Cluster.StandbyBackupConfig()
	return d, nil
}
