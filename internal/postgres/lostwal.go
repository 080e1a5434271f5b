package postgres

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LostTransaction is one transaction whose commit is in a WAL range a forced failover
// discarded: it was committed on the old primary and never reached the new one.
type LostTransaction struct {
	XID        uint32    `json:"xid"`
	CommitTime time.Time `json:"commitTime"`
	// Relations it wrote, as "spcOid/dbOid/relfilenode" until ResolveRelations names them
	// ("database.schema.table").
	Relations []string `json:"relations,omitempty"`
}

// LostTransactions is what a discarded WAL range held, decoded with pg_waldump.
type LostTransactions struct {
	Committed []LostTransaction
	// Aborted counts transactions that aborted in the range (nothing of theirs was visible).
	Aborted int
	// Empty counts commits of transactions that wrote nothing durable (an xid taken by
	// txid_current(), Fog's own drain marker, a write to a temporary table): not data.
	Empty int
	// Records is how many WAL records the range held.
	Records int
}

var (
	recordRe = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s*(\d+), lsn: [0-9A-F]+/[0-9A-F]+, prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$`)
	blkRelRe = regexp.MustCompile(`rel (\d+/\d+/\d+)`)
	commitRe = regexp.MustCompile(`^(COMMIT|COMMIT_PREPARED \d+:) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+)`)
	subxRe   = regexp.MustCompile(`subxacts: ([\d ]+)`)
)

// DecodeLostWAL reads the WAL of the stopped cluster from from to to on timeline tli with
// pg_waldump and returns the transactions that committed there, with what they wrote.
func (c *Cluster) DecodeLostWAL(ctx context.Context, tli int, from, to string) (*LostTransactions, error) {
	cmd := c.R.Command(ctx, "pg_waldump", "-p", c.DataDir()+"/pg_wal", "-t", strconv.Itoa(tli), "-s", from, "-e", to)
	cmd.Env = append(cmd.Env, "TZ=UTC") // commit times in UTC
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	lt, perr := ParseWALDump(out.Bytes())
	if perr != nil {
		return nil, perr
	}
	// pg_waldump exits 1 when the WAL ends before "to" (a crash left no end record): what it
	// decoded up to there is the range. Nothing decoded with an error is a failure.
	if err != nil && lt.Records == 0 {
		return nil, fmt.Errorf("pg_waldump: %w: %s", err, lastLines(errb.String(), 3))
	}
	return lt, nil
}

// ParseWALDump reads pg_waldump's text output.
func ParseWALDump(out []byte) (*LostTransactions, error) {
	lt := &LostTransactions{}
	rels := map[uint32]map[string]bool{}
	owner := map[uint32]uint32{} // subtransaction -> top
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		m := recordRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		lt.Records++
		rmgr, desc := m[1], m[3]
		x, _ := strconv.ParseUint(m[2], 10, 32)
		xid := uint32(x)
		if rmgr != "Transaction" {
			if xid == 0 {
				continue
			}
			for _, r := range blkRelRe.FindAllStringSubmatch(desc, -1) {
				if rels[xid] == nil {
					rels[xid] = map[string]bool{}
				}
				rels[xid][r[1]] = true
			}
			continue
		}
		switch {
		case strings.HasPrefix(desc, "COMMIT"):
			cm := commitRe.FindStringSubmatch(desc)
			if cm == nil {
				return nil, fmt.Errorf("pg_waldump: a commit record without a time: %q", desc)
			}
			at, err := parseWALTime(cm[2])
			if err != nil {
				return nil, err
			}
			if sm := subxRe.FindStringSubmatch(desc); sm != nil {
				for _, f := range strings.Fields(sm[1]) {
					s, _ := strconv.ParseUint(f, 10, 32)
					owner[uint32(s)] = xid
				}
			}
			lt.Committed = append(lt.Committed, LostTransaction{XID: xid, CommitTime: at})
		case strings.HasPrefix(desc, "ABORT"):
			lt.Aborted++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for sub, top := range owner {
		for r := range rels[sub] {
			if rels[top] == nil {
				rels[top] = map[string]bool{}
			}
			rels[top][r] = true
		}
	}
	wrote := lt.Committed[:0]
	for _, tx := range lt.Committed {
		for r := range rels[tx.XID] {
			tx.Relations = append(tx.Relations, r)
		}
		if len(tx.Relations) == 0 {
			lt.Empty++
			continue
		}
		sort.Strings(tx.Relations)
		wrote = append(wrote, tx)
	}
	lt.Committed = wrote
	return lt, nil
}

// parseWALTime parses a commit time as pg_waldump prints it ("2026-11-26 17:40:01.123456
// UTC", in the time zone pg_waldump ran with, which Fog's runner sets to UTC).
func parseWALTime(s string) (time.Time, error) {
	date, zone, ok := strings.Cut(s, " ")
	if ok {
		var clock string
		clock, zone, _ = strings.Cut(zone, " ")
		date += " " + clock
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", date, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("pg_waldump commit time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// ResolveRelations names the relations of "spcOid/dbOid/relfilenode" keys as
// "database.schema.table" by asking the running cluster's catalogs (a hot standby answers).
// A key whose relation the catalog no longer has (made in the lost range, or rewritten since)
// stays as it is, with the database's name when known.
func (c *Cluster) ResolveRelations(ctx context.Context, keys []string) map[string]string {
	names := map[string]string{}
	byDB := map[string][]string{}
	for _, k := range keys {
		parts := strings.Split(k, "/")
		if len(parts) == 3 {
			byDB[parts[1]] = append(byDB[parts[1]], k)
		}
	}
	if len(byDB) == 0 {
		return names
	}
	// Catalogs only: the monitoring role reads them, in databases the tenant shapes.
	sys, err := c.ConnectReader(ctx, "")
	if err != nil {
		return names
	}
	defer sys.Close(context.Background())
	for dbOid, ks := range byDB {
		var db string
		if err := sys.QueryRow(ctx, "SELECT datname::text FROM pg_catalog.pg_database WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", dbOid).Scan(&db); err != nil {
			continue
		}
		conn, err := c.ConnectReader(ctx, db)
		if err != nil {
			continue
		}
		var defaultSpc string
		_ = conn.QueryRow(ctx, "SELECT dattablespace::text FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()").Scan(&defaultSpc)
		for _, k := range ks {
			parts := strings.Split(k, "/")
			spc := parts[0]
			if spc == defaultSpc {
				spc = "0" // pg_filenode_relation takes 0 for the database's default tablespace
			}
			var name *string
			err := conn.QueryRow(ctx, `SELECT pg_catalog.quote_ident(n.nspname::text) OPERATOR(pg_catalog.||) '.'::text
					OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::text)
				FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
				WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.pg_filenode_relation($1::pg_catalog.oid, $2::pg_catalog.oid)`, spc, parts[2]).Scan(&name)
			switch {
			case err == nil && name != nil:
				names[k] = db + "." + *name
			case err == nil || err == pgx.ErrNoRows:
				names[k] = db + " relfilenode " + parts[2]
			}
		}
		conn.Close(context.Background())
	}
	return names
}
