package agent_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/agent/agenttest"
	"github.com/fogdb/fog/internal/instance"
)

// TestSeedSource drives the rule that picks a standby's seed: the newest backup of the
// region's repository when it has one of the stanza and its archive cannot lead the standby
// off the primary's timeline, pg_basebackup from the primary otherwise or when the
// repository's path fails.
func TestSeedSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		// backup is the region's newest backup of the stanza; timeline the primary's;
		// histories the timelines whose history file the region's archive holds.
		backup    string
		timeline  int
		histories []int
		stalls    bool
		lostSlot  bool
		fail      string
		noBackups bool
		// want is the seed source; fallback a part of SeedFallback.
		want, fallback string
	}{
		{name: "no backup in the region", timeline: 1, want: instance.SeedFromPrimary, fallback: "holds no backup of stanza st1"},
		{name: "backups off", backup: "20250101-000000F", timeline: 1, noBackups: true, want: instance.SeedFromPrimary},
		{name: "a backup, timeline 1", backup: "20250101-000000F", timeline: 1, want: instance.SeedFromRepository},
		{name: "a backup, the primary's history archived", backup: "20250101-000000F", timeline: 3, histories: []int{2, 3}, want: instance.SeedFromRepository},
		{name: "unsafe: the primary's history not archived", backup: "20250101-000000F", timeline: 3, histories: []int{2},
			want: instance.SeedFromPrimary, fallback: "history file of the primary's timeline 3 is not in the region's archive"},
		{name: "the primary invalidated the standby's slot", backup: "20250101-000000F", timeline: 1, lostSlot: true,
			want: instance.SeedFromPrimary, fallback: "invalidated the standby's slot"},
		{name: "the repository unreadable", backup: "20250101-000000F", timeline: 1, fail: "SeedBackup",
			want: instance.SeedFromPrimary, fallback: "could not be read"},
		{name: "the restore fails", backup: "20250101-000000F", timeline: 1, fail: "RestoreStandby",
			want: instance.SeedFromPrimary, fallback: "seeding from backup 20250101-000000F of the region's repository failed"},
		{name: "the restored standby never streams", backup: "20250101-000000F", timeline: 1, stalls: true,
			want: instance.SeedFromPrimary, fallback: "does not stream from its primary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			p, s := specP, specS
			if !tc.noBackups {
				p.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
				s.Backup = &instance.BackupSpec{Stanza: "st1", RetentionDays: 7}
			}
			w.set(p)
			w.converge("uid-p")
			w.net.PG("uid-p").Do(func(pg *agenttest.PG) {
				pg.Timeline = tc.timeline
				if tc.lostSlot {
					pg.LostSlots = []string{"fog_s"}
				}
			})
			w.net.PG("uid-p").Write()
			w.converge("uid-p")
			w.net.Server(s).(*agenttest.PG).Do(func(pg *agenttest.PG) {
				pg.RepoBackup, pg.RepoHistories, pg.RepoStalls = tc.backup, tc.histories, tc.stalls
			})
			if tc.fail != "" {
				w.net.FailNext(tc.fail)
			}
			w.set(s)
			st := w.converge("uid-s")
			pg := w.pg("uid-s")
			if st.SeedSource != tc.want || st.SeededGeneration != 1 {
				t.Fatalf("seed: source %q, seeded generation %d (fallback %q); want %q, 1", st.SeedSource, st.SeededGeneration, st.SeedFallback, tc.want)
			}
			if !strings.Contains(st.SeedFallback, tc.fallback) || tc.fallback == "" && st.SeedFallback != "" {
				t.Errorf("SeedFallback = %q, want it to say %q", st.SeedFallback, tc.fallback)
			}
			basebackup := slices.Contains(pg.Log, "BaseBackup")
			switch tc.want {
			case instance.SeedFromRepository:
				if basebackup || !slices.Equal(pg.RestoredFrom, []string{tc.backup}) || st.SeedBackup != tc.backup {
					t.Errorf("seeded from the repository: base backup %v, restored %v, SeedBackup %q; want none, [%s], %s", basebackup, pg.RestoredFrom, st.SeedBackup, tc.backup, tc.backup)
				}
			case instance.SeedFromPrimary:
				if !basebackup || st.SeedBackup != "" {
					t.Errorf("seeded from the primary: base backup %v, SeedBackup %q", basebackup, st.SeedBackup)
				}
			}
			// Either way it ends a standby streaming from its primary, on its timeline, with
			// all of its WAL; restore_command was for the seed only.
			st = w.converge("uid-s")
			pg = w.pg("uid-s")
			pp := w.pg("uid-p")
			if !pg.Running || !pg.Recovery || pg.Received != pp.LSN || pg.Timeline != pp.Timeline || st.Replication == nil || st.Replication.ReceiverStatus != "streaming" {
				t.Errorf("after the seed: running %v, recovery %v, received %d of %d, timeline %d of %d, replication %+v",
					pg.Running, pg.Recovery, pg.Received, pp.LSN, pg.Timeline, pp.Timeline, st.Replication)
			}
			if pg.RestoreCommand != "" {
				t.Errorf("restore_command %q outlived the seed", pg.RestoreCommand)
			}
		})
	}
}
