package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// AskBackup asks the agent of the instance whose record is at key for a backup of typ with
// sequence number seq (package backupsched decides when): the record keeps both, so that
// every spec written later carries them, and the instance's desired state is written with
// them (WriteRecord), in one transaction conditioned on the record's revision rev. Anything
// changed since is store.ErrConflict: nothing is written, and the scheduler judges again.
func (e *Engine) AskBackup(ctx context.Context, key string, rev, seq int64, typ string, now time.Time) error {
	var m resource.ManagedInstance
	cur, err := store.Get(ctx, e.st, key, &m)
	if err != nil {
		return fmt.Errorf("ask for a backup: read %s: %w", key, err)
	}
	if cur != rev {
		return store.ErrConflict
	}
	if seq <= m.BackupSeq {
		// The agent takes one backup per number above the last it did: a number not above
		// the last asked would ask for nothing.
		return fmt.Errorf("ask for a backup of %s: sequence number %d is not above the last asked, %d", m.Name, seq, m.BackupSeq)
	}
	m.BackupSeq, m.BackupType, m.BackupAskedAt = seq, typ, now.UTC()
	if err := e.WriteRecord(ctx, key, rev, &m); err != nil {
		return fmt.Errorf("ask for a backup of %s: %w", m.Name, err)
	}
	return nil
}

// WriteRecord stores m, the record at key as read at revision rev and then changed, with the
// instance's desired state computed from it and the extra ops, in one transaction conditioned
// on rev and on everything the spec was computed from (its group and partner, when it has
// one). Anything changed since is store.ErrConflict (wrapped): nothing is written, and the
// caller reads again. It serves changes of the record that every later spec must carry (a
// backup asked, a retention), outside any operation's steps.
func (e *Engine) WriteRecord(ctx context.Context, key string, rev int64, m *resource.ManagedInstance, extra ...store.Op) error {
	conds := []store.Cond{{Key: key, Rev: rev}}
	spec := e.BaseSpec(m)
	if m.FailoverGroup != "" {
		// A step of the group's operation writes the members' specs from the group and both
		// records; a spec computed here from an older group would undo that step.
		var g FailoverGroup
		grev, err := store.Get(ctx, e.st, group.Key(m.FailoverGroup), &g)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("read the group of %s: %w", m.Name, err)
		}
		conds = append(conds, store.Cond{Key: group.Key(m.FailoverGroup), Rev: grev})
		if grev != 0 {
			i := 0
			if g.Sides[1].InstanceUID == m.UID {
				i = 1
			}
			var partner resource.ManagedInstance
			prev, err := store.Get(ctx, e.st, g.Sides[1-i].InstanceKey(), &partner)
			if err != nil {
				return fmt.Errorf("read the partner of %s: %w", m.Name, err)
			}
			conds = append(conds, store.Cond{Key: g.Sides[1-i].InstanceKey(), Rev: prev})
			spec = e.GroupSpec(spec, &g, i, &partner)
		}
	}
	sconds, sops, _, err := e.SpecWrites(ctx, spec)
	if err != nil {
		return fmt.Errorf("write the desired state of %s: %w", m.Name, err)
	}
	ops := append(append(sops, store.PutOp(key, m)), extra...)
	if err := e.st.Txn(ctx, append(conds, sconds...), ops); err != nil {
		return fmt.Errorf("write the record of %s: %w", m.Name, err)
	}
	return nil
}
