package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// Seeding a standby (docs/backups.md, "Seeding from the repository"). A standby is seeded
// from the newest backup of its stanza in its own region's repository plus the WAL
// archived there, and then streams the rest from its primary through its slot, when
//
//   - the instance has backups, and the region's repository holds a backup of the spec's
//     stanza that the instance's OS user owns (a copy another OS user owns is set aside by
//     ConfigureBackup, never read), on the primary's timeline or an earlier one;
//   - the primary kept the WAL after the standby's: its slot for the standby is not
//     invalidated (a standby reseeded for falling behind archived only what it received);
//     and
//   - the archive cannot lead the standby off the primary's history: the primary's
//     current timeline is 1, or that timeline's history file is in the region's archive.
//     After a forced failover the old primary's region archive holds WAL of the lost range
//     on the old timeline; with recovery_target_timeline=latest PostgreSQL follows the new
//     timeline at the fork only if it can read the new timeline's history file, and would
//     otherwise replay the lost range and never connect to the new primary. Recovery is
//     pinned to the primary's timeline (seedFromRepository).
//
// Anything else, and any failure of that path (the restore fails, or the standby does not
// stream from its primary while its WAL position stands still for BackupConfig.SeedStall:
// the primary no longer has the WAL after the archive's end), seeds with pg_basebackup from
// the primary. The status says which (SeedSource, SeedBackup, SeedFallback).

// repositorySeed decides the seed's source: the backup of the region's repository to seed
// from, or "" and why not (empty when backups are off: nothing to say).
func (w *worker) repositorySeed(ctx context.Context, p *pass) (label, why string) {
	c, s := p.srv, p.s
	if !p.backups || s.Backup == nil {
		return "", ""
	}
	if s.Peer == nil {
		return "", "the standby has no partner whose timeline could be checked"
	}
	var pst instance.Status
	if _, err := store.Get(ctx, w.a.st, instance.StatusKey(s.Peer.Region, s.Peer.UID), &pst); err != nil {
		return "", fmt.Sprintf("the primary's status could not be read: %v", err)
	}
	if pst.Role != instance.RolePrimary || pst.Replication == nil || pst.Replication.InRecovery || pst.Replication.Timeline < 1 {
		return "", "the primary's timeline is not known"
	}
	tli := pst.Replication.Timeline
	if s.Upstream != nil {
		for _, sl := range pst.Replication.Slots {
			if sl.Name == s.Upstream.Slot && sl.WALStatus == "lost" {
				// The standby fell behind further than max_slot_wal_keep_size: its region's
				// archive holds only what it received, and the primary has removed what
				// follows. A restored standby could never stream.
				return "", "the primary invalidated the standby's slot: it no longer has the WAL that follows what the region's archive holds"
			}
		}
	}
	label, err := c.SeedBackup(ctx, tli)
	if err != nil {
		return "", fmt.Sprintf("the region's repository could not be read: %v", err)
	}
	if label == "" {
		return "", fmt.Sprintf("the region's repository holds no backup of stanza %s", s.Backup.Stanza)
	}
	if tli > 1 {
		ok, err := c.ArchivedHistory(ctx, tli)
		if err != nil {
			return "", fmt.Sprintf("the region's archive could not be read: %v", err)
		}
		if !ok {
			return "", fmt.Sprintf("the history file of the primary's timeline %d is not in the region's archive, which may hold WAL of another timeline the standby must not follow", tli)
		}
	}
	p.seedTimeline = tli
	return label, ""
}

// seedFromRepository restores backup label of the region's repository into the data
// directory as a standby of p.up, configures it to replay the region's archive and then
// stream, starts it, and waits until it streams from the primary, or until its WAL position
// has stood still for SeedStall.
func (w *worker) seedFromRepository(ctx context.Context, p *pass, label string) error {
	c, s, st, up := p.srv, p.s, p.st, p.up
	w.log.Info("seeding standby from the region's backup repository", "instance", s.Name, "backup", label, "stanza", s.Backup.Stanza)
	last := time.Now()
	restore, err := c.RestoreStandby(ctx, label, up, func(pct float64) {
		if time.Since(last) > 500*time.Millisecond {
			last = time.Now()
			st.SeedPercent = &pct
			w.publish(ctx, *st)
		}
	})
	if err != nil {
		return fmt.Errorf("restore backup %s: %w", label, err)
	}
	// Recovery follows the primary's timeline, not the latest the archive knows: the region's
	// archive may hold a later timeline of this instance's own (it was promoted when an
	// earlier group was deleted, and archived its history file before its stanza changed),
	// which the primary's history does not contain. The next configuration says latest
	// again, for the restart after which a failover's new timeline must be followed.
	if err := w.configureWith(c, s, up, &postgres.Recovery{Command: restore, Timeline: p.seedTimeline}); err != nil {
		return err
	}
	// Launch, not Start: the server accepts connections only once it has replayed to the
	// backup's consistency point, which for a large archive takes longer than Start waits.
	if err := c.Launch(ctx); err != nil {
		return err
	}
	return w.waitSeedStreaming(ctx, c)
}

