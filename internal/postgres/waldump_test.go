package postgres

import (
	"context"
	"strings"
	"testing"
	"time"
)

// pg_waldump's output for a database made and dropped, as PostgreSQL 15 prints it.
const waldumpSample = `rmgr: Database    len (rec/tot):     42/    42, tx:        722, lsn: 0/01511720, prev 0/015116A8, desc: CREATE_FILE_COPY copy dir 1663/1 to 1663/5
rmgr: Transaction len (rec/tot):     66/    66, tx:        722, lsn: 0/01511800, prev 0/01511788, desc: COMMIT 2026-12-03 22:12:54.420290 UTC; inval msgs: catcache 21; sync
rmgr: Database    len (rec/tot):     38/    38, tx:        725, lsn: 0/01942C30, prev 0/01942BB8, desc: DROP dir 1663/16385
rmgr: Transaction len (rec/tot):     98/    98, tx:        725, lsn: 0/01942C58, prev 0/01942C30, desc: COMMIT 2026-12-03 22:12:56.695569 UTC; dropped stats: 1/16385/0
rmgr: Database    len (rec/tot):     38/    38, tx:        726, lsn: 0/01943000, prev 0/01942C58, desc: DROP dir 1663/16384 1700/16384
rmgr: Transaction len (rec/tot):     98/    98, tx:        726, lsn: 0/01943060, prev 0/01943000, desc: COMMIT 2026-12-03 22:12:57.000001 UTC; dropped stats: 1/16384/0
`

func TestParseWaldumpDrop(t *testing.T) {
	d, xid, found, err := parseWaldumpDrop(strings.NewReader(waldumpSample), 16384)
	if err != nil || !found || xid != "726" {
		t.Fatalf("found %v, xid %s, err %v", found, xid, err)
	}
	want := DatabaseDrop{LSN: "0/01943000", Committed: time.Date(2026, 12, 3, 22, 12, 57, 1000, time.UTC)}
	if d != want {
		t.Fatalf("got %+v, want %+v", d, want)
	}
	// 1638 is a prefix of no oid's digits after the slash: only whole oids match.
	if _, _, found, _ := parseWaldumpDrop(strings.NewReader(waldumpSample), 1638); found {
		t.Fatal("found the drop of oid 1638")
	}
	if _, _, found, _ := parseWaldumpDrop(strings.NewReader(waldumpSample), 4); found {
		t.Fatal("found the drop of oid 4")
	}
}

// pg_database's heap records around a drop, as PostgreSQL 15.18 writes them: the row marked
// invalid in place (no transaction), then deleted by the drop's transaction. An earlier
// in-place update of the same offset on another block, and one of the same row before,
// must not be taken.
const waldumpRowSample = `rmgr: Heap        len (rec/tot):    160/   160, tx:          0, lsn: 0/01D70000, prev 0/01D6FF00, desc: INPLACE off 7, blkref #0: rel 1664/0/1262 blk 0
rmgr: Heap        len (rec/tot):    160/   160, tx:          0, lsn: 0/01D71000, prev 0/01D70000, desc: INPLACE off 7, blkref #0: rel 1664/0/1262 blk 1
rmgr: Heap        len (rec/tot):    160/   160, tx:          0, lsn: 0/01D73DB0, prev 0/01D73D68, desc: INPLACE off 7, blkref #0: rel 1664/0/1262 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:        727, lsn: 0/01D73E50, prev 0/01D73DB0, desc: DELETE off 7 flags 0x00 KEYS_UPDATED , blkref #0: rel 1664/0/1262 blk 0
`

func TestParseWaldumpRowChange(t *testing.T) {
	if got := parseWaldumpRowChange(strings.NewReader(waldumpRowSample), "727"); got != "0/01D73DB0" {
		t.Fatalf("the drop's first change = %q, want the in-place update at 0/01D73DB0", got)
	}
	// Without the in-place update (PostgreSQL before 15.4): the delete.
	noInplace := strings.Join(strings.Split(waldumpRowSample, "\n")[3:], "\n")
	if got := parseWaldumpRowChange(strings.NewReader(noInplace), "727"); got != "0/01D73E50" {
		t.Fatalf("without an in-place update = %q, want the delete at 0/01D73E50", got)
	}
	if got := parseWaldumpRowChange(strings.NewReader(waldumpRowSample), "728"); got != "" {
		t.Fatalf("another transaction's delete = %q, want none", got)
	}
}

// TestFindDatabaseDrop drops a database on a real server and finds the drop in its WAL: the
// drop record's position (before its commit) and the commit's time.
func TestFindDatabaseDrop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, r := testRunner(ctx, t)
	c, _ := startTestCluster(ctx, t, r, t.TempDir(), Config{Timezone: "UTC", FogUser: "root"})
	sys, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(ctx)
	for _, q := range []string{"CREATE DATABASE keep", "CREATE DATABASE gone"} {
		if _, err := sys.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	dbs, err := ListDatabases(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	var oid uint32
	for _, d := range dbs {
		if d.Name == "gone" {
			oid = d.OID
		}
	}
	if oid == 0 {
		t.Fatalf("no oid for gone in %+v", dbs)
	}
	from, err := CurrentWAL(ctx, sys)
	if err != nil || from.Timeline != 1 || from.CatalogNode == 0 {
		t.Fatalf("CurrentWAL = %+v, %v", from, err)
	}
	before := time.Now()
	if _, err := sys.Exec(ctx, "DROP DATABASE gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Exec(ctx, "DROP DATABASE keep"); err != nil {
		t.Fatal(err)
	}
	to, err := CurrentWAL(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	d, found, err := c.FindDatabaseDrop(ctx, oid, from, to)
	if err != nil || !found {
		t.Fatalf("FindDatabaseDrop = %+v, %v, %v", d, found, err)
	}
	var afterFrom, beforeTo bool
	if err := sys.QueryRow(ctx, "SELECT $1::pg_lsn >= $2::pg_lsn, $1::pg_lsn < $3::pg_lsn", d.LSN, from.LSN, to.LSN).Scan(&afterFrom, &beforeTo); err != nil {
		t.Fatal(err)
	}
	if !afterFrom || !beforeTo {
		t.Fatalf("drop at %s, not inside %s..%s", d.LSN, from.LSN, to.LSN)
	}
	if d.Committed.Before(before.Add(-time.Second)) || d.Committed.After(time.Now().Add(time.Second)) {
		t.Fatalf("drop committed at %v, the test dropped it at %v", d.Committed, before)
	}
	// A look that read its position after the drop had begun (its transaction was not
	// committed yet, so the database was still listed) finds the same drop.
	if late, found, err := c.FindDatabaseDrop(ctx, oid, to, to); err != nil || !found || late != d {
		t.Fatalf("from a position after the drop began: %+v %v %v, want %+v", late, found, err, d)
	}
	if from.SegmentSize != 16<<20 {
		t.Errorf("segment size %d", from.SegmentSize)
	}
	if _, found, err := c.FindDatabaseDrop(ctx, oid+1000, from, to); found || err != nil {
		t.Fatalf("found the drop of a database never made: %v %v", found, err)
	}
}
