package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// seenEpoch is the highest epoch of a group an instance's agent has acted on, kept in the
// instance's directory and fsynced before the agent acts, so that a restarted agent, or one
// that reads a stale copy of the store, never goes back to an older epoch (the fencing token
// of DESIGN: "Leases and epochs").
type seenEpoch struct {
	Group string `json:"group"`
	Epoch int64  `json:"epoch"`
}

func epochFile(dir string) string { return filepath.Join(dir, "fog-epoch.json") }

func readEpoch(dir string) (seenEpoch, error) {
	var e seenEpoch
	b, err := os.ReadFile(epochFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	return e, json.Unmarshal(b, &e)
}

// writeEpoch stores e durably: a temporary file, fsync, rename, fsync of the directory
// (pg_auto_failover's keeper state file lacks the last step).
func writeEpoch(dir string, e seenEpoch) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(e)
	tmp := epochFile(dir) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, epochFile(dir)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrStaleEpoch means desired state of an older epoch than the instance has seen.
var ErrStaleEpoch = errors.New("agent: desired state of an older epoch")

// checkEpoch refuses desired state of a lower epoch of the same group than was seen, and
// records a higher one before the agent acts on it.
func checkEpoch(dir, group string, epoch int64) error {
	if group == "" || epoch == 0 {
		return nil
	}
	seen, err := readEpoch(dir)
	if err != nil {
		return fmt.Errorf("read seen epoch: %w", err)
	}
	if seen.Group == group && epoch < seen.Epoch {
		return fmt.Errorf("%w: epoch %d, but this instance has seen epoch %d of its group; waiting for current desired state", ErrStaleEpoch, epoch, seen.Epoch)
	}
	if seen.Group != group || epoch > seen.Epoch {
		return writeEpoch(dir, seenEpoch{Group: group, Epoch: epoch})
	}
	return nil
}
