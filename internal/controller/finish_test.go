package controller

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/engine"
	"github.com/fogdb/fog/internal/store"
)

// An operation that fails for a reason of Fog's own keeps, in its record, the error id the
// client is told, never the cause; the log has the cause under that id, once.
func TestFinishRecordsInternalErrorByID(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logs bytes.Buffer
	c, err := New(Config{Regions: []string{"eastus", "westus"}}, st, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := &Operation{ID: "op-1", Name: "CreateManagedInstance", Kind: KindPutInstance, ResourceID: "mi1", Status: arm.StatusInProgress, StartTime: time.Now().UTC()}
	if err := store.Put(ctx, st, opKey(op.ID), op); err != nil {
		t.Fatal(err)
	}
	const cause = "store: txn: raft: leader lost at 10.0.0.7:2380"
	c.finish(st, op, engine.Internal(errors.New(cause)))

	var got Operation
	if _, err := store.Get(ctx, st, opKey(op.ID), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != arm.StatusFailed || got.Error == nil || got.ErrorStatus != 500 {
		t.Fatalf("record = %s %+v (%d), want Failed with a 500 error", got.Status, got.Error, got.ErrorStatus)
	}
	m := regexp.MustCompile(`\(error id ([0-9a-f]{16})\)`).FindStringSubmatch(got.Error.Message)
	if got.Error.Code != "InternalServerError" || m == nil || strings.Contains(got.Error.Message, "raft") {
		t.Fatalf("recorded error = %+v, want InternalServerError naming an error id and not the cause", got.Error)
	}
	out := logs.String()
	if n := strings.Count(out, cause); n != 1 {
		t.Errorf("the cause is logged %d times, want once:\n%s", n, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, cause) && (!strings.Contains(l, "level=ERROR") || !strings.Contains(l, "errorId="+m[1]) || !strings.Contains(l, "id=op-1")) {
			t.Errorf("the cause's log line %q is not at ERROR with error id %s and the operation", l, m[1])
		}
	}
}
