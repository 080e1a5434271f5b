package blob_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/blob"
	"github.com/fogdb/fog/internal/blob/azuritetest"
)

// TestAgainstAzurite: containers made with the shared key, and a SAS per container that
// reaches its own container and nothing else, as Azure's own implementation of the rules
// (the emulator) judges them.
func TestAgainstAzurite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := time.Now()
	az := azuritetest.Start(ctx, t)
	t.Logf("Azurite up: %v", time.Since(started).Round(time.Millisecond))
	c := az.Client
	for _, name := range []string{"stanza-a", "stanza-b", "stanza-a"} {
		if err := c.CreateContainer(ctx, name); err != nil {
			t.Fatalf("CreateContainer(%s) = %v", name, err)
		}
	}
	if ok, err := c.ContainerExists(ctx, "stanza-a"); !ok || err != nil {
		t.Errorf("ContainerExists(stanza-a) = %v, %v; want true", ok, err)
	}
	if ok, err := c.ContainerExists(ctx, "stanza-c"); ok || err != nil {
		t.Errorf("ContainerExists(stanza-c) = %v, %v; want false", ok, err)
	}

	sasA, err := c.ContainerSAS("stanza-a", time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sasB, err := c.ContainerSAS("stanza-b", time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, container, name, sas, body string) int {
		t.Helper()
		u := az.Endpoint() + "/" + container
		if name != "" {
			u += "/" + name + "?" + sas
		} else {
			u += "?restype=container&comp=list&" + sas
		}
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-ms-version", blob.Version)
		if method == http.MethodPut {
			req.Header.Set("x-ms-blob-type", "BlockBlob")
		}
		resp, err := az.HTTP.Do(req)
		if err != nil {
			// The URL carries the SAS: say what failed without it.
			var ue interface{ Unwrap() error }
			if errors.As(err, &ue) {
				err = ue.Unwrap()
			}
			t.Fatalf("%s %s/%s: %v", method, container, name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if method == http.MethodGet && name != "" && resp.StatusCode == http.StatusOK && string(b) != "wal" {
			t.Errorf("GET %s/%s = %q, want wal", container, name, b)
		}
		return resp.StatusCode
	}
	for _, step := range []struct {
		what                 string
		method, container, n string
		sas                  string
		want                 int
	}{
		{"A writes in its container", http.MethodPut, "stanza-a", "archive/x", sasA, http.StatusCreated},
		{"A reads it", http.MethodGet, "stanza-a", "archive/x", sasA, http.StatusOK},
		{"A lists its container", http.MethodGet, "stanza-a", "", sasA, http.StatusOK},
		{"B writes in its container", http.MethodPut, "stanza-b", "archive/x", sasB, http.StatusCreated},
		{"A cannot list B's container", http.MethodGet, "stanza-b", "", sasA, http.StatusForbidden},
		{"A cannot read B's blob", http.MethodGet, "stanza-b", "archive/x", sasA, http.StatusForbidden},
		{"A cannot write in B's container", http.MethodPut, "stanza-b", "archive/y", sasA, http.StatusForbidden},
		{"A cannot delete B's blob", http.MethodDelete, "stanza-b", "archive/x", sasA, http.StatusForbidden},
		{"B's blob is still there", http.MethodGet, "stanza-b", "archive/x", sasB, http.StatusOK},
		{"A deletes its blob", http.MethodDelete, "stanza-a", "archive/x", sasA, http.StatusAccepted},
	} {
		body := ""
		if step.method == http.MethodPut {
			body = "wal"
		}
		if got := do(step.method, step.container, step.n, step.sas, body); got != step.want {
			t.Errorf("%s: HTTP %d, want %d", step.what, got, step.want)
		}
	}

	expired, err := c.ContainerSAS("stanza-a", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := do(http.MethodGet, "stanza-a", "", expired, ""); got != http.StatusForbidden {
		t.Errorf("an expired SAS lists its container: HTTP %d, want 403", got)
	}

	// Another key is refused, and the error says so without the key.
	wrong, err := blob.New(azuritetest.Account, "d3Jvbmcga2V5", az.Endpoint(), az.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	err = wrong.CreateContainer(ctx, "stanza-x")
	var se *blob.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || strings.Contains(err.Error(), az.Key) {
		t.Errorf("CreateContainer with another key = %v, want HTTP 403", err)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}
