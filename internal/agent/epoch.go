package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/fogdb/fog/internal/safedir"
)

// seenEpoch is the highest epoch of a group an instance's agent has acted on, kept in the
// instance's directory and fsynced before the agent acts, so that a restarted agent, or one
// that reads a stale copy of the store, never goes back to an older epoch (the fencing token
// of DESIGN: "Leases and epochs").
type seenEpoch struct {
	Group string `json:"group"`
	Epoch int64  `json:"epoch"`
}

const epochFile = "fog-epoch.json"

// readEpoch reads the seen epoch from the instance's directory, dir. The file is root's, in
// a directory that is root's, and read without following a link all the same.
func readEpoch(dir string) (seenEpoch, error) {
	var e seenEpoch
	d, err := safedir.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	defer d.Close()
	b, err := d.ReadFile(epochFile, 4096)
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	return e, json.Unmarshal(b, &e)
}

// writeEpoch stores e durably: a new temporary file, fsync, rename, fsync of the directory
// (pg_auto_failover's keeper state file lacks the last step).
func writeEpoch(dir string, e seenEpoch) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	d, err := safedir.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	b, _ := json.Marshal(e)
	return d.WriteFileSync(epochFile, b, 0o600, safedir.Keep)
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
