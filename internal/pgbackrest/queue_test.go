package pgbackrest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQueueMaxDropsWALWhenTheRepositoryIsDown: with the repository unwritable, WAL waits in
// pg_wal until archive-push-queue-max, and then pgBackRest drops it and reports it archived:
// PostgreSQL keeps running and pg_wal stays bounded. The gap shows by the rule the agent will
// apply (docs/backups.md): segments PostgreSQL counts archived are not in the repository,
// which no successful push can cause (an async push reports success only once the segment is
// there). Archiving resumes by itself once the repository is back.
func TestQueueMaxDropsWALWhenTheRepositoryIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := startInstance(ctx, t)
	if err := in.d.StanzaCreate(ctx); err != nil {
		t.Fatal(err)
	}
	// A small queue: two segments.
	in.cfg.ArchivePushQueueMax = 32 << 20
	in.writeConf(t, in.d.Config, in.cfg)
	repo := filepath.Join(in.dir, "repo")
	if err := os.Chmod(repo, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(repo, 0o700)

	sys := in.system(ctx, t, "postgres")
	exec(ctx, t, sys, "CREATE TABLE public.w (v int)")
	var first string
	for i := 0; i < 6; i++ {
		exec(ctx, t, sys, "INSERT INTO public.w VALUES (1)")
		var seg string
		if err := sys.QueryRow(ctx, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())").Scan(&seg); err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = seg
		}
	}
	// Wait until the archiver has got through every segment (by failing, then dropping).
	deadline := time.Now().Add(90 * time.Second)
	var archived, failed string
	var failures int64
	for {
		if err := sys.QueryRow(ctx, "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), failed_count FROM pg_catalog.pg_stat_archiver").Scan(&archived, &failed, &failures); err != nil {
			t.Fatal(err)
		}
		var ready int
		if err := sys.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() WHERE name LIKE '%.ready'").Scan(&ready); err != nil {
			t.Fatal(err)
		}
		if ready == 0 && archived != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL still waits to be archived: %d ready, last archived %q, last failed %q, %d failures", ready, archived, failed, failures)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("archiver: last archived %s, last failed %s, %d failures", archived, failed, failures)
	out := filepath.Join(in.dir, "spool", "archive", "s1", "out")
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(out, e.Name()))
		t.Logf("spool %s: %q", e.Name(), strings.TrimSpace(string(b)))
	}
	var up bool
	if err := sys.QueryRow(ctx, "SELECT true").Scan(&up); err != nil {
		t.Fatalf("the server stopped: %v", err)
	}
	if archived <= first {
		t.Fatalf("PostgreSQL's last archived segment %s, want at least the switched ones after %s", archived, first)
	}

	if err := os.Chmod(repo, 0o700); err != nil {
		t.Fatal(err)
	}
	info, err := in.d.Info(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var max string
	for _, a := range info.Archive {
		max = a.Max
	}
	if max >= archived {
		t.Errorf("the repository's newest segment is %q, PostgreSQL's last archived %s: want it older (the dropped WAL is not there)", max, archived)
	}
	// Archiving resumes once the repository is back: the next segment arrives.
	exec(ctx, t, sys, "INSERT INTO public.w VALUES (2)")
	var next string
	if err := sys.QueryRow(ctx, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())").Scan(&next); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		info, err := in.d.Info(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(info.Archive); n > 0 && info.Archive[n-1].Max >= next {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s did not reach the repository after it came back: %+v", next, info.Archive)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
