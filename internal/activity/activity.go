// Package activity is Fog's activity log: one record per operation, written in the
// transaction that ends the operation and kept for a retention period (the operation's own
// record goes after a day), read back the way Azure's activity log answers a $filter.
package activity

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Prefix is the store prefix of the activity records.
const Prefix = "activity/"

// KindBackup is the kind of a backup's record: not an operation anyone asked for, but the
// schedule's (package backupsched), recorded when the instance's agent reports it done or
// failed.
const KindBackup = "backup"

// Record is the activity log's record of one operation: who or what started it, what,
// when, how it ended, what a forced failover lost, and what a backup took.
type Record struct {
	OperationID   string            `json:"operationId"`
	Kind          string            `json:"kind"`
	Subscription  string            `json:"subscription"`
	ResourceGroup string            `json:"resourceGroup"`
	ResourceID    string            `json:"resourceId"`
	Caller        string            `json:"caller"`
	Status        string            `json:"status"`
	Start         time.Time         `json:"start"`
	End           *time.Time        `json:"end,omitempty"`
	Error         *arm.Error        `json:"error,omitempty"`
	LostWAL       *resource.LostWAL `json:"lostWal,omitempty"`
	// Backup is a backup's (KindBackup), Description what happened in words.
	Backup      *Backup `json:"backup,omitempty"`
	Description string  `json:"description,omitempty"`
}

// Backup is what a backup's record says of it.
type Backup struct {
	// Type is full or diff; Seq the schedule's number it was asked with; Stanza the history
	// it went into; Label pgBackRest's name of it.
	Type   string `json:"type,omitempty"`
	Seq    int64  `json:"seq"`
	Stanza string `json:"stanza,omitempty"`
	Label  string `json:"label,omitempty"`
	// Size is the data it covers, RepoSize what it added to the repository (compressed).
	Size     int64 `json:"size,omitempty"`
	RepoSize int64 `json:"repoSize,omitempty"`
}

// BackupKey is the store key of the record of instance uid's backup seq: one per backup, so
// that a new leader noting it again writes nothing.
func BackupKey(uid string, seq int64) string { return Key(BackupID(uid, seq)) }

// BackupID is the operation id (correlationId) of instance uid's backup seq.
func BackupID(uid string, seq int64) string { return fmt.Sprintf("backup-%s-%d", uid, seq) }

// Key is the store key of operation opID's record.
func Key(opID string) string { return Prefix + opID }

// Filter selects entries, as the activity log's $filter does.
type Filter struct {
	From, To      time.Time
	ResourceGroup string
	ResourceID    string
	OperationID   string
}

// Event is one entry: an operation's start, or its end.
type Event struct {
	Record
	Phase string // "Started", or the final status
	Time  time.Time
}

// Select returns the entries of sub in recs that match f, newest first.
func Select(recs []Record, sub string, f Filter) []Event {
	var out []Event
	for _, a := range recs {
		if !strings.EqualFold(a.Subscription, sub) ||
			(f.ResourceGroup != "" && !strings.EqualFold(a.ResourceGroup, f.ResourceGroup)) ||
			(f.ResourceID != "" && !strings.EqualFold(a.ResourceID, f.ResourceID)) ||
			(f.OperationID != "" && a.OperationID != f.OperationID) {
			continue
		}
		evs := []Event{{Record: a, Phase: "Started", Time: a.Start}}
		if a.End != nil {
			evs = append(evs, Event{Record: a, Phase: a.Status, Time: *a.End})
		}
		for _, e := range evs {
			if !e.Time.Before(f.From) && (f.To.IsZero() || !e.Time.After(f.To)) {
				out = append(out, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

// List returns every record.
func List(ctx context.Context, st store.Store) ([]Record, error) {
	return store.List[Record](ctx, st, Prefix)
}

// Prune removes the records of operations that ended more than retention ago.
func Prune(ctx context.Context, st store.Store, retention time.Duration) error {
	if retention <= 0 {
		return nil
	}
	recs, err := List(ctx, st)
	if err != nil {
		return nil
	}
	var del []store.Op
	for _, a := range recs {
		if a.End != nil && time.Since(*a.End) > retention {
			del = append(del, store.Op{Key: Key(a.OperationID), Delete: true})
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := st.Txn(ctx, nil, del); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// NoteLost adds a forced failover's lost range to its record; an operation without a record
// (still running, or pruned) is left alone.
func NoteLost(ctx context.Context, st store.Store, opID string, lost *resource.LostWAL) error {
	if opID == "" {
		return nil
	}
	_, err := store.Update(ctx, st, Key(opID), func(a *Record) error {
		a.LostWAL = lost
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
