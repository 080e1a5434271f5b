package controller

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Addresses come from what the region's agent published, never from probing: every address
// on the first port before any on the next, nothing handed out twice, and a clear error
// when the region has no agent or the range is full.
func TestAllocateAddress(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	c := newTestController(t, st)
	if _, _, err := c.allocateAddress(ctx, "eastus"); err == nil || !strings.Contains(err.Error(), "fog agent --region eastus") {
		t.Fatalf("without an agent record: %v", err)
	}
	_ = store.Put(ctx, st, instance.AgentKey("eastus"), instance.AgentRecord{AddressFirst: "10.0.0.1", AddressLast: "10.0.0.2", Port: 5432, PortLast: 5433})
	_ = store.Put(ctx, st, "mi/s/rg/a", resource.ManagedInstance{Host: "10.0.0.1", Port: 5432})
	_ = store.Put(ctx, st, "fog/g", FailoverGroup{ReadWrite: Address{Host: "10.0.0.2", Port: 5432}, ReadOnly: Address{Host: "10.0.0.1", Port: 5433}})
	host, port, err := c.allocateAddress(ctx, "eastus")
	if err != nil || host != "10.0.0.2" || port != 5433 {
		t.Fatalf("allocate = %s:%d, %v; want 10.0.0.2:5433 (the only pair left)", host, port, err)
	}
	if _, _, err := c.allocateAddress(ctx, "eastus", "10.0.0.2:5433"); err == nil || !strings.Contains(err.Error(), "--address-range") {
		t.Fatalf("with the range full: %v", err)
	}
	_ = store.Put(ctx, st, instance.AgentKey("westus"), instance.AgentRecord{AddressFirst: "10.0.1.1", AddressLast: "10.0.1.9", Port: 5432})
	if host, port, _ := c.allocateAddress(ctx, "westus", "10.0.1.1:5432"); host != "10.0.1.2" || port != 5432 {
		t.Errorf("westus allocate = %s:%d, want 10.0.1.2:5432", host, port)
	}
}