// errSeedStalled: a standby restored from the repository neither streams nor moves on.
var errSeedStalled = errors.New("the standby restored from the repository does not stream from its primary, and its WAL position stands still")

// waitSeedStreaming waits until the standby's WAL receiver streams. It fails when the
// server stops, or when its WAL position (replayed or received) has not moved for
// SeedStall while it does not stream: the primary no longer has the WAL that follows the
// archive's end, and only a copy from the primary can seed it. Until the server accepts
// connections (it has replayed to the backup's end, whose WAL pgBackRest made sure is in the
// archive) its position cannot be read: that wait is bounded by the backup timeout alone.
func (w *worker) waitSeedStreaming(ctx context.Context, c Server) error {
	stall := w.a.cfg.Backup.SeedStall
	if stall <= 0 {
		stall = time.Minute
	}
	consistent := time.Now().Add(w.a.cfg.Backup.Timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	pos, moved := "", time.Now()
	for {
		if _, running := c.PID(); !running {
			return errors.New("the standby restored from the repository stopped (its log says why)")
		}
		conn, err := c.ConnectSystem(ctx)
		if err != nil && pos == "" {
			// Not consistent yet: replaying the archive up to the backup's end.
			moved = time.Now()
			if time.Now().After(consistent) {
				return fmt.Errorf("the standby restored from the repository accepted no connection within %s: %w", w.a.cfg.Backup.Timeout, err)
			}
		}
		if err == nil {
			status, _ := conn.ReceiverStatus(ctx)
			lsn, _ := conn.ReceivedLSN(ctx)
			conn.Close()
			if status == "streaming" {
				return nil
			}
			if lsn != "" && lsn != pos {
				pos, moved = lsn, time.Now()
			}
		}
		if time.Since(moved) > stall {
			return fmt.Errorf("%w for %s (at %s)", errSeedStalled, stall, pos)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// seedFromPrimary copies the primary's data with pg_basebackup.
func (w *worker) seedFromPrimary(ctx context.Context, p *pass) error {
	c, s, st, up := p.srv, p.s, p.st, p.up
	w.log.Info("seeding standby from its primary (pg_basebackup)", "instance", s.Name, "from", net.JoinHostPort(up.Host, fmt.Sprint(up.Port)))
	last := time.Now()
	err := c.BaseBackup(ctx, up, func(pct float64) {
		if time.Since(last) > 500*time.Millisecond {
			last = time.Now()
			st.SeedPercent = &pct
			w.publish(ctx, *st)
		}
	})
	if err != nil {
		return fmt.Errorf("seed from %s:%d: %w", up.Host, up.Port, err)
	}
	return nil
}

// SeedBackup implements Server.
func (p *pgServer) SeedBackup(ctx context.Context, tli int) (string, error) {
	if p.backup == nil {
		return "", nil
	}
	// The instance's own configuration, as its OS user: a copy of the stanza in the region
	// that another instance's OS user owns is set aside here, and the region's repository
	// then holds none for this one.
	if _, err := p.ConfigureBackup(*p.backup); err != nil {
		return "", err
	}
	d, err := p.backupDriver()
	if err != nil {
		return "", err
	}
	info, err := p.info(ctx, d, "")
	if err != nil {
		return "", err
	}
	if info.Status.Code != pgbackrest.StatusOK {
		return "", nil
	}
	var newest pgbackrest.BackupInfo
	for _, b := range info.Backup {
		// A backup of a later timeline than the primary's is another history (the
		// instance's own, promoted when an earlier group was deleted).
		if t, err := strconv.ParseInt(b.Archive.Start[:min(8, len(b.Archive.Start))], 16, 64); err != nil || int(t) > tli {
			continue
		}
		if !b.Failed() && (newest.Label == "" || b.Timestamp.Stop > newest.Timestamp.Stop) {
			newest = b
		}
	}
	return newest.Label, nil
}

// ArchivedHistory implements Server.
func (p *pgServer) ArchivedHistory(ctx context.Context, tli int) (bool, error) {
	d, err := p.backupDriver()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return d.Archived(ctx, fmt.Sprintf("%08X.history", tli))
}

// RestoreStandby implements Server: pgBackRest's restore as the instance's OS user, with
// --delta over a data directory pgBackRest recognises (an interrupted seed, or the data of
// the instance before it), so only the files that differ are written.
func (p *pgServer) RestoreStandby(ctx context.Context, set string, up *postgres.Upstream, progress func(float64)) (string, error) {
	d, err := p.backupDriver()
	if err != nil {
		return "", err
	}
	delta, err := p.Cluster.PrepareRestore(ctx, up)
	if err != nil {
		return "", err
	}
	err = d.Restore(ctx, pgbackrest.RestoreOptions{Set: set, Type: "standby", TargetTimeline: "latest", Delta: delta,
		Progress: func(f float64) { progress(100 * f) }})
	if err != nil {
		return "", err
	}
	// pgBackRest wrote restore_command into postgresql.auto.conf, which would outlive the
	// seed: Fog's fog.conf carries it for the seed only.
	if err := p.Cluster.ClearRestoreSettings(); err != nil {
		return "", err
	}
	return d.ArchiveGetCommand(), nil
}
