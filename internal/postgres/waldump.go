package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/pgtypes"
)

// DatabaseDrop is a DROP DATABASE found in the WAL: where a recovery that must still have the
// database stops, and the drop's commit.
type DatabaseDrop struct {
	// LSN is the first record of the drop that changes the database: the in-place update
	// that marks its pg_database row invalid (PostgreSQL 15.4 and later), else the row's
	// delete, else the record that removes its files. Each is replayed before the drop's
	// commit, while recovery checks a time target only at commits; a recovery that stops
	// just before this LSN has the database, intact and valid.
	LSN string
	// Committed is the drop's commit time.
	Committed time.Time
}

// WALPosition is where a primary writes WAL: the position, the timeline, and pg_database's
// file node (the relation a drop changes first).
type WALPosition struct {
	LSN         string
	Timeline    uint32
	CatalogNode uint32
	// SegmentSize is the server's WAL segment size in bytes.
	SegmentSize int64
}

// CurrentWAL is a primary's current WAL position.
func CurrentWAL(ctx context.Context, conn *pgx.Conn) (WALPosition, error) {
	var p WALPosition
	var file, segSize string
	var node int64
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_lsn()::pg_catalog.text,
		pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()),
		pg_catalog.pg_relation_filenode('pg_catalog.pg_database'::pg_catalog.regclass)::pg_catalog.int8,
		pg_catalog.current_setting('wal_segment_size')`).Scan(&p.LSN, &file, &node, &segSize); err != nil {
		return p, fmt.Errorf("current WAL position: %w", err)
	}
	tl, err := strconv.ParseUint(file[:min(8, len(file))], 16, 32)
	if err != nil {
		return p, fmt.Errorf("current WAL file %q: %w", file, err)
	}
	p.Timeline, p.CatalogNode = uint32(tl), uint32(node)
	if p.SegmentSize, err = parseSize(segSize); err != nil {
		return p, fmt.Errorf("wal_segment_size %q: %w", segSize, err)
	}
	return p, nil
}

// waldumpLimit bounds what is read of pg_waldump's output: the WAL belongs to the instance's
// OS user, and the range read is a few observations' worth.
const waldumpLimit = 64 << 20

var (
	waldumpRecord = regexp.MustCompile(`^rmgr: (\S+)\s.*\btx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (.*)$`)
	waldumpDrop   = regexp.MustCompile(`^DROP dir ((?:\d+/\d+ ?)+)`)
	waldumpCommit = regexp.MustCompile(`^COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)
	waldumpHeap   = regexp.MustCompile(`^(INPLACE|DELETE) off (\d+)\b.*\bblk (\d+)`)
)

