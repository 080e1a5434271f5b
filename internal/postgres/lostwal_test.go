package postgres

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestDecodeLostWAL: the transactions committed in a WAL range are found with their xids,
// commit times and the tables they wrote (a subtransaction's too); aborted ones are not
// counted as lost; a range with only checkpoints and hint bits holds none.
func TestDecodeLostWAL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, r := testRunner(ctx, t)
	c, _ := startTestCluster(ctx, t, r, t.TempDir(), Config{Timezone: "UTC", FogUser: "root"})
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	xact := func(sqls ...string) uint32 {
		t.Helper()
		exec("BEGIN")
		for _, s := range sqls {
			exec(s)
		}
		var x int64
		if err := conn.QueryRow(ctx, "SELECT txid_current()").Scan(&x); err != nil {
			t.Fatal(err)
		}
		exec("COMMIT")
		return uint32(x)
	}
	// The test plays a user of the database: Fog's own sessions search pg_catalog only.
	exec("SET search_path = public")
	exec("CREATE TABLE orders (id int PRIMARY KEY, note text)")
	exec("CREATE TABLE audit (id int)")
	exec("INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 100) g")
	exec("CHECKPOINT")
	var from string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&from); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	x1 := xact("INSERT INTO orders VALUES (1001, 'a')")
	x2 := xact("UPDATE orders SET note = 'b' WHERE id = 5", "SAVEPOINT s", "INSERT INTO audit VALUES (1)", "RELEASE s")
	exec("BEGIN")
	exec("INSERT INTO orders VALUES (1002, 'aborted')")
	exec("ROLLBACK")
	x3 := xact("DELETE FROM orders WHERE id = 7")
	xact() // an xid and a commit record, nothing written: not data
	var quietFrom string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&quietFrom); err != nil {
		t.Fatal(err)
	}
	exec("SELECT count(*) FROM orders") // hint bits
	exec("CHECKPOINT")
	conn.Close(ctx)
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	cd, err := c.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tli, _ := strconv.Atoi(cd["Latest checkpoint's TimeLineID"])
	end := cd["Latest checkpoint location"]
	lt, err := c.DecodeLostWAL(ctx, tli, from, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(lt.Committed) != 3 || lt.Aborted != 1 || lt.Empty != 1 {
		t.Fatalf("decoded %+v; want 3 committed, 1 aborted and 1 that wrote nothing", lt)
	}
	for i, want := range []uint32{x1, x2, x3} {
		got := lt.Committed[i]
		if got.XID != want || got.CommitTime.Before(before) || got.CommitTime.After(time.Now()) {
			t.Errorf("transaction %d: %+v, want xid %d committed just now", i, got, want)
		}
	}

	// The quiet range after the last commit holds no transaction.
	quiet, err := c.DecodeLostWAL(ctx, tli, quietFrom, end)
	if err != nil || len(quiet.Committed) != 0 || quiet.Records == 0 {
		t.Errorf("a range of checkpoints and hint bits: %+v, %v", quiet, err)
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tx := range lt.Committed {
		keys = append(keys, tx.Relations...)
	}
	names := c.ResolveRelations(ctx, keys)
	named := func(tx LostTransaction) map[string]bool {
		m := map[string]bool{}
		for _, k := range tx.Relations {
			m[names[k]] = true
		}
		return m
	}
	if n := named(lt.Committed[0]); !n["postgres.public.orders"] || !n["postgres.public.orders_pkey"] {
		t.Errorf("first transaction wrote %v (%v)", n, lt.Committed[0].Relations)
	}
	if n := named(lt.Committed[1]); !n["postgres.public.orders"] || !n["postgres.public.audit"] {
		t.Errorf("second transaction (with a subtransaction) wrote %v", n)
	}
}
