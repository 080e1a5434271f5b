package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/safedir"
)

// droppedFile keeps, in the instance's directory (root's), what finding dropped databases
// needs across the agent's restarts: the databases last seen, where the WAL was before that
// look, and the drops found.
const droppedFile = "fog-dropped.json"

// dropState is what the worker knows of an instance's databases' drops.
type dropState struct {
	// At is the primary's WAL position just before Seen was listed: a database of Seen that
	// is gone later was dropped after it.
	At   postgres.WALPosition `json:"at"`
	Seen []seenDB             `json:"seen"`
	// Dropped are the drops found, within the instance's retention.
	Dropped []instance.DroppedDB `json:"dropped,omitempty"`

	savedAt time.Time
}

type seenDB struct {
	Name    string    `json:"name"`
	OID     uint32    `json:"oid"`
	Created time.Time `json:"created"`
}

// dropStateSaveEvery is how often the WAL position is written when nothing else changed: a
// restarted agent reads the WAL from there.
const dropStateSaveEvery = time.Minute

// observeDrops finds the databases of the last look that are gone now (by oid: a rename is
// no drop), looks for each one's DROP DATABASE in the WAL between that look and now
// (before, after: the WAL positions around this look's listing), and publishes the drops
// within the instance's retention. It runs on a primary with backups only: a dropped
// database is restored from them.
func (w *worker) observeDrops(ctx context.Context, s instance.Spec, dbs []postgres.Database, before, after postgres.WALPosition, st *instance.Status) {
	srv := w.a.server(s)
	if w.drops == nil {
		ds, err := readDropState(srv.Dir())
		if err != nil {
			w.log.Warn("read the databases last seen; drops until now are not looked for", "instance", s.Name, "err", err)
			ds = &dropState{}
		}
		w.drops = ds
	}
	ds := w.drops
	changed := false
	now := map[uint32]seenDB{}
	for _, d := range dbs {
		if d.OID != 0 && !isTempName(d.Name) {
			now[d.OID] = seenDB{Name: d.Name, OID: d.OID, Created: d.Created.UTC()}
		}
	}
	if ds.At.Timeline == after.Timeline && ds.At.LSN != "" {
		for _, old := range ds.Seen {
			if _, ok := now[old.OID]; ok {
				continue
			}
			d, found, err := srv.FindDatabaseDrop(ctx, old.OID, ds.At, after)
			if ctx.Err() != nil {
				// Interrupted (the worker's pass ended): the next look searches again.
				st.Dropped = slices.Clone(ds.Dropped)
				return
			}
			changed = true
			switch {
			case err != nil:
				w.log.Error("a database is gone, and its drop could not be read from the WAL: it cannot be restored as a dropped database",
					"instance", s.Name, "database", old.Name, "from", ds.At.LSN, "to", after.LSN, "err", err)
			case !found:
				// Still there, but not listed (ALLOW_CONNECTIONS false): no drop.
				w.log.Info("a database is no longer listed, and was not dropped", "instance", s.Name, "database", old.Name)
			case slices.ContainsFunc(ds.Dropped, func(x instance.DroppedDB) bool { return x.OID == old.OID && x.LSN == d.LSN }):
				// Found by a look that was interrupted before it recorded what it saw.
			default:
				ds.Dropped = append(ds.Dropped, instance.DroppedDB{Name: old.Name, OID: old.OID, Created: old.Created, Deleted: d.Committed, LSN: d.LSN})
				w.log.Info("database dropped", "instance", s.Name, "database", old.Name, "at", d.Committed, "lsn", d.LSN)
			}
		}
	}
	seen := make([]seenDB, 0, len(now))
	for _, d := range now {
		seen = append(seen, d)
	}
	slices.SortFunc(seen, func(a, b seenDB) int { return int(int64(a.OID) - int64(b.OID)) })
	if ds.At.Timeline != before.Timeline || !slices.Equal(seen, ds.Seen) {
		changed = true
	}
	ds.Seen, ds.At = seen, before
	// A dropped database is restorable for the instance's retention after its drop.
	keep := time.Duration(max(1, s.Backup.RetentionDays)) * 24 * time.Hour
	n := len(ds.Dropped)
	ds.Dropped = slices.DeleteFunc(ds.Dropped, func(d instance.DroppedDB) bool { return time.Since(d.Deleted) > keep })
	changed = changed || len(ds.Dropped) != n
	if changed || time.Since(ds.savedAt) > dropStateSaveEvery {
		if err := writeDropState(srv.Dir(), ds); err != nil {
			w.log.Warn("record the databases seen", "instance", s.Name, "err", err)
		} else {
			ds.savedAt = time.Now()
		}
	}
	st.Dropped = slices.Clone(ds.Dropped)
}

// readDropState reads the instance's drop state from its directory, dir (root's), without
// following a link; a missing file is an empty state.
func readDropState(dir string) (*dropState, error) {
	ds := &dropState{}
	d, err := safedir.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return ds, nil
	}
	if err != nil {
		return ds, err
	}
	defer d.Close()
	b, err := d.ReadFile(droppedFile, 16<<20)
	if errors.Is(err, os.ErrNotExist) {
		return ds, nil
	}
	if err != nil {
		return ds, err
	}
	return ds, json.Unmarshal(b, ds)
}

// writeDropState stores ds durably in dir.
func writeDropState(dir string, ds *dropState) error {
	d, err := safedir.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	b, err := json.Marshal(ds)
	if err != nil {
		return err
	}
	return d.WriteFileSync(droppedFile, b, 0o600, safedir.Keep)
}