// FindDatabaseDrop reads the cluster's pg_wal from from to to (on from's timeline) with
// pg_waldump, run as the cluster's OS user (the WAL is that user's files), for the drop of
// the database with oid. found is false when the range has no such drop.
func (c *Cluster) FindDatabaseDrop(ctx context.Context, oid uint32, from, to WALPosition) (d DatabaseDrop, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The drop is almost always after from, the position read before the last look that
	// listed the database. But that look may have read it after the drop began (its
	// transaction was not committed, and a drop forces a checkpoint midway): then the read
	// starts again earlier, at from's segment and at the one before, as far as pg_wal holds.
	starts := dropSearchStarts(from)
	var xid string
	var errs []error
	for _, st := range starts {
		err := c.waldump(ctx, st, to.LSN, func(r io.Reader) error {
			var err error
			d, xid, found, err = parseWaldumpDrop(r, oid)
			return err
		}, "-r", "Database", "-r", "Transaction")
		if ctx.Err() != nil {
			return d, false, ctx.Err()
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if found {
			break
		}
	}
	if !found {
		if len(errs) == len(starts) {
			return d, false, errors.Join(errs...)
		}
		return d, false, nil
	}
	// The drop's first change: its pg_database row's in-place update, or its delete, looked
	// for from the same starts.
	drop, _ := pgtypes.ParseLSN(d.LSN)
	for _, st := range starts {
		if l, err := pgtypes.ParseLSN(st.LSN); err != nil || l >= drop {
			continue
		}
		var first string
		err := c.waldump(ctx, st, d.LSN, func(r io.Reader) error {
			first = parseWaldumpRowChange(r, xid)
			return nil
		}, "-r", "Heap", "-R", fmt.Sprintf("1664/0/%d", to.CatalogNode))
		if ctx.Err() != nil {
			return d, false, ctx.Err()
		}
		if err == nil && first != "" {
			d.LSN = first
			break
		}
	}
	return d, true, nil
}

// dropSearchStarts are where FindDatabaseDrop reads from, latest first: from, the start of
// from's segment, and the start of the segment before.
func dropSearchStarts(from WALPosition) []WALPosition {
	out := []WALPosition{from}
	lsn, err := pgtypes.ParseLSN(from.LSN)
	seg := pgtypes.LSN(from.SegmentSize)
	if err != nil || seg == 0 {
		return out
	}
	own := lsn - lsn%seg
	if own != lsn {
		p := from
		p.LSN = own.String()
		out = append(out, p)
	}
	if own >= seg {
		p := from
		p.LSN = (own - seg).String()
		out = append(out, p)
	}
	return out
}

// waldump runs pg_waldump over pg_wal from from to to with args, and hands its output to
// parse, read up to waldumpLimit.
func (c *Cluster) waldump(ctx context.Context, from WALPosition, to string, parse func(io.Reader) error, args ...string) error {
	args = append([]string{"-p", filepath.Join(c.DataDir(), "pg_wal"), "-t", strconv.FormatUint(uint64(from.Timeline), 10),
		"-s", from.LSN, "-e", to}, args...)
	cmd := c.R.Command(ctx, "pg_waldump", args...)
	cmd.Env = append(cmd.Env, "TZ=UTC")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_waldump: %w", err)
	}
	perr := parse(io.LimitReader(out, waldumpLimit))
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if perr != nil {
		return perr
	}
	if werr != nil {
		return fmt.Errorf("pg_waldump %s to %s: %w: %s", from.LSN, to, werr, lastLines(stderr.String(), 3))
	}
	return nil
}

// parseWaldumpDrop finds, in pg_waldump's output of the Database and Transaction resource
// managers, the drop of database oid and the commit of its transaction, xid.
func parseWaldumpDrop(r io.Reader, oid uint32) (d DatabaseDrop, xid string, found bool, err error) {
	want := "/" + strconv.FormatUint(uint64(oid), 10)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := waldumpRecord.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rmgr, tx, lsn, desc := m[1], m[2], m[3], m[4]
		switch {
		case xid == "" && rmgr == "Database":
			dm := waldumpDrop.FindStringSubmatch(desc)
			if dm == nil {
				continue
			}
			for _, dir := range strings.Fields(dm[1]) {
				if strings.HasSuffix(dir, want) {
					xid, d.LSN = tx, lsn
					break
				}
			}
		case xid != "" && rmgr == "Transaction" && tx == xid:
			cm := waldumpCommit.FindStringSubmatch(desc)
			if cm == nil {
				// Not a commit: the drop failed after writing its record; look on.
				xid, d.LSN = "", ""
				continue
			}
			t, err := time.Parse("2006-01-02 15:04:05.999999", cm[1])
			if err != nil {
				return d, "", false, fmt.Errorf("pg_waldump commit time %q: %w", cm[1], err)
			}
			d.Committed = t.UTC()
			return d, xid, true, nil
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return d, "", false, err
	}
	return d, "", false, nil
}

// parseWaldumpRowChange finds, in pg_waldump's output of pg_database's heap records, the
// delete of a row by transaction xid, and returns the LSN of the last in-place update of that
// row before it (a drop marks the row invalid first; that update carries no transaction), or
// of the delete itself without one; "" if there is no such delete.
func parseWaldumpRowChange(r io.Reader, xid string) string {
	inplace := map[string]string{} // block and offset: LSN of its last in-place update
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := waldumpRecord.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != "Heap" {
			continue
		}
		h := waldumpHeap.FindStringSubmatch(m[4])
		if h == nil {
			continue
		}
		row := h[3] + "/" + h[2]
		switch {
		case h[1] == "INPLACE":
			inplace[row] = m[3]
		case m[2] == xid:
			if lsn, ok := inplace[row]; ok {
				return lsn
			}
			return m[3]
		}
	}
	return ""
}

// limitedWriter keeps at most n bytes of what is written to it and discards the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

// parseSize reads a size as current_setting prints it ("16MB", "1GB", "8192").
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		n      int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	n := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, n = v, u.n
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v * n, err
}
